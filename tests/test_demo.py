"""``vtoken demo``: the whole portal story against virtual tokens on real ptys."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host.demo import run_demo
from portal.store import PortalStore

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
    messages = [json.loads(line) for line in (folder / "outbox.jsonl").read_text().splitlines()]
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
