"""``vtoken demo``: the whole portal story against virtual tokens on real ptys."""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from host.cli.main import main
from host.demo import run_demo
from portal.store import PortalStore
from validator.sealing import ENV_VAR
from vtoken.errors import StorageError

ROOT = Path(__file__).resolve().parents[1]

#: The story's steps, in order (substrings of the step titles).
STEPS = (
    "factory",
    "validator",
    "1. Purchase",
    "2. License key",
    "3. Identity proofing",
    "4. Activation",
    "5. Registration",
    "Phone OTP",
    "Sign in",
    "loses the token",
    "Replacement",
)
#: Refusals the story shows on purpose, in the order it shows them.
REFUSALS = (
    "token-not-arrived",
    "key-typo",
    "name-mismatch",
    "proofing-not-done",
    "activation-used",
    "serial-mistyped",
    "token-replay",
    "token-lost",
    "app-requires-hardware-token",
)


def _in_order(wanted: tuple[str, ...], seen: list[str]) -> bool:
    """Every item of ``wanted`` matches an item of ``seen`` (substring), in that order."""
    it = iter(seen)
    return all(any(w in s for s in it) for w in wanted)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, list[str], Path]:
    folder = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ENV_VAR, raising=False)  # the run makes its own key file
        result = run_demo(folder, echo=lines.append)
    return result, lines, folder


def test_demo_tells_the_story_in_order(demo: tuple) -> None:
    result, lines, _ = demo
    assert _in_order(STEPS, result.steps), result.steps
    numbered = [line for line in lines if re.match(r"^\[\s*\d+\] ", line)]
    assert [re.sub(r"^\[\s*\d+\] ", "", line) for line in numbered] == result.steps
    assert [int(re.match(r"^\[\s*(\d+)\]", line).group(1)) for line in numbered] == list(range(1, len(numbered) + 1))
    assert "Summary" in lines
    assert lines.index("Summary") > lines.index(numbered[-1])


def test_demo_shows_the_refusals_the_rules_require(demo: tuple) -> None:
    result, lines, _ = demo
    assert _in_order(REFUSALS, result.refusals), result.refusals
    for code in REFUSALS:
        assert any("refused as it should be" in line and f": {code}: " in line for line in lines), code
    summary = next(line for line in lines if "refused as the rules require" in line)
    assert all(code in summary for code in REFUSALS)


def test_demo_sign_ins_and_replacement_without_proofing(demo: tuple) -> None:
    result, lines, folder = demo
    assert result.sign_ins.count("payroll:token") == 2
    assert "wiki:phone" in result.sign_ins
    assert result.sign_ins[0] == "payroll:token" and result.sign_ins[-1] == "payroll:token"
    assert result.order == "SO-12345" and result.replacement_order == "SO-12346"
    assert any(f"replacement order {result.replacement_order}: proofing waived" in line for line in lines)
    with PortalStore(folder / "portal.db") as store:
        replacement = store.get("order", result.replacement_order)
        assert replacement.proofing_waived and replacement.replacement_of
        credentials = store.all("credential")
    assert [c.state.value for c in credentials] == ["lost", "registered"]
    assert [c.serial for c in credentials] == result.serials


def test_demo_serves_two_tokens_on_two_ptys(demo: tuple) -> None:
    result, _, _ = demo
    assert len(result.serials) == 2 and result.serials[0] != result.serials[1]
    assert len(result.ptys) == 2 and result.ptys[0] != result.ptys[1]
    assert all(path.startswith("/dev/pts/") for path in result.ptys), result.ptys


def test_demo_outbox_has_the_license_key_and_phone_codes(demo: tuple) -> None:
    _, lines, folder = demo
    messages = [json.loads(line) for line in (folder / "portal.db.outbox.jsonl").read_text().splitlines()]
    key_mails = [m for m in messages if m["channel"] == "email" and "license key:" in m["body"]]
    assert len(key_mails) == 1
    key = key_mails[0]["body"].split("license key:")[1].split()[0]
    assert re.fullmatch(r"[0-9A-Z]{5}(-[0-9A-Z]{5}){3}", key)
    assert any(key in line for line in lines)  # the story shows the key it read from the e-mail
    sms = [m for m in messages if m["channel"] == "sms"]
    voice = [m for m in messages if m["channel"] == "voice"]
    assert sms and voice
    assert all(re.search(r"is \d{6}$", m["body"]) for m in sms)
    assert all(re.search(r"is \d( \d){5}$", m["body"]) for m in voice)


def test_vtoken_demo_command_runs_in_a_subprocess() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "host.cli.main", "demo"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert elapsed < 60
    assert "Summary" in proc.stdout
    assert "Traceback" not in proc.stderr


# --- what --dir leaves behind (issue 14 #7) -------------------------------------------------------


def _follow_up_commands(lines: list[str]) -> list[str]:
    """The commands printed after "Look around", one per line."""
    start = next(i for i, line in enumerate(lines) if line.startswith("Look around"))
    return [line.strip() for line in lines[start + 1 :] if line.strip() and not line.strip().startswith("#")]


def test_demo_dir_leaves_the_files_the_cli_opens(demo: tuple) -> None:
    _, _, folder = demo
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["portal.db", "portal.db.key", "portal.db.outbox.jsonl", "tokens.pskc"]
    for name in names:  # database, key, outbox and PSKC file all hold secrets or codes
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name


def test_every_printed_follow_up_command_works(demo: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    result, lines, folder = demo
    monkeypatch.delenv(ENV_VAR, raising=False)
    commands = _follow_up_commands(lines)
    assert commands == result.follow_up
    assert len(commands) >= 4
    seen = []
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "vtoken", command
        run = CliRunner().invoke(main, argv[1:])
        assert run.exit_code == 0, f"{command}: {run.output}"
        assert run.exception is None, command
        seen.append(run.output)
    text = "\n".join(seen)
    assert result.serials[0] in text  # the validator knows the demo's tokens
    assert "Dana Whitfield" in text  # the portal knows the account
    assert "Your code is" in text  # the outbox is the one the demo wrote to
    assert "payroll" in text


def test_the_outbox_command_reads_what_the_demo_sent(demo: tuple) -> None:
    _, lines, folder = demo
    run = CliRunner().invoke(main, ["portal", "--db", str(folder / "portal.db"), "outbox", "--to", "dana@example.com"])
    assert run.exit_code == 0, run.output
    key_line = next(line for line in lines if "e-mails the license key" in line)
    assert key_line.rsplit(": ", 1)[1] in run.output


def test_a_second_run_into_the_same_folder_is_refused_cleanly(demo: tuple) -> None:
    _, _, folder = demo
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(StorageError, match="already holds a demo run"):
        run_demo(folder, echo=lambda _: None)
    run = CliRunner().invoke(main, ["demo", "--dir", str(folder)])
    assert run.exit_code == 1 and "already holds a demo run" in run.output and "Traceback" not in run.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_demo_with_the_master_key_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "11" * 32)
    lines: list[str] = []
    result = run_demo(tmp_path / "run", echo=lines.append)
    assert not (tmp_path / "run" / "portal.db.key").exists()  # the key the CLI will use is the environment's
    for command in result.follow_up:
        if not command.startswith("#"):
            run = CliRunner().invoke(main, shlex.split(command)[1:])
            assert run.exit_code == 0, f"{command}: {run.output}"
