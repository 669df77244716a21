"""A field scenario: a fleet of drifting tokens used for years, against the validator and a baseline.

A batch of tokens is made by ``firmware_sim`` on 2026-01-01: crystals off by up
to ±50 ppm at 25 °C, aging 1–3 ppm/year (either sign), and each token living
in a car (25 ± 20 °C over the seasons, ±8 °C day and night), in a pocket (30 °C
carried, 20 °C at night) or in a drawer (20 °C, a little seasonal). A fifth of
them leave the factory with the clock set minutes wrong. The fleet is imported
from its PSKC file; each token waits 30–540 days on a shelf, is registered
with two consecutive codes, and is then used for ``years`` years: daily on
weekdays (with vacations), weekly, monthly, or in bursts with 6–12 months away
("gappy"). Users type a code about 7 s after pressing (3 % of sessions 20–60 s
late), answer a next-code prompt by waiting for the code to change, and try
once more with a fresh code after a refusal.

Before every sign-in a random code is tried (false accepts are counted against
the expected number), the drift model's prediction is compared with the true
offset, and after every accept the code is replayed once. A privacyIDEA-style
baseline (a stored offset in seconds, window −6..+5 steps, ±1000-step two-code
resync at registration) gets the same codes at the same times.

The RTC integrates the temperature profile piecewise from its reference point,
so each sign-in first rebases the RTC to the present (:func:`rebase`): the
integrals then span only the time since the previous use, and the device time
is unchanged (exact Fractions; ``tests/test_drift_scenario.py`` checks it).

Run ``python -m tests.drift_scenario [--tokens N --years Y --seed S]`` for the tables:
one row per usage pattern, per temperature profile, and for on-time and late typists.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from firmware_sim.factory import Physics, manufacture
from firmware_sim.fleet import FleetSpec, build_pskc, derive_device_key, derive_seed
from firmware_sim.models import get_model
from firmware_sim.rtc import TemperatureProfile
from firmware_sim.token import Token
from validator.importer import import_file
from validator.kernel import PreparedKey, get_backend
from validator.memstore import MemoryStore
from validator.sealing import Keyring, generate_master_key
from validator.service import Reason, Result, TokenStatus, Validator
from vtoken.clock import NS_PER_DAY, NS_PER_HOUR, NS_PER_SECOND, NS_PER_YEAR, SimulatedClock
from vtoken.oath import format_code

# --- the run ---------------------------------------------------------------------------------

START_NS = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z
#: 2026-01-01 is a Thursday (Monday = 0).
START_WEEKDAY = 3
DAYS_PER_WEEK = 7
WORKDAYS = 5
DAYS_PER_YEAR = NS_PER_YEAR // NS_PER_DAY
NS_PER_MS = 1_000_000
DEFAULT_TOKENS = 300
DEFAULT_YEARS = 5
DEFAULT_SEED = 2026
MODEL = "totp30"
PSKC_PASSWORD = "scenario"
#: Random codes tried against each validator before every sign-in.
RANDOM_CODES_PER_SIGN_IN = 1
#: Wait this much beyond a throttle before the next try.
THROTTLE_MARGIN_NS = NS_PER_SECOND

# --- the tokens --------------------------------------------------------------------------------

PPM_SPREAD = 50
AGING_MIN_PPM_PER_YEAR = 1
AGING_MAX_PPM_PER_YEAR = 3
#: The battery outlives shelf time plus use by this many years.
BATTERY_MARGIN_YEARS = 3
SHELF_MIN_DAYS = 30
SHELF_MAX_DAYS = 540
#: Share of tokens whose clock was set a few minutes wrong at the factory, and by how much.
WRONG_CLOCK_SHARE = 0.2
WRONG_CLOCK_MIN_S = 60
WRONG_CLOCK_MAX_S = 600
#: Registration happens between these hours of the day.
REGISTER_FROM_H = 9
REGISTER_TO_H = 17

# --- temperatures ----------------------------------------------------------------------------

CAR, POCKET, DRAWER = "car", "pocket", "drawer"
PROFILES = (CAR, POCKET, DRAWER)
#: On the shelf, before registration.
WAREHOUSE_C = 20
#: Day of the year (from 1 January) of the coldest weather.
COLDEST_DAY = 15
CAR_MEAN_C = 25
CAR_SEASON_C = 20
CAR_DAY_SWING_C = 8
#: Day-to-day weather, ± this much.
CAR_WEATHER_C = 4
CAR_MIN_C = -20
CAR_MAX_C = 60
#: The car's day in four 6-hour quarters: night, morning, afternoon, evening (× the day swing).
CAR_QUARTERS = (-1, 0, 1, 0)
POCKET_DAY_C = 30
POCKET_NIGHT_C = 20
POCKET_SEASON_C = 2
POCKET_NOISE_C = 1
POCKET_CARRIED_FROM_H = 8
POCKET_CARRIED_TO_H = 20
DRAWER_C = 20
DRAWER_SEASON_C = 3
DRAWER_NOISE_C = 1
DRAWER_STEP_DAYS = 30

# --- users -----------------------------------------------------------------------------------

DAILY, WEEKLY, MONTHLY, GAPPY = "daily", "weekly", "monthly", "gappy"
PATTERNS = (DAILY, WEEKLY, MONTHLY, GAPPY)
#: The group of every sign-in.
ALL = "all"
#: Sign-ins are also grouped by how late the first code was typed.
ON_TIME, LATE = "on-time", "late"
TYPISTS = (ON_TIME, LATE)
TYPING_MEAN_S = 7.0
TYPING_SD_S = 1.5
TYPING_MIN_S = 3.0
TYPING_MAX_S = 15.0
LATE_SHARE = 0.03
LATE_MIN_S = 20.0
LATE_MAX_S = 60.0
NEXT_CODE_TYPING_MIN_S = 5.0
NEXT_CODE_TYPING_MAX_S = 8.0
RETRY_WAIT_MIN_S = 30.0
RETRY_WAIT_MAX_S = 60.0
#: The user notices the display change this long after it happens.
REACTION_MIN_S = 0.3
REACTION_MAX_S = 2.0
REPLAY_DELAY_MIN_S = 2.0
REPLAY_DELAY_MAX_S = 10.0
#: Daily users: weekdays, between these hours, four weeks of vacation a year, a few days off.
DAILY_FROM_H = 7.5
DAILY_TO_H = 10.0
VACATION_BLOCKS_DAYS = (14, 7, 7)
DAILY_SKIP_SHARE = 0.03
#: Weekly, monthly and gappy users sign in between these hours.
ANYTIME_FROM_H = 8.0
ANYTIME_TO_H = 21.0
WEEKLY_SKIP_SHARE = 0.1
MONTHLY_MIN_DAYS = 23
MONTHLY_MAX_DAYS = 37
GAPPY_BURST_MIN_DAYS = 14
GAPPY_BURST_MAX_DAYS = 42
GAPPY_DAY_SHARE = 0.8
GAPPY_AWAY_MIN_DAYS = 180
GAPPY_AWAY_MAX_DAYS = 365

# --- the baseline --------------------------------------------------------------------------------

#: privacyIDEA: timeWindow 180 s = 6 steps, scanned as range(counter - 6, counter + 6).
BASELINE_WINDOW_BEFORE = 6
BASELINE_WINDOW_AFTER = 5
BASELINE_RESYNC_STEPS = 1000
DIGITS = 6
CODE_SPACE = 10**DIGITS
#: A false-accept count above expected + this × sqrt(expected) + FALSE_ACCEPT_SLACK is suspicious.
FALSE_ACCEPT_SIGMAS = 5
FALSE_ACCEPT_SLACK = 3


def _seconds(value: float) -> int:
    """Seconds (a float drawn by a user model) as integer ns, to the ms."""
    return round(value * 1000) * NS_PER_MS


# =================================================================================================
# Temperature profiles
# =================================================================================================


def _season(day: int) -> float:
    """−1 in mid-January … +1 in mid-July, for day ``day`` after 2026-01-01."""
    return -math.cos(2 * math.pi * (day - COLDEST_DAY) / DAYS_PER_YEAR)


def _compact(steps: Iterable[tuple[int, int]]) -> TemperatureProfile:
    """A schedule from ``(true_ns, celsius)`` steps in time order, dropping steps that change nothing.

    Of two steps at the same time, the later one holds.
    """
    kept: list[tuple[int, int]] = []
    for when, celsius in steps:
        if kept and kept[-1][0] == when:
            kept.pop()
        if not kept or kept[-1][1] != celsius:
            kept.append((when, celsius))
    return TemperatureProfile.schedule(kept)


def car_profile(rng: random.Random, first_day: int, last_day: int) -> TemperatureProfile:
    """Kept in a car from ``first_day`` to ``last_day`` (after START): 25 ± 20 °C over the year, ±8 °C
    night to afternoon, daily weather; in the warehouse before."""
    quarter_ns = NS_PER_DAY // len(CAR_QUARTERS)
    steps = [(START_NS, WAREHOUSE_C)]
    for day in range(first_day, last_day + 1):
        base = CAR_MEAN_C + CAR_SEASON_C * _season(day) + rng.uniform(-CAR_WEATHER_C, CAR_WEATHER_C)
        for q, swing in enumerate(CAR_QUARTERS):
            celsius = min(CAR_MAX_C, max(CAR_MIN_C, round(base + swing * CAR_DAY_SWING_C)))
            steps.append((START_NS + day * NS_PER_DAY + q * quarter_ns, celsius))
    return _compact(steps)


def pocket_profile(rng: random.Random, first_day: int, last_day: int) -> TemperatureProfile:
    """In a pocket from ``first_day`` to ``last_day``: about 30 °C while carried (day), 20 °C at night."""
    steps = [(START_NS, WAREHOUSE_C)]
    for day in range(first_day, last_day + 1):
        season = POCKET_SEASON_C * _season(day)
        midnight = START_NS + day * NS_PER_DAY
        night = round(POCKET_NIGHT_C + season + rng.uniform(-POCKET_NOISE_C, POCKET_NOISE_C))
        carried = round(POCKET_DAY_C + season + rng.uniform(-POCKET_NOISE_C, POCKET_NOISE_C))
        steps.append((midnight, night))
        steps.append((midnight + POCKET_CARRIED_FROM_H * NS_PER_HOUR, carried))
        steps.append((midnight + POCKET_CARRIED_TO_H * NS_PER_HOUR, night))
    return _compact(steps)


def drawer_profile(rng: random.Random, first_day: int, last_day: int) -> TemperatureProfile:
    """In a drawer from ``first_day`` to ``last_day``: 20 °C, a few degrees of season, monthly steps."""
    steps = [(START_NS, WAREHOUSE_C)]
    for day in range(first_day, last_day + 1, DRAWER_STEP_DAYS):
        celsius = round(DRAWER_C + DRAWER_SEASON_C * _season(day) + rng.uniform(-DRAWER_NOISE_C, DRAWER_NOISE_C))
        steps.append((START_NS + day * NS_PER_DAY, celsius))
    return _compact(steps)


PROFILE_BUILDERS: dict[str, Callable[[random.Random, int, int], TemperatureProfile]] = {
    CAR: car_profile,
    POCKET: pocket_profile,
    DRAWER: drawer_profile,
}


def rebase(token: Token, true_ns: int) -> None:
    """Move the token's RTC reference to ``true_ns`` without changing its reading.

    Later device-time evaluations then integrate the temperature profile only
    from ``true_ns`` on, so a press costs O(steps since the last rebase).
    """
    token.rtc.set_profile(true_ns, token.rtc.profile)


# =================================================================================================
# Usage patterns
# =================================================================================================


def _time_of_day(rng: random.Random, from_h: float, to_h: float) -> int:
    """A random moment between two hours of the day, as ns after midnight (ms resolution)."""
    return rng.randrange(round(from_h * 3_600_000), round(to_h * 3_600_000)) * NS_PER_MS


def _daily_days(rng: random.Random, first: int, last: int) -> list[int]:
    """Weekdays in ``first .. last`` (days after START), less vacations and a few days off."""
    off: set[int] = set()
    for year_start in range(first, last + 1, DAYS_PER_YEAR):
        for length in VACATION_BLOCKS_DAYS:
            begin = year_start + rng.randrange(DAYS_PER_YEAR - length)
            off.update(range(begin, begin + length))
    return [
        day
        for day in range(first, last + 1)
        if (START_WEEKDAY + day) % DAYS_PER_WEEK < WORKDAYS and day not in off and rng.random() >= DAILY_SKIP_SHARE
    ]


def _weekly_days(rng: random.Random, first: int, last: int) -> list[int]:
    """One day a week, now and then skipped."""
    days = []
    for week in range(first, last + 1, DAYS_PER_WEEK):
        day = week + rng.randrange(DAYS_PER_WEEK)
        if day <= last and rng.random() >= WEEKLY_SKIP_SHARE:
            days.append(day)
    return days


def _monthly_days(rng: random.Random, first: int, last: int) -> list[int]:
    """About once a month."""
    days = []
    day = first + rng.randrange(MONTHLY_MAX_DAYS)
    while day <= last:
        days.append(day)
        day += rng.randint(MONTHLY_MIN_DAYS, MONTHLY_MAX_DAYS)
    return days


def _gappy_days(rng: random.Random, first: int, last: int) -> list[int]:
    """Bursts of near-daily use, each followed by 6–12 months away."""
    days = []
    day = first
    while day <= last:
        burst_end = day + rng.randint(GAPPY_BURST_MIN_DAYS, GAPPY_BURST_MAX_DAYS)
        days.extend(d for d in range(day, min(burst_end, last + 1)) if rng.random() < GAPPY_DAY_SHARE)
        day = burst_end + rng.randint(GAPPY_AWAY_MIN_DAYS, GAPPY_AWAY_MAX_DAYS)
    return days


def sign_in_times(rng: random.Random, pattern: str, first_day: int, last_day: int) -> list[int]:
    """The true times (ns) a user of ``pattern`` signs in, days ``first_day .. last_day`` after START."""
    if pattern == DAILY:
        days, hours = _daily_days(rng, first_day, last_day), (DAILY_FROM_H, DAILY_TO_H)
    elif pattern == WEEKLY:
        days, hours = _weekly_days(rng, first_day, last_day), (ANYTIME_FROM_H, ANYTIME_TO_H)
    elif pattern == MONTHLY:
        days, hours = _monthly_days(rng, first_day, last_day), (ANYTIME_FROM_H, ANYTIME_TO_H)
    elif pattern == GAPPY:
        days, hours = _gappy_days(rng, first_day, last_day), (ANYTIME_FROM_H, ANYTIME_TO_H)
    else:
        raise ValueError(f"unknown usage pattern {pattern!r}")
    return [START_NS + day * NS_PER_DAY + _time_of_day(rng, *hours) for day in days]


# =================================================================================================
# The baseline: privacyIDEA-style TOTP
# =================================================================================================


@dataclasses.dataclass
class _BaselineToken:
    key: PreparedKey
    #: Token time minus server time, in whole seconds (privacyIDEA's ``timeShift``).
    offset_s: int = 0
    #: The last accepted step; only later steps are accepted (privacyIDEA's ``count`` − 1).
    last_step: int = -1


class BaselineValidator:
    """privacyIDEA-style TOTP: a stored offset updated at every success, a fixed window.

    The step searched around is ``int((now + offset) / period + 0.5)``; codes
    in −6..+5 steps of it, later than the last accepted step, are accepted, and
    the offset becomes the start of the matched step minus now. A two-code
    resync searches ±1000 steps. There is no next-code mode and no throttling.
    """

    def __init__(self, period: int = 30, digits: int = DIGITS) -> None:
        self.period = period
        self.digits = digits
        self._backend = get_backend()
        self._tokens: dict[str, _BaselineToken] = {}

    def add(self, serial: str, seed: bytes) -> None:
        """Enroll a token from its seed, offset 0."""
        self._tokens[serial] = _BaselineToken(self._backend.prepare(seed, digits=self.digits))

    def _counter(self, tok: _BaselineToken, at_ns: int) -> int:
        return int((at_ns // NS_PER_SECOND + tok.offset_s) / self.period + 0.5)

    def _accept(self, tok: _BaselineToken, step: int, at_ns: int) -> None:
        tok.last_step = step
        tok.offset_s = step * self.period - at_ns // NS_PER_SECOND

    def check(self, serial: str, code: str, at_ns: int) -> int | None:
        """Verify one code typed at ``at_ns``: the step accepted, or None if refused."""
        tok = self._tokens[serial]
        counter = self._counter(tok, at_ns)
        lo = max(counter - BASELINE_WINDOW_BEFORE, tok.last_step + 1)
        hi = counter + BASELINE_WINDOW_AFTER
        matches = tok.key.find(lo, hi - lo + 1, code) if hi >= lo else ()
        if not matches:
            return None
        self._accept(tok, matches[0], at_ns)
        return matches[0]

    def resync(self, serial: str, code1: str, code2: str, at_ns: int) -> bool:
        """Resynchronise from two consecutive codes, code 2 typed at ``at_ns``."""
        tok = self._tokens[serial]
        counter = self._counter(tok, at_ns)
        lo = max(counter - BASELINE_RESYNC_STEPS, tok.last_step + 1)
        hi = counter + BASELINE_RESYNC_STEPS
        pairs = tok.key.find_pair(lo, hi - lo + 1, code1, code2) if hi >= lo else ()
        if not pairs:
            return False
        first = min(pairs, key=lambda s: abs(s + 1 - counter))
        self._accept(tok, first + 1, at_ns)
        return True


# =================================================================================================
# Statistics
# =================================================================================================


@dataclasses.dataclass
class Tally:
    """Count, sum and maximum of a series of whole numbers."""

    count: int = 0
    total: int = 0
    largest: int = 0

    def add(self, value: int) -> None:
        """Record one value."""
        self.count += 1
        self.total += value
        self.largest = max(self.largest, value)

    def describe(self) -> str:
        """``mean/max`` or ``n/a``."""
        return f"{self.total / self.count:.1f}/{self.largest}" if self.count else "n/a"


@dataclasses.dataclass
class GroupStats:
    """What happened to the sign-ins of one group (all, a usage pattern, a temperature profile)."""

    tokens: int = 0
    sign_ins: int = 0
    #: Accepted with the first code alone, no prompt.
    first_try: int = 0
    #: Accepted in the first attempt, a satisfied next-code round included.
    first_attempt: int = 0
    prompts: int = 0
    prompts_satisfied: int = 0
    #: Both attempts failed.
    rejections: int = 0
    replays: int = 0
    #: A replayed code accepted again for the same step.
    replays_accepted: int = 0
    #: A replayed code accepted for another step whose code happens to be the same (chance).
    replay_collisions: int = 0
    random_tries: int = 0
    random_accepted: int = 0
    random_expected: float = 0.0
    single_window: Tally = dataclasses.field(default_factory=Tally)
    next_code_window: Tally = dataclasses.field(default_factory=Tally)
    #: |predicted − true offset| before each sign-in, in seconds.
    prediction_errors_s: list[float] = dataclasses.field(default_factory=list)

    def rate(self, count: int) -> float:
        """``count`` as a share of the sign-ins."""
        return count / self.sign_ins if self.sign_ins else 0.0

    @property
    def first_try_rate(self) -> float:
        """Share of sign-ins accepted with the first code alone."""
        return self.rate(self.first_try)

    @property
    def first_attempt_rate(self) -> float:
        """Share of sign-ins accepted in the first attempt (next-code round included)."""
        return self.rate(self.first_attempt)

    @property
    def accepted(self) -> int:
        """Sign-ins accepted in either attempt."""
        return self.sign_ins - self.rejections

    def false_accept_bound(self) -> float:
        """The most random-code accepts that are not suspicious, given the expected number."""
        return self.random_expected + FALSE_ACCEPT_SIGMAS * math.sqrt(self.random_expected) + FALSE_ACCEPT_SLACK

    def error_percentiles(self) -> tuple[float, float, float] | None:
        """Median, 95th percentile and maximum |prediction error| in seconds."""
        errors = sorted(self.prediction_errors_s)
        if not errors:
            return None
        return statistics.median(errors), errors[min(len(errors) - 1, int(0.95 * len(errors)))], errors[-1]


@dataclasses.dataclass(frozen=True)
class Rejection:
    """A genuine sign-in refused twice, with what is needed to debug it."""

    serial: str
    pattern: str
    profile: str
    at_ns: int
    days_since_last_use: float
    #: How long after pressing the first code was typed.
    typing_s: float
    results: tuple[str, ...]
    true_offset_s: float
    predicted_offset_s: float | None


@dataclasses.dataclass
class ScenarioReport:
    """Everything the scenario measured."""

    tokens: int
    years: int
    seed: int
    vtoken: dict[str, GroupStats]
    baseline: dict[str, GroupStats]
    registrations: int = 0
    registration_failures: list[str] = dataclasses.field(default_factory=list)
    baseline_registration_failures: list[str] = dataclasses.field(default_factory=list)
    wrong_clock_tokens: int = 0
    rejections: list[Rejection] = dataclasses.field(default_factory=list)
    baseline_rejections: list[Rejection] = dataclasses.field(default_factory=list)
    helpdesk_resync_failures: int = 0
    true_offset_range_s: tuple[float, float] = (0.0, 0.0)
    simulated_days: int = 0
    runtime_s: float = 0.0

    @property
    def all(self) -> GroupStats:
        """The vtoken validator's totals."""
        return self.vtoken[ALL]

    @property
    def baseline_all(self) -> GroupStats:
        """The baseline's totals."""
        return self.baseline[ALL]


def _empty_groups() -> dict[str, GroupStats]:
    return {name: GroupStats() for name in (ALL, *PATTERNS, *PROFILES, *TYPISTS)}


# =================================================================================================
# The simulation
# =================================================================================================


@dataclasses.dataclass
class FieldToken:
    """One token in the field: the device, its owner's habits, and its history."""

    token: Token
    pattern: str
    profile: str
    register_ns: int
    end_ns: int
    registered: bool = False
    last_use_ns: int | None = None


@dataclasses.dataclass
class _Attempt:
    """One attempt at the vtoken validator: a code, and a next code if prompted."""

    press_ns: int
    #: When the first code was typed, and the first code.
    first_typed_ns: int
    first_code: str
    #: When the last code of the attempt (the next code, if prompted) was typed.
    typed_ns: int
    results: list[Result]
    accepted_code: str | None = None
    prompted: bool = False

    @property
    def accepted(self) -> bool:
        """Accepted, with or without a next-code round."""
        return self.accepted_code is not None

    @property
    def first_try(self) -> bool:
        """Accepted with the first code alone."""
        return self.accepted and not self.prompted


def window_sizes(validator: Validator, serial: str, at_ns: int) -> tuple[int, int] | None:
    """The single-code and next-code window sizes (codes) the validator reports now (None before registration)."""
    return _window_sizes_of(validator.status(serial, at_ns))


def _window_sizes_of(status: TokenStatus) -> tuple[int, int] | None:
    if status.single_window_codes is None or status.next_code_window_codes is None:
        return None
    return status.single_window_codes, status.next_code_window_codes


def displayed_step(token: Token, true_ns: int) -> int:
    """The TOTP step the token would show if pressed at ``true_ns`` (no side effects)."""
    device_ns = token.rtc.device_time_ns(true_ns)
    return (device_ns - token.flash.t0 * NS_PER_SECOND) // (token.flash.period * NS_PER_SECOND)


def displayed_code(token: Token, step: int) -> str:
    """The token's code for ``step`` (no side effects)."""
    return format_code(token.flash.code(step), token.flash.digits)


def wait_for_change(token: Token, clock: SimulatedClock, shown: str, rng: random.Random) -> str:
    """What a user told to "wait for the code to change" types next.

    The user looks at the display (pressing if it is blank); if it shows a
    code other than ``shown`` that is the one, else they wait for the display
    to go out at the end of the step, notice it, and press again.
    """
    while True:
        text = token.display.text(token.now_ns()) or token.press()
        if text != shown:
            return text
        until = token.display.until_ns
        clock.set(max(clock.now_ns(), until or 0) + _seconds(rng.uniform(REACTION_MIN_S, REACTION_MAX_S)))


class FieldScenario:
    """The fleet, both validators, the schedule, and the statistics being gathered."""

    def __init__(self, *, tokens: int, years: int, seed: int, workdir: Path, model: str = MODEL) -> None:
        self.rng = random.Random(seed)
        self.clock = SimulatedClock(START_NS)
        self.years = years
        self.spec = FleetSpec(batch_secret=self.rng.randbytes(32), model=get_model(model), count=tokens)
        self.report = ScenarioReport(tokens, years, seed, _empty_groups(), _empty_groups())
        self.fleet = self._make_fleet()
        self.validator = self._make_validator(workdir)
        self.failure_delay_ns = self.validator.policy.failure_delay_ns
        self.verify_window = self.validator.policy.verify_window
        self.baseline = BaselineValidator(period=self.spec.model.period, digits=self.spec.model.digits)
        for ft in self.fleet:
            self.baseline.add(ft.token.serial, derive_seed(self.spec.batch_secret, ft.token.serial))

    # --- setup ------------------------------------------------------------------------------

    def _make_fleet(self) -> list[FieldToken]:
        rng, spec = self.rng, self.spec
        serials = list(spec.serials())
        # Every (pattern, profile) pair equally often, dealt out in a seeded order.
        n = len(PATTERNS)
        kinds = [(PATTERNS[i % n], PROFILES[i // n % len(PROFILES)]) for i in range(len(serials))]
        rng.shuffle(kinds)
        fleet = []
        for serial, (pattern, profile_name) in zip(serials, kinds):
            shelf_days = rng.randint(SHELF_MIN_DAYS, SHELF_MAX_DAYS)
            register_ns = START_NS + shelf_days * NS_PER_DAY + _time_of_day(rng, REGISTER_FROM_H, REGISTER_TO_H)
            end_ns = register_ns + self.years * NS_PER_YEAR
            last_day = (end_ns - START_NS) // NS_PER_DAY + 1
            self.report.simulated_days = max(self.report.simulated_days, last_day)
            aging = rng.uniform(AGING_MIN_PPM_PER_YEAR, AGING_MAX_PPM_PER_YEAR) * rng.choice((-1, 1))
            device_time_ns = None
            if rng.random() < WRONG_CLOCK_SHARE:
                error_s = rng.randint(WRONG_CLOCK_MIN_S, WRONG_CLOCK_MAX_S) * rng.choice((-1, 1))
                device_time_ns = START_NS + error_s * NS_PER_SECOND
                self.report.wrong_clock_tokens += 1
            token = manufacture(
                model=spec.model,
                seed=derive_seed(spec.batch_secret, serial),
                serial=serial,
                device_key=derive_device_key(spec.batch_secret, serial),
                clock=self.clock,
                physics=Physics(
                    ppm=f"{rng.uniform(-PPM_SPREAD, PPM_SPREAD):.2f}",
                    temperature=PROFILE_BUILDERS[profile_name](rng, shelf_days, last_day),
                    aging_ppm_per_year=f"{aging:.2f}",
                    battery_years=self.years + SHELF_MAX_DAYS // DAYS_PER_YEAR + BATTERY_MARGIN_YEARS,
                ),
                device_time_ns=device_time_ns,
            )
            fleet.append(FieldToken(token, pattern, profile_name, register_ns, end_ns))
            for name in (ALL, pattern, profile_name):
                self.report.vtoken[name].tokens += 1
                self.report.baseline[name].tokens += 1
        return fleet

    def _make_validator(self, workdir: Path) -> Validator:
        pskc_path = workdir / "tokens.pskc"
        build_pskc(self.spec, created_ns=START_NS, password=PSKC_PASSWORD).write(str(pskc_path))
        keyring = Keyring(generate_master_key())
        store = MemoryStore()
        import_file(store, keyring, pskc_path, password=PSKC_PASSWORD, now_ns=START_NS)
        return Validator(store, keyring, self.clock)

    def schedule(self) -> list[tuple[int, int, bool]]:
        """Every event ``(true_ns, token index, is_registration)`` in time order."""
        events = []
        for i, ft in enumerate(self.fleet):
            events.append((ft.register_ns, i, True))
            first_day = (ft.register_ns - START_NS) // NS_PER_DAY + 1
            last_day = (ft.end_ns - START_NS) // NS_PER_DAY - 1
            events.extend((at, i, False) for at in sign_in_times(self.rng, ft.pattern, first_day, last_day))
        events.sort()
        return events

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> ScenarioReport:
        """Play every event, then fill in the report."""
        low, high = math.inf, -math.inf
        for at, i, is_registration in self.schedule():
            ft = self.fleet[i]
            self.clock.set(max(at, self.clock.now_ns()))
            rebase(ft.token, self.clock.now_ns())
            if is_registration:
                self._register(ft)
            elif ft.registered:
                offset_s = self._sign_in(ft)
                low, high = min(low, offset_s), max(high, offset_s)
        if high >= low:
            self.report.true_offset_range_s = (low, high)
        return self.report

    def _typing(self, late_allowed: bool) -> int:
        if late_allowed and self.rng.random() < LATE_SHARE:
            return _seconds(self.rng.uniform(LATE_MIN_S, LATE_MAX_S))
        delay = self.rng.gauss(TYPING_MEAN_S, TYPING_SD_S)
        return _seconds(min(TYPING_MAX_S, max(TYPING_MIN_S, delay)))

    def _two_codes(self, ft: FieldToken) -> tuple[str, str, int]:
        """Press, wait for the code to change, press: two consecutive codes and when code 2 is typed."""
        code1 = ft.token.press()
        code2 = wait_for_change(ft.token, self.clock, code1, self.rng)
        return code1, code2, self.clock.advance(self._typing(late_allowed=False))

    def _register(self, ft: FieldToken) -> None:
        code1, code2, at = self._two_codes(ft)
        result = self.validator.register(ft.token.serial, code1, code2, at)
        self.report.registrations += 1
        if result.accepted:
            ft.registered = True
            ft.last_use_ns = at
        else:
            self.report.registration_failures.append(f"{ft.token.serial}: {result.reason.value}: {result.message}")
        if not self.baseline.resync(ft.token.serial, code1, code2, at):
            self.report.baseline_registration_failures.append(ft.token.serial)

    def _sign_in(self, ft: FieldToken) -> float:
        """One sign-in by the owner of ``ft`` (and a random code first); returns the true offset in s."""
        token, serial, rng = ft.token, ft.token.serial, self.rng
        now = self.clock.now_ns()
        status = self.validator.status(serial, now)
        true_offset = token.offset_ns()
        predicted = status.offset_ns
        windows = _window_sizes_of(status)
        # The user's draws, shared by both validators' flows.
        first_typing = self._typing(late_allowed=True)
        retry_wait = _seconds(rng.uniform(RETRY_WAIT_MIN_S, RETRY_WAIT_MAX_S))
        retry_typing = self._typing(late_allowed=False)
        replay_delay = _seconds(rng.uniform(REPLAY_DELAY_MIN_S, REPLAY_DELAY_MAX_S))
        typist = LATE if first_typing >= _seconds(LATE_MIN_S) else ON_TIME
        names = (ALL, ft.pattern, ft.profile, typist)
        groups = [self.report.vtoken[name] for name in names]
        base_groups = [self.report.baseline[name] for name in names]
        for g in groups:
            g.sign_ins += 1
            if predicted is not None:
                g.prediction_errors_s.append(abs(predicted - true_offset) / NS_PER_SECOND)
            if windows is not None:
                g.single_window.add(windows[0])
                g.next_code_window.add(windows[1])
        for g in base_groups:
            g.sign_ins += 1
            g.single_window.add(BASELINE_WINDOW_BEFORE + 1 + BASELINE_WINDOW_AFTER)
        self._random_codes(ft, groups, base_groups, windows)
        first = self._attempt(ft, first_typing)
        self._baseline_sign_in(ft, base_groups, first, retry_wait, retry_typing, replay_delay)
        attempts = [first]
        if not first.accepted:
            self._past_throttle(first.results[-1], retry_wait)
            attempts.append(self._attempt(ft, retry_typing))
        for g in groups:
            g.first_try += first.first_try
            g.first_attempt += first.accepted
            for attempt in attempts:
                g.prompts += attempt.prompted
                g.prompts_satisfied += attempt.prompted and attempt.accepted
        accepted = attempts[-1].accepted_code
        if accepted is None:
            self._genuine_rejection(ft, attempts, true_offset, predicted, groups)
        else:
            self.clock.advance(replay_delay)
            replay = self.validator.check(serial, accepted, self.clock.now_ns())
            same_step = replay.accepted and replay.step == attempts[-1].results[-1].step
            for g in groups:
                g.replays += 1
                g.replays_accepted += same_step
                g.replay_collisions += replay.accepted and not same_step
            ft.last_use_ns = attempts[-1].typed_ns
        return true_offset / NS_PER_SECOND

    def _random_codes(
        self, ft: FieldToken, groups: list[GroupStats], base_groups: list[GroupStats], windows: tuple[int, int] | None
    ) -> None:
        serial = ft.token.serial
        single = windows[0] if windows is not None else 2 * self.verify_window + 1
        baseline_single = BASELINE_WINDOW_BEFORE + 1 + BASELINE_WINDOW_AFTER
        for _ in range(RANDOM_CODES_PER_SIGN_IN):
            guess = format_code(self.rng.randrange(CODE_SPACE), DIGITS)
            now = self.clock.now_ns()
            result = self.validator.check(serial, guess, now)
            baseline_ok = self.baseline.check(serial, guess, now) is not None
            for g in groups:
                g.random_tries += 1
                g.random_accepted += result.accepted
                g.random_expected += single / CODE_SPACE
            for g in base_groups:
                g.random_tries += 1
                g.random_accepted += baseline_ok
                g.random_expected += baseline_single / CODE_SPACE
            self._past_throttle(result, 0)

    def _past_throttle(self, result: Result, wait_ns: int) -> None:
        """Advance the clock by ``wait_ns``, or past the throttle ``result`` earned if longer."""
        throttle = result.failures * self.failure_delay_ns + THROTTLE_MARGIN_NS if not result.accepted else 0
        if result.retry_at_ns is not None:
            throttle = max(throttle, result.retry_at_ns - self.clock.now_ns() + THROTTLE_MARGIN_NS)
        self.clock.advance(max(wait_ns, throttle))

    def _attempt(self, ft: FieldToken, typing_ns: int) -> _Attempt:
        """Press, type the code; on a next-code prompt wait for the code to change and type that."""
        token, serial = ft.token, ft.token.serial
        press_ns = self.clock.now_ns()
        code = token.press()
        typed_ns = self.clock.advance(typing_ns)
        result = self.validator.check(serial, code, typed_ns)
        attempt = _Attempt(press_ns, typed_ns, code, typed_ns, [result])
        if result.reason is Reason.NEXT_CODE_REQUIRED:
            attempt.prompted = True
            code = wait_for_change(token, self.clock, code, self.rng)
            typing = _seconds(self.rng.uniform(NEXT_CODE_TYPING_MIN_S, NEXT_CODE_TYPING_MAX_S))
            attempt.typed_ns = self.clock.advance(typing)
            result = self.validator.check(serial, code, attempt.typed_ns)
            attempt.results.append(result)
        if result.accepted:
            attempt.accepted_code = code
        return attempt

    def _genuine_rejection(
        self,
        ft: FieldToken,
        attempts: list[_Attempt],
        true_offset: int,
        predicted: int | None,
        groups: list[GroupStats],
    ) -> None:
        """Both attempts failed: record why, then the helpdesk resyncs the token with two codes."""
        for g in groups:
            g.rejections += 1
        self.report.rejections.append(
            Rejection(
                serial=ft.token.serial,
                pattern=ft.pattern,
                profile=ft.profile,
                at_ns=attempts[0].press_ns,
                days_since_last_use=_days_since(ft.last_use_ns, attempts[0].press_ns),
                typing_s=(attempts[0].first_typed_ns - attempts[0].press_ns) / NS_PER_SECOND,
                results=tuple(f"{r.reason.value}: {r.message}" for a in attempts for r in a.results),
                true_offset_s=true_offset / NS_PER_SECOND,
                predicted_offset_s=None if predicted is None else predicted / NS_PER_SECOND,
            )
        )
        self.clock.advance(_seconds(self.rng.uniform(RETRY_WAIT_MIN_S, RETRY_WAIT_MAX_S)))
        code1, code2, at = self._two_codes(ft)
        if self.validator.register(ft.token.serial, code1, code2, at).accepted:
            ft.last_use_ns = at
        else:
            self.report.helpdesk_resync_failures += 1

    def _baseline_sign_in(
        self,
        ft: FieldToken,
        groups: list[GroupStats],
        first: _Attempt,
        retry_wait: int,
        retry_typing: int,
        replay_delay: int,
    ) -> None:
        """The same user at the baseline: the same first code at the same time, the same retry habits."""
        token, serial, baseline = ft.token, ft.token.serial, self.baseline
        at, code = first.first_typed_ns, first.first_code
        step = baseline.check(serial, code, at)
        for g in groups:
            g.first_try += step is not None
            g.first_attempt += step is not None
        if step is None:
            press = at + retry_wait
            code = displayed_code(token, displayed_step(token, press))
            at = press + retry_typing
            step = baseline.check(serial, code, at)
        if step is not None:
            replayed = baseline.check(serial, code, at + replay_delay)
            for g in groups:
                g.replays += 1
                g.replays_accepted += replayed == step
                g.replay_collisions += replayed is not None and replayed != step
            return
        for g in groups:
            g.rejections += 1
        self.report.baseline_rejections.append(
            Rejection(
                serial=serial,
                pattern=ft.pattern,
                profile=ft.profile,
                at_ns=first.press_ns,
                days_since_last_use=_days_since(ft.last_use_ns, first.press_ns),
                typing_s=(first.first_typed_ns - first.press_ns) / NS_PER_SECOND,
                results=("refused", "refused"),
                true_offset_s=token.offset_ns() / NS_PER_SECOND,
                predicted_offset_s=None,
            )
        )
        # The helpdesk resyncs the baseline with two consecutive codes.
        press = at + retry_wait
        step = displayed_step(token, press)
        period_ns = token.flash.period * NS_PER_SECOND
        baseline.resync(
            serial, displayed_code(token, step), displayed_code(token, step + 1), press + period_ns + retry_typing
        )


def _days_since(last_ns: int | None, at_ns: int) -> float:
    return math.nan if last_ns is None else (at_ns - last_ns) / NS_PER_DAY


def run(
    tokens: int = DEFAULT_TOKENS,
    years: int = DEFAULT_YEARS,
    seed: int = DEFAULT_SEED,
    *,
    model: str = MODEL,
    workdir: Path | None = None,
) -> ScenarioReport:
    """Run the field scenario and return its report (``runtime_s``: set-up included)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        scenario = FieldScenario(tokens=tokens, years=years, seed=seed, workdir=Path(workdir or tmp), model=model)
        report = scenario.run()
    report.runtime_s = time.perf_counter() - started
    return report


# =================================================================================================
# The report
# =================================================================================================

_GROUP_ORDER = (ALL, *PATTERNS, *PROFILES, *TYPISTS)
#: A blank line after these rows.
_SECTION_ENDS = (ALL, PATTERNS[-1], PROFILES[-1])


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def _errors(g: GroupStats) -> str:
    errors = g.error_percentiles()
    return "n/a" if errors is None else "/".join(f"{e:.1f}" for e in errors)


def format_table(groups: dict[str, GroupStats], *, next_code: bool) -> str:
    """One row per group: acceptance, prompts, rejections, windows, replays, random codes, prediction error."""
    header = (
        f"{'group':<8} {'tokens':>6} {'sign-ins':>8} {'1st-try%':>8} {'1st-att%':>8} {'prompts':>7} {'satisf':>6} "
        f"{'reject':>6} {'single win':>10} {'next win':>9} {'replay ok':>9} {'random':>7} {'FA':>3} {'exp FA':>6} "
        f"{'|err| s p50/p95/max':>20}"
    )
    lines = [header, "-" * len(header)]
    for name in _GROUP_ORDER:
        g = groups[name]
        prompts = f"{g.prompts:>7} {g.prompts_satisfied:>6}" if next_code else f"{'-':>7} {'-':>6}"
        lines.append(
            f"{name:<8} {g.tokens or '-':>6} {g.sign_ins:>8} {_percent(g.first_try_rate):>8} "
            f"{_percent(g.first_attempt_rate):>8} {prompts} {g.rejections:>6} {g.single_window.describe():>10} "
            f"{g.next_code_window.describe() if next_code else '-':>9} {g.replays_accepted:>9} {g.random_tries:>7} "
            f"{g.random_accepted:>3} {g.random_expected:>6.2f} {_errors(g) if next_code else '-':>20}"
        )
        if name in _SECTION_ENDS:
            lines.append("")
    return "\n".join(lines).rstrip()


def _rejection_line(r: Rejection) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.at_ns // NS_PER_SECOND))
    predicted = "n/a" if r.predicted_offset_s is None else f"{r.predicted_offset_s:+.1f}"
    return (
        f"  {r.serial} {r.pattern}/{r.profile} at {when}Z, {r.days_since_last_use:.1f} days since last use, "
        f"typed after {r.typing_s:.0f} s, "
        f"true offset {r.true_offset_s:+.1f} s, predicted {predicted} s: " + " | ".join(r.results)
    )


def format_report(report: ScenarioReport, *, max_rejections: int = 20) -> str:
    """The whole report as text."""
    v, b = report.all, report.baseline_all
    lines = [
        f"Field scenario: {report.tokens} tokens, {report.years} years of use each after 30–540 days on a shelf "
        f"(seed {report.seed}; {report.simulated_days} simulated days; {report.wrong_clock_tokens} factory clocks "
        f"set minutes wrong); run took {report.runtime_s:.1f} s.",
        f"Registrations: {report.registrations}, failed: {len(report.registration_failures)} "
        f"(baseline resync failed: {len(report.baseline_registration_failures)}).",
        f"True token offsets reached {report.true_offset_range_s[0]:+.0f} .. {report.true_offset_range_s[1]:+.0f} s.",
        "",
        "vtoken validator (windows in codes, mean/max, where the validator reports them):",
        format_table(report.vtoken, next_code=True),
        "",
        f"Baseline, privacyIDEA-style (offset in s, window -{BASELINE_WINDOW_BEFORE}..+{BASELINE_WINDOW_AFTER} "
        "steps, no next-code mode; a genuine rejection means a helpdesk resync):",
        format_table(report.baseline, next_code=False),
        "",
        f"Random codes: vtoken {v.random_accepted} accepted of {v.random_tries} (expected {v.random_expected:.2f}, "
        f"bound {v.false_accept_bound():.1f}); baseline {b.random_accepted} of {b.random_tries} "
        f"(expected {b.random_expected:.2f}). Replays accepted for another step (chance collisions): "
        f"vtoken {v.replay_collisions} of {v.replays}, baseline {b.replay_collisions} of {b.replays}.",
        f"Genuine rejections: vtoken {len(report.rejections)} (helpdesk resync failures "
        f"{report.helpdesk_resync_failures}), baseline {len(report.baseline_rejections)}.",
    ]
    for r in report.registration_failures:
        lines.append(f"  registration failed: {r}")
    for r in report.rejections[:max_rejections]:
        lines.append(_rejection_line(r))
    if len(report.rejections) > max_rejections:
        lines.append(f"  ... and {len(report.rejections) - max_rejections} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.drift_scenario``: run the scenario and print its report."""
    parser = argparse.ArgumentParser(prog="python -m tests.drift_scenario", description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    parser.add_argument("--years", type=int, default=DEFAULT_YEARS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    print(format_report(run(tokens=args.tokens, years=args.years, seed=args.seed)))


if __name__ == "__main__":  # pragma: no cover
    main()
