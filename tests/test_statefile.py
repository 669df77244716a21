"""Token files: exact round trips, corruption caught, atomic writes, two processes on one token."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat

import pytest

from firmware_sim import statefile
from firmware_sim.factory import Physics, manufacture
from firmware_sim.models import get_model
from firmware_sim.rtc import TemperatureProfile
from firmware_sim.statefile import TokenBusyError, load_token, locked, open_token, save_token
from vtoken.clock import NS_PER_DAY, NS_PER_SECOND, SimulatedClock
from vtoken.errors import CorruptStateError, StorageError
from vtoken.oath import hotp

SEED = b"0123456789abcdefghij"
T0 = 1_767_225_600 * NS_PER_SECOND


def make_file(tmp_path, model: str = "totp30", **physics):
    clock = SimulatedClock(T0)
    token = manufacture(
        model=get_model(model), seed=SEED, serial="1234567891", device_key=os.urandom(32), clock=clock,
        physics=Physics(**physics),
    )
    path = tmp_path / "fob.token"
    save_token(token, path)
    return path, token, clock


def test_round_trip_is_exact(tmp_path) -> None:
    profile = TemperatureProfile.schedule([(T0, 25), (T0 + 3 * NS_PER_DAY, -5), (T0 + 40 * NS_PER_DAY, 31)])
    path, token, clock = make_file(tmp_path, ppm="12.34", temperature=profile, aging_ppm_per_year=2)
    token.press()
    save_token(token, path)
    clock.advance(400 * NS_PER_DAY + 7 * NS_PER_SECOND)
    restored = load_token(path, clock)
    assert restored.device_time_ns() == token.device_time_ns()
    assert restored.press() == token.press()
    assert restored.button.press_count == token.button.press_count
    # Saving what was loaded gives the same content (apart from the save time).
    a = statefile.token_to_dict(load_token(path, clock))
    b = statefile.token_to_dict(load_token(path, clock))
    assert a == b


def test_file_mode_is_0600(tmp_path) -> None:
    path, _, _ = make_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: b"\x00\xff garbage",
        lambda raw: b"",
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw.replace(b'"version": 1', b'"version": 9'),
        lambda raw: raw.replace(b'"format": "vtoken-token"', b'"format": "other"'),
        lambda raw: b"[1, 2, 3]",
    ],
)
def test_corrupt_files_are_refused(tmp_path, damage) -> None:
    path, _, clock = make_file(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptStateError):
        load_token(path, clock)


def test_any_changed_field_is_caught_by_the_checksum(tmp_path) -> None:
    path, _, clock = make_file(tmp_path)
    data = json.loads(path.read_bytes())
    for field in ("flash", "device_key", "model"):
        damaged = dict(data)
        value = damaged[field]
        damaged[field] = ("B" if value[0] != "B" else "C") + value[1:]
        path.write_text(json.dumps(damaged))
        with pytest.raises(CorruptStateError, match="checksum"):
            load_token(path, clock)


def test_consistent_but_wrong_content_is_refused(tmp_path) -> None:
    # A file whose checksum was recomputed over a damaged flash image is still refused.
    path, _, clock = make_file(tmp_path)
    data = json.loads(path.read_bytes())
    data["device_key"] = data["device_key"][:-4] + "AAA="
    del data["checksum"]
    data["checksum"] = statefile._checksum(data)
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptStateError):
        load_token(path, clock)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        load_token(tmp_path / "nope.token", SimulatedClock(T0))


def test_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch) -> None:
    path, token, _ = make_file(tmp_path, model="hotp")
    before = path.read_bytes()
    token.press()

    def refuse(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statefile.os, "replace", refuse)
    with pytest.raises(StorageError, match="previous file is intact"):
        save_token(token, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fob.token"]  # no temporary file left behind


def test_lock_refuses_a_second_holder(tmp_path) -> None:
    path, _, _ = make_file(tmp_path)
    with locked(path):
        with pytest.raises(TokenBusyError, match="in use by another process"):
            with locked(path, wait=False):
                pass
    with locked(path, wait=False):
        pass


def _press_many(path: str, presses: int) -> list[str]:
    shown = []
    for _ in range(presses):
        with open_token(path, SimulatedClock(T0 + NS_PER_DAY)) as token:
            shown.append(token.press())
    return shown


def test_two_processes_racing_on_one_token_lose_no_press(tmp_path) -> None:
    """Each press is load-press-save under the lock: no counter is used twice, none is lost."""
    path, _, _ = make_file(tmp_path, model="hotp")
    presses = 25
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_press_many, [(str(path), presses), (str(path), presses)])
    shown = results[0] + results[1]
    assert sorted(shown) == sorted(hotp(SEED, c) for c in range(2 * presses))
    assert load_token(path, SimulatedClock(T0 + NS_PER_DAY)).flash.counter == 2 * presses
