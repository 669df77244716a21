"""Fleets: deterministic manufacture from a batch secret, PSKC export, and the fleet folder."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pskc
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pskc.exceptions import DecryptionError

from firmware_sim.fleet import (
    PSKC_HOTP,
    PSKC_TOTP,
    FleetSpec,
    build_pskc,
    derive_device_key,
    derive_seed,
    draw_ppm,
    make_fleet,
)
from firmware_sim import fleetdir
from firmware_sim.fleetdir import PSKC_FILENAME, write_fleet
from firmware_sim.models import get_model
from firmware_sim.statefile import load_token, token_file_bytes, token_to_dict
from host.cli.main import main
from vtoken.clock import NS_PER_DAY, NS_PER_SECOND, SimulatedClock
from vtoken.errors import InvalidConfigError, InvalidInputError, StorageError
from vtoken.oath import hotp, totp
from vtoken.serialno import has_valid_check_digit, make_serial

BATCH = bytes(range(16))
OTHER_BATCH = bytes(range(1, 17))
#: 2026-01-01T00:00:00Z
FACTORY_NS = 1_767_225_600 * NS_PER_SECOND
PSK = bytes.fromhex("a1b2c3d4e5f60718293a4b5c6d7e8f90")
PASSWORD = "correct horse battery staple"


def spec(model: str = "totp30", count: int = 5, batch: bytes = BATCH, **kw) -> FleetSpec:
    return FleetSpec(batch_secret=batch, model=get_model(model), count=count, **kw)


def independent_hkdf(batch: bytes, info: bytes, length: int) -> bytes:
    """The documented derivation, recomputed here so a silent change of it fails the tests."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"vtoken fleet v1", info=info).derive(batch)


def fleet_snapshot(s: FleetSpec) -> list[tuple]:
    """Serial, seed, ppm, device key and the codes a year later, for every token."""
    clock = SimulatedClock(FACTORY_NS)
    tokens = list(make_fleet(s, clock))
    out = []
    clock.advance(365 * NS_PER_DAY + 15 * NS_PER_SECOND)
    for t in tokens:
        out.append(
            (
                t.serial,
                derive_seed(s.batch_secret, t.serial),
                t.rtc.crystal.ppm_25,
                t.device_key,
                t.current_code(),
                t.device_time_ns(),
            )
        )
    return out


# --- determinism ---------------------------------------------------------------------


def test_same_spec_gives_the_same_fleet() -> None:
    a = fleet_snapshot(spec(count=8))
    b = fleet_snapshot(spec(count=8))
    assert a == b
    # the ppm values actually reach the tokens' crystals
    assert [row[2] for row in a] == [draw_ppm(BATCH, row[0], 20) for row in a]


def test_different_batch_secret_gives_different_seeds_and_keys() -> None:
    a = fleet_snapshot(spec(count=8))
    b = fleet_snapshot(spec(count=8, batch=OTHER_BATCH))
    assert [row[0] for row in a] == [row[0] for row in b]  # serials depend only on the range
    assert all(x[1] != y[1] for x, y in zip(a, b))
    assert all(x[3] != y[3] for x, y in zip(a, b))
    assert [row[2] for row in a] != [row[2] for row in b]


def test_seed_is_hkdf_of_batch_secret_and_serial() -> None:
    serials = list(spec(count=20).serials())
    seeds = [derive_seed(BATCH, s) for s in serials]
    assert len(set(seeds)) == len(seeds)
    for serial, seed in zip(serials, seeds):
        assert len(seed) == 20
        assert seed == independent_hkdf(BATCH, b"seed:" + serial.encode(), 20)
        key = derive_device_key(BATCH, serial)
        assert len(key) == 32 and key != seed[: len(key)]
        assert key == independent_hkdf(BATCH, b"device-key:" + serial.encode(), 32)
    # a fixed known answer: the same batch gives the same seed on every machine and version
    assert seeds[0].hex() == "dd34191e9e0d0b16d7716f2c3a7eb8a7593ad1d5"


def test_serials_are_unique_consecutive_and_check_digit_valid() -> None:
    s = spec(count=200, first_serial=123_456_700)
    serials = list(s.serials())
    assert len(serials) == 200 == len(set(serials))
    assert all(len(x) == 10 and has_valid_check_digit(x) for x in serials)
    assert serials == [make_serial(123_456_700 + i) for i in range(200)]
    tokens = list(make_fleet(spec(count=3, first_serial=42), SimulatedClock(FACTORY_NS)))
    assert [t.serial for t in tokens] == [make_serial(42), make_serial(43), make_serial(44)]


def test_draw_ppm_stays_within_the_spread_and_varies() -> None:
    serials = list(spec(count=300).serials())
    for spread in (20, Fraction(5, 2)):
        values = [draw_ppm(BATCH, s, spread) for s in serials]
        assert all(-spread <= v <= spread for v in values)
        assert all((v * 100).denominator == 1 for v in values)  # 0.01 ppm resolution
        assert len(set(values)) > len(values) // 2
        assert min(values) < 0 < max(values)
    assert draw_ppm(BATCH, serials[0], 20) == draw_ppm(BATCH, serials[0], 20)
    assert [draw_ppm(BATCH, s, 20) for s in serials] != [draw_ppm(OTHER_BATCH, s, 20) for s in serials]
    assert {draw_ppm(BATCH, s, 0) for s in serials} == {0}


def test_fleet_tokens_compute_codes_from_their_seed_and_drifted_clock() -> None:
    clock = SimulatedClock(FACTORY_NS)
    tokens = list(make_fleet(spec(count=4), clock))
    clock.advance(200 * NS_PER_DAY)
    for t in tokens:
        seed = derive_seed(BATCH, t.serial)
        device_s = t.device_time_ns() // NS_PER_SECOND
        assert t.current_code() == totp(seed, device_s)
        expected_offset = t.rtc.crystal.ppm_25 * 200 * NS_PER_DAY / 1_000_000
        assert abs(t.offset_ns() - expected_offset) <= 1


# --- PSKC export ------------------------------------------------------------------------


def _write(container: pskc.PSKC, tmp_path: Path) -> Path:
    path = tmp_path / "out.pskc"
    container.write(str(path))
    return path


def _check_keys(parsed: pskc.PSKC, s: FleetSpec) -> None:
    serials = list(s.serials())
    assert [k.serial for k in parsed.keys] == serials
    model = s.model
    for key, serial in zip(parsed.keys, serials):
        assert key.secret == derive_seed(s.batch_secret, serial)
        assert key.id == serial
        assert key.manufacturer == "vtoken"
        assert key.model == model.name
        assert key.response_length == model.digits
        assert key.response_encoding == "DECIMAL"
        if model.kind.value == "totp":
            assert key.algorithm == PSKC_TOTP
            assert key.time_interval == model.period
            assert key.time_offset == 0
            assert key.time_drift == 0
            assert key.counter is None
            assert key.start_date is not None and key.start_date.timestamp() == FACTORY_NS // NS_PER_SECOND
        else:
            assert key.algorithm == PSKC_HOTP
            assert key.counter == 0
            assert key.time_interval is None


@pytest.mark.parametrize("model", ["totp30", "totp60", "totp30-8", "hotp"])
def test_pskc_plaintext_round_trip(tmp_path: Path, model: str) -> None:
    s = spec(model, count=4)
    path = _write(build_pskc(s, created_ns=FACTORY_NS), tmp_path)
    parsed = pskc.PSKC(str(path))
    assert parsed.encryption.algorithm is None
    _check_keys(parsed, s)
    text = path.read_text()
    if model == "hotp":
        assert "urn:ietf:params:xml:ns:keyprov:pskc:hotp" in text and "pskc:totp" not in text
    else:
        assert "urn:ietf:params:xml:ns:keyprov:pskc:totp" in text


def test_pskc_sha256_model_names_its_suite(tmp_path: Path) -> None:
    s = spec("totp30-sha256", count=1)
    parsed = pskc.PSKC(str(_write(build_pskc(s, created_ns=FACTORY_NS), tmp_path)))
    assert parsed.keys[0].algorithm_suite == "SHA256"
    _check_keys(parsed, s)


@pytest.mark.parametrize("model", ["totp30", "hotp"])
def test_pskc_preshared_key_round_trip(tmp_path: Path, model: str) -> None:
    s = spec(model, count=3)
    path = _write(build_pskc(s, created_ns=FACTORY_NS, psk=PSK), tmp_path)
    for seed in (derive_seed(BATCH, x) for x in s.serials()):
        assert seed.hex() not in path.read_text()
    parsed = pskc.PSKC(str(path))
    assert parsed.encryption.algorithm.endswith("#aes128-cbc")
    assert parsed.mac.algorithm is not None and parsed.mac.algorithm.endswith("#hmac-sha1")
    with pytest.raises(DecryptionError):  # no key given yet
        parsed.keys[0].secret
    parsed.encryption.key = PSK
    _check_keys(parsed, s)


def test_pskc_password_round_trip(tmp_path: Path) -> None:
    s = spec("totp60", count=3)
    path = _write(build_pskc(s, created_ns=FACTORY_NS, password=PASSWORD), tmp_path)
    parsed = pskc.PSKC(str(path))
    assert parsed.encryption.derivation.algorithm.endswith("#pbkdf2")
    assert parsed.encryption.derivation.pbkdf2_iterations >= 10_000
    assert parsed.mac.algorithm is not None
    parsed.encryption.derive_key(PASSWORD)
    _check_keys(parsed, s)


def _secret_or_error(parsed: pskc.PSKC) -> bytes | None:
    try:
        return parsed.keys[0].secret
    except DecryptionError:
        return None


def test_pskc_wrong_password_or_psk_fails(tmp_path: Path) -> None:
    s = spec(count=2)
    right = derive_seed(BATCH, next(s.serials()))
    by_password = tmp_path / "pw"
    by_password.mkdir()
    parsed = pskc.PSKC(str(_write(build_pskc(s, created_ns=FACTORY_NS, password=PASSWORD), by_password)))
    parsed.encryption.derive_key("wrong " + PASSWORD)
    assert _secret_or_error(parsed) != right
    with pytest.raises(DecryptionError):
        parsed.keys[0].secret

    by_psk = tmp_path / "psk"
    by_psk.mkdir()
    parsed = pskc.PSKC(str(_write(build_pskc(s, created_ns=FACTORY_NS, psk=PSK), by_psk)))
    parsed.encryption.key = bytes(16)
    assert _secret_or_error(parsed) != right
    with pytest.raises(DecryptionError):
        parsed.keys[0].secret


def test_build_pskc_progress() -> None:
    seen: list[int] = []
    build_pskc(spec(count=4), created_ns=FACTORY_NS, progress=seen.append)
    assert seen == [1, 2, 3, 4]


# --- the fleet folder -----------------------------------------------------------------


def test_write_fleet_folder(tmp_path: Path) -> None:
    s = spec(count=4)
    out = tmp_path / "batch"
    calls: list[tuple[str, int]] = []
    target = write_fleet(s, out, SimulatedClock(FACTORY_NS), password=PASSWORD, progress=lambda *a: calls.append(a))
    serials = list(s.serials())
    assert target == out / PSKC_FILENAME
    assert sorted(p.name for p in out.iterdir()) == sorted([PSKC_FILENAME] + [f"{x}.token" for x in serials])
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name
    # Token files written one by one, then the PSKC file (all its keys at once), then everything on disk.
    assert calls == [("tokens", i) for i in range(1, 5)] + [("pskc", 4), ("synced", 4)]

    parsed = pskc.PSKC(str(target))
    parsed.encryption.derive_key(PASSWORD)
    _check_keys(parsed, s)

    at = FACTORY_NS + 100 * NS_PER_DAY + 7 * NS_PER_SECOND
    offsets = set()
    for serial in serials:
        clock = SimulatedClock(at)
        token = load_token(out / f"{serial}.token", clock)
        assert token.serial == serial
        seed = derive_seed(BATCH, serial)
        device_ns = token.device_time_ns()
        offsets.add(device_ns - at)
        assert token.current_code() == totp(seed, device_ns // NS_PER_SECOND)
    assert len(offsets) > 1  # each token drifts by its own ppm


def test_write_fleet_hotp_tokens_start_at_counter_zero(tmp_path: Path) -> None:
    s = spec("hotp", count=2)
    write_fleet(s, tmp_path / "f", SimulatedClock(FACTORY_NS))
    for serial in s.serials():
        clock = SimulatedClock(FACTORY_NS + NS_PER_DAY)
        token = load_token(tmp_path / "f" / f"{serial}.token", clock)
        seed = derive_seed(BATCH, serial)
        assert token.press() == hotp(seed, 0)
        clock.advance(20 * NS_PER_SECOND)
        assert token.press() == hotp(seed, 1)


def test_write_fleet_is_reproducible(tmp_path: Path) -> None:
    s = spec(count=3)
    write_fleet(s, tmp_path / "a", SimulatedClock(FACTORY_NS))
    write_fleet(s, tmp_path / "b", SimulatedClock(FACTORY_NS))
    for p in (tmp_path / "a").glob("*.token"):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes()


@pytest.mark.parametrize("existing", ["1000000005.token", PSKC_FILENAME, "notes.txt"])
def test_write_fleet_refuses_a_non_empty_folder(tmp_path: Path, existing: str) -> None:
    out = tmp_path / "f"
    out.mkdir()
    (out / existing).write_text("keep me")
    with pytest.raises(StorageError, match="empty folder"):
        write_fleet(spec(count=2), out, SimulatedClock(FACTORY_NS))
    assert [p.name for p in out.iterdir()] == [existing]
    assert (out / existing).read_text() == "keep me"


def test_write_fleet_over_a_file_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError):
        write_fleet(spec(count=1), tmp_path / "f", SimulatedClock(FACTORY_NS))


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"batch": bytes(15)}, "at least 16 bytes"),
        ({"batch": b""}, "at least 16 bytes"),
        ({"count": 0}, "at least 1"),
        ({"count": -3}, "at least 1"),
        ({"first_serial": 10**9 - 2, "count": 5}, "9 digits"),
        ({"ppm_spread": -5}, "ppm spread"),
        ({"ppm_spread": 5000}, "ppm spread"),
    ],
)
def test_bad_fleet_spec(kwargs: dict, words: str) -> None:
    with pytest.raises(InvalidConfigError, match=words):
        spec(**kwargs)


def test_sixteen_byte_batch_secret_is_enough() -> None:
    assert spec(batch=bytes(16), count=1).count == 1


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"psk": bytes(15)}, "16 bytes"),
        ({"psk": bytes(32)}, "16 bytes"),
        ({"psk": PSK, "password": PASSWORD}, "not both"),
        ({"password": ""}, "must not be empty"),
    ],
)
def test_bad_protection(tmp_path: Path, kwargs: dict, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        build_pskc(spec(count=1), created_ns=FACTORY_NS, **kwargs)
    out = tmp_path / "f"
    with pytest.raises(InvalidInputError, match=words):
        write_fleet(spec(count=2), out, SimulatedClock(FACTORY_NS), **kwargs)
    # refused before anything is written, so the same folder can be used again
    assert not out.exists() or not any(out.iterdir())
    write_fleet(spec(count=2), out, SimulatedClock(FACTORY_NS))
    assert (out / PSKC_FILENAME).exists()


def test_errors_never_contain_secrets() -> None:
    s = spec(count=1)
    with pytest.raises(InvalidInputError) as info:
        build_pskc(s, created_ns=FACTORY_NS, psk=PSK + b"x")
    assert PSK.hex() not in str(info.value) and BATCH.hex() not in str(info.value)
    with pytest.raises(InvalidConfigError) as info2:
        FleetSpec(batch_secret=BATCH[:15], model=get_model("totp30"), count=1)
    assert BATCH[:15].hex() not in str(info2.value)


# --- all or nothing, durable, fast (issue 14 #4) ----------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, raised from the progress callback at a chosen point."""


def interrupt_at(stage: str, when: int):
    def progress(seen_stage: str, done: int) -> None:
        if seen_stage == stage and done >= when:
            raise Interrupted

    return progress


def expected_files(s: FleetSpec) -> dict[str, bytes]:
    """Every token file as the ordinary path makes it: manufacture each token, save it."""
    return {
        f"{t.serial}.token": token_file_bytes(token_to_dict(t)) for t in make_fleet(s, SimulatedClock(FACTORY_NS))
    }


def token_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.endswith(".token")}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".staging-" in p.name)


@pytest.fixture(params=[False, True], ids=["pskc-inline", "pskc-in-a-child"])
def pskc_in_child(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with the PSKC file written here, and by the forked child (as for large fleets)."""
    if request.param:
        if not fleetdir._can_fork():
            pytest.fail("this test process has threads: the child-process path cannot be tested")
        monkeypatch.setattr(fleetdir, "PARALLEL_PSKC_MIN", 1)
    else:
        monkeypatch.setattr(fleetdir, "PARALLEL_PSKC_MIN", 10**9)
    return request.param


@pytest.mark.parametrize("model", ["totp30", "totp60", "hotp", "totp30-8", "totp30-sha256"])
def test_fleet_files_are_exactly_the_manufactured_tokens(tmp_path: Path, model: str) -> None:
    """The template path gives byte for byte what manufacturing and saving each token gives."""
    s = spec(model, count=40, first_serial=999_999_950)
    stamper = fleetdir.TokenFileStamper(s, SimulatedClock(FACTORY_NS))
    assert stamper.fast  # the first and last token matched: every token is stamped
    write_fleet(s, tmp_path / "f", SimulatedClock(FACTORY_NS))
    assert token_files(tmp_path / "f") == expected_files(s)


def test_an_unknown_flash_layout_falls_back_to_manufacturing_each_token(tmp_path: Path, monkeypatch) -> None:
    class WrongCipher:  # the stamper's seed encryption gone wrong (the flash's own is untouched)
        def __init__(self, device_key: bytes) -> None:
            pass

        def encrypt(self, sequence: int, serial: str, seed: bytes) -> tuple[bytes, bytes]:
            return bytes(12), bytes(36)

    monkeypatch.setattr(fleetdir, "SeedCipher", WrongCipher)
    s = spec(count=5)
    assert not fleetdir.TokenFileStamper(s, SimulatedClock(FACTORY_NS)).fast
    write_fleet(s, tmp_path / "f", SimulatedClock(FACTORY_NS))
    assert token_files(tmp_path / "f") == expected_files(s)


@pytest.mark.parametrize(("stage", "when"), [("tokens", 1), ("tokens", 4), ("pskc", 1), ("synced", 1)])
def test_an_interrupted_run_leaves_nothing_and_a_rerun_works(tmp_path: Path, pskc_in_child, stage, when) -> None:
    s = spec(count=6)
    out = tmp_path / "deep" / "er" / "fleet"
    with pytest.raises(Interrupted):
        write_fleet(s, out, SimulatedClock(FACTORY_NS), password=PASSWORD, progress=interrupt_at(stage, when))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # not the fleet, not its staging, not its parents
    target = write_fleet(s, out, SimulatedClock(FACTORY_NS), password=PASSWORD)
    assert token_files(out) == expected_files(s)
    assert sorted(p.name for p in out.iterdir()) == sorted([PSKC_FILENAME, *expected_files(s)])
    parsed = pskc.PSKC(str(target))
    parsed.encryption.derive_key(PASSWORD)
    _check_keys(parsed, s)
    assert leftovers(out.parent) == []


def test_an_interrupted_run_into_an_existing_empty_folder_leaves_it_empty(tmp_path: Path, pskc_in_child) -> None:
    out = tmp_path / "f"
    out.mkdir()
    os.chmod(out, 0o750)
    for stage in ("tokens", "pskc", "synced"):
        with pytest.raises(Interrupted):
            write_fleet(spec(count=4), out, SimulatedClock(FACTORY_NS), progress=interrupt_at(stage, 4))
        assert list(out.iterdir()) == []
    write_fleet(spec(count=4), out, SimulatedClock(FACTORY_NS))
    assert token_files(out) == expected_files(spec(count=4))
    assert stat.S_IMODE(out.stat().st_mode) == 0o750  # the folder itself was kept
    assert leftovers(out) == [] and leftovers(tmp_path) == []


def test_an_error_in_the_pskc_child_is_reported_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fleetdir, "PARALLEL_PSKC_MIN", 1)

    def broken(*args, **kwargs):
        raise StorageError("disk on fire")

    monkeypatch.setattr(fleetdir, "build_pskc", broken)  # the forked child inherits it
    with pytest.raises(StorageError, match="disk on fire"):
        write_fleet(spec(count=3), tmp_path / "f", SimulatedClock(FACTORY_NS))
    assert list(tmp_path.iterdir()) == []


def test_a_stale_staging_folder_does_not_block_a_rerun_and_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".f.staging-4242-deadbeef"  # left by a run that was killed (kill -9)
    stale.mkdir()
    (stale / "1000000005.token").write_text("half a fleet")
    inside = tmp_path / "g" / ".staging-4242-0badf00d"  # the same, inside an existing target
    inside.mkdir(parents=True)
    write_fleet(spec(count=2), tmp_path / "f", SimulatedClock(FACTORY_NS))
    write_fleet(spec(count=2), tmp_path / "g", SimulatedClock(FACTORY_NS))
    assert not stale.exists() and not inside.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "g"]


def test_a_run_writing_the_same_folder_right_now_is_not_raced(tmp_path: Path) -> None:
    live = tmp_path / ".f.staging-4242-feedface"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the run writing there holds it
        with pytest.raises(StorageError, match=r"another 'vtoken fleet create' \(pid 4242\) is writing"):
            write_fleet(spec(count=2), tmp_path / "f", SimulatedClock(FACTORY_NS))
        assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]  # its work untouched, nothing of ours
    finally:
        os.close(fd)


class DurabilityLog:
    """Records syncfs, fsync and rename calls in order (the real calls still happen)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, syncfs: bool) -> None:
        self.events: list[tuple[str, str]] = []
        real_fsync_path, real_rename = fleetdir._fsync_path, os.rename

        def fake_syncfs(folder: Path) -> bool:
            self.events.append(("syncfs", str(folder)))
            return syncfs

        def fsync_path(path: Path) -> None:
            self.events.append(("fsync", str(path)))
            real_fsync_path(path)

        def rename(src, dst) -> None:
            self.events.append(("rename", str(dst)))
            real_rename(src, dst)

        monkeypatch.setattr(fleetdir, "_syncfs", fake_syncfs)
        monkeypatch.setattr(fleetdir, "_fsync_path", fsync_path)
        monkeypatch.setattr(fleetdir.os, "rename", rename)

    def index(self, kind: str, path: str | None = None) -> int:
        return next(i for i, (k, p) in enumerate(self.events) if k == kind and (path is None or p == path))


def test_the_whole_fleet_is_made_durable_once_before_it_is_renamed_into_place(tmp_path: Path, monkeypatch) -> None:
    log = DurabilityLog(monkeypatch, syncfs=True)
    out = tmp_path / "f"
    write_fleet(spec(count=5), out, SimulatedClock(FACTORY_NS))
    kinds = [k for k, _ in log.events]
    assert kinds == ["syncfs", "rename", "fsync"]  # one syncfs for every file, no fsync per file
    assert ".f.staging-" in log.events[0][1]
    assert log.events[1] == ("rename", str(out))
    assert log.events[2] == ("fsync", str(tmp_path))  # the rename itself made durable


def test_without_syncfs_every_file_is_fsynced_then_the_folder(tmp_path: Path, monkeypatch) -> None:
    log = DurabilityLog(monkeypatch, syncfs=False)
    out = tmp_path / "f"
    s = spec(count=5)
    write_fleet(s, out, SimulatedClock(FACTORY_NS))
    synced = {Path(p).name for k, p in log.events if k == "fsync"}
    assert synced >= {*expected_files(s), PSKC_FILENAME}
    staging = next(p for k, p in log.events if k == "fsync" and ".f.staging-" in Path(p).name)
    rename = log.index("rename", str(out))
    assert log.index("fsync", staging) < rename < log.index("fsync", str(tmp_path))
    assert all(i < rename for i, (k, p) in enumerate(log.events) if k == "fsync" and p != str(tmp_path))


def test_into_an_existing_folder_the_files_move_in_pskc_last_then_the_folder_is_synced(tmp_path, monkeypatch) -> None:
    log = DurabilityLog(monkeypatch, syncfs=True)
    out = tmp_path / "f"
    out.mkdir()
    write_fleet(spec(count=3), out, SimulatedClock(FACTORY_NS))
    renames = [p for k, p in log.events if k == "rename"]
    assert [Path(p).name for p in renames][-1] == PSKC_FILENAME
    assert log.events[-1] == ("fsync", str(out))


def test_fleet_create_interrupted_on_the_command_line(tmp_path: Path, monkeypatch) -> None:
    real_write = fleetdir._write_new
    calls = []

    def write_then_ctrl_c(path: Path, payload: bytes) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_write(path, payload)

    monkeypatch.setattr(fleetdir, "_write_new", write_then_ctrl_c)
    out = tmp_path / "f"
    args = ["fleet", "create", "--count", "5", "--batch-secret", BATCH.hex(), "--out", str(out),
            "--at", "2026-01-01T00:00:00Z"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, result.output
    assert "interrupted: nothing was written" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(fleetdir, "_write_new", real_write)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    assert len(token_files(out)) == 5


def test_progress_counts_every_stage_to_the_end(tmp_path: Path, pskc_in_child) -> None:
    seen: dict[str, int] = {}
    write_fleet(spec(count=7), tmp_path / "f", SimulatedClock(FACTORY_NS),
                progress=lambda stage, done: seen.__setitem__(stage, done))
    assert seen == {"tokens": 7, "pskc": 7, "synced": 7}
    assert leftovers(tmp_path) == []


def test_fleet_create_stopped_by_sigterm_leaves_nothing(tmp_path: Path) -> None:
    """A real process, stopped while it writes (its staging folder exists): it cleans up and says so."""
    out = tmp_path / "f"
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli.main", "fleet", "create", "--count", "50000", "--batch-secret", BATCH.hex(),
         "--out", str(out), "--at", "2026-01-01T00:00:00Z"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not any(".f.staging-" in p.name and any(p.iterdir()) for p in tmp_path.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no staging folder appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: nothing was written" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
