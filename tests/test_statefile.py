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


# --- every writer respects the lock (issue 14 #3, issue 15 #7) ----------------------------------------


def test_busy_message_names_the_holder_and_its_pid(tmp_path) -> None:
    path, _, _ = make_file(tmp_path)
    with locked(path, wait=False, holder="vtoken serve"):  # what `vtoken serve` holds while it runs
        with pytest.raises(TokenBusyError) as info:
            with locked(path, wait=False):
                pass
    message = str(info.value)
    assert message.startswith(f"device busy: {path} is in use by another process")
    assert f"(vtoken serve, pid {os.getpid()})" in message


def test_busy_message_without_holder_information(tmp_path) -> None:
    path, _, _ = make_file(tmp_path)
    with locked(path, wait=False):
        statefile.lock_path(path).write_text("garbage")
        with pytest.raises(TokenBusyError, match=r"^device busy: .* is in use by another process$"):
            with locked(path, wait=False):
                pass


def test_save_new_token_refuses_a_token_held_by_another_writer(tmp_path) -> None:
    path, _, clock = make_file(tmp_path, model="hotp")
    before = path.read_bytes()
    other = manufacture(model=get_model("totp30"), seed=SEED, serial="1000000005", device_key=os.urandom(32), clock=clock)
    with locked(path, wait=False, holder="vtoken serve"):
        with pytest.raises(TokenBusyError, match="vtoken serve"):
            statefile.save_new_token(other, path, replace=True)
    assert path.read_bytes() == before
    statefile.save_new_token(other, path, replace=True)  # free again: replaced
    assert load_token(path, clock).serial == "1000000005"


def test_save_new_token_refuses_an_existing_file_unless_replace(tmp_path) -> None:
    path, token, _ = make_file(tmp_path)
    with pytest.raises(StorageError, match="already exists"):
        statefile.save_new_token(token, path)
    statefile.save_new_token(token, tmp_path / "second.token")
    assert stat.S_IMODE((tmp_path / "second.token").stat().st_mode) == 0o600


def test_open_token_without_waiting_is_refused_while_held(tmp_path) -> None:
    path, _, clock = make_file(tmp_path)
    with locked(path, wait=False, holder="vtoken serve"):
        with pytest.raises(TokenBusyError, match="device busy"):
            with open_token(path, clock, wait=False):
                pass


def test_lock_in_a_missing_folder_is_a_storage_error(tmp_path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        with locked(tmp_path / "nope" / "fob.token"):
            pass


# --- corrupt files: verified before any field is used (issue 15 #3) -------------------------------------


def _rewrite(path, data, *, fix_checksum: bool) -> None:
    if fix_checksum and isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "checksum"}
        data["checksum"] = statefile._checksum(data)
    path.write_text(json.dumps(data))


def _renamed(data: dict) -> dict:
    data = dict(data)
    data["saved_at"] = data.pop("saved_at_ns")
    return data


@pytest.mark.parametrize("fix_checksum", [False, True], ids=["as-edited", "checksum-recomputed"])
@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_renamed, "saved_at_ns"),
        (lambda d: [], "not a vtoken token file"),
        (lambda d: {}, "not a vtoken token file"),
        (lambda d: "token", "not a vtoken token file"),
        (lambda d: None, "not a vtoken token file"),
        (lambda d: {**d, "saved_at_ns": "yesterday"}, "saved_at_ns"),
        (lambda d: {**d, "saved_at_ns": 1.5}, "saved_at_ns"),
        (lambda d: {**d, "saved_at_ns": True}, "saved_at_ns"),
        (lambda d: {**d, "saved_at_ns": -1}, "saved_at_ns"),
        (lambda d: {**d, "saved_at_ns": 2**64}, "saved_at_ns"),
        (lambda d: {**d, "version": True}, "version"),
        (lambda d: {**d, "rtc": []}, "rtc"),
        (lambda d: {**d, "menu_item": "info"}, "menu_item"),
    ],
    ids=["renamed", "list", "empty", "string", "null", "text-time", "float-time", "bool-time", "negative-time", "time-beyond-2^64",
         "bool-version", "rtc-list", "menu-text"],
)
def test_every_corrupt_form_is_a_corrupt_state_error_naming_the_file(tmp_path, damage, words, fix_checksum) -> None:
    path, _, clock = make_file(tmp_path)
    _rewrite(path, damage(json.loads(path.read_bytes())), fix_checksum=fix_checksum)
    for read in (lambda: statefile.saved_time_ns(path), lambda: load_token(path, clock)):
        with pytest.raises(CorruptStateError) as info:
            read()
        message = str(info.value)
        assert str(path) in message
        assert words in message or "checksum mismatch" in message, message


def test_a_file_without_checksum_is_corrupt(tmp_path) -> None:
    path, _, clock = make_file(tmp_path)
    data = json.loads(path.read_bytes())
    del data["checksum"]
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptStateError, match="no checksum"):
        load_token(path, clock)


def test_checksum_is_verified_before_any_field_is_read(tmp_path) -> None:
    path, _, _ = make_file(tmp_path)
    data = json.loads(path.read_bytes())
    data["saved_at_ns"] = "2026-01-01"  # as edited by hand: checksum left as it was
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptStateError, match="checksum mismatch"):
        statefile.saved_time_ns(path)


def _bad_values() -> list:
    return [None, True, -1, 2**70, 1.5, "x", "", [], [1, "a"], {}, {"a": 1}]


def _leaf_paths(value, prefix=()) -> list[tuple]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaf_paths(v, (*prefix, k))] or [prefix]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaf_paths(v, (*prefix, i))] or [prefix]
    return [prefix]


def test_any_field_of_any_type_with_a_valid_checksum_never_escapes_as_another_error(tmp_path) -> None:
    """Checksum-valid files written by another program: every field, every wrong type, is refused cleanly."""
    path, token, clock = make_file(tmp_path, model="hotp")
    token.press()
    save_token(token, path)
    original = json.loads(path.read_bytes())
    tried = 0
    for where in _leaf_paths(original):
        if where == ("checksum",):
            continue
        for bad in _bad_values():
            data = json.loads(json.dumps(original))
            node = data
            for key in where[:-1]:
                node = node[key]
            node[where[-1]] = bad
            _rewrite(path, data, fix_checksum=True)
            try:
                load_token(path, clock)
            except CorruptStateError:
                pass
            tried += 1
    assert tried > 200


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nesting deeper than the parser's stack
        (b'{"saved_at_ns": ' + b"9" * 5000 + b"}", "not valid JSON"),  # beyond Python's int-to-string limit
        (b"\xff\xfe{}", "not valid JSON"),
        (b" " * (statefile.MAX_TOKEN_FILE_BYTES + 1), "more than"),
    ],
    ids=["deep", "huge-int", "not-utf8", "too-big"],
)
def test_hostile_files_are_refused_before_parsing_work(tmp_path, raw, words) -> None:
    path = tmp_path / "fob.token"
    path.write_bytes(raw)
    for read in (lambda: statefile.saved_time_ns(path), lambda: load_token(path, SimulatedClock(T0))):
        with pytest.raises(CorruptStateError, match=words):
            read()


def test_a_fifo_or_a_folder_is_refused_without_blocking(tmp_path) -> None:
    fifo = tmp_path / "fifo.token"
    os.mkfifo(fifo)
    with pytest.raises(StorageError, match="not a regular file"):
        load_token(fifo, SimulatedClock(T0))  # opened non-blocking: no writer needed
    with pytest.raises(StorageError):
        load_token(tmp_path, SimulatedClock(T0))


def test_saved_time_is_the_tokens_own_time_never_before_its_last_press(tmp_path) -> None:
    path, token, clock = make_file(tmp_path)
    token.long_press()  # simulated: the hold ends 6.1 s after the clock's now
    save_token(token, path)
    data = statefile.read_token_data(path)
    assert data["saved_at_ns"] == token.now_ns() > clock.now_ns()
    assert data["saved_at_ns"] >= load_token(path, clock).battery.last_event_ns
