"""The wall clock, read only at the edges (CLI, transports), never in the core.

:class:`SystemClock` is the machine's clock (optionally sped up);
:class:`WallClockToken` is a token that lives on such a clock, as ``vtoken
serve`` runs one in real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction

from firmware_sim.button import DEBOUNCE_NS, LONG_PRESS_MARGIN_NS, LONG_PRESS_NS
from firmware_sim.token import PRESS_HOLD_NS, Token
from vtoken.clock import NS_PER_SECOND, check_time_ns, exact_fraction
from vtoken.errors import DeviceStateError, InvalidConfigError

NS_PER_MS = 1_000_000
#: How long a long press holds the button (the threshold plus the margin the button model adds).
LONG_PRESS_HOLD_NS = LONG_PRESS_NS + LONG_PRESS_MARGIN_NS


def wall_time_ns() -> int:
    """Nanoseconds since the Unix epoch, from the system clock."""
    return time.time_ns()


class SystemClock:
    """The machine's clock, optionally running ``speed`` times faster (the edge adapter).

    Time = ``start_ns`` (default: the wall clock at creation) + monotonic
    elapsed time since creation × ``speed``. Using the monotonic clock for the
    elapsed part means wall-clock steps (NTP, DST) never move it backwards.
    ``wall`` and ``monotonic`` are injectable so tests need not sleep.
    """

    __slots__ = ("_monotonic", "_mono_start", "_speed", "_start")

    def __init__(
        self,
        speed: float | Fraction | int | str = 1,
        *,
        start_ns: int | None = None,
        wall: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        rate = exact_fraction(speed, "clock speed", InvalidConfigError)
        if rate <= 0:
            raise InvalidConfigError(f"clock speed must be greater than 0, not {speed}")
        self._speed = rate
        self._monotonic = monotonic
        self._start = check_time_ns(wall() if start_ns is None else start_ns, "start time")
        self._mono_start = int(monotonic())

    @property
    def speed(self) -> Fraction:
        """How many simulated seconds pass per real second."""
        return self._speed

    def now_ns(self) -> int:
        """Start time plus scaled monotonic elapsed time (floored to an integer ns)."""
        elapsed = int(self._monotonic()) - self._mono_start
        return self._start + (elapsed * self._speed.numerator) // self._speed.denominator

    def __repr__(self) -> str:
        return f"SystemClock(speed={self._speed}, start_ns={self._start})"


class WallClockToken(Token):
    """A token whose clock is a real one (:class:`SystemClock`): its time never runs ahead of it.

    The core :class:`Token` starts a press at its clock's now and releases it a
    hold later (0.1 s, or 6.1 s for a long press), and its time is never before
    its last button event. That suits simulated time, which the host advances;
    a real clock cannot be advanced, so after a long press the token's time
    would lead the wall clock by 6.1 s and stand still until the wall caught up,
    and the token file would record events "in the future".

    Here a press is the hold that has just *ended*: released (and settled, after
    the debounce time) at the moment the command arrives, so every recorded
    event is at or before the clock's now and the code shown is the code of
    now. A press that cannot have happened because the button was still in use
    during that hold (a long press 2 s after the previous one) is refused with
    :class:`DeviceStateError` (NAK WRONG_STATE), saying when to try again.
    """

    @classmethod
    def following(cls, token: Token) -> WallClockToken:
        """The same token (sharing its flash, RTC, battery, button and display), pressed the wall-clock way."""
        return cls(
            model=token.model,
            flash=token.flash,
            device_key=token.device_key,
            rtc=token.rtc,
            battery=token.battery,
            clock=token.clock,
            button=token.button,
            display=token.display,
            menu_item=token.menu_item,
        )

    def press(self) -> str:
        """A 0.1 s press that ended now; return the digits displayed ('' if blank)."""
        now = self.clock.now_ns()
        for event in self.button.press(self._hold_start(now, PRESS_HOLD_NS, "press"), PRESS_HOLD_NS):
            self._handle(event, now)
        return self.display.text(now)

    def long_press(self) -> str:
        """A long press (6.1 s hold) that ended now; return the menu text displayed."""
        now = self.clock.now_ns()
        for event in self.button.long_press(self._hold_start(now, LONG_PRESS_HOLD_NS, "long press")):
            self._handle(event, now)
        return self.display.text(now)

    def _hold_start(self, now_ns: int, hold_ns: int, what: str) -> int:
        """When a hold of ``hold_ns`` that has settled by ``now_ns`` began; refuse if the button was busy then."""
        start = now_ns - DEBOUNCE_NS - hold_ns
        ready = self.button.ready_ns(start)
        if ready > start:
            wait_ms = -(-(ready - start) // NS_PER_MS)
            raise DeviceStateError(  # under the wire's 120-character NAK message limit
                f"button busy: a {what} holds it {hold_ns / NS_PER_SECOND:g} s, and it was still in use then; "
                f"try again in {wait_ms} ms"
            )
        return start
