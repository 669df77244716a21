"""``vtoken token new|show``, ``vtoken codes --state`` and ``vtoken fleet create`` through click's runner."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pskc
import pytest
from click.testing import CliRunner, Result

from firmware_sim.fleet import derive_seed
from firmware_sim.statefile import load_token
from host.cli.main import main
from host.timearg import parse_time_ns
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.oath import totp
from vtoken.serialno import make_serial

REPO = Path(__file__).resolve().parent.parent

#: A recognizable seed: it must never show up in any output.
SECRET = "c0ffee00" + "5ec12e70" * 3 + "feedface"
RFC_SECRET = b"12345678901234567890".hex()
BATCH = "b47c45ec12e7" + "0badf00d" * 2 + "cafe"
PSK = "00112233445566778899aabbccddeeff"
SERIAL = "4242424243"
MADE = "2026-01-01T00:00:00Z"
#: One year later, 15 s into a step; with +20 ppm the token reads 00:10:45.7203, 15.72 s into its step.
YEAR_LATER = "2027-01-01T00:00:15Z"
#: YEAR_LATER + 630 s: the same step as the token's drifted clock.
YEAR_LATER_PLUS_630 = "2027-01-01T00:10:45Z"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    return result


def assert_clean_error(result: Result, words: str, code: int | None = None) -> None:
    assert result.exit_code != 0
    if code is not None:
        assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert words in result.output
    assert "Error" in result.output


def assert_no_secret(result: Result) -> None:
    text = result.output.lower()
    for secret in (SECRET, RFC_SECRET, BATCH, PSK):
        assert secret[:16] not in text
    assert SECRET[8:24] not in text


def new_token(path: Path, *extra: str, secret: str = SECRET, model: str = "totp30") -> Result:
    return ok(
        "token", "new", "--state", str(path), "--model", model, "--secret", secret,
        "--serial", SERIAL, "--ppm", "20", "--at", MADE, *extra,
    )


@pytest.fixture
def fob(tmp_path: Path) -> Path:
    path = tmp_path / "fob.token"
    result = new_token(path)
    assert SERIAL in result.output and str(path) in result.output
    assert_no_secret(result)
    return path


@pytest.fixture
def hotp_fob(tmp_path: Path) -> Path:
    path = tmp_path / "event.token"
    new_token(path, secret=RFC_SECRET, model="hotp")
    return path


# --- token new / codes --state ------------------------------------------------------------


def test_token_new_makes_a_private_file(fob: Path) -> None:
    assert fob.exists()
    assert stat.S_IMODE(fob.stat().st_mode) == 0o600
    data = json.loads(fob.read_text())
    assert data["model"] == "totp30"
    assert SECRET not in fob.read_text()


#: A seed below RFC 4226's 128 bits (15 bytes), and a vtoken serial with two digits swapped.
SHORT_SECRET = "5ec12e70" * 3 + "feedfa"
MISTYPED_SERIAL = "4242424234"


@pytest.mark.parametrize(("option", "value", "words", "flag"), [
    ("--secret", "ab", "the seed is 1 byte; RFC 4226 requires at least 16", "--allow-short-seed"),
    ("--secret", SHORT_SECRET, "the seed is 15 bytes; RFC 4226 requires at least 16", "--allow-short-seed"),
    ("--serial", MISTYPED_SERIAL, f"serial {MISTYPED_SERIAL} fails its check digit: probably mistyped",
     "--force-serial"),
])
def test_token_new_refuses_what_provision_refuses(tmp_path: Path, option: str, value: str, words: str,
                                                  flag: str) -> None:
    """The same rules as ``vtoken provision``: a short seed or a mistyped serial needs its flag."""
    path = tmp_path / "fob.token"
    args = {"--secret": SECRET, "--serial": SERIAL, option: value}
    result = run("token", "new", "--state", str(path), "--secret", args["--secret"], "--serial", args["--serial"],
                 "--at", MADE)
    assert_clean_error(result, words, code=2)
    assert flag in result.output
    if option == "--secret":
        assert value not in result.output  # the length is named, never the seed
    assert not path.exists()  # nothing written
    result = ok("token", "new", "--state", str(path), "--secret", args["--secret"], "--serial", args["--serial"],
                "--at", MADE, flag)
    made = load_token(path, SimulatedClock(parse_time_ns(MADE)))
    assert made.serial == args["--serial"]
    if option == "--serial":
        assert f"warning: serial {MISTYPED_SERIAL} fails its check digit" in result.output


def test_codes_follow_the_drifted_clock(fob: Path) -> None:
    drifted = ok("codes", "--state", str(fob), "--at", YEAR_LATER)
    reference = ok("codes", "--key", SECRET, "--at", YEAR_LATER_PLUS_630)
    undrifted = ok("codes", "--key", SECRET, "--at", YEAR_LATER)
    assert len(drifted.output.strip()) == 6
    assert drifted.output == reference.output
    assert drifted.output != undrifted.output
    assert_no_secret(drifted)
    # 630 s of drift is 21 steps: the token is not just a step or two off
    twenty_one = ok("codes", "--key", SECRET, "--at", YEAR_LATER, "--count", "22").output.split()
    assert twenty_one[21] == drifted.output.strip()


def test_codes_count_gives_consecutive_steps(fob: Path) -> None:
    drifted = ok("codes", "--state", str(fob), "--at", YEAR_LATER, "--count", "3").output.split()
    reference = ok("codes", "--key", SECRET, "--at", YEAR_LATER_PLUS_630, "--count", "3").output.split()
    assert len(drifted) == 3 and len(set(drifted)) == 3
    assert drifted == reference


def test_codes_state_leaves_the_file_alone(fob: Path) -> None:
    before = fob.read_bytes()
    first = ok("codes", "--state", str(fob), "--at", YEAR_LATER, "--count", "2")
    assert fob.read_bytes() == before
    assert ok("codes", "--state", str(fob), "--at", YEAR_LATER, "--count", "2").output == first.output


def test_hotp_codes_are_the_rfc_counters_and_do_not_advance(hotp_fob: Path) -> None:
    before = hotp_fob.read_bytes()
    first = ok("codes", "--state", str(hotp_fob), "--count", "3", "--at", YEAR_LATER)
    assert first.output.split() == ["755224", "287082", "359152"]  # RFC 4226 counters 0, 1, 2
    second = ok("codes", "--state", str(hotp_fob), "--count", "3", "--at", YEAR_LATER)
    assert second.output == first.output
    assert hotp_fob.read_bytes() == before


def test_codes_state_and_key_together_are_refused(fob: Path) -> None:
    result = run("codes", "--state", str(fob), "--key", SECRET, "--at", YEAR_LATER)
    assert_clean_error(result, "--state", code=2)
    assert_no_secret(result)


# --- token show ------------------------------------------------------------------------------


def test_token_show(fob: Path) -> None:
    result = ok("token", "show", "--state", str(fob), "--at", "2027-01-01T00:00:00Z")
    out = result.output
    assert_no_secret(result)
    assert f"serial:        {SERIAL}" in out
    assert "model:         totp30 (totp, sha1, 6 digits, 30 s)" in out
    assert "locked" in out
    assert "true time:     2027-01-01T00:00:00Z" in out
    assert "token clock:   2027-01-01T00:10:30.72Z" in out
    assert "offset:        +630.720 s" in out
    assert "battery:       80 %" in out
    lines = out.splitlines()
    art = lines[lines.index("display:") + 1 :]
    assert len(art) == 5 and all(not line.strip() for line in art)  # asleep: nothing lit


def test_token_show_at_the_factory(fob: Path) -> None:
    out = ok("token", "show", "--state", str(fob), "--at", MADE).output
    assert "offset:        +0.000 s" in out
    assert "battery:       100 %" in out


def test_token_show_hotp_counter(hotp_fob: Path) -> None:
    out = ok("token", "show", "--state", str(hotp_fob), "--at", YEAR_LATER).output
    assert "hotp (hotp, sha1, 6 digits, counter 0)" in out


def test_token_new_force_replaces(fob: Path) -> None:
    before = fob.read_bytes()
    ok("token", "new", "--state", str(fob), "--model", "totp60", "--at", MADE, "--force")
    assert fob.read_bytes() != before
    assert "totp60" in ok("token", "show", "--state", str(fob), "--at", MADE).output


def test_token_new_force_on_a_served_token_is_refused(fob: Path) -> None:
    """Issue 14 #3: `serve` holds the token's lock; `token new --force` must not write under it."""
    import os

    from firmware_sim.statefile import locked

    before = fob.read_bytes()
    with locked(fob, wait=False, holder="vtoken serve"):  # exactly what `vtoken serve` holds while it runs
        result = run("token", "new", "--state", str(fob), "--model", "totp60", "--at", MADE, "--force")
    assert_clean_error(result, f"device busy: {fob} is in use by another process", code=1)
    assert f"(vtoken serve, pid {os.getpid()})" in result.output
    assert_no_secret(result)
    assert fob.read_bytes() == before
    ok("token", "new", "--state", str(fob), "--model", "totp60", "--at", MADE, "--force")  # once free: replaced


def test_token_new_in_a_missing_folder(tmp_path: Path) -> None:
    result = run("token", "new", "--state", str(tmp_path / "no" / "fob.token"), "--secret", SECRET, "--at", MADE)
    assert_clean_error(result, "does not exist", code=1)
    assert not (tmp_path / "no").exists()


def test_token_new_defaults_give_a_valid_random_serial(tmp_path: Path) -> None:
    path = tmp_path / "r.token"
    ok("token", "new", "--state", str(path), "--at", MADE)
    token = load_token(path, SimulatedClock(parse_time_ns(MADE)))
    assert len(token.serial) == 10 and make_serial(int(token.serial[:9])) == token.serial


# --- fleet create --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protection", "label"),
    [([], "plaintext"), (["--password", "hunter2"], "password"), (["--psk", PSK], "pre-shared key")],
)
def test_fleet_create(tmp_path: Path, protection: list[str], label: str) -> None:
    out = tmp_path / "fleet"
    result = ok(
        "fleet", "create", "--count", "5", "--batch-secret", BATCH, "--model", "totp30",
        "--out", str(out), "--at", MADE, *protection,
    )
    assert_no_secret(result)
    assert result.output.strip() == f"5 tokens written to {out}; seeds in {out / 'tokens.pskc'} ({label})"
    serials = [make_serial(100_000_000 + i) for i in range(5)]
    assert sorted(p.name for p in out.iterdir()) == sorted(["tokens.pskc"] + [f"{s}.token" for s in serials])
    assert stat.S_IMODE((out / "tokens.pskc").stat().st_mode) == 0o600

    container = pskc.PSKC(str(out / "tokens.pskc"))
    if label == "password":
        container.encryption.derive_key("hunter2")
    elif label == "pre-shared key":
        container.encryption.key = bytes.fromhex(PSK)
    seeds = {k.serial: k.secret for k in container.keys}
    assert seeds == {s: derive_seed(bytes.fromhex(BATCH), s) for s in serials}

    # a created token works with codes --state: it shows TOTP of its seed at its own clock
    path = out / f"{serials[2]}.token"
    shown = ok("codes", "--state", str(path), "--at", YEAR_LATER).output.strip()
    token = load_token(path, SimulatedClock(parse_time_ns(YEAR_LATER)))
    device_s = token.device_time_ns() // NS_PER_SECOND
    assert shown == totp(seeds[serials[2]], device_s)
    assert shown == ok("codes", "--key", seeds[serials[2]].hex(), "--at", str(device_s)).output.strip()


def test_fleet_create_twice_into_one_folder_is_refused(tmp_path: Path) -> None:
    args = ["fleet", "create", "--count", "2", "--batch-secret", BATCH, "--out", str(tmp_path / "f"), "--at", MADE]
    ok(*args)
    before = {p.name: p.read_bytes() for p in (tmp_path / "f").iterdir()}
    result = run(*args)
    assert_clean_error(result, "empty folder", code=1)
    assert {p.name: p.read_bytes() for p in (tmp_path / "f").iterdir()} == before


def test_fleet_create_bad_psk_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "f"
    result = run("fleet", "create", "--count", "3", "--batch-secret", BATCH, "--out", str(out), "--psk", "0011", "--at", MADE)
    assert_clean_error(result, "16 bytes", code=2)
    assert_no_secret(result)
    assert not out.exists() or not any(out.iterdir())
    ok("fleet", "create", "--count", "3", "--batch-secret", BATCH, "--out", str(out), "--at", MADE)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words", "code"),
    [
        (["--model", "totp99"], "unknown model", 2),
        (["--secret", SECRET + "a"], "odd number", 2),
        (["--secret", SECRET[:-2] + "zz"], "0-9 and a-f", 2),
        (["--serial", "12 AB5678"], "is not valid", 2),
        (["--serial", "1" * 65], "at most 64 characters", 2),
        (["--ppm", "fast"], "--ppm must be a number", 2),
        (["--ppm", "5000"], "within ±1000", 2),
        (["--at", "2026-01-01T00:00:00"], "no time zone", 2),
    ],
)
def test_token_new_errors(tmp_path: Path, args: list[str], words: str, code: int) -> None:
    path = tmp_path / "x.token"
    base = {"--model": "totp30", "--secret": SECRET, "--serial": SERIAL, "--at": MADE}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [item for pair in base.items() for item in pair]
    result = run("token", "new", "--state", str(path), *flat)
    assert_clean_error(result, words, code)
    assert_no_secret(result)
    assert not path.exists()


def test_token_new_refuses_an_existing_file(fob: Path) -> None:
    before = fob.read_bytes()
    result = run("token", "new", "--state", str(fob), "--secret", SECRET, "--at", MADE)
    assert_clean_error(result, "already exists; use --force", code=1)
    assert_no_secret(result)
    assert fob.read_bytes() == before


def _flip_flash_char(path: Path) -> None:
    data = json.loads(path.read_text())
    flash = data["flash"]
    i = len(flash) // 2
    data["flash"] = flash[:i] + ("A" if flash[i] != "A" else "B") + flash[i + 1 :]
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 4)


@pytest.mark.parametrize(
    ("damage", "words"),
    [(_garbage, "not valid JSON"), (_truncate, "not valid JSON"), (_flip_flash_char, "checksum mismatch")],
)
@pytest.mark.parametrize("command", [["codes", "--at", YEAR_LATER], ["token", "show", "--at", YEAR_LATER]])
def test_corrupt_token_file(fob: Path, damage, words: str, command: list[str]) -> None:
    damage(fob)
    result = run(*command, "--state", str(fob))
    assert_clean_error(result, words, code=1)
    assert "corrupt" in result.output
    assert_no_secret(result)


@pytest.mark.parametrize("command", [["codes"], ["token", "show"]])
def test_missing_token_file(tmp_path: Path, command: list[str]) -> None:
    """A missing input file is bad input: exit 2, as click reports for its own path checks (and 'serve')."""
    result = run(*command, "--state", str(tmp_path / "absent.token"), "--at", YEAR_LATER)
    assert_clean_error(result, "does not exist", code=2)
    folder = run(*command, "--state", str(tmp_path), "--at", YEAR_LATER)
    assert_clean_error(folder, "is a directory", code=2)


@pytest.mark.parametrize("command", [["codes"], ["token", "show"]])
def test_at_without_zone(fob: Path, command: list[str]) -> None:
    result = run(*command, "--state", str(fob), "--at", "2027-01-01T00:00:15")
    assert_clean_error(result, "no time zone", code=2)
    assert_no_secret(result)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--batch-secret", "00112233445566778899aabbccddee"], "at least 16 bytes"),
        (["--batch-secret", BATCH + "f"], "odd number"),
        (["--batch-secret", BATCH, "--psk", PSK, "--password", "hunter2"], "not both"),
        (["--batch-secret", BATCH, "--model", "nope"], "unknown model"),
        (["--batch-secret", BATCH, "--at", "2026-01-01T00:00:00"], "no time zone"),
        (["--batch-secret", BATCH, "--password", ""], "must not be empty"),
    ],
)
def test_fleet_create_errors(tmp_path: Path, args: list[str], words: str) -> None:
    out = tmp_path / "f"
    result = run("fleet", "create", "--count", "3", "--out", str(out), *args)
    assert_clean_error(result, words, code=2)
    assert_no_secret(result)
    assert not out.exists() or not any(out.iterdir())


def test_fleet_create_count_zero(tmp_path: Path) -> None:
    result = run("fleet", "create", "--count", "0", "--batch-secret", BATCH, "--out", str(tmp_path / "f"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "f").exists()


# --- reproducible across processes ----------------------------------------------------------------


def test_codes_state_same_in_separate_processes(fob: Path) -> None:
    args = [sys.executable, "-m", "host.cli.main", "codes", "--state", str(fob), "--at", YEAR_LATER, "--count", "5"]
    outputs = [
        subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO, timeout=60).stdout
        for _ in range(2)
    ]
    in_process = ok("codes", "--state", str(fob), "--at", YEAR_LATER, "--count", "5").output
    assert outputs[0] == outputs[1] == in_process
    assert len(in_process.split()) == 5


def test_codes_state_refuses_options_the_file_fixes(tmp_path: Path) -> None:
    state = tmp_path / "fob.token"
    ok("token", "new", "--state", str(state), "--secret", SECRET, "--at", MADE)
    for extra in (["--hotp"], ["--digits", "8"], ["--period", "60"], ["--algorithm", "sha256"], ["--counter", "3"]):
        result = run("codes", "--state", str(state), "--at", YEAR_LATER, *extra)
        assert_clean_error(result, "does not apply with --state", code=2)


def test_codes_state_before_the_last_event_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "fob.token"
    ok("token", "new", "--state", str(state), "--secret", SECRET, "--at", MADE)
    result = run("codes", "--state", str(state), "--at", "2025-06-01T00:00:00Z")
    assert_clean_error(result, "cannot be replayed backwards", code=2)
    assert "2026-01-01T00:00:00Z" in result.output


def test_codes_state_with_a_dead_battery_is_an_error(tmp_path: Path) -> None:
    state = tmp_path / "fob.token"
    ok("token", "new", "--state", str(state), "--secret", SECRET, "--at", MADE)
    result = run("codes", "--state", str(state), "--at", "2032-01-01T00:00:00Z")  # 6 years: battery is dead
    assert_clean_error(result, "battery is dead", code=1)
    assert_no_secret(result)


@pytest.mark.parametrize("now", ["now", "NOW"])
def test_show_at_now_and_json(fob: Path, monkeypatch: pytest.MonkeyPatch, now: str) -> None:
    """'token show --at now' is this computer's clock; --json prints the same facts as one object."""
    monkeypatch.setattr("host.cli.options.wall_time_ns", lambda: parse_time_ns(YEAR_LATER))
    text = ok("token", "show", "--state", str(fob), "--at", now).output
    assert "true time:     2027-01-01T00:00:15Z" in text
    shown = json.loads(ok("token", "show", "--state", str(fob), "--at", now, "--json").stdout)
    assert shown["true_time"] == "2027-01-01T00:00:15Z" and shown["true_time_ns"] == parse_time_ns(YEAR_LATER)
    assert shown["serial"] == SERIAL and shown["model"] == "totp30" and shown["kind"] == "totp"
    assert f"offset:        {shown['offset_ns'] / NS_PER_SECOND:+.3f} s" in text
    assert shown["offset_ns"] > 0  # +20 ppm: the token runs fast
    assert_no_secret(ok("token", "show", "--state", str(fob), "--json"))
