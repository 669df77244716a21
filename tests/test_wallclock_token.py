"""A served token on a real clock never runs ahead of it (issue 14 #8), with injected clocks: no sleeping.

The core token holds a press from its clock's now to a hold later and its time
is never before its last button event, so on a real clock a long press put it
6.1 s ahead and froze it until the wall caught up; the token file then
recorded an event "in the future" and ``vtoken codes --state`` refused it.
:class:`host.wallclock.WallClockToken` presses the hold that has just ended.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware_sim.button import DEBOUNCE_NS
from firmware_sim.device import DeviceController
from firmware_sim.factory import Physics, manufacture
from firmware_sim.models import get_model
from firmware_sim.statefile import load_token, read_token_data, save_token
from firmware_sim.token import MENU_DISPLAY_NS, PRESS_HOLD_NS, Token
from host.cli.main import main
from host.timearg import format_time_ns
from host.wallclock import LONG_PRESS_HOLD_NS, SystemClock, WallClockToken
from vtoken import wire
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import DeviceStateError
from vtoken.oath import hotp, totp
from vtoken.wire import Command, Status

SEED = b"12345678901234567890"
#: 2026-01-01T00:00:00Z
WALL_NS = 1_767_225_600 * NS_PER_SECOND


class FakeTime:
    """Injectable wall and monotonic clocks that move only when told."""

    def __init__(self) -> None:
        self.wall_ns = WALL_NS
        self.mono_ns = 5_000

    def wall(self) -> int:
        return self.wall_ns

    def monotonic(self) -> int:
        return self.mono_ns

    def sleep(self, ns: int) -> None:
        self.wall_ns += ns
        self.mono_ns += ns


def _made(model: str = "totp30") -> Token:
    factory = SimulatedClock(WALL_NS - 3600 * NS_PER_SECOND)
    return manufacture(model=get_model(model), seed=SEED, serial="1000000005", device_key=os.urandom(32),
                       clock=factory, physics=Physics(ppm=0))


def served(fake: FakeTime, model: str = "totp30", speed: int = 1) -> tuple[WallClockToken, SystemClock]:
    """The token as `vtoken serve` runs it in real time: on a SystemClock, pressed the wall-clock way."""
    clock = SystemClock(speed, wall=fake.wall, monotonic=fake.monotonic)
    made = _made(model)
    made.clock = clock
    return WallClockToken.following(made), clock


def test_core_token_on_a_real_clock_runs_ahead_after_a_long_press() -> None:
    """The cause, kept as a record: the plain Token leads its clock by the hold until the clock catches up."""
    fake = FakeTime()
    token, clock = served(fake)
    plain = Token(model=token.model, flash=token.flash, device_key=token.device_key, rtc=token.rtc,
                  battery=token.battery, clock=clock)
    plain.long_press()
    lead = plain.now_ns() - clock.now_ns()
    assert lead == LONG_PRESS_HOLD_NS + DEBOUNCE_NS  # 6.12 s ahead (the hold, then the release settling)
    assert plain.device_time_ns() - plain.rtc.device_time_ns(clock.now_ns()) == lead  # the clock it shows, too


def test_long_press_leaves_the_token_on_the_wall_clock() -> None:
    fake = FakeTime()
    token, clock = served(fake)
    fake.sleep(10 * NS_PER_SECOND)
    shown = token.long_press()
    assert shown  # the info menu
    assert token.now_ns() == clock.now_ns()
    assert token.device_time_ns() == token.rtc.device_time_ns(clock.now_ns())
    assert token.battery.last_event_ns <= clock.now_ns()
    fake.sleep(NS_PER_SECOND)
    assert token.now_ns() == clock.now_ns()  # runs on with the wall clock, never frozen


def test_a_press_shows_the_code_of_now_and_leaves_no_lead() -> None:
    fake = FakeTime()
    token, clock = served(fake)
    fake.sleep(10 * NS_PER_SECOND)
    code = token.press()
    assert code == totp(SEED, clock.now_ns() // NS_PER_SECOND)
    assert token.now_ns() == clock.now_ns()


def test_a_press_while_the_button_is_still_held_is_refused_then_allowed() -> None:
    fake = FakeTime()
    token, clock = served(fake, "hotp")
    fake.sleep(10 * NS_PER_SECOND)
    token.long_press()
    fake.sleep(NS_PER_SECOND)
    with pytest.raises(DeviceStateError, match=r"button busy: a long press holds it 6.1 s.*try again in 5\d\d\d ms"):
        token.long_press()
    fake.sleep(LONG_PRESS_HOLD_NS - NS_PER_SECOND + DEBOUNCE_NS)
    assert token.long_press()  # the next menu item
    with pytest.raises(DeviceStateError, match="button busy: a press holds it 0.1 s"):
        token.press()
    fake.sleep(PRESS_HOLD_NS + DEBOUNCE_NS)
    assert token.press() == hotp(SEED, 0)
    assert token.now_ns() == clock.now_ns()


def test_a_sped_up_clock_is_followed_too() -> None:
    fake = FakeTime()
    token, clock = served(fake, speed=60)
    fake.sleep(NS_PER_SECOND)  # a minute of token time
    token.long_press()  # a 6.1 s hold is 0.1 s of wall time here
    assert token.now_ns() == clock.now_ns()


def _ask(device: DeviceController, seq: int, command: Command) -> wire.Response:
    (reply,) = wire.FrameReader().feed(device.feed(wire.encode_request(seq, command)))
    return wire.decode_response(reply)


def test_over_the_wire_the_refusal_is_a_wrong_state_nak_that_fits() -> None:
    fake = FakeTime()
    token, _ = served(fake)
    fake.sleep(10 * NS_PER_SECOND)
    device = DeviceController(token)
    first = _ask(device, 1, Command.LONG_PRESS)
    assert first.ok
    second = _ask(device, 2, Command.LONG_PRESS)
    assert second.status is Status.WRONG_STATE
    assert second.message.startswith("button busy") and second.message.endswith(" ms")  # not cut short
    assert len(second.message) < wire.MAX_MESSAGE_LENGTH


def test_the_saved_file_is_never_in_the_future_and_codes_state_reads_it_at_once(tmp_path: Path) -> None:
    fake = FakeTime()
    token, clock = served(fake)
    fake.sleep(10 * NS_PER_SECOND)
    token.long_press()
    fake.sleep(NS_PER_SECOND)
    token.press()
    path = tmp_path / "fob.token"
    save_token(token, path)
    saved = read_token_data(path)["saved_at_ns"]
    assert saved == clock.now_ns()
    assert load_token(path, SimulatedClock(saved)).battery.last_event_ns <= saved
    # `vtoken codes --state` at that very moment (what "now" was when the server stopped): accepted.
    result = CliRunner().invoke(main, ["codes", "--state", str(path), "--at", format_time_ns(saved)])
    assert result.exit_code == 0, result.output


def test_the_menu_stays_up_for_its_display_time_after_a_back_dated_long_press() -> None:
    fake = FakeTime()
    token, clock = served(fake)
    fake.sleep(10 * NS_PER_SECOND)
    shown = token.long_press()
    fake.sleep(MENU_DISPLAY_NS - NS_PER_SECOND)
    assert token.display.text(clock.now_ns()) == shown
