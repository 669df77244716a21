"""``vtoken codes`` and ``vtoken backend`` through click's runner and as a real process."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from host.cli.main import main
from tests.vectors import RFC4226_VECTORS, RFC6238_KEYS, RFC6238_VECTORS

RFC_KEY_HEX = b"12345678901234567890".hex()


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def test_hotp_count() -> None:
    result = run("codes", "--key", RFC_KEY_HEX, "--hotp", "--counter", "0", "--count", "10")
    assert result.exit_code == 0, result.output
    assert result.output.split() == [code for _, _, code in RFC4226_VECTORS]


@pytest.mark.parametrize(("at", "algorithm", "code"), RFC6238_VECTORS)
def test_totp_rfc6238(at: int, algorithm: str, code: str) -> None:
    key = RFC6238_KEYS[algorithm].hex()
    result = run("codes", "--key", key, "--totp", "--at", str(at), "--digits", "8", "--algorithm", algorithm)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == code


def test_iso_time_with_zone_equals_unix() -> None:
    iso = run("codes", "--key", RFC_KEY_HEX, "--at", "2009-02-13T23:31:30Z", "--digits", "8")
    offset = run("codes", "--key", RFC_KEY_HEX, "--at", "2009-02-14T00:31:30+01:00", "--digits", "8")
    assert iso.output.strip() == offset.output.strip() == "89005924"


def test_base32_key_and_count() -> None:
    result = run("codes", "--key-b32", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "--at", "59", "--count", "3", "--digits", "8")
    assert result.exit_code == 0
    lines = result.output.split()
    assert len(lines) == 3 and lines[0] == "94287082"


def test_period_and_t0() -> None:
    a = run("codes", "--key", RFC_KEY_HEX, "--at", "1060", "--period", "60", "--t0", "1000")
    b = run("codes", "--key", RFC_KEY_HEX, "--hotp", "--counter", "1")
    assert a.output == b.output == "287082\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--key", RFC_KEY_HEX, "--at", "2026-01-01T00:00:00"], "no time zone"),
        (["--key", RFC_KEY_HEX, "--at", "yesterday"], "cannot read time"),
        (["--key", "abc"], "odd number"),
        (["--key", "zz"], "0-9 and a-f"),
        (["--at", "59"], "exactly one of --key"),
        (["--key", "00", "--key-b32", "AA"], "exactly one of --key"),
        (["--key", RFC_KEY_HEX, "--hotp", "--at", "59"], "--at applies to --totp"),
        (["--key", RFC_KEY_HEX, "--digits", "5"], "5 is not in the range"),
        (["--key", RFC_KEY_HEX, "--algorithm", "md5"], "md5"),
    ],
)
def test_errors_are_clean(args: list[str], words: str) -> None:
    result = run("codes", *args)
    assert result.exit_code != 0
    assert words in result.output
    assert "Traceback" not in result.output


def test_error_in_a_real_process_has_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "host.cli.main", "codes", "--key", "xyz", "--at", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Error:" in proc.stderr and "Traceback" not in proc.stderr


def test_backend_command_python() -> None:
    result = run("backend", env={"VTOKEN_BACKEND": "python"})
    assert result.exit_code == 0
    assert "backend: python" in result.output


def test_backend_command_c(cbackend) -> None:
    result = run("backend", env={"VTOKEN_BACKEND": "c"})
    assert result.exit_code == 0
    assert "backend: c" in result.output
    assert f"cpu path: {cbackend.cpu_path}" in result.output


def test_backend_command_unknown() -> None:
    result = run("backend", env={"VTOKEN_BACKEND": "gpu"})
    assert result.exit_code == 1
    assert "unknown backend" in result.output


def test_codes_same_on_both_backends(cbackend) -> None:
    args = ["codes", "--key", RFC_KEY_HEX, "--at", "1234567890", "--count", "50", "--algorithm", "sha512"]
    assert run(*args, env={"VTOKEN_BACKEND": "c"}).output == run(*args, env={"VTOKEN_BACKEND": "python"}).output


# --- codes --validate CODE --window N (issue 13, item 8) ---------------------------------------

RFC_B32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
#: Counters 2386 and 2394 of the RFC 4226 key both give 709847: a window can hold two matches.
TWIN_COUNTERS = (2386, 2394)
TWIN_CODE = "709847"


def validate(*args: str):
    return run("codes", "--validate", *args)


def assert_refused(result, words: str) -> None:
    """No match: exit 1, the message on stderr, nothing on stdout."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert words in result.stderr
    assert "Traceback" not in result.output


def assert_bad_input(result, words: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    assert words in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("at", "algorithm", "code"), RFC6238_VECTORS)
@pytest.mark.parametrize("window", ["0", "3"])
def test_validate_rfc6238_vectors(at: int, algorithm: str, code: str, window: str) -> None:
    key = RFC6238_KEYS[algorithm].hex()
    result = validate(code, "--window", window, "--key", key, "--at", str(at), "--digits", "8", "--algorithm", algorithm)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"match: step {at // 30} (+0)\n"


@pytest.mark.parametrize(("counter", "_value", "code"), RFC4226_VECTORS)
def test_validate_rfc4226_vectors_in_a_counter_window(counter: int, _value: int, code: str) -> None:
    result = validate(code, "--window", "9", "--key", RFC_KEY_HEX, "--hotp", "--counter", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"match: counter {counter} ({counter:+d})\n"


@pytest.mark.parametrize(
    ("at", "code", "line"),
    [
        (59, "94287082", "match: step 1 (+0)"),  # the exact step
        (59 + 30, "94287082", "match: step 1 (-1, 30 s earlier)"),
        (59 + 90, "94287082", "match: step 1 (-3, 90 s earlier)"),
        (59 - 30, "94287082", "match: step 1 (+1, 30 s later)"),
        (1111111111 - 60, "14050471", "match: step 37037037 (+2, 60 s later)"),
        (1111111111, "07081804", "match: step 37037036 (-1, 30 s earlier)"),
    ],
)
def test_validate_totp_offsets(at: int, code: str, line: str) -> None:
    result = validate(code, "--window", "3", "--key", RFC_KEY_HEX, "--at", str(at), "--digits", "8")
    assert result.exit_code == 0, result.output
    assert result.stdout == line + "\n"


@pytest.mark.parametrize("k", [-5, -2, -1, 0, 1, 2, 5])
def test_validate_totp_plus_minus_k_against_pyotp(k: int) -> None:
    pyotp = pytest.importorskip("pyotp")
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    at = 1_767_225_615  # 2026-01-01T00:00:15Z, step 58907520
    code = pyotp.TOTP(secret).at(at + 30 * k)
    found = validate(code, "--window", "5", "--key-b32", secret, "--at", str(at))
    assert found.exit_code == 0, found.output
    assert found.stdout.startswith(f"match: step {at // 30 + k} ({k:+d}")
    # pyotp's verify(valid_window=w) accepts exactly the codes of steps -w .. +w
    for window in range(0, 6):
        ours = validate(code, "--window", str(window), "--key-b32", secret, "--at", str(at))
        theirs = pyotp.TOTP(secret).verify(code, for_time=at, valid_window=window)
        assert (ours.exit_code == 0) == theirs == (abs(k) <= window)
        if not theirs:
            assert_refused(ours, "no match")


def test_validate_sha256_and_period_t0_against_pyotp() -> None:
    pyotp = pytest.importorskip("pyotp")
    import hashlib

    secret = "KRSXG5CTMVRXEZLUKN2XAZLSKNSWG4TFOQ======"  # base32 with its padding, as some apps show it
    totp = pyotp.TOTP(secret.rstrip("="), digits=8, digest=hashlib.sha256, interval=60)
    at = 2_000_000_000
    t0 = 1000
    code = totp.at(at - t0 - 120)  # pyotp has no T0: shift the time instead
    result = validate(code, "--window", "4", "--key-b32", secret, "--at", str(at), "--digits", "8",
                      "--algorithm", "sha256", "--period", "60", "--t0", str(t0))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"match: step {(at - t0) // 60 - 2} (-2, 120 s earlier)\n"


def test_validate_same_on_both_backends(cbackend) -> None:
    args = ["codes", "--validate", TWIN_CODE, "--window", "3000", "--key", RFC_KEY_HEX, "--at", str(2390 * 30)]
    c = run(*args, env={"VTOKEN_BACKEND": "c"})
    python = run(*args, env={"VTOKEN_BACKEND": "python"})
    assert c.exit_code == python.exit_code == 0
    assert c.stdout == python.stdout == "match: step 2386 (-4, 120 s earlier)\n"


def test_validate_window_zero_is_the_exact_step_only() -> None:
    exact = validate("94287082", "--key", RFC_KEY_HEX, "--at", "59", "--digits", "8")
    assert exact.exit_code == 0 and exact.stdout == "match: step 1 (+0)\n"
    explicit = validate("94287082", "--window", "0", "--key", RFC_KEY_HEX, "--at", "59", "--digits", "8")
    assert explicit.stdout == exact.stdout
    next_step = validate("94287082", "--window", "0", "--key", RFC_KEY_HEX, "--at", "60", "--digits", "8")
    assert_refused(next_step, "no match: step 2 does not give this code")
    hotp = validate("287082", "--key", RFC_KEY_HEX, "--hotp", "--counter", "0")
    assert_refused(hotp, "no match: counter 0 does not give this code")


def test_validate_no_match_exits_1() -> None:
    result = validate("000000", "--window", "10", "--key", RFC_KEY_HEX, "--at", "1111111111")
    assert_refused(result, "no match: no step from 37037027 to 37037047 gives this code")


def test_validate_totp_window_stops_at_step_zero() -> None:
    result = validate("000000", "--window", "10", "--key", RFC_KEY_HEX, "--at", "59")
    assert_refused(result, "no step from 0 to 11 gives this code")


def test_validate_hotp_counter_window() -> None:
    key = ("--key", RFC_KEY_HEX, "--hotp", "--counter", "3")
    # counters 3 .. 8: both ends inclusive
    assert validate("969429", "--window", "5", *key).stdout == "match: counter 3 (+0)\n"
    assert validate("162583", "--window", "5", *key).stdout == "match: counter 7 (+4)\n"
    assert validate("399871", "--window", "5", *key).stdout == "match: counter 8 (+5)\n"
    assert_refused(validate("520489", "--window", "5", *key), "no counter from 3 to 8")  # counter 9
    assert_refused(validate("359152", "--window", "5", *key), "no counter from 3 to 8")  # counter 2: HOTP looks forward only


def test_validate_hotp_against_pyotp() -> None:
    pyotp = pytest.importorskip("pyotp")
    hotp = pyotp.HOTP(RFC_B32)
    for counter in (1000, 1017, 1050):
        result = validate(hotp.at(counter), "--window", "50", "--key-b32", RFC_B32, "--hotp", "--counter", "1000")
        assert result.stdout == f"match: counter {counter} ({counter - 1000:+d})\n"


def test_validate_closest_match_wins_then_earliest() -> None:
    from vtoken.oath import hotp

    low, high = TWIN_COUNTERS
    assert hotp(bytes.fromhex(RFC_KEY_HEX), low) == hotp(bytes.fromhex(RFC_KEY_HEX), high) == TWIN_CODE
    key = ("--key", RFC_KEY_HEX)
    # TOTP (period 30, T0 0): step s starts at 30 s.
    tie = validate(TWIN_CODE, "--window", "10", *key, "--at", str(2390 * 30))
    assert tie.stdout == "match: step 2386 (-4, 120 s earlier)\n"  # 2386 and 2394 are both 4 away
    nearer_later = validate(TWIN_CODE, "--window", "10", *key, "--at", str(2391 * 30))
    assert nearer_later.stdout == "match: step 2394 (+3, 90 s later)\n"
    nearer_earlier = validate(TWIN_CODE, "--window", "10", *key, "--at", str(2389 * 30))
    assert nearer_earlier.stdout == "match: step 2386 (-3, 90 s earlier)\n"
    hotp_pair = validate(TWIN_CODE, "--window", "20", *key, "--hotp", "--counter", "2380")
    assert hotp_pair.stdout == "match: counter 2386 (+6)\n"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("12345", "exactly 6 digits, got 5"),
        ("1234567", "exactly 6 digits, got 7"),
        ("12a456", "only the digits 0-9"),
        ("", "the code is empty"),
        (" 12345", "only the digits 0-9"),
        ("１２３４５６", "only the digits 0-9"),  # full-width digits are not ASCII
        ("-12345", "only the digits 0-9"),
    ],
)
def test_validate_malformed_code_is_bad_input(code: str, words: str) -> None:
    result = validate(code, "--key", RFC_KEY_HEX, "--at", "59")
    assert_bad_input(result, words)
    assert "--validate" in result.stderr


def test_validate_code_length_follows_digits() -> None:
    assert_bad_input(validate("287082", "--key", RFC_KEY_HEX, "--hotp", "--digits", "8"), "exactly 8 digits, got 6")
    assert validate("94287082", "--key", RFC_KEY_HEX, "--hotp", "--counter", "1", "--digits", "8").exit_code == 0


def test_validate_window_is_bounded() -> None:
    from host.cli.codes_cmd import MAX_WINDOW

    assert MAX_WINDOW == 100_000
    result = validate("287082", "--window", str(MAX_WINDOW + 1), "--key", RFC_KEY_HEX, "--hotp")
    assert result.exit_code == 2
    assert "--window" in result.stderr and "100001 is not in the range 0<=x<=100000" in result.stderr
    assert_bad_input(validate("287082", "--window", "-1", "--key", RFC_KEY_HEX, "--hotp"), "--window")


def test_validate_largest_window_runs() -> None:
    result = validate("287082", "--window", "100000", "--key", RFC_KEY_HEX, "--hotp", "--counter", "1")
    assert result.stdout == "match: counter 1 (+0)\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--validate", "287082", "--count", "3", "--key", RFC_KEY_HEX], "--count does not apply with --validate"),
        (["--validate", "287082", "--count", "1", "--key", RFC_KEY_HEX], "--count does not apply with --validate"),
        (["--window", "3", "--key", RFC_KEY_HEX], "--window applies only with --validate"),
        (["--validate", "287082", "--key", RFC_KEY_HEX, "--hotp", "--at", "59"], "--at applies to --totp"),
        (["--validate", "287082", "--hotp"], "exactly one of --key"),
        (["--validate", "287082", "--key", RFC_KEY_HEX, "--at", "yesterday"], "cannot read time"),
    ],
)
def test_validate_option_errors(args: list[str], words: str) -> None:
    assert_bad_input(run("codes", *args), words)


def test_validate_near_the_last_counter() -> None:
    last = str(2**64 - 1)
    result = validate("000000", "--window", "10", "--key", RFC_KEY_HEX, "--hotp", "--counter", last)
    assert_refused(result, f"no match: counter {last} does not give this code")  # the window stops at 2^64-1
    beyond = validate("000000", "--key", RFC_KEY_HEX, "--hotp", "--counter", str(2**64))
    assert_bad_input(beyond, "does not fit in 64 bits")


# --- codes --state --validate -------------------------------------------------------------------

#: As in tests/test_cli_token.py: a +20 ppm token made at MADE reads 630.72 s fast a year later.
MADE = "2026-01-01T00:00:00Z"
YEAR_LATER = "2027-01-01T00:00:15Z"
YEAR_LATER_PLUS_630 = 1798761600 + 645  # 2027-01-01T00:10:45Z: the step the token's clock is in


def make_token(path, model: str) -> None:
    result = run("token", "new", "--state", str(path), "--model", model, "--secret", RFC_KEY_HEX,
                 "--serial", "4242424243", "--ppm", "20", "--at", MADE)
    assert result.exit_code == 0, result.output


def test_validate_state_totp_follows_the_token_clock(tmp_path) -> None:
    fob = tmp_path / "fob.token"
    make_token(fob, "totp30")
    before = fob.read_bytes()
    shown = run("codes", "--state", str(fob), "--at", YEAR_LATER).stdout.strip()
    token_step = YEAR_LATER_PLUS_630 // 30
    exact = run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", shown)
    assert exact.exit_code == 0, exact.output
    assert exact.stdout == f"match: step {token_step} (+0)\n"
    previous = run("codes", "--key", RFC_KEY_HEX, "--at", str(YEAR_LATER_PLUS_630 - 30)).stdout.strip()
    late = run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", previous, "--window", "1")
    assert late.stdout == f"match: step {token_step - 1} (-1, 30 s earlier)\n"
    # a code computed from true time is 21 steps behind the drifted token
    true_time = run("codes", "--key", RFC_KEY_HEX, "--at", YEAR_LATER).stdout.strip()
    far = run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", true_time, "--window", "21")
    assert far.stdout == f"match: step {token_step - 21} (-21, 630 s earlier)\n"
    assert_refused(run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", true_time, "--window", "20"),
                   f"no step from {token_step - 20} to {token_step + 20}")
    assert fob.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_validate_state_hotp_starts_at_the_next_counter(tmp_path) -> None:
    fob = tmp_path / "event.token"
    make_token(fob, "hotp")
    before = fob.read_bytes()
    for _ in range(2):  # the file is not advanced: the same answer twice
        result = run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", "359152", "--window", "5")
        assert result.exit_code == 0, result.output
        assert result.stdout == "match: counter 2 (+2)\n"
    assert run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", "755224").stdout == "match: counter 0 (+0)\n"
    assert_refused(run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", "520489", "--window", "5"),
                   "no counter from 0 to 5")
    assert fob.read_bytes() == before


def test_validate_state_errors_leave_the_file_alone(tmp_path) -> None:
    fob = tmp_path / "fob.token"
    make_token(fob, "totp30")
    before = fob.read_bytes()
    assert_bad_input(run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", "12345"), "exactly 6 digits")
    assert_bad_input(run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", "123456", "--count", "2"),
                     "--count does not apply")
    assert_bad_input(run("codes", "--state", str(fob), "--at", YEAR_LATER, "--validate", "123456", "--digits", "8"),
                     "--digits does not apply with --state")
    assert_bad_input(run("codes", "--state", str(fob), "--at", "2025-01-01T00:00:00Z", "--validate", "123456"),
                     "cannot be replayed backwards")
    assert fob.read_bytes() == before


# --- as a real process, and the documented example ----------------------------------------------


def test_validate_exit_codes_in_a_real_process() -> None:
    base = [sys.executable, "-m", "host.cli.main", "codes", "--key", RFC_KEY_HEX, "--hotp", "--counter", "0"]
    found = subprocess.run([*base, "--validate", "338314", "--window", "9"], capture_output=True, text=True, check=False)
    assert (found.returncode, found.stdout, found.stderr) == (0, "match: counter 4 (+4)\n", "")
    missed = subprocess.run([*base, "--validate", "338314", "--window", "3"], capture_output=True, text=True, check=False)
    assert (missed.returncode, missed.stdout) == (1, "")
    assert "no match" in missed.stderr and "Traceback" not in missed.stderr
    bad = subprocess.run([*base, "--validate", "33831"], capture_output=True, text=True, check=False)
    assert (bad.returncode, bad.stdout) == (2, "")
    assert "Error:" in bad.stderr and "Traceback" not in bad.stderr


def test_validate_docstring_example_works() -> None:
    from host.cli.codes_cmd import codes

    examples = [line.split() for line in (codes.help or "").splitlines() if "--validate" in line and "vtoken codes" in line]
    assert examples, "the command's docstring shows a --validate example"
    for words in examples:
        assert words[:2] == ["vtoken", "codes"]
        result = run(*words[1:])
        assert result.exit_code == 0, result.output
        assert result.stdout == "match: step 37037036 (-1, 30 s earlier)\n"


# --- --algorithm in any case, --at now (issue 14) ------------------------------------------------------


@pytest.mark.parametrize(("at", "algorithm", "code"), RFC6238_VECTORS[:3])
@pytest.mark.parametrize("spell", [str.upper, str.title])
def test_algorithm_in_any_case(at: int, algorithm: str, code: str, spell) -> None:
    key = RFC6238_KEYS[algorithm].hex()
    result = run("codes", "--key", key, "--at", str(at), "--digits", "8", "--algorithm", spell(algorithm))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == code


@pytest.mark.parametrize("now", ["now", "NOW", " Now "])
def test_at_now_is_this_computers_clock(monkeypatch: pytest.MonkeyPatch, now: str) -> None:
    monkeypatch.setattr("host.cli.options.wall_time_ns", lambda: 59 * 10**9)
    result = run("codes", "--key", RFC_KEY_HEX, "--at", now, "--digits", "8")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "94287082"
    validated = run("codes", "--key", RFC_KEY_HEX, "--at", now, "--digits", "8", "--validate", "94287082")
    assert validated.exit_code == 0 and "match: step 1 (+0)" in validated.output


def test_state_saved_ahead_of_this_clock_names_what_to_do_not_an_unused_option(tmp_path) -> None:
    """Issue 14 #8: without --at, a token file whose last event is after this computer's clock says so."""
    from click.testing import CliRunner

    from host.cli.main import main

    path = tmp_path / "ahead.token"
    made = CliRunner().invoke(main, ["token", "new", "--state", str(path), "--at", "2099-01-01T00:00:00Z"])
    assert made.exit_code == 0, made.output
    CliRunner().invoke(main, ["sim", "advance", "1s", "--state", str(path)])  # records an event in 2099
    result = CliRunner().invoke(main, ["codes", "--state", str(path)])
    assert result.exit_code == 2
    assert "after this computer's clock" in result.output and "give --at" in result.output
    assert "is before the token's last recorded event" not in result.output
