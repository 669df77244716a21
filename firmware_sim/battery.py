"""The token's coin cell.

A new cell holds charge for ``capacity_years`` of standby (365-day years) or
``capacity_presses`` button presses; the fraction used is::

    elapsed standby / capacity time  +  presses / capacity presses

so standby drains it linearly and each press costs a fixed 1/capacity_presses.
Either capacity may be ``None`` (that drain is switched off, handy for long
drift simulations). The level is exact (:class:`~fractions.Fraction`), clamped
to [0, 1]; the battery is dead at level 0.

The state is a reference point "at true time ``ref_ns`` the level was
``ref_level``", moved by every press and by :meth:`Battery.set_level`.
Events and queries must come in time order: a time before the last recorded
event raises :class:`~vtoken.errors.InvalidTimeError`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from vtoken.clock import NS_PER_YEAR, check_time_ns, exact_fraction
from vtoken.errors import BatteryDeadError, InvalidConfigError, InvalidTimeError

DEFAULT_CAPACITY_YEARS = 5
DEFAULT_CAPACITY_PRESSES = 14_000
#: At or below this level the token shows its low-battery sign.
LOW_BATTERY_LEVEL = Fraction(1, 10)
FULL = Fraction(1)
EMPTY = Fraction(0)
MAX_CAPACITY_YEARS = 100
MAX_CAPACITY_PRESSES = 10**9


def _check_capacity_years(value: Any) -> Fraction | None:
    if value is None:
        return None
    years = exact_fraction(value, "battery capacity (years)", InvalidConfigError)
    if not 0 < years <= MAX_CAPACITY_YEARS:
        raise InvalidConfigError(f"battery capacity must be more than 0 and at most {MAX_CAPACITY_YEARS} years, not {value}")
    return years


def _check_capacity_presses(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidConfigError(f"battery capacity in presses must be an integer, not {type(value).__name__}")
    if not 0 < value <= MAX_CAPACITY_PRESSES:
        raise InvalidConfigError(f"battery capacity must be 1 to {MAX_CAPACITY_PRESSES} presses, not {value}")
    return int(value)


def _check_level(value: Any) -> Fraction:
    level = exact_fraction(value, "battery level", InvalidConfigError)
    if not EMPTY <= level <= FULL:
        raise InvalidConfigError(f"battery level must be between 0 and 1, not {value}")
    return level


class Battery:
    """A coin cell drained by standby time and by button presses."""

    def __init__(
        self,
        capacity_years: int | float | Fraction | str | None = DEFAULT_CAPACITY_YEARS,
        capacity_presses: int | None = DEFAULT_CAPACITY_PRESSES,
        installed_ns: int = 0,
        *,
        presses: int = 0,
        ref_ns: int | None = None,
        ref_level: int | float | Fraction | str = FULL,
    ) -> None:
        self._capacity_years = _check_capacity_years(capacity_years)
        self._capacity_presses = _check_capacity_presses(capacity_presses)
        self._installed = check_time_ns(installed_ns, "battery installation time")
        if isinstance(presses, bool) or not isinstance(presses, numbers.Integral) or presses < 0:
            raise InvalidConfigError(f"press count must be a non-negative integer, not {presses!r}")
        self._presses = int(presses)
        self._ref_ns = check_time_ns(self._installed if ref_ns is None else ref_ns, "battery reference time")
        if self._ref_ns < self._installed:
            raise InvalidTimeError("battery reference time is before its installation")
        self._ref_level = _check_level(ref_level)

    # --- read-only state ---------------------------------------------------------------

    @property
    def capacity_years(self) -> Fraction | None:
        """Standby life of a full cell in 365-day years (None: standby is free)."""
        return self._capacity_years

    @property
    def capacity_presses(self) -> int | None:
        """Presses a full cell lasts (None: presses are free)."""
        return self._capacity_presses

    @property
    def installed_ns(self) -> int:
        """True time the cell was fitted."""
        return self._installed

    @property
    def presses(self) -> int:
        """Presses recorded since installation."""
        return self._presses

    @property
    def last_event_ns(self) -> int:
        """True time of the last recorded event (install, press, level set); earlier times are refused."""
        return self._ref_ns

    @property
    def press_cost(self) -> Fraction:
        """The level one press uses (1 / capacity_presses, or 0)."""
        return EMPTY if self._capacity_presses is None else Fraction(1, self._capacity_presses)

    # --- queries -------------------------------------------------------------------------

    def _check_order(self, true_ns: int) -> int:
        true_ns = check_time_ns(true_ns)
        if true_ns < self._ref_ns:
            raise InvalidTimeError(f"time {true_ns} is before the battery's last recorded event at {self._ref_ns}")
        return true_ns

    def _standby_ns(self) -> Fraction | None:
        return None if self._capacity_years is None else self._capacity_years * NS_PER_YEAR

    def level(self, true_ns: int) -> Fraction:
        """The charge left at ``true_ns``, exactly, in [0, 1]."""
        true_ns = self._check_order(true_ns)
        standby = self._standby_ns()
        drained = EMPTY if standby is None else (true_ns - self._ref_ns) / standby
        return max(EMPTY, self._ref_level - drained)

    def is_low(self, true_ns: int) -> bool:
        """True at or below :data:`LOW_BATTERY_LEVEL` (10 %), dead included."""
        return self.level(true_ns) <= LOW_BATTERY_LEVEL

    def is_dead(self, true_ns: int) -> bool:
        """True once the level has reached 0."""
        return self.level(true_ns) == EMPTY

    def death_ns(self, true_ns: int) -> int | None:
        """The true time the cell died or will die, given the presses recorded so far.

        It is the first integer ns at which the level is 0, so
        ``is_dead(t) == (t >= death_ns(...))``. If a press (or set_level)
        emptied the cell, that is the time of the event. ``None`` if it never
        dies (standby drain off and not yet empty). ``true_ns`` is the time of
        the question, checked to be in order; the answer may lie before it.
        """
        self._check_order(true_ns)
        if self._ref_level == EMPTY:
            return self._ref_ns
        standby = self._standby_ns()
        if standby is None:
            return None
        return self._ref_ns + math.ceil(self._ref_level * standby)

    # --- events --------------------------------------------------------------------------

    def record_press(self, true_ns: int) -> None:
        """A button press at ``true_ns`` costs 1/capacity_presses; BatteryDeadError if already dead.

        A press that takes more than is left empties the cell at that moment.
        """
        true_ns = self._check_order(true_ns)
        left = self.level(true_ns)
        if left == EMPTY:
            raise BatteryDeadError("the battery is dead")
        self._ref_level = max(EMPTY, left - self.press_cost)
        self._ref_ns = true_ns
        self._presses += 1

    def set_level(self, true_ns: int, level: int | float | Fraction | str) -> None:
        """Simulation control: make the level at ``true_ns`` equal ``level`` (0 to 1)."""
        true_ns = self._check_order(true_ns)
        self._ref_level = _check_level(level)
        self._ref_ns = true_ns

    # --- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; round-trips exactly through :meth:`from_dict`."""
        return {
            "capacity_years": None if self._capacity_years is None else str(self._capacity_years),
            "capacity_presses": self._capacity_presses,
            "installed_ns": self._installed,
            "presses": self._presses,
            "ref_ns": self._ref_ns,
            "ref_level": str(self._ref_level),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Battery:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(
                capacity_years=d["capacity_years"],
                capacity_presses=d["capacity_presses"],
                installed_ns=d["installed_ns"],
                presses=d["presses"],
                ref_ns=d["ref_ns"],
                ref_level=d["ref_level"],
            )
        except (KeyError, TypeError):
            raise InvalidConfigError("battery data is missing fields or has the wrong types") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Battery):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"<Battery {self._capacity_years} years / {self._capacity_presses} presses, "
            f"level {float(self._ref_level):.4f} at {self._ref_ns}, {self._presses} presses>"
        )
