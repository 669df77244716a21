"""The token's real-time clock: a 32.768 kHz tuning-fork crystal that drifts.

The crystal's instantaneous fractional frequency error, in ppm, at true time t::

    ppm(t) = ppm_25                                   # error at 25 °C (+ = runs fast)
           + temp_coeff × (T(t) − turnover_c)²        # parabola, −0.034 ppm/°C² by default
           + aging_ppm_per_year × (t − factory_ns) / YEAR
           + calibration.ppm                          # STM32-style smooth calibration

and the RTC reads ``device(t) = ref_device + ∫_{ref_true}^{t} (1 + ppm(u)·10⁻⁶) du``.
The temperature profile is piecewise constant and, within one piece, ppm is
linear in t, so the integral is evaluated in closed form with exact
:class:`~fractions.Fraction` arithmetic: the cost grows with the number of
temperature steps in the interval, never with its length. The aging term is
linear over the whole interval, so it is integrated in one piece; the
temperature term is summed per distinct temperature.

YEAR is 365 days exactly. Aging extrapolates linearly before ``factory_ns`` too.
All times are integer nanoseconds since the Unix epoch; the reference device
time is kept as an exact Fraction, so rebasing (on a temperature, crystal or
calibration change) never loses or gains a fraction of a nanosecond.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from typing import Any

from vtoken.clock import NS_PER_SECOND, NS_PER_YEAR, check_time_ns, exact_fraction
from vtoken.errors import InvalidConfigError, InvalidTimeError

#: The crystal's nominal frequency, Hz.
NOMINAL_HZ = 32_768
#: Parts per million.
PPM = 1_000_000

#: Smooth calibration: the cycle length in crystal pulses (2^20 pulses = 32 s).
CALIBRATION_CYCLE_PULSES = 2**20
#: Pulses CALP adds per cycle.
CALP_PULSES = 512
#: CALM masks 0 to this many pulses per cycle.
MAX_CALM = 511
#: One calibration step in ppm (10^6 / 2^20 ≈ 0.9537).
CALIBRATION_STEP_PPM = Fraction(PPM, CALIBRATION_CYCLE_PULSES)
#: Net pulses per cycle the register can express: −511 … +512.
MIN_CALIBRATION_PULSES = -MAX_CALM
MAX_CALIBRATION_PULSES = CALP_PULSES

DEFAULT_TEMP_COEFF = Fraction(-34, 1000)
DEFAULT_TURNOVER_C = 25
#: Bounds that catch unit mistakes (Kelvin, Fahrenheit, ppb) and keep the rate positive.
MAX_ABS_PPM_25 = 1000
MAX_ABS_TEMP_COEFF = 1
MAX_ABS_AGING_PPM_PER_YEAR = 100
MIN_CELSIUS = -100
MAX_CELSIUS = 200


def _fraction_str(value: Fraction) -> str:
    return str(value)


def _parse_fraction(value: Any, what: str) -> Fraction:
    return exact_fraction(value, what, InvalidConfigError)


def _check_celsius(value: Any, what: str = "temperature") -> Fraction:
    celsius = _parse_fraction(value, what)
    if not MIN_CELSIUS <= celsius <= MAX_CELSIUS:
        raise InvalidConfigError(f"{what} must be between {MIN_CELSIUS} and {MAX_CELSIUS} °C, not {value}")
    return celsius


def _bounded(value: Any, what: str, limit: int) -> Fraction:
    number = _parse_fraction(value, what)
    if abs(number) > limit:
        raise InvalidConfigError(f"{what} must be within ±{limit}, not {value}")
    return number


# --- calibration ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Calibration:
    """An STM32-style smooth-calibration register.

    Over each 2^20-pulse (32 s) cycle, ``calm`` pulses (0–511) are masked and,
    if ``calp`` is set, 512 pulses are added, so the correction is
    ``(512·calp − calm) × 10^6 / 2^20`` ppm: steps of ≈0.9537 ppm from
    −487.3 to +488.3 ppm. (ST's reference manual quotes −487.1 … +488.5 ppm
    from a slightly different formula with the correction in the denominator;
    this model uses the linear one.)
    """

    calm: int = 0
    calp: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.calm, bool) or not isinstance(self.calm, int):
            raise InvalidConfigError(f"CALM must be an integer, not {type(self.calm).__name__}")
        if not 0 <= self.calm <= MAX_CALM:
            raise InvalidConfigError(f"CALM must be between 0 and {MAX_CALM}, not {self.calm}")
        if not isinstance(self.calp, bool):
            raise InvalidConfigError(f"CALP must be a boolean, not {type(self.calp).__name__}")

    @property
    def pulses(self) -> int:
        """Net pulses added per 2^20-pulse cycle (−511 … +512)."""
        return CALP_PULSES * int(self.calp) - self.calm

    @property
    def ppm(self) -> Fraction:
        """The frequency correction this setting applies, in ppm (exact)."""
        return self.pulses * CALIBRATION_STEP_PPM

    @classmethod
    def from_pulses(cls, pulses: int) -> Calibration:
        """The unique setting adding ``pulses`` net pulses per cycle (−511 … +512)."""
        if isinstance(pulses, bool) or not isinstance(pulses, int):
            raise InvalidConfigError(f"calibration pulses must be an integer, not {type(pulses).__name__}")
        if not MIN_CALIBRATION_PULSES <= pulses <= MAX_CALIBRATION_PULSES:
            raise InvalidConfigError(
                f"calibration pulses must be between {MIN_CALIBRATION_PULSES} and {MAX_CALIBRATION_PULSES}, not {pulses}"
            )
        if pulses <= 0:
            return cls(calm=-pulses, calp=False)
        return cls(calm=CALP_PULSES - pulses, calp=True)

    @classmethod
    def nearest(cls, ppm: Any, *, clamp: bool = False) -> Calibration:
        """The register setting whose correction is closest to ``ppm`` (ties: even pulse count).

        A correction beyond the register's range (by more than half a step)
        raises :class:`InvalidConfigError`, unless ``clamp`` picks the extreme.
        """
        wanted = _parse_fraction(ppm, "calibration ppm")
        pulses = round(wanted / CALIBRATION_STEP_PPM)
        if not MIN_CALIBRATION_PULSES <= pulses <= MAX_CALIBRATION_PULSES:
            if not clamp:
                low = MIN_CALIBRATION_PULSES * CALIBRATION_STEP_PPM
                high = MAX_CALIBRATION_PULSES * CALIBRATION_STEP_PPM
                raise InvalidConfigError(
                    f"calibration of {ppm} ppm is outside the register's range {float(low):.4f} … {float(high):.4f} ppm"
                )
            pulses = min(max(pulses, MIN_CALIBRATION_PULSES), MAX_CALIBRATION_PULSES)
        return cls.from_pulses(pulses)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {"calm": self.calm, "calp": self.calp}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(calm=d["calm"], calp=d["calp"])
        except (KeyError, TypeError):
            raise InvalidConfigError("calibration data must be a mapping with 'calm' and 'calp'") from None


# --- crystal -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CrystalParams:
    """A crystal's frequency behaviour; numbers are stored as exact Fractions.

    ``ppm_25``: error at 25 °C (+ runs fast). ``temp_coeff``: ppm/°C² of the
    parabola about ``turnover_c``. ``aging_ppm_per_year``: linear aging from
    the factory time. Floats and decimal strings are converted exactly.
    """

    ppm_25: Fraction = Fraction(0)
    temp_coeff: Fraction = DEFAULT_TEMP_COEFF
    turnover_c: Fraction = Fraction(DEFAULT_TURNOVER_C)
    aging_ppm_per_year: Fraction = Fraction(0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ppm_25", _bounded(self.ppm_25, "crystal ppm at 25 °C", MAX_ABS_PPM_25))
        object.__setattr__(
            self, "temp_coeff", _bounded(self.temp_coeff, "temperature coefficient (ppm/°C²)", MAX_ABS_TEMP_COEFF)
        )
        object.__setattr__(self, "turnover_c", _check_celsius(self.turnover_c, "turnover temperature"))
        object.__setattr__(
            self,
            "aging_ppm_per_year",
            _bounded(self.aging_ppm_per_year, "aging (ppm/year)", MAX_ABS_AGING_PPM_PER_YEAR),
        )

    def temperature_ppm(self, celsius: Any) -> Fraction:
        """The temperature term alone at ``celsius``: temp_coeff × (T − turnover)²."""
        return self.temp_coeff * (_check_celsius(celsius) - self.turnover_c) ** 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state (Fractions as strings)."""
        return {
            "ppm_25": _fraction_str(self.ppm_25),
            "temp_coeff": _fraction_str(self.temp_coeff),
            "turnover_c": _fraction_str(self.turnover_c),
            "aging_ppm_per_year": _fraction_str(self.aging_ppm_per_year),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CrystalParams:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(
                ppm_25=d["ppm_25"],
                temp_coeff=d["temp_coeff"],
                turnover_c=d["turnover_c"],
                aging_ppm_per_year=d["aging_ppm_per_year"],
            )
        except (KeyError, TypeError):
            raise InvalidConfigError("crystal data must be a mapping of ppm_25, temp_coeff, turnover_c, aging") from None


# --- temperature -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TemperatureProfile:
    """A piecewise-constant temperature over true time.

    ``steps`` are ``(true_ns, celsius)`` with strictly increasing times; each
    holds from its time until the next step. Before the first step (or always,
    if there are none) ``initial_c`` holds. Build with :meth:`constant` or
    :meth:`schedule`.
    """

    initial_c: Fraction
    steps: tuple[tuple[int, Fraction], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_c", _check_celsius(self.initial_c))
        checked: list[tuple[int, Fraction]] = []
        for item in self.steps:
            try:
                when, celsius = item
            except (TypeError, ValueError):
                raise InvalidConfigError("a temperature step must be a (true_ns, celsius) pair") from None
            when = check_time_ns(when, "temperature step time")
            if checked and when <= checked[-1][0]:
                raise InvalidConfigError("temperature step times must be strictly increasing")
            checked.append((when, _check_celsius(celsius)))
        object.__setattr__(self, "steps", tuple(checked))
        object.__setattr__(self, "_times", tuple(when for when, _ in checked))

    @classmethod
    def constant(cls, celsius: Any) -> TemperatureProfile:
        """The same temperature forever."""
        return cls(initial_c=celsius)

    @classmethod
    def schedule(cls, steps: Iterable[tuple[int, Any]]) -> TemperatureProfile:
        """Steps ``[(true_ns, celsius), ...]``; the first value also holds before its time."""
        items = list(steps)
        if not items:
            raise InvalidConfigError("a temperature schedule needs at least one step")
        try:
            first = items[0][1]
        except (TypeError, IndexError):
            raise InvalidConfigError("a temperature step must be a (true_ns, celsius) pair") from None
        return cls(initial_c=first, steps=tuple(items))  # type: ignore[arg-type]

    def celsius_at(self, true_ns: int) -> Fraction:
        """The temperature at true time ``true_ns``."""
        i = bisect.bisect_right(self._times, true_ns)  # type: ignore[attr-defined]
        return self.initial_c if i == 0 else self.steps[i - 1][1]

    def segments(self, start_ns: int, end_ns: int) -> Iterator[tuple[int, int, Fraction]]:
        """The constant pieces ``(from_ns, to_ns, celsius)`` covering [start_ns, end_ns), in order.

        Empty if ``end_ns <= start_ns``. Cost: log(steps) + pieces yielded.
        """
        if end_ns <= start_ns:
            return
        times: tuple[int, ...] = self._times  # type: ignore[attr-defined]
        i = bisect.bisect_right(times, start_ns)
        celsius = self.initial_c if i == 0 else self.steps[i - 1][1]
        here = start_ns
        while i < len(times) and times[i] < end_ns:
            yield here, times[i], celsius
            here, celsius = self.steps[i]
            i += 1
        yield here, end_ns, celsius

    def with_step(self, true_ns: int, celsius: Any) -> TemperatureProfile:
        """This profile until ``true_ns``, then ``celsius`` forever (later steps are dropped)."""
        true_ns = check_time_ns(true_ns, "temperature step time")
        value = _check_celsius(celsius)
        times: tuple[int, ...] = self._times  # type: ignore[attr-defined]
        kept = self.steps[: bisect.bisect_left(times, true_ns)]
        before = kept[-1][1] if kept else self.initial_c
        if value == before:
            return TemperatureProfile(self.initial_c, kept)
        return TemperatureProfile(self.initial_c, kept + ((true_ns, value),))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state: celsius values as Fraction strings."""
        return {
            "initial_c": _fraction_str(self.initial_c),
            "steps": [[when, _fraction_str(celsius)] for when, celsius in self.steps],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TemperatureProfile:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(initial_c=d["initial_c"], steps=tuple(tuple(step) for step in d["steps"]))  # type: ignore[misc]
        except (KeyError, TypeError):
            raise InvalidConfigError("temperature data must be a mapping with 'initial_c' and 'steps'") from None


# --- the RTC --------------------------------------------------------------------------------


class RTC:
    """The battery-backed RTC: reads device time as a function of true time.

    State: crystal, temperature profile, calibration, ``factory_ns`` (aging
    origin), a reference point "at true time ``ref_true_ns`` the RTC read
    ``ref_device``" (an exact Fraction of ns), and ``stopped_at_true_ns``.

    Mutators that change the physics (:meth:`set_temperature`,
    :meth:`set_crystal_ppm`, :meth:`set_calibration`) first rebase the
    reference to the given true time, so drift accumulated so far is kept;
    they must not be given a time before the reference (InvalidTimeError).
    Evaluating before the reference integrates backwards with the *current*
    parameters (exact if nothing changed in between).

    When stopped (battery dead) the device time is frozen at its value at the
    stop for all later true times; a dead RTC has lost time, but the frozen
    value is what it would resume from. :meth:`set_time` restarts it.
    """

    def __init__(
        self,
        crystal: CrystalParams | None = None,
        profile: TemperatureProfile | None = None,
        calibration: Calibration | None = None,
        *,
        factory_ns: int = 0,
        ref_true_ns: int | None = None,
        ref_device_ns: int | Fraction | str | None = None,
        stopped_at_true_ns: int | None = None,
    ) -> None:
        self._crystal = crystal if crystal is not None else CrystalParams()
        self._profile = profile if profile is not None else TemperatureProfile.constant(DEFAULT_TURNOVER_C)
        self._calibration = calibration if calibration is not None else Calibration()
        for name, value, kind in (
            ("crystal", self._crystal, CrystalParams),
            ("profile", self._profile, TemperatureProfile),
            ("calibration", self._calibration, Calibration),
        ):
            if not isinstance(value, kind):
                raise InvalidConfigError(f"{name} must be a {kind.__name__}, not {type(value).__name__}")
        self._factory_ns = check_time_ns(factory_ns, "factory time")
        self._ref_true = check_time_ns(self._factory_ns if ref_true_ns is None else ref_true_ns, "reference true time")
        if ref_device_ns is None:
            self._ref_device = Fraction(self._ref_true)
        else:
            self._ref_device = exact_fraction(ref_device_ns, "reference device time", InvalidTimeError)
            if self._ref_device < 0:
                raise InvalidTimeError(f"reference device time must not be negative, got {ref_device_ns}")
        self._stopped_at: int | None = None
        if stopped_at_true_ns is not None:
            self._stopped_at = check_time_ns(stopped_at_true_ns, "stop time")
            if self._stopped_at != self._ref_true:
                raise InvalidConfigError("a stopped RTC's reference must be at its stop time")

    # --- read-only state ---------------------------------------------------------------

    @property
    def crystal(self) -> CrystalParams:
        """The crystal's parameters."""
        return self._crystal

    @property
    def profile(self) -> TemperatureProfile:
        """The temperature profile."""
        return self._profile

    @property
    def calibration(self) -> Calibration:
        """The calibration register."""
        return self._calibration

    @property
    def factory_ns(self) -> int:
        """True time the crystal's aging counts from."""
        return self._factory_ns

    @property
    def ref_true_ns(self) -> int:
        """True time of the reference point."""
        return self._ref_true

    @property
    def ref_device(self) -> Fraction:
        """Exact device time (ns) at the reference point."""
        return self._ref_device

    @property
    def stopped_at_true_ns(self) -> int | None:
        """True time the RTC stopped (battery death), or None while it runs."""
        return self._stopped_at

    @property
    def running(self) -> bool:
        """False once the battery has stopped the RTC."""
        return self._stopped_at is None

    # --- physics -------------------------------------------------------------------------

    def ppm(self, true_ns: int) -> Fraction:
        """The instantaneous frequency error in ppm at ``true_ns`` (calibration included)."""
        true_ns = check_time_ns(true_ns)
        c = self._crystal
        aging = c.aging_ppm_per_year * Fraction(true_ns - self._factory_ns, NS_PER_YEAR)
        temp = c.temp_coeff * (self._profile.celsius_at(true_ns) - c.turnover_c) ** 2
        return c.ppm_25 + temp + aging + self._calibration.ppm

    def _integral(self, a: int, b: int) -> Fraction:
        """∫_a^b (1 + ppm(t)·10⁻⁶) dt in ns, exactly, for a <= b."""
        c = self._crystal
        span = b - a
        # ppm_25 and calibration: constant.
        ppm_ns = span * (c.ppm_25 + self._calibration.ppm)
        # Aging: linear in t over the whole interval, ∫ (t − F) dt = ((b−F)² − (a−F)²) / 2.
        if c.aging_ppm_per_year:
            fa, fb = a - self._factory_ns, b - self._factory_ns
            ppm_ns += c.aging_ppm_per_year * Fraction(fb * fb - fa * fa, 2 * NS_PER_YEAR)
        # Temperature: constant per piece; sum durations per distinct temperature first.
        if c.temp_coeff:
            durations: dict[Fraction, int] = {}
            for start, end, celsius in self._profile.segments(a, b):
                durations[celsius] = durations.get(celsius, 0) + (end - start)
            weighted = sum(((t - c.turnover_c) ** 2 * d for t, d in durations.items()), Fraction(0))
            ppm_ns += c.temp_coeff * weighted
        return span + ppm_ns / PPM

    def device_time_exact(self, true_ns: int) -> Fraction:
        """The device time at ``true_ns`` as an exact Fraction of ns."""
        true_ns = check_time_ns(true_ns)
        ref = self._ref_true
        if self._stopped_at is not None and true_ns >= self._stopped_at:
            return self._ref_device
        if true_ns >= ref:
            return self._ref_device + self._integral(ref, true_ns)
        return self._ref_device - self._integral(true_ns, ref)

    def device_time_ns(self, true_ns: int) -> int:
        """What the RTC reads at true time ``true_ns``, floored to an integer ns.

        Frozen at the stop value if the RTC is stopped and ``true_ns`` is at or
        after the stop.
        """
        return math.floor(self.device_time_exact(true_ns))

    def offset_ns(self, true_ns: int) -> int:
        """Device time minus true time at ``true_ns``."""
        return self.device_time_ns(true_ns) - true_ns

    def ticks(self, true_ns: int) -> int:
        """The free-running 32.768 kHz count at ``true_ns``: floor(device seconds since the epoch × 32768).

        Counted from device time 0 (the Unix epoch as the RTC sees it), so it
        does not jump on a rebase, only on :meth:`set_time`.
        """
        return math.floor(self.device_time_exact(true_ns) * NOMINAL_HZ / NS_PER_SECOND)

    def true_time_ns(self, device_ns: int) -> int:
        """The earliest true time ≥ the reference at which :meth:`device_time_ns` ≥ ``device_ns``.

        Returns the reference time if the RTC already reads that much there.
        Found by bisection on the exact closed form (about 64 evaluations).
        Raises InvalidTimeError if the RTC is stopped short of ``device_ns``.
        """
        device_ns = check_time_ns(device_ns, "device time")
        lo = self._ref_true
        if self.device_time_exact(lo) >= device_ns:
            return lo
        if self._stopped_at is not None:
            raise InvalidTimeError("the RTC is stopped and will never read that time")
        # Invariant: device(lo) < device_ns <= device(hi). The rate is close to 1, so start there.
        step = max(1, device_ns - math.floor(self._ref_device))
        hi = lo + step
        while self.device_time_exact(hi) < device_ns:
            lo, step = hi, step * 2
            hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.device_time_exact(mid) >= device_ns:
                hi = mid
            else:
                lo = mid
        return hi

    # --- changes ------------------------------------------------------------------------

    def _check_order(self, true_ns: int, what: str) -> int:
        true_ns = check_time_ns(true_ns)
        if true_ns < self._ref_true:
            raise InvalidTimeError(
                f"cannot {what} at {true_ns}: before the RTC's last change at {self._ref_true}"
            )
        return true_ns

    def _rebase(self, true_ns: int) -> None:
        """Move the reference to ``true_ns`` (keeps past drift). A stopped RTC stays at its stop."""
        if self._stopped_at is None:
            self._ref_device = self.device_time_exact(true_ns)
            self._ref_true = true_ns

    def set_time(self, true_ns: int, device_ns: int | Fraction) -> None:
        """Set the RTC to read ``device_ns`` at true time ``true_ns`` (TIME_SET); restarts a stopped RTC."""
        true_ns = check_time_ns(true_ns)
        device = exact_fraction(device_ns, "device time", InvalidTimeError)
        if device < 0:
            raise InvalidTimeError(f"device time must not be negative, got {device_ns}")
        self._ref_true = true_ns
        self._ref_device = device
        self._stopped_at = None

    def set_temperature(self, true_ns: int, celsius: Any) -> None:
        """From ``true_ns`` on, hold ``celsius`` (the profile's later steps are replaced)."""
        true_ns = self._check_order(true_ns, "change the temperature")
        profile = self._profile.with_step(true_ns, celsius)
        self._rebase(true_ns)
        self._profile = profile

    def set_profile(self, true_ns: int, profile: TemperatureProfile) -> None:
        """Replace the temperature profile from ``true_ns`` on (the past's drift is kept)."""
        true_ns = self._check_order(true_ns, "change the temperature profile")
        if not isinstance(profile, TemperatureProfile):
            raise InvalidConfigError(f"profile must be a TemperatureProfile, not {type(profile).__name__}")
        self._rebase(true_ns)
        self._profile = profile

    def set_crystal(self, true_ns: int, crystal: CrystalParams) -> None:
        """Replace the crystal's parameters from ``true_ns`` on."""
        true_ns = self._check_order(true_ns, "change the crystal")
        if not isinstance(crystal, CrystalParams):
            raise InvalidConfigError(f"crystal must be a CrystalParams, not {type(crystal).__name__}")
        self._rebase(true_ns)
        self._crystal = crystal

    def set_crystal_ppm(self, true_ns: int, ppm: Any) -> None:
        """From ``true_ns`` on, the crystal's error at 25 °C is ``ppm``."""
        self.set_crystal(true_ns, dataclasses.replace(self._crystal, ppm_25=ppm))

    def set_calibration(self, true_ns: int, calibration: Calibration) -> None:
        """From ``true_ns`` on, apply ``calibration``."""
        true_ns = self._check_order(true_ns, "change the calibration")
        if not isinstance(calibration, Calibration):
            raise InvalidConfigError(f"calibration must be a Calibration, not {type(calibration).__name__}")
        self._rebase(true_ns)
        self._calibration = calibration

    def stop(self, true_ns: int) -> None:
        """The battery died at ``true_ns``: the RTC stops; device time freezes at its value then.

        Idempotent once stopped. ``true_ns`` may lie before the last change
        (a battery found dead late); the frozen value is then integrated
        backwards with the current parameters.
        """
        true_ns = check_time_ns(true_ns)
        if self._stopped_at is not None:
            return
        self._ref_device = self.device_time_exact(true_ns)
        self._ref_true = true_ns
        self._stopped_at = true_ns

    # --- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state; round-trips exactly through :meth:`from_dict`."""
        return {
            "crystal": self._crystal.to_dict(),
            "profile": self._profile.to_dict(),
            "calibration": self._calibration.to_dict(),
            "factory_ns": self._factory_ns,
            "ref_true_ns": self._ref_true,
            "ref_device_ns": _fraction_str(self._ref_device),
            "stopped_at_true_ns": self._stopped_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RTC:
        """Rebuild from :meth:`to_dict` output."""
        try:
            return cls(
                crystal=CrystalParams.from_dict(d["crystal"]),
                profile=TemperatureProfile.from_dict(d["profile"]),
                calibration=Calibration.from_dict(d["calibration"]),
                factory_ns=d["factory_ns"],
                ref_true_ns=d["ref_true_ns"],
                ref_device_ns=d["ref_device_ns"],
                stopped_at_true_ns=d["stopped_at_true_ns"],
            )
        except (KeyError, TypeError):
            raise InvalidConfigError("RTC data is missing fields or has the wrong types") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RTC):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        state = "running" if self.running else f"stopped at {self._stopped_at}"
        return (
            f"<RTC ppm_25={self._crystal.ppm_25} calibration={self._calibration.ppm} ppm "
            f"ref=({self._ref_true}, {float(self._ref_device):.0f}) {state}>"
        )
