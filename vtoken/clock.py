"""Clocks: where "true time" comes from.

Time everywhere in vtoken is an integer number of nanoseconds since the Unix
epoch. The core never reads the wall clock; it asks an injected :class:`Clock`.
:class:`SimulatedClock` is the clock for tests and simulations (it moves only
when told to). The one adapter that reads the machine's clock,
:class:`host.wallclock.SystemClock`, lives at the edge with the CLI.

The helpers :func:`exact_fraction`, :func:`check_time_ns` and
:func:`seconds_to_ns` keep user-supplied numbers exact: a float such as
``-0.034`` becomes ``Fraction(-17, 500)``, not its binary approximation.
"""

from __future__ import annotations

import math
import numbers
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

from vtoken.errors import InvalidConfigError, InvalidInputError, InvalidTimeError

NS_PER_SECOND = 1_000_000_000
NS_PER_HOUR = 3_600 * NS_PER_SECOND
SECONDS_PER_DAY = 86_400
NS_PER_DAY = SECONDS_PER_DAY * NS_PER_SECOND
#: A "year" in drift and battery figures: 365 days exactly.
DAYS_PER_YEAR = 365
SECONDS_PER_YEAR = DAYS_PER_YEAR * SECONDS_PER_DAY
NS_PER_YEAR = SECONDS_PER_YEAR * NS_PER_SECOND


def exact_fraction(value: Any, what: str, error: type[InvalidInputError] = InvalidConfigError) -> Fraction:
    """Convert a number to an exact :class:`Fraction`.

    Floats go through their shortest decimal repr (``Fraction(str(x))``), so
    ``0.1`` means one tenth. Strings may be decimals or ``"p/q"``. Booleans,
    NaN, infinities and non-numbers raise ``error`` naming ``what``.
    """
    if isinstance(value, bool):
        raise error(f"{what} must be a number, not a boolean")
    try:
        if isinstance(value, Fraction):
            return value
        if isinstance(value, numbers.Integral):
            return Fraction(int(value))
        if isinstance(value, float):
            if not math.isfinite(value):
                raise error(f"{what} must be finite, not {value}")
            return Fraction(str(value))
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise error(f"{what} must be finite, not {value}")
            return Fraction(value)
        if isinstance(value, numbers.Rational):
            return Fraction(value.numerator, value.denominator)
        if isinstance(value, str):
            return Fraction(value.strip())
    except (ValueError, ZeroDivisionError, OverflowError):
        raise error(f"{what} must be a number, not {value!r}") from None
    raise error(f"{what} must be a number, not {type(value).__name__}")


def check_time_ns(value: Any, what: str = "time") -> int:
    """Validate a time in integer nanoseconds since the epoch (not negative) and return it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTimeError(f"{what} must be an integer number of nanoseconds, not {type(value).__name__}")
    if value < 0:
        raise InvalidTimeError(f"{what} must not be negative, got {value}")
    return int(value)


def seconds_to_ns(seconds: Any, what: str = "seconds") -> int:
    """Convert a number of seconds (int, Fraction, decimal str or float) to integer ns, exactly.

    Raises :class:`InvalidTimeError` if the value is not a whole number of
    nanoseconds (for example ``Fraction(1, 3)``), rather than rounding silently.
    """
    ns = exact_fraction(seconds, what, InvalidTimeError) * NS_PER_SECOND
    if ns.denominator != 1:
        raise InvalidTimeError(f"{what} {seconds!r} is not a whole number of nanoseconds")
    return ns.numerator


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the true time."""

    def now_ns(self) -> int:
        """The true time, in integer nanoseconds since the Unix epoch."""
        ...


class SimulatedClock:
    """A clock that moves only when told to, forward only, exactly (integers)."""

    __slots__ = ("_now",)

    def __init__(self, start_ns: int = 0) -> None:
        self._now = check_time_ns(start_ns, "start time")

    def now_ns(self) -> int:
        """The current simulated time."""
        return self._now

    def advance(self, ns: int) -> int:
        """Move forward by ``ns`` nanoseconds (0 allowed); return the new time."""
        if isinstance(ns, bool) or not isinstance(ns, numbers.Integral):
            raise InvalidTimeError(f"a clock advances by an integer number of nanoseconds, not {type(ns).__name__}")
        if ns < 0:
            raise InvalidTimeError(f"a clock cannot go backwards (advance by {ns} ns)")
        self._now += int(ns)
        return self._now

    def advance_seconds(self, seconds: int | Fraction | str | float) -> int:
        """Move forward by an exact number of seconds; return the new time.

        ``seconds`` must be a whole number of nanoseconds (``"0.1"`` is fine,
        ``Fraction(1, 3)`` is refused).
        """
        return self.advance(seconds_to_ns(seconds))

    def set(self, ns: int) -> int:
        """Jump to time ``ns``, which must not be before the current time; return it."""
        ns = check_time_ns(ns)
        if ns < self._now:
            raise InvalidTimeError(f"a clock cannot go backwards (from {self._now} to {ns})")
        self._now = ns
        return ns

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {"now_ns": self._now}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimulatedClock:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(d["now_ns"])
        except (KeyError, TypeError):
            raise InvalidTimeError("simulated clock data must be a mapping with 'now_ns'") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SimulatedClock):
            return NotImplemented
        return self._now == other._now

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"SimulatedClock({self._now})"
