"""The wall clock, read only at the edges (CLI, transports), never in the core."""

from __future__ import annotations

import time
from collections.abc import Callable
from fractions import Fraction

from vtoken.clock import check_time_ns, exact_fraction
from vtoken.errors import InvalidConfigError


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
