"""``vtoken token export`` and ``vtoken fleet export``: every record computes the codes its token shows.

Token files are made with the real CLI (``vtoken token new``, ``vtoken fleet
create``); each exported record is read back the way an importer would
(python-pskc, the OATH CSV columns, ``pyotp.parse_uri``) and pyotp's code is
compared with what ``vtoken codes --state`` says the token displays. That
proves seed, digits, period, hash and counter at once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pskc
import pyotp
import pytest
from click.testing import CliRunner, Result

from firmware_sim import models
from firmware_sim.export import (
    ExportFormat,
    ExportRecord,
    csv_line,
    otpauth_uri,
    read_fleet,
    read_record,
    render,
    write_private,
)
from firmware_sim.fleet import FleetSpec, build_pskc, derive_seed
from firmware_sim.models import TokenKind, TokenModel
from firmware_sim.statefile import open_token
from host.cli.main import main
from host.timearg import parse_time_ns
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import InvalidInputError, StorageError
from vtoken.oath import Algorithm
from vtoken.otpauth import parse_uri

#: A recognizable seed: it must never show up in an error message.
SECRET = "c0ffee00" + "5ec12e70" * 3 + "feedface"
BATCH = "b47c45ec12e7" + "0badf00d" * 2 + "cafe"
PSK = "00112233445566778899aabbccddeeff"
PASSWORD = "correct horse"
MADE = "2026-01-01T00:00:00Z"
#: Codes are compared here: 3 h 7 min 15 s after manufacture (ppm 0, so the token's clock is exact).
LATER = "2026-01-01T03:07:15Z"
LATER_S = parse_time_ns(LATER) // NS_PER_SECOND
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
#: Presets models.py does not (yet) have: SHA-512, time- and event-based.
EXTRA_MODELS = (
    TokenModel("totp30-sha512", TokenKind.TOTP, algorithm=Algorithm.SHA512, digits=8, display_width=8),
    TokenModel("hotp-sha512", TokenKind.HOTP, algorithm=Algorithm.SHA512, display_ns=10 * NS_PER_SECOND),
    TokenModel("hotp-sha256-8", TokenKind.HOTP, algorithm=Algorithm.SHA256, digits=8, display_width=8,
               display_ns=10 * NS_PER_SECOND),
    TokenModel("totp60-t0", TokenKind.TOTP, period=60, t0=600),
)
#: Every kind of token exported: the shipped presets and the SHA-512 ones.
EXPORT_MODELS = ["totp30", "totp60", "hotp", "totp30-8", "totp30-sha256", "totp30-sha512", "hotp-sha512", "hotp-sha256-8"]


@pytest.fixture(autouse=True)
def extra_models(monkeypatch: pytest.MonkeyPatch) -> None:
    for model in EXTRA_MODELS:
        monkeypatch.setitem(models.MODELS, model.name, model)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    return result


def assert_clean_error(result: Result, words: str, code: int) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert words in result.stderr, result.stderr
    assert SECRET[:16] not in result.output and SECRET[-16:] not in result.output


def new_token(path: Path, model: str, serial: str = "4242424243") -> Path:
    ok("token", "new", "--state", path, "--model", model, "--secret", SECRET, "--serial", serial, "--at", MADE)
    return path


def press(path: Path, times: int) -> None:
    """Press a token's button ``times`` times (an event token's counter moves on), saving the file."""
    at = parse_time_ns(MADE) + 60 * NS_PER_SECOND
    clock = SimulatedClock(at)
    with open_token(path, clock) as fob:
        for _ in range(times):
            assert fob.press()
            clock.advance(30 * NS_PER_SECOND)


def shown(path: Path) -> str:
    """What the token in ``path`` displays when pressed at LATER (the file is not changed)."""
    return ok("codes", "--state", path, "--at", LATER).stdout.strip()


def fleet(tmp_path: Path, model: str, count: int, name: str = "fleet") -> Path:
    out = tmp_path / name
    ok("fleet", "create", "--count", count, "--batch-secret", BATCH, "--model", model, "--out", out,
       "--ppm-spread", "0", "--at", MADE)
    return out


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# --- reading the exports back as an importer would ----------------------------------------------


def otp(kind: str, seed: bytes, digits: int, hash_name: str, period: int, counter: int) -> str:
    """pyotp's code at LATER (TOTP) or at the next counter (HOTP)."""
    b32 = base64.b32encode(seed).decode()
    if kind == "totp":
        return pyotp.TOTP(b32, digits=digits, digest=DIGESTS[hash_name], interval=period).at(LATER_S)
    return pyotp.HOTP(b32, digits=digits, digest=DIGESTS[hash_name], initial_count=counter).at(0)


def codes_from_csv(text: str) -> dict[str, str]:
    codes = {}
    for line in text.splitlines():
        serial, seed_hex, kind, digits, moving, hash_name = line.split(", ")
        assert hash_name in DIGESTS
        moving_n = int(moving)
        codes[serial] = otp(kind, bytes.fromhex(seed_hex), int(digits), hash_name,
                            moving_n if kind == "totp" else 0, moving_n if kind == "hotp" else 0)
    return codes


def codes_from_otpauth(text: str) -> dict[str, str]:
    codes = {}
    for line in text.splitlines():
        assert line.startswith("otpauth://")
        theirs = pyotp.parse_uri(line)
        assert theirs.issuer == "vtoken"
        codes[theirs.name] = theirs.at(LATER_S) if isinstance(theirs, pyotp.TOTP) else theirs.at(0)
        ours = parse_uri(line)  # vtoken's own reader agrees with pyotp
        assert (ours.account, ours.issuer, ours.digits) == (theirs.name, theirs.issuer, theirs.digits)
    return codes


def read_pskc_file(path: Path, *, psk: str | None = None, password: str | None = None) -> pskc.PSKC:
    parsed = pskc.PSKC(str(path))
    if psk is not None:
        parsed.encryption.key = bytes.fromhex(psk)
    if password is not None:
        parsed.encryption.derive_key(password)
    return parsed


def codes_from_pskc(parsed: pskc.PSKC) -> dict[str, str]:
    codes = {}
    for key in parsed.keys:
        suite = (key.algorithm_suite or "sha1").lower()  # as privacyIDEA reads <Suite>
        assert suite in DIGESTS, suite
        kind = key.algorithm.rsplit(":", 1)[-1]
        assert key.time_offset in (None, 0)
        codes[key.serial] = otp(kind, key.secret, key.response_length, suite, key.time_interval or 0, key.counter or 0)
    return codes


def exported_codes(fmt: str, data: bytes, tmp_path: Path, **protection: str) -> dict[str, str]:
    if fmt == "csv":
        return codes_from_csv(data.decode())
    if fmt == "otpauth":
        return codes_from_otpauth(data.decode())
    path = tmp_path / "read-back.pskc"
    path.write_bytes(data)
    return codes_from_pskc(read_pskc_file(path, **protection))


# --- token export -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pskc", "csv", "otpauth"])
@pytest.mark.parametrize("model", EXPORT_MODELS)
def test_token_export_computes_the_tokens_codes(tmp_path: Path, model: str, fmt: str) -> None:
    fob = new_token(tmp_path / "fob.token", model)
    if "hotp" in model:
        press(fob, 3)  # the export carries the next counter, not 0
    before = snapshot(tmp_path)
    result = ok("token", "export", "--state", fob, "--format", fmt)
    assert snapshot(tmp_path) == before  # read only: no change, no lock file
    codes = exported_codes(fmt, result.stdout_bytes, tmp_path)
    assert codes == {"4242424243": shown(fob)}


def test_token_export_records(tmp_path: Path) -> None:
    hotp_fob = new_token(tmp_path / "h.token", "hotp-sha512", serial="0000005724")
    press(hotp_fob, 2)
    record = read_record(hotp_fob)
    assert record == ExportRecord("0000005724", "hotp-sha512", TokenKind.HOTP, Algorithm.SHA512, 6, 30, 0, 2,
                                  bytes.fromhex(SECRET))
    assert SECRET not in repr(record) and "seed" not in repr(record)
    assert csv_line(record) == f"0000005724, {SECRET}, hotp, 6, 2, sha512"
    assert otpauth_uri(record) == (
        "otpauth://hotp/vtoken:0000005724?secret=YD764AC6YEXHAXWBFZYF5QJOOD7O36WO"
        "&issuer=vtoken&algorithm=SHA512&digits=6&counter=2"
    )
    totp_fob = new_token(tmp_path / "t.token", "totp60", serial="0000005724")
    assert csv_line(read_record(totp_fob)) == f"0000005724, {SECRET}, totp, 6, 60, sha1"


@pytest.mark.parametrize(("flag", "value"), [("--psk", PSK), ("--password", PASSWORD)])
def test_token_export_protected_pskc(tmp_path: Path, flag: str, value: str) -> None:
    fob = new_token(tmp_path / "fob.token", "totp30-sha256")
    out = tmp_path / "fob.pskc"
    result = ok("token", "export", "--state", fob, "--format", "pskc", "--out", out, flag, value)
    assert result.stdout == ""
    assert "token 4242424243 (pskc, " in result.stderr and str(out) in result.stderr
    assert SECRET not in out.read_text()
    parsed = read_pskc_file(out, **{flag.lstrip("-"): value})
    assert parsed.mac.algorithm is not None
    assert codes_from_pskc(parsed) == {"4242424243": shown(fob)}
    assert parsed.keys[0].algorithm_suite.lower() == "sha256"


@pytest.mark.parametrize("fmt", ["pskc", "csv", "otpauth"])
def test_output_file_is_private_and_never_overwritten(tmp_path: Path, fmt: str) -> None:
    fob = new_token(tmp_path / "fob.token", "totp30")
    out = tmp_path / f"out.{fmt}"
    ok("token", "export", "--state", fob, "--format", fmt, "--out", out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    first = out.read_bytes()

    out.write_bytes(b"precious")
    result = run("token", "export", "--state", fob, "--format", fmt, "--out", out)
    assert_clean_error(result, "already exists; use --force", 1)
    assert out.read_bytes() == b"precious"

    out.chmod(0o644)
    ok("token", "export", "--state", fob, "--format", fmt, "--out", out, "--force")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    if fmt != "pskc":  # python-pskc's output is the same bytes each time only without encryption IVs: compare text formats
        assert out.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_output_over_a_symlink_is_refused(tmp_path: Path) -> None:
    fob = new_token(tmp_path / "fob.token", "totp30")
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "link.csv"
    link.symlink_to(victim)
    assert_clean_error(run("token", "export", "--state", fob, "--format", "csv", "--out", link), "already exists", 1)
    assert victim.read_text() == "keep"
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "nowhere")
    assert_clean_error(run("token", "export", "--state", fob, "--format", "csv", "--out", dangling), "already exists", 1)
    assert not (tmp_path / "nowhere").exists()


def test_write_private_refuses_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_private(target, b"one")
    with pytest.raises(StorageError, match="already exists"):
        write_private(target, b"two")
    write_private(target, b"two", force=True)
    assert target.read_bytes() == b"two" and stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(StorageError, match="cannot create"):
        write_private(tmp_path / "no" / "such" / "folder", b"x")


# --- QR codes ---------------------------------------------------------------------------------


def test_terminal_qr(tmp_path: Path) -> None:
    fob = new_token(tmp_path / "fob.token", "totp30")
    result = ok("token", "export", "--state", fob, "--format", "otpauth", "--qr")
    uri, *qr = result.stdout.splitlines()
    assert uri.startswith("otpauth://totp/vtoken:4242424243?")
    assert len(qr) > 20 and all(len(line) == len(qr[0]) for line in qr)
    assert {"█", "▀", "▄"} & set("".join(qr))
    # with --out the export goes to the file and the QR code alone to stdout
    out = tmp_path / "fob.csv"
    result = ok("token", "export", "--state", fob, "--format", "csv", "--out", out, "--qr")
    assert result.stdout.splitlines() == qr


@pytest.mark.parametrize(("suffix", "start"), [(".png", PNG_SIGNATURE), (".svg", b"<?xml")])
def test_qr_file(tmp_path: Path, suffix: str, start: bytes) -> None:
    fob = new_token(tmp_path / "fob.token", "hotp")
    image = tmp_path / f"fob{suffix}"
    result = ok("token", "export", "--state", fob, "--format", "otpauth", "--qr-file", image)
    assert result.stdout.startswith("otpauth://hotp/vtoken:4242424243?")
    assert image.read_bytes().startswith(start)
    assert stat.S_IMODE(image.stat().st_mode) == 0o600
    assert_clean_error(run("token", "export", "--state", fob, "--format", "otpauth", "--qr-file", image),
                       "already exists", 1)


@pytest.mark.parametrize(
    ("args", "words", "code"),
    [
        (["--format", "csv", "--psk", PSK], "apply to --format pskc only, not csv", 2),
        (["--format", "otpauth", "--password", PASSWORD], "apply to --format pskc only, not otpauth", 2),
        (["--format", "pskc", "--psk", PSK, "--password", PASSWORD], "not both", 2),
        (["--format", "pskc", "--psk", "00112233"], "pre-shared key must be 16 bytes", 2),
        (["--format", "pskc", "--psk", "zz" * 16], "--psk: hex key contains", 2),
        (["--format", "pskc", "--password", ""], "password must not be empty", 2),
        (["--format", "pskc", "--qr"], "give --out FILE", 2),
        (["--format", "otpauth", "--qr-file", "x.jpg"], "must end in .png or .svg", 2),
        (["--format", "xml"], "Invalid value for '--format'", 2),
    ],
)
def test_token_export_option_errors(tmp_path: Path, args: list[str], words: str, code: int) -> None:
    fob = new_token(tmp_path / "fob.token", "totp30")
    before = snapshot(tmp_path)
    assert_clean_error(run("token", "export", "--state", fob, *args), words, code)
    assert snapshot(tmp_path) == before


def test_token_export_file_errors(tmp_path: Path) -> None:
    assert_clean_error(run("token", "export", "--state", tmp_path / "none.token", "--format", "csv"),
                       "does not exist", 1)
    bad = tmp_path / "bad.token"
    bad.write_text("{not json")
    assert_clean_error(run("token", "export", "--state", bad, "--format", "csv"), "not valid JSON", 1)
    fob = new_token(tmp_path / "fob.token", "totp30")
    damaged = fob.read_text().replace('"model": "totp30"', '"model": "totp60"')
    fob.write_text(damaged)
    assert_clean_error(run("token", "export", "--state", fob, "--format", "otpauth"), "checksum mismatch", 1)
    assert_clean_error(run("token", "export", "--state", tmp_path, "--format", "otpauth"), "is a directory", 2)


def test_nothing_written_when_the_token_file_is_bad(tmp_path: Path) -> None:
    out, image = tmp_path / "x.csv", tmp_path / "x.png"
    run("token", "export", "--state", tmp_path / "none.token", "--format", "csv", "--out", out, "--qr-file", image)
    assert not out.exists() and not image.exists()


def test_a_nonzero_t0_goes_to_pskc_only(tmp_path: Path) -> None:
    fob = new_token(tmp_path / "fob.token", "totp60-t0")
    for fmt in ("csv", "otpauth"):
        assert_clean_error(run("token", "export", "--state", fob, "--format", fmt), "T0 = 600", 2)
    assert_clean_error(run("token", "export", "--state", fob, "--format", "pskc", "--qr-file", tmp_path / "q.png"),
                       "export it as PSKC", 2)
    assert not (tmp_path / "q.png").exists()
    result = ok("token", "export", "--state", fob, "--format", "pskc")
    path = tmp_path / "t0.pskc"
    path.write_bytes(result.stdout_bytes)
    key = pskc.PSKC(str(path)).keys[0]
    assert (key.time_offset, key.time_interval) == (10, 60)  # T0 counted in periods, as fleet files do

    folder = fleet(tmp_path, "totp60-t0", 2)
    out, qr_dir = tmp_path / "t0-fleet.pskc", tmp_path / "t0-qr"
    result = run("fleet", "export", "--dir", folder, "--format", "pskc", "--out", out, "--qr-dir", qr_dir)
    assert_clean_error(result, "export it as PSKC", 2)
    assert not out.exists() and not qr_dir.exists()  # refused before anything was written


# --- fleet export -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["totp30", "hotp-sha256-8"])
def test_fleet_export_twenty_tokens_in_every_format(tmp_path: Path, model: str) -> None:
    folder = fleet(tmp_path, model, 20)
    tokens = sorted(folder.glob("*.token"))
    assert len(tokens) == 20
    if "hotp" in model:
        for i, path in enumerate(tokens[:5]):
            press(path, i + 1)
    shows = {path.stem: shown(path) for path in tokens}
    before = snapshot(folder)
    for fmt in ("pskc", "csv", "otpauth"):
        out = tmp_path / f"fleet.{fmt}"
        result = ok("fleet", "export", "--dir", folder, "--format", fmt, "--out", out)
        assert result.stdout == "" and f"20 tokens ({fmt}) written to {out}" in result.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        codes = exported_codes(fmt, out.read_bytes(), tmp_path)
        assert codes == shows
        assert list(codes) == sorted(shows)  # records in serial order
        stdout = ok("fleet", "export", "--dir", folder, "--format", fmt).stdout_bytes
        if fmt != "pskc":
            assert stdout == out.read_bytes()
    assert snapshot(folder) == before


@pytest.mark.parametrize(("model", "suite"), [("totp30-sha256", "sha256"), ("totp30-sha512", "sha512"),
                                              ("hotp-sha512", "sha512")])
@pytest.mark.parametrize("protection", [[], ["--psk", PSK], ["--password", PASSWORD]])
def test_fleet_pskc_round_trip_names_the_hash_as_privacyidea_reads_it(
    tmp_path: Path, model: str, suite: str, protection: list[str]
) -> None:
    folder = fleet(tmp_path, model, 3)
    out = tmp_path / "out.pskc"
    ok("fleet", "export", "--dir", folder, "--format", "pskc", "--out", out, *protection)
    kw = {protection[0].lstrip("-"): protection[1]} if protection else {}
    parsed = read_pskc_file(out, **kw)
    spec_model = models.get_model(model)
    serials = sorted(p.stem for p in folder.glob("*.token"))
    assert [k.serial for k in parsed.keys] == serials
    for key in parsed.keys:
        assert key.algorithm_suite.lower() == suite  # privacyIDEA: Suite text, lower-cased, exactly sha256/sha512
        assert key.secret == derive_seed(bytes.fromhex(BATCH), key.serial)
        assert key.response_length == spec_model.digits
        if spec_model.kind is TokenKind.TOTP:
            assert (key.time_interval, key.time_offset, key.counter) == (spec_model.period, 0, None)
        else:
            assert (key.counter, key.time_interval) == (0, None)
    # the fleet's own tokens.pskc spells the hash the same way (one definition)
    made = read_pskc_file(folder / "tokens.pskc")
    assert {k.algorithm_suite for k in made.keys} == {k.algorithm_suite for k in parsed.keys} == {suite.upper()}
    if model.startswith("totp"):
        assert codes_from_pskc(parsed) == {p.stem: shown(p) for p in folder.glob("*.token")}


def test_build_pskc_suite_for_sha1_is_absent() -> None:
    spec = FleetSpec(batch_secret=bytes.fromhex(BATCH), model=models.get_model("totp30"), count=1)
    (key,) = build_pskc(spec, created_ns=0).keys
    assert key.algorithm_suite is None


def test_exported_pskc_is_what_the_validator_imports(tmp_path: Path) -> None:
    from validator.importer import read_pskc

    folder = fleet(tmp_path, "hotp-sha512", 2)
    press(sorted(folder.glob("*.token"))[1], 4)
    out = tmp_path / "out.pskc"
    ok("fleet", "export", "--dir", folder, "--format", "pskc", "--out", out)
    imported = read_pskc(out)
    assert [(p.algorithm, p.counter, p.digits) for p, _ in imported] == [(Algorithm.SHA512, 0, 6),
                                                                          (Algorithm.SHA512, 4, 6)]


def test_fleet_export_qr_dir(tmp_path: Path) -> None:
    folder = fleet(tmp_path, "totp30", 20)
    qr_dir = tmp_path / "qr"
    result = ok("fleet", "export", "--dir", folder, "--format", "otpauth", "--qr-dir", qr_dir)
    serials = sorted(p.stem for p in folder.glob("*.token"))
    assert len(result.stdout.splitlines()) == 20
    assert sorted(p.name for p in qr_dir.iterdir()) == [f"{s}.png" for s in serials]
    for png in qr_dir.iterdir():
        assert png.read_bytes().startswith(PNG_SIGNATURE)
        assert stat.S_IMODE(png.stat().st_mode) == 0o600
    assert stat.S_IMODE(qr_dir.stat().st_mode) == 0o700
    # a second run refuses before writing anything, also the export
    out = tmp_path / "again.csv"
    result = run("fleet", "export", "--dir", folder, "--format", "csv", "--out", out, "--qr-dir", qr_dir)
    assert_clean_error(result, "already holds", 1)
    assert not out.exists()
    ok("fleet", "export", "--dir", folder, "--format", "csv", "--out", out, "--qr-dir", qr_dir, "--force")


def test_fleet_export_errors(tmp_path: Path) -> None:
    assert_clean_error(run("fleet", "export", "--dir", tmp_path / "none", "--format", "csv"), "does not exist", 1)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(run("fleet", "export", "--dir", empty, "--format", "csv"), "holds no <serial>.token", 1)
    folder = fleet(tmp_path, "totp30", 2)
    assert_clean_error(run("fleet", "export", "--dir", folder, "--format", "csv", "--psk", PSK), "pskc only", 2)
    first = sorted(folder.glob("*.token"))[0]
    (folder / "copy.token").write_bytes(first.read_bytes())
    assert_clean_error(run("fleet", "export", "--dir", folder, "--format", "csv"), "hold the same token", 1)
    (folder / "copy.token").write_text("[]")
    assert_clean_error(run("fleet", "export", "--dir", folder, "--format", "csv"), "copy.token", 1)


def test_fleet_export_ignores_lock_and_temporary_files(tmp_path: Path) -> None:
    folder = fleet(tmp_path, "totp30", 3)
    first = sorted(folder.glob("*.token"))[0]
    press(first, 1)  # open_token leaves <file>.lock behind
    (folder / f".{first.name}.123.tmp").write_text("half written")
    assert any(p.name.endswith(".lock") for p in folder.iterdir())
    assert len(read_fleet(folder)) == 3


def test_export_of_a_served_token_does_not_wait_for_its_lock(tmp_path: Path) -> None:
    from firmware_sim.statefile import locked

    fob = new_token(tmp_path / "fob.token", "totp30")
    with locked(fob, wait=False):  # what `vtoken serve` holds while it runs
        result = ok("token", "export", "--state", fob, "--format", "otpauth")
    assert result.stdout.startswith("otpauth://")


def test_render_checks() -> None:
    record = ExportRecord("4242424243", "totp30", TokenKind.TOTP, Algorithm.SHA1, 6, 30, 0, 0, bytes.fromhex(SECRET))
    with pytest.raises(InvalidInputError, match="unknown export format"):
        render([record], "xml")
    with pytest.raises(InvalidInputError, match="no tokens"):
        render([], ExportFormat.CSV)
    with pytest.raises(InvalidInputError, match="PSKC files only"):
        render([record], "csv", password="x")
    assert render([record, record], "otpauth").count(b"\n") == 2


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(cwd)


def test_docstring_examples_run(in_tmp: Path) -> None:
    """The Example blocks of both commands, run in order after the examples that make their inputs."""
    ok("token", "new", "--state", "fob.token", "--model", "totp30", "--ppm", "20", "--at", "2026-01-01T00:00:00Z")
    ok("token", "export", "--state", "fob.token", "--format", "otpauth", "--qr")
    ok("token", "export", "--state", "fob.token", "--format", "pskc", "--out", "fob.pskc", "--psk", PSK)
    ok("fleet", "create", "--count", "5", "--batch-secret", "000102030405060708090a0b0c0d0e0f",
       "--model", "totp30", "--out", "fleet/", "--password", "hunter2")
    ok("fleet", "export", "--dir", "fleet/", "--format", "csv", "--out", "fleet.csv")
    ok("fleet", "export", "--dir", "fleet/", "--format", "otpauth", "--out", "fleet.txt", "--qr-dir", "fleet-qr/")
    assert len(list((in_tmp / "fleet-qr").iterdir())) == 5


@pytest.mark.parametrize("fmt", ["pskc", "csv", "otpauth"])
@pytest.mark.parametrize("model", ["totp30-sha256", "hotp-sha512"])
def test_exported_fleet_imports_back_into_vtoken_in_every_format(tmp_path: Path, model: str, fmt: str) -> None:
    """Done when (issue 13): a SHA-2 fleet exported by vtoken imports into vtoken with the right hash,
    and the validator then accepts the codes the token files show."""
    folder = fleet(tmp_path, model, 3)
    out = tmp_path / f"out.{ 'txt' if fmt == 'otpauth' else fmt}"
    ok("fleet", "export", "--dir", folder, "--format", fmt, "--out", out)
    db = tmp_path / "v.db"
    key_file = tmp_path / "v.key"
    ok("validator", "--db", db, "--key-file", key_file, "init")
    imported = ok("validator", "--db", db, "--key-file", key_file, "import", out, "--format", fmt).stdout
    assert "imported 3 tokens" in imported
    spec_model = models.get_model(model)
    for token_file in sorted(folder.glob("*.token")):
        serial = token_file.stem
        shown_text = ok("validator", "--db", db, "--key-file", key_file, "show", serial).stdout
        assert spec_model.algorithm.value in shown_text.lower(), shown_text
        first, second = ok("codes", "--state", token_file, "--at", LATER, "--count", "2").stdout.split()
        registered = ok("validator", "--db", db, "--key-file", key_file, "register", serial, first, second,
                        "--at", LATER)
        assert "registered" in registered.stdout.lower(), registered.stdout
