"""``vtoken validator ...`` through click's runner: init, import, register, check, show, list, unlock, rotate-key.

Tokens come from ``vtoken fleet create`` (crystals exact: ``--ppm-spread 0``) and their codes
from ``vtoken codes --state <token file> --at TIME``, as a QA engineer would replay them.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from firmware_sim.fleet import derive_seed
from host.cli.main import main
from validator.kernel import python_backend
from validator.sealing import ENV_VAR, generate_master_key, load_key_file
from validator.store import SQLiteStore
from vtoken.oath import format_code
from vtoken.serialno import make_serial

BATCH = "b47c45ec12e70badf00d0badf00dcafe"
PSK = "00112233445566778899aabbccddeeff"
PASSWORD = "hunter2-fleet"
#: 2026-01-01T00:00:00Z: fleets are made then.
MADE_S = 1_767_225_600
MADE = "2026-01-01T00:00:00Z"
#: A day later, 15 s into a step: code 1 here, code 2 a step later.
DAY_S = MADE_S + 86_400 + 15
FIRST = make_serial(100_000_000)
SECOND = make_serial(100_000_001)
THIRD = make_serial(100_000_002)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("VTOKEN_DB", raising=False)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def ok(*args: str, env: dict[str, str] | None = None) -> Result:
    result = run(*args, env=env)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert_no_secret(result)
    return result


def refused(*args: str, reason: str, env: dict[str, str] | None = None) -> Result:
    """A check or registration refused: exit 1 and the reason printed, no traceback."""
    result = run(*args, env=env)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert f"refused ({reason})" in result.output, result.output
    assert "Traceback" not in result.output
    assert_no_secret(result)
    return result


def clean_error(*args: str, words: str, code: int = 1, env: dict[str, str] | None = None) -> Result:
    result = run(*args, env=env)
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert "Error" in result.output
    assert words in result.output, result.output
    assert_no_secret(result)
    return result


def assert_no_secret(result: Result) -> None:
    text = result.output.lower()
    for secret in (BATCH, PSK):
        assert secret[:12] not in text
    for serial in (FIRST, SECOND, THIRD):
        assert derive_seed(bytes.fromhex(BATCH), serial).hex()[:12] not in text
    assert PASSWORD not in result.output


def make_fleet(tmp_path: Path, name: str = "fleet", *extra: str, count: int = 3, model: str = "totp30") -> Path:
    out = tmp_path / name
    ok("fleet", "create", "--count", str(count), "--batch-secret", BATCH, "--model", model, "--out", str(out),
       "--ppm-spread", "0", "--at", MADE, *extra)
    return out


def codes(token_file: Path, at_s: int, count: int = 1) -> list[str]:
    return ok("codes", "--state", str(token_file), "--at", str(at_s), "--count", str(count)).output.split()


def wrong_code(serial: str, at_s: int) -> str:
    """A 6-digit code that no step within 300 of ``at_s`` has."""
    key = python_backend().prepare(derive_seed(bytes.fromhex(BATCH), serial))
    taken = {int(c) for c in key.generate(at_s // 30 - 300, 600)}
    return format_code(next(v for v in range(10**6) if v not in taken), 6)


class Cli:
    """``vtoken validator --db <db>`` in a temporary folder, with a fleet made and imported."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "v.db"
        self.key_file = tmp_path / "v.db.key"
        self.fleet = make_fleet(tmp_path)

    def v(self, *args: object) -> list[str]:
        return ["validator", "--db", str(self.db), *[str(a) for a in args]]

    def token(self, serial: str) -> Path:
        return self.fleet / f"{serial}.token"

    def register(self, serial: str, at_s: int = DAY_S) -> Result:
        code1, code2 = codes(self.token(serial), at_s - 30, 2)
        return ok(*self.v("register", serial, code1, code2, "--at", at_s))

    def check(self, serial: str, at_s: int) -> Result:
        (code,) = codes(self.token(serial), at_s)
        return run(*self.v("check", serial, code, "--at", at_s))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = Cli(tmp_path)
    ok(*c.v("init"))
    ok(*c.v("import", c.fleet / "tokens.pskc"))
    return c


def token_rows(db: Path) -> list:
    with SQLiteStore(db) as store:
        return store.list_tokens()


# --- init ------------------------------------------------------------------------------------


def test_init_makes_a_0600_key_file_and_refuses_to_run_twice(tmp_path: Path) -> None:
    db, key_file = tmp_path / "v.db", tmp_path / "v.db.key"
    result = ok("validator", "--db", db, "init")
    assert str(key_file) in result.output and "0600" in result.output
    assert db.exists() and key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.stat().st_mode) & 0o077 == 0
    key = load_key_file(key_file)
    assert key.to_hex() not in result.output

    clean_error("validator", "--db", db, "init", words="already exists")
    assert load_key_file(key_file) == key  # the key was not replaced


def test_init_with_a_key_file_option(tmp_path: Path) -> None:
    db, key_file = tmp_path / "v.db", tmp_path / "keys" / "master.key"
    key_file.parent.mkdir()
    ok("validator", "--db", db, "--key-file", key_file, "init")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not (tmp_path / "v.db.key").exists()


def test_db_from_the_environment(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    ok("validator", "init", env={"VTOKEN_DB": str(db)})
    assert db.exists() and (tmp_path / "env.db.key").exists()
    assert "0 tokens" in ok("validator", "list", env={"VTOKEN_DB": str(db)}).output


# --- import ---------------------------------------------------------------------------------------


def test_import_of_a_plaintext_fleet_and_list(cli: Cli) -> None:
    listed = ok(*cli.v("list")).output
    for serial in (FIRST, SECOND, THIRD):
        assert re.search(rf"^{serial}\s+totp\s+6 digits\s+new$", listed, re.MULTILINE), listed
    assert "3 tokens" in listed


@pytest.mark.parametrize(
    ("protection", "unlock", "wrong"),
    [
        (("--password", PASSWORD), ("--password", PASSWORD), ("--password", "not-" + PASSWORD)),
        (("--psk", PSK), ("--psk", PSK), ("--psk", "ff" * 16)),
    ],
)
def test_import_of_an_encrypted_fleet(tmp_path: Path, protection: tuple, unlock: tuple, wrong: tuple) -> None:
    c = Cli(tmp_path)
    secure = make_fleet(tmp_path, "secure", *protection)
    ok(*c.v("init"))
    pskc_file = secure / "tokens.pskc"
    clean_error(*c.v("import", pskc_file, *wrong), words=str(pskc_file))
    clean_error(*c.v("import", pskc_file), words=str(pskc_file))  # no key or password at all
    assert token_rows(c.db) == []
    result = ok(*c.v("import", pskc_file, *unlock))
    assert "imported 3 tokens" in result.output
    c.fleet = secure
    assert "registered" in c.register(SECOND).output
    assert c.check(SECOND, DAY_S + 300).exit_code == 0


def test_import_of_a_csv_file_and_codes_from_the_seed(tmp_path: Path) -> None:
    c = Cli(tmp_path)
    ok(*c.v("init"))
    totp_seed, hotp_seed = "3132333435363738393031323334353637383930", "0102030405060708090a0b0c0d0e0f1011121314"
    csv_file = tmp_path / "tokens.csv"
    csv_file.write_text(f"serial,seed,type,digits,period,counter\n{FIRST},{totp_seed},totp,8,60,\n"
                        f"{SECOND},{hotp_seed},hotp,6,,5\n")
    assert "imported 2 tokens" in ok(*c.v("import", csv_file)).output
    listed = ok(*c.v("list")).output
    assert re.search(rf"^{FIRST}\s+totp\s+8 digits", listed, re.MULTILINE)
    assert re.search(rf"^{SECOND}\s+hotp\s+6 digits", listed, re.MULTILINE)

    totp = ok("codes", "--key", totp_seed, "--totp", "--period", "60", "--digits", "8", "--at", DAY_S - 60,
              "--count", "3").output.split()
    result = ok(*c.v("register", FIRST, totp[0], totp[1], "--at", DAY_S))
    assert "registered" in result.output
    assert ok(*c.v("check", FIRST, totp[2], "--at", DAY_S + 60)).output.startswith("accepted")

    hotp = ok("codes", "--key", hotp_seed, "--hotp", "--counter", "5", "--count", "3").output.split()
    assert "counter 6" in ok(*c.v("register", SECOND, hotp[0], hotp[1], "--at", DAY_S)).output
    assert "counter 7" in ok(*c.v("check", SECOND, hotp[2], "--at", DAY_S + 5)).output
    refused(*c.v("check", SECOND, hotp[2], "--at", DAY_S + 10), reason="replay")


def test_import_of_a_duplicate_file_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    before = token_rows(cli.db)
    result = clean_error(*cli.v("import", cli.fleet / "tokens.pskc"), words="duplicate")
    for serial in (FIRST, SECOND, THIRD):
        assert serial in result.output
    assert token_rows(cli.db) == before

    # A bigger batch from the same secret overlaps: all or nothing, so its two new tokens are not added either.
    bigger = make_fleet(tmp_path, "bigger", count=5)
    result = clean_error(*cli.v("import", bigger / "tokens.pskc"), words="duplicate")
    assert FIRST in result.output and make_serial(100_000_004) not in result.output.split("store:")[0]
    assert token_rows(cli.db) == before
    assert "3 tokens" in ok(*cli.v("list")).output


def test_import_of_a_corrupt_pskc_file(cli: Cli, tmp_path: Path) -> None:
    before = token_rows(cli.db)
    good = (cli.fleet / "tokens.pskc").read_text()
    for n, text in enumerate([good[: len(good) // 2], good.replace("<pskc:Secret>", "<pskc:Secret><x>", 1),
                              "<?xml version='1.0'?><nonsense/>", "not xml at all"]):
        bad = tmp_path / f"bad{n}.pskc"
        bad.write_text(text)
        clean_error(*cli.v("import", bad), words=str(bad))
    assert token_rows(cli.db) == before
    # A missing input file is bad input (exit 2), as click reports for its own path checks.
    clean_error(*cli.v("import", tmp_path / "missing.pskc"), words="missing.pskc", code=2)


# --- register, check, show ------------------------------------------------------------------------


def test_register_and_check_at_simulated_times(cli: Cli) -> None:
    result = cli.register(FIRST)
    assert re.search(r"^registered \(step \d+, token offset \+0\.0 s\)$", result.output.strip()), result.output
    step = int(re.search(r"step (\d+)", result.output).group(1))
    assert step == DAY_S // 30

    later = DAY_S + 600
    accepted = cli.check(FIRST, later)
    assert accepted.exit_code == 0, accepted.output
    assert accepted.output.startswith("accepted") and f"step {later // 30}" in accepted.output

    (code,) = codes(cli.token(FIRST), later)
    refused(*cli.v("check", FIRST, code, "--at", later + 5), reason="replay")
    # A genuine code typed an hour after it was shown is too old.
    (old,) = codes(cli.token(FIRST), later + 60)
    refused(*cli.v("check", FIRST, old, "--at", later + 3_600), reason="wrong-code")
    # ISO 8601 times work as well as Unix seconds.
    (iso_code,) = codes(cli.token(FIRST), DAY_S + 7_200)
    ok(*cli.v("check", FIRST, iso_code, "--at", "2026-01-02T02:00:20+00:00"))


def test_refusals_print_their_reason(cli: Cli) -> None:
    code1, code2 = codes(cli.token(FIRST), DAY_S - 30, 2)
    same = refused(*cli.v("register", FIRST, code1, code1, "--at", DAY_S), reason="same-code")
    assert "wait until the code changes, then press again" in same.output
    other1, other2 = codes(cli.token(SECOND), DAY_S - 30, 2)
    refused(*cli.v("register", FIRST, other1, other2, "--at", DAY_S), reason="no-pair")
    refused(*cli.v("register", FIRST, code1, "12345", "--at", DAY_S), reason="bad-format")
    refused(*cli.v("check", FIRST, code2, "--at", DAY_S), reason="not-registered")

    mistyped = FIRST[:-1] + str((int(FIRST[-1]) + 1) % 10)
    result = refused(*cli.v("check", mistyped, code2, "--at", DAY_S), reason="mistyped-serial")
    assert "probably mistyped" in result.output
    refused(*cli.v("register", make_serial(7), code1, code2, "--at", DAY_S), reason="unknown-serial")
    refused(*cli.v("check", "12 ab#", code2, "--at", DAY_S), reason="bad-format")

    cli.register(FIRST)
    refused(*cli.v("check", FIRST, "abcdef", "--at", DAY_S + 30), reason="bad-format")
    refused(*cli.v("check", FIRST, wrong_code(FIRST, DAY_S + 30), "--at", DAY_S + 30), reason="wrong-code")
    throttled = refused(*cli.v("check", FIRST, codes(cli.token(FIRST), DAY_S + 30)[0], "--at", DAY_S + 30),
                        reason="throttled")
    assert "wait 1 s" in throttled.output


def test_show(cli: Cli) -> None:
    new = ok(*cli.v("show", THIRD, "--at", DAY_S)).output
    assert f"serial:       {THIRD}" in new and "registered:   no" in new and "offset:" not in new

    cli.register(THIRD)
    assert cli.check(THIRD, DAY_S + 3_600).exit_code == 0
    refused(*cli.v("check", THIRD, wrong_code(THIRD, DAY_S + 3_700), "--at", DAY_S + 3_700), reason="wrong-code")
    shown = ok(*cli.v("show", THIRD, "--at", DAY_S + 3_800)).output
    assert "type:         totp, sha1, 6 digits, 30 s, T0 0" in shown
    assert "registered:   yes" in shown
    assert re.search(r"^offset:\s+\+0 steps \([+-]\d\.\d s ± \d+\.\d s\) at 2026-01-02T01:0", shown, re.MULTILINE), shown
    assert re.search(r"^rate:\s+[+-]\d+\.\d\d ppm ± \d+\.\d\d ppm$", shown, re.MULTILINE), shown
    assert re.search(r"^windows:\s+3 codes alone, \d+ codes with the next code$", shown, re.MULTILINE), shown
    assert re.search(r"^false accept: 3\.0e-06 per guess alone, \d\.\de-\d\d per guessed next-code pair$", shown,
                     re.MULTILINE), shown
    assert f"last step:    {(DAY_S + 3_600) // 30}" in shown
    assert "failures:     1 (resync 0)" in shown
    assert "locked:       no" in shown
    assert "history:      2 matched codes" in shown
    assert re.search(rf"2026-01-02T00:00:\d\dZ\s+step {DAY_S // 30}\s+register", shown), shown
    assert re.search(rf"step {(DAY_S + 3_600) // 30}\s+accept", shown), shown

    clean_error(*cli.v("show", make_serial(7)), words="unknown serial")
    clean_error(*cli.v("show", "12 ab#"), words="serial", code=2)


def test_show_of_a_drifting_token(tmp_path: Path) -> None:
    c = Cli(tmp_path)
    ok(*c.v("init"))
    fob = tmp_path / "fast.token"
    serial = make_serial(5)
    ok("token", "new", "--state", fob, "--serial", serial, "--secret", "ab" * 20, "--ppm", "40", "--at", MADE)
    csv_file = tmp_path / "one.csv"
    csv_file.write_text(f"serial,seed,type\n{serial},{'ab' * 20},totp\n")
    ok(*c.v("import", csv_file))
    c.token = lambda s: fob  # type: ignore[method-assign]
    c.register(serial)
    at = DAY_S
    for _ in range(6):  # monthly; a next-code round when the server asks for one
        at += 30 * 86_400
        result = c.check(serial, at)
        if result.exit_code != 0:
            assert "next-code-required" in result.output, result.output
            (code,) = codes(fob, at + 30)
            ok(*c.v("check", serial, code, "--at", at + 30))
    shown = ok(*c.v("show", serial, "--at", at + 60)).output
    rate = float(re.search(r"^rate:\s+([+-]\d+\.\d\d) ppm ± (\d+\.\d\d) ppm", shown, re.MULTILINE).group(1))
    assert 30 < rate < 50, shown
    offset_s = float(re.search(r"^offset:\s+\+(\d+) steps \(\+(\d+\.\d) s ±", shown, re.MULTILINE).group(2))
    truth = (at + 60 - MADE_S) * 40e-6
    assert abs(offset_s - truth) < 30, (offset_s, truth)


# --- lock and unlock -------------------------------------------------------------------------------


def test_unlock_after_ten_failures(cli: Cli) -> None:
    cli.register(FIRST)
    at = DAY_S + 60
    for n in range(1, 11):
        result = refused(*cli.v("check", FIRST, wrong_code(FIRST, at), "--at", at), reason="wrong-code")
        at += 30
    assert "locked" in result.output
    locked = cli.check(FIRST, at)
    assert locked.exit_code == 1 and "refused (locked)" in locked.output
    assert re.search(rf"^{FIRST}\s+totp\s+6 digits\s+locked$", ok(*cli.v("list")).output, re.MULTILINE)
    assert "locked:       yes (failures)" in ok(*cli.v("show", FIRST, "--at", at)).output

    assert "unlocked" in ok(*cli.v("unlock", FIRST, "--at", at)).output
    assert cli.check(FIRST, at + 30).exit_code == 0
    shown = ok(*cli.v("show", FIRST, "--at", at + 60)).output
    assert "locked:       no" in shown and "failures:     0 (resync 0)" in shown

    unknown = run(*cli.v("unlock", make_serial(7)))
    assert unknown.exit_code == 1 and "refused (unknown-serial)" in unknown.output
    assert "Traceback" not in unknown.output
    mistyped = run(*cli.v("unlock", make_serial(7)[:-1] + str((int(make_serial(7)[-1]) + 1) % 10)))
    assert mistyped.exit_code == 1 and "probably mistyped" in mistyped.output


# --- master keys ----------------------------------------------------------------------------------------


def test_rotate_key_re_encrypts_and_replaces_the_key_file(cli: Cli) -> None:
    cli.register(FIRST)
    old_key = load_key_file(cli.key_file)
    with SQLiteStore(cli.db) as store:
        assert store.sealed_key_ids() == {old_key.key_id: 3}
    result = ok(*cli.v("rotate-key"))
    assert "3 seeds re-encrypted" in result.output
    new_key = load_key_file(cli.key_file)
    assert new_key != old_key and new_key.key_id in result.output
    assert new_key.to_hex() not in result.output and old_key.to_hex() not in result.output
    assert stat.S_IMODE(cli.key_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in cli.tmp.iterdir() if p.name.startswith("v.db.key")) == ["v.db.key"]
    with SQLiteStore(cli.db) as store:
        assert store.sealed_key_ids() == {new_key.key_id: 3}

    assert cli.check(FIRST, DAY_S + 300).exit_code == 0  # checks still work
    ok(*cli.v("register", SECOND, *codes(cli.token(SECOND), DAY_S + 270, 2), "--at", DAY_S + 300))
    # The old key no longer opens anything.
    old = {ENV_VAR: old_key.to_hex()}
    clean_error(*cli.v("check", FIRST, codes(cli.token(FIRST), DAY_S + 600)[0], "--at", DAY_S + 600),
                words="key", env=old)


def test_master_key_from_the_environment(tmp_path: Path) -> None:
    c = Cli(tmp_path)
    key = generate_master_key()
    env = {ENV_VAR: key.to_hex()}
    result = ok(*c.v("init"), env=env)
    assert ENV_VAR in result.output and key.to_hex() not in result.output
    assert not c.key_file.exists()
    ok(*c.v("import", c.fleet / "tokens.pskc"), env=env)
    code1, code2 = codes(c.token(FIRST), DAY_S - 30, 2)
    ok(*c.v("register", FIRST, code1, code2, "--at", DAY_S), env=env)
    (code,) = codes(c.token(FIRST), DAY_S + 90)
    assert ok(*c.v("check", FIRST, code, "--at", DAY_S + 90), env=env).output.startswith("accepted")
    ok(*c.v("show", FIRST, "--at", DAY_S + 90), env=env)

    # Without the variable there is no key at all.
    clean_error(*c.v("check", FIRST, code, "--at", DAY_S + 120), words="no master key")
    # Another key in the variable: a clean error, nothing changed.
    other = {ENV_VAR: generate_master_key().to_hex()}
    (next_code,) = codes(c.token(FIRST), DAY_S + 150)
    clean_error(*c.v("check", FIRST, next_code, "--at", DAY_S + 150), words="key", env=other)
    assert ok(*c.v("check", FIRST, next_code, "--at", DAY_S + 150), env=env).output.startswith("accepted")
    # Rotation needs a key file.
    clean_error(*c.v("rotate-key"), words=ENV_VAR, env=env)
    # A variable that is not a key at all.
    clean_error(*c.v("check", FIRST, next_code, "--at", DAY_S + 180), words=ENV_VAR, env={ENV_VAR: "not-a-key"})


def test_environment_key_wins_over_the_key_file(cli: Cli) -> None:
    cli.register(FIRST)
    other = {ENV_VAR: generate_master_key().to_hex()}
    (code,) = codes(cli.token(FIRST), DAY_S + 60)
    clean_error(*cli.v("check", FIRST, code, "--at", DAY_S + 60), words="key", env=other)
    with SQLiteStore(cli.db) as store:
        rec = store.get(FIRST)
        assert rec is not None and rec.last_step == DAY_S // 30  # the failed attempt wrote nothing
    assert cli.check(FIRST, DAY_S + 60).exit_code == 0


# --- operational errors --------------------------------------------------------------------------------


def test_missing_database(tmp_path: Path) -> None:
    """A database never initialised is an operational error (exit 1, 'run init'), not bad input."""
    db = tmp_path / "nope.db"
    pskc_file = tmp_path / "x.pskc"
    pskc_file.write_text("<KeyContainer/>")
    for args in (("list",), ("check", FIRST, "123456"), ("register", FIRST, "123456", "654321"), ("show", FIRST),
                 ("unlock", FIRST), ("import", pskc_file)):
        clean_error("validator", "--db", db, *args, words="init", env={ENV_VAR: generate_master_key().to_hex()})
        assert not db.exists()  # no empty database left behind
    for args in (("list",), ("rotate-key",)):
        clean_error("validator", "--db", db, *args, words="init")
    assert not db.exists() and list(tmp_path.iterdir()) == [pskc_file]


def test_missing_key_file(cli: Cli) -> None:
    os.unlink(cli.key_file)
    (code,) = codes(cli.token(FIRST), DAY_S)
    clean_error(*cli.v("check", FIRST, code, "--at", DAY_S), words="no master key")
    clean_error(*cli.v("import", cli.fleet / "tokens.pskc"), words="no master key")
    clean_error(*cli.v("rotate-key"), words="no master key")
    assert not cli.key_file.exists()


def test_key_file_readable_by_others_is_refused(cli: Cli) -> None:
    os.chmod(cli.key_file, 0o644)
    clean_error(*cli.v("show", FIRST), words="chmod 600")


def test_wrong_key_file(cli: Cli, tmp_path: Path) -> None:
    cli.register(FIRST)
    stranger = tmp_path / "stranger.key"
    ok("validator", "--db", tmp_path / "other.db", "--key-file", stranger, "init")
    (code,) = codes(cli.token(FIRST), DAY_S + 60)
    clean_error("validator", "--db", cli.db, "--key-file", stranger, "check", FIRST, code, "--at", DAY_S + 60,
                words="key")
    assert cli.check(FIRST, DAY_S + 60).exit_code == 0


def test_import_of_vendor_files_with_their_options(cli: Cli, tmp_path: Path) -> None:
    """Mixed, signed and otpauth files through the command line: notes, skipped keys, clean refusals."""
    mixed = tmp_path / "mixed.xml"
    mixed.write_text(
        '<?xml version="1.0"?><KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">'
        '<KeyPackage><DeviceInfo><SerialNo>ZZ8000000001</SerialNo></DeviceInfo>'
        '<Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp"><AlgorithmParameters>'
        '<Suite hashalgo="sha256"/></AlgorithmParameters><Data><Secret><PlainValue>'
        'MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=</PlainValue></Secret></Data></Key></KeyPackage>'
        '<KeyPackage><DeviceInfo><SerialNo>306EUO4-00960</SerialNo></DeviceInfo>'
        '<Key Id="2" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:ocra"><Data><Secret><PlainValue>'
        'MTIzNA==</PlainValue></Secret></Data></Key></KeyPackage></KeyContainer>'
    )
    clean_error(*cli.v("import", mixed), words="306EUO4-00960")  # fails whole, naming the OCRA key
    result = ok(*cli.v("import", mixed, "--skip-unsupported"))
    assert "imported 1 token from" in result.output
    assert "skipped: key package 2 (serial 306EUO4-00960, Key Id 2): OCRA" in result.output
    shown = ok(*cli.v("show", "ZZ8000000001")).output
    assert "sha256" in shown.lower()
    uris = tmp_path / "keys.txt"
    uris.write_text("otpauth://hotp/vtoken:VT00000001?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&counter=0\n")
    assert "imported 1 token from" in ok(*cli.v("import", uris)).output
    clean_error(*cli.v("import", mixed, "--certificate", tmp_path / "missing.pem"), words="--certificate", code=2)
    clean_error(*cli.v("import", mixed, "--certificate", mixed, "--ignore-signature"), words="not both", code=2)
    fifo = tmp_path / "cert.fifo"
    os.mkfifo(fifo)  # with no writer: opening it for reading would wait for ever
    clean_error(*cli.v("import", mixed, "--certificate", fifo), words="--certificate", code=2)
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"-----BEGIN CERTIFICATE-----\n" + b"A" * (300 * 1024))
    clean_error(*cli.v("import", mixed, "--certificate", huge), words="not a PEM certificate", code=2)


# --- --at now, plurals (issue 14) ----------------------------------------------------------------------


def test_at_now_is_this_computers_clock(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every --at takes 'now' (any case), as 'time --set now' does."""
    now_s = [DAY_S]
    monkeypatch.setattr("host.cli.options.wall_time_ns", lambda: now_s[0] * 1_000_000_000)
    code1, code2 = codes(cli.token(FIRST), DAY_S - 30, 2)
    assert "registered" in ok(*cli.v("register", FIRST, code1, code2, "--at", "now")).output
    now_s[0] = DAY_S + 60
    (code,) = codes(cli.token(FIRST), DAY_S + 60)
    assert "accepted" in ok(*cli.v("check", FIRST, code, "--at", "NOW")).output
    refused(*cli.v("check", FIRST, code, "--at", " now "), reason="replay")
    shown = ok(*cli.v("show", FIRST, "--at", "Now")).output
    assert "at 2026-01-02T00:01:15Z" in shown
    assert "unlocked" in ok(*cli.v("unlock", FIRST, "--at", "now")).output


def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    c = Cli.__new__(Cli)
    c.tmp, c.db, c.key_file = tmp_path, tmp_path / "v.db", tmp_path / "v.db.key"
    c.fleet = make_fleet(tmp_path, count=1)
    ok(*c.v("init"))
    assert f"imported 1 token from {c.fleet / 'tokens.pskc'}" in ok(*c.v("import", c.fleet / "tokens.pskc")).output
    assert ok(*c.v("list")).output.splitlines()[-1] == "1 token"
    assert "history:      0 matched codes" in ok(*c.v("show", FIRST)).output
    assert ok(*c.v("rotate-key")).output.startswith("1 seed re-encrypted under key ")
