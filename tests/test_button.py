"""The button: debounce, short and long presses, the press counter, time, persistence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.button import (
    DEBOUNCE_NS,
    DEFAULT_PRESS_HOLD_NS,
    LONG_PRESS_NS,
    Button,
    ButtonEvent,
)
from vtoken.errors import CorruptStateError, DeviceStateError, InvalidInputError, InvalidTimeError

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000  # an arbitrary epoch time in ns

PRESS = ButtonEvent.PRESS
LONG = ButtonEvent.LONG_PRESS


def test_constants() -> None:
    assert DEBOUNCE_NS == 20 * MS
    assert LONG_PRESS_NS == 6_000 * MS
    assert DEFAULT_PRESS_HOLD_NS == 100 * MS


# --- short presses and debounce -------------------------------------------------------


def test_short_press_is_reported_on_release() -> None:
    b = Button()
    assert b.down(T0) == []
    assert b.is_down
    assert b.up(T0 + 100 * MS) == [PRESS]
    assert not b.is_down
    assert b.press_count == 1


def test_bounce_on_press_counts_once() -> None:
    b = Button()
    events = b.down(T0) + b.up(T0 + 2 * MS) + b.down(T0 + 4 * MS) + b.up(T0 + 6 * MS) + b.down(T0 + 8 * MS)
    assert events == []
    assert b.is_down
    events = b.up(T0 + 100 * MS) + b.down(T0 + 102 * MS) + b.up(T0 + 105 * MS)  # bounce on release too
    assert events == [PRESS]
    assert b.poll(T0 + 500 * MS) == []
    assert b.press_count == 1


def test_bounce_burst_alone_counts_once_when_it_settles() -> None:
    """down/up/down/up within a few ms, contact ends open: one press, seen once the lockout ends."""
    b = Button()
    assert b.down(T0) + b.up(T0 + 2 * MS) + b.down(T0 + 4 * MS) + b.up(T0 + 6 * MS) == []
    assert b.is_down  # the lockout has not ended yet
    assert b.poll(T0 + DEBOUNCE_NS - 1) == []
    assert b.poll(T0 + DEBOUNCE_NS) == [PRESS]
    assert not b.is_down
    assert b.poll(T0 + 10 * DEBOUNCE_NS) == []
    assert b.press_count == 1


def test_settled_release_is_reported_by_the_next_edge_too() -> None:
    b = Button()
    b.down(T0)
    b.up(T0 + 5 * MS)  # bounce: ignored for now
    assert b.down(T0 + 1_000 * MS) == [PRESS]  # the settled release, then a new press
    assert b.is_down
    assert b.up(T0 + 1_100 * MS) == [PRESS]
    assert b.press_count == 2


def test_two_presses_30ms_apart_count_twice() -> None:
    b = Button()
    events = b.press(T0, hold_ns=DEBOUNCE_NS + MS)  # released at 21 ms
    events += b.press(T0 + 51 * MS, hold_ns=DEBOUNCE_NS + MS)  # pressed again 30 ms later
    assert events == [PRESS, PRESS]
    assert b.press_count == 2


def test_edge_exactly_at_debounce_is_accepted() -> None:
    b = Button()
    b.down(T0)
    assert b.up(T0 + DEBOUNCE_NS) == [PRESS]


def test_edge_just_inside_debounce_is_bounce() -> None:
    b = Button()
    b.down(T0)
    assert b.up(T0 + DEBOUNCE_NS - 1) == []
    assert b.is_down


def test_repeated_level_is_a_no_op() -> None:
    b = Button()
    b.down(T0)
    assert b.down(T0 + 50 * MS) == []
    assert b.up(T0 + 100 * MS) == [PRESS]
    assert b.up(T0 + 200 * MS) == []
    assert b.press_count == 1


def test_poll_while_up_reports_nothing() -> None:
    b = Button()
    assert b.poll(T0) == []
    assert b.poll(T0 + 10 * LONG_PRESS_NS) == []


# --- long presses ----------------------------------------------------------------------


def test_long_press_threshold_exactly_six_seconds() -> None:
    b = Button()
    b.down(T0)
    assert b.up(T0 + LONG_PRESS_NS) == [LONG]
    b.down(T0 + 10 * LONG_PRESS_NS)
    assert b.up(T0 + 11 * LONG_PRESS_NS - 1) == [PRESS]
    assert b.press_count == 2


def test_poll_reports_long_press_while_held_exactly_once() -> None:
    b = Button()
    b.down(T0)
    assert b.poll(T0 + LONG_PRESS_NS - 1) == []
    assert b.is_down
    assert b.poll(T0 + LONG_PRESS_NS) == [LONG]
    assert b.poll(T0 + LONG_PRESS_NS + 1) == []
    assert b.poll(T0 + 3 * LONG_PRESS_NS) == []
    assert b.up(T0 + 4 * LONG_PRESS_NS) == []  # no PRESS after a long hold, no second LONG_PRESS
    assert b.press_count == 1


def test_each_hold_gives_its_own_long_press() -> None:
    b = Button()
    assert b.long_press(T0) == [LONG]
    assert b.long_press(T0 + 2 * LONG_PRESS_NS) == [LONG]
    assert b.press_count == 2


def test_long_press_convenience() -> None:
    b = Button()
    assert b.long_press(T0) == [LONG]
    assert not b.is_down
    assert b.press_count == 1


def test_long_press_seen_by_a_later_edge() -> None:
    """A hold that crossed the threshold unpolled is still reported once, at release."""
    b = Button()
    b.down(T0)
    assert b.up(T0 + 7 * LONG_PRESS_NS) == [LONG]


def test_settled_press_then_long_hold() -> None:
    """A contact that bounced closed settles down, and the hold is timed from the settled edge."""
    b = Button()
    b.down(T0)
    b.up(T0 + 20 * MS)  # accepted: a 20 ms press
    b.down(T0 + 25 * MS)  # bounce ... contact stays closed
    assert b.poll(T0 + 40 * MS) == []  # settles down at 40 ms
    assert b.is_down
    assert b.poll(T0 + 40 * MS + LONG_PRESS_NS - 1) == []
    assert b.poll(T0 + 40 * MS + LONG_PRESS_NS) == [LONG]
    assert b.press_count == 2


# --- conveniences and errors -----------------------------------------------------------


def test_press_convenience() -> None:
    b = Button()
    assert b.press(T0) == [PRESS]
    assert b.press(T0 + 1_000 * MS, hold_ns=2_000 * MS) == [PRESS]
    assert b.press_count == 2


@pytest.mark.parametrize("hold", [-1, 0, DEBOUNCE_NS - 1, 1.5, True])
def test_press_rejects_a_bad_hold(hold: object) -> None:
    with pytest.raises(InvalidInputError):
        Button().press(T0, hold_ns=hold)  # type: ignore[arg-type]


def test_press_while_held_is_refused() -> None:
    b = Button()
    b.down(T0)
    with pytest.raises(DeviceStateError):
        b.press(T0 + 100 * MS)
    with pytest.raises(DeviceStateError):
        b.long_press(T0 + 100 * MS)


def test_time_going_backwards_is_refused() -> None:
    b = Button()
    b.press(T0)  # last time seen: T0 + 100 ms
    for call in (b.down, b.up, b.poll, b.press, b.long_press):
        with pytest.raises(InvalidTimeError):
            call(T0 + 99 * MS)
    assert b.poll(T0 + 100 * MS) == []  # the same time is fine
    assert b.press_count == 1


@pytest.mark.parametrize("bad", [-1, 1.0, "1", None, True])
def test_bad_times_are_refused(bad: object) -> None:
    with pytest.raises(InvalidTimeError):
        Button().down(bad)  # type: ignore[arg-type]


def test_invalid_time_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Button().poll(-5)


# --- persistence ---------------------------------------------------------------------------


def _roundtrip(b: Button) -> Button:
    d = b.to_dict()
    restored = Button.from_dict(json.loads(json.dumps(d)))
    assert restored.to_dict() == d
    return restored


def test_roundtrip_fresh() -> None:
    b = _roundtrip(Button())
    assert b.press_count == 0 and not b.is_down


def test_roundtrip_mid_hold_keeps_behaviour() -> None:
    b = Button()
    b.press(T0)
    b.down(T0 + 1_000 * MS)
    restored = _roundtrip(b)
    assert restored.is_down and restored.press_count == 1
    with pytest.raises(InvalidTimeError):
        restored.poll(T0)
    assert restored.poll(T0 + 1_000 * MS + LONG_PRESS_NS) == [LONG]
    restored = _roundtrip(restored)
    assert restored.up(T0 + 20_000 * MS) == []
    assert restored.press_count == 2


def test_roundtrip_with_pending_bounce() -> None:
    b = Button()
    b.down(T0)
    b.up(T0 + 3 * MS)
    restored = _roundtrip(b)
    assert restored.poll(T0 + DEBOUNCE_NS) == [PRESS]


@pytest.mark.parametrize(
    "patch",
    [
        {"press_count": -1},
        {"press_count": "3"},
        {"is_down": 1},
        {"is_down": True},  # down without a start time
        {"long_reported": True},  # while up
        {"last_edge_ns": T0 + 200 * MS},  # after the last time seen
        {"extra": 1},
    ],
)
def test_from_dict_rejects_damage(patch: dict) -> None:
    b = Button()
    b.press(T0)
    d = {**b.to_dict(), **patch}
    with pytest.raises(CorruptStateError):
        Button.from_dict(d)


def test_from_dict_rejects_non_dicts_and_missing_keys() -> None:
    d = Button().to_dict()
    del d["press_count"]
    for bad in (None, [], d):
        with pytest.raises(CorruptStateError):
            Button.from_dict(bad)


# --- properties -------------------------------------------------------------------------------

_ACTIONS = st.lists(
    st.tuples(st.sampled_from(["down", "up", "poll"]), st.integers(min_value=0, max_value=8_000 * MS)),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_ACTIONS)
def test_restoring_anywhere_never_changes_events(actions: list[tuple[str, int]]) -> None:
    """Save/restore between any two calls is invisible; each hold yields at most one event."""
    plain, saved = Button(), Button()
    now = T0
    events: list[ButtonEvent] = []
    for name, gap in actions:
        now += gap
        got = getattr(plain, name)(now)
        saved = Button.from_dict(json.loads(json.dumps(saved.to_dict())))
        assert getattr(saved, name)(now) == got
        events += got
    assert plain.to_dict() == saved.to_dict()
    assert plain.press_count == len(events)
    downs = sum(1 for name, _ in actions if name == "down")
    assert len(events) <= downs
