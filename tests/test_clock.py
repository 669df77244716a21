"""Clocks: the simulated clock, the sped-up system clock, exact number helpers."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from vtoken.clock import (
    NS_PER_DAY,
    NS_PER_SECOND,
    NS_PER_YEAR,
    Clock,
    SimulatedClock,
    check_time_ns,
    exact_fraction,
    seconds_to_ns,
)
from host.wallclock import SystemClock
from vtoken.errors import InvalidConfigError, InvalidTimeError

TEN_YEARS_NS = 10 * NS_PER_YEAR


class FakeTime:
    """Injectable wall and monotonic clocks that move only when told."""

    def __init__(self, wall: int = 1_700_000_000 * NS_PER_SECOND, mono: int = 5_000) -> None:
        self.wall_ns = wall
        self.mono_ns = mono

    def wall(self) -> int:
        return self.wall_ns

    def monotonic(self) -> int:
        return self.mono_ns


def test_constants() -> None:
    assert NS_PER_SECOND == 1_000_000_000
    assert NS_PER_DAY == 86_400 * NS_PER_SECOND
    assert NS_PER_YEAR == 31_536_000 * NS_PER_SECOND


# --- exact numbers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (20, Fraction(20)),
        (-0.034, Fraction(-17, 500)),
        (0.1, Fraction(1, 10)),
        ("2.5", Fraction(5, 2)),
        ("-17/500", Fraction(-17, 500)),
        (Decimal("0.3"), Fraction(3, 10)),
        (Fraction(1, 3), Fraction(1, 3)),
    ],
)
def test_exact_fraction(value: object, expected: Fraction) -> None:
    assert exact_fraction(value, "x") == expected


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), "abc", "1/0", None, [1], Decimal("NaN")])
def test_exact_fraction_rejects(value: object) -> None:
    with pytest.raises(InvalidConfigError):
        exact_fraction(value, "x")


def test_exact_fraction_error_class_is_chosen_by_caller() -> None:
    with pytest.raises(InvalidTimeError):
        exact_fraction("soon", "time", InvalidTimeError)


def test_check_time_ns() -> None:
    assert check_time_ns(0) == 0
    for bad in (-1, 1.5, "5", True, None):
        with pytest.raises(InvalidTimeError):
            check_time_ns(bad)  # type: ignore[arg-type]


def test_seconds_to_ns_exact() -> None:
    assert seconds_to_ns("0.1") == 100_000_000
    assert seconds_to_ns(0.1) == 100_000_000
    assert seconds_to_ns(Fraction(3, 2)) == 1_500_000_000
    assert seconds_to_ns("1e-9") == 1
    with pytest.raises(InvalidTimeError):
        seconds_to_ns(Fraction(1, 3))
    with pytest.raises(InvalidTimeError):
        seconds_to_ns("1e-10")


# --- SimulatedClock ---------------------------------------------------------------------


def test_simulated_clock_basics() -> None:
    clock = SimulatedClock(1_000)
    assert isinstance(clock, Clock)
    assert clock.now_ns() == 1_000
    assert clock.advance(500) == 1_500
    assert clock.advance(0) == 1_500
    assert clock.advance_seconds(2) == 2_000_001_500
    assert clock.advance_seconds("0.000000001") == 2_000_001_501
    assert clock.set(3 * NS_PER_SECOND) == 3 * NS_PER_SECOND
    assert clock.set(3 * NS_PER_SECOND) == 3 * NS_PER_SECOND  # same time is allowed
    assert clock.now_ns() == 3 * NS_PER_SECOND


def test_simulated_clock_default_start() -> None:
    assert SimulatedClock().now_ns() == 0


def test_simulated_clock_is_exact_over_years() -> None:
    clock = SimulatedClock(1_700_000_000 * NS_PER_SECOND)
    for _ in range(10 * 365):
        clock.advance_seconds(86_400)
    clock.advance(1)
    assert clock.now_ns() == 1_700_000_000 * NS_PER_SECOND + TEN_YEARS_NS + 1


def test_simulated_clock_goes_forward_only() -> None:
    clock = SimulatedClock(10)
    with pytest.raises(InvalidTimeError):
        clock.advance(-1)
    with pytest.raises(InvalidTimeError):
        clock.advance_seconds("-0.5")
    with pytest.raises(InvalidTimeError):
        clock.set(9)
    assert clock.now_ns() == 10


@pytest.mark.parametrize("bad", [1.5, "3", True, None])
def test_simulated_clock_rejects_non_integers(bad: object) -> None:
    clock = SimulatedClock()
    with pytest.raises(InvalidTimeError):
        clock.advance(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 2.0, "0"])
def test_simulated_clock_rejects_bad_start(bad: object) -> None:
    with pytest.raises(InvalidTimeError):
        SimulatedClock(bad)  # type: ignore[arg-type]


def test_simulated_clock_round_trip() -> None:
    clock = SimulatedClock(123_456_789_012_345)
    again = SimulatedClock.from_dict(clock.to_dict())
    assert again == clock and again.now_ns() == clock.now_ns()
    with pytest.raises(InvalidTimeError):
        SimulatedClock.from_dict({})


# --- SystemClock ------------------------------------------------------------------------


def test_system_clock_real_time_is_near_wall() -> None:
    import time

    clock = SystemClock()
    assert isinstance(clock, Clock)
    assert abs(clock.now_ns() - time.time_ns()) < 5 * NS_PER_SECOND


def test_system_clock_starts_at_wall_and_follows_monotonic() -> None:
    fake = FakeTime()
    clock = SystemClock(wall=fake.wall, monotonic=fake.monotonic)
    start = fake.wall_ns
    assert clock.now_ns() == start
    fake.mono_ns += 3 * NS_PER_SECOND
    fake.wall_ns -= 3600 * NS_PER_SECOND  # a wall-clock step back (NTP) is ignored
    assert clock.now_ns() == start + 3 * NS_PER_SECOND


def test_system_clock_speed_and_start() -> None:
    fake = FakeTime()
    clock = SystemClock(60, start_ns=1_000, wall=fake.wall, monotonic=fake.monotonic)
    assert clock.now_ns() == 1_000
    fake.mono_ns += NS_PER_SECOND
    assert clock.now_ns() == 1_000 + 60 * NS_PER_SECOND
    assert clock.speed == 60


def test_system_clock_fractional_speed_is_exact() -> None:
    fake = FakeTime()
    clock = SystemClock(0.1, start_ns=0, wall=fake.wall, monotonic=fake.monotonic)
    assert clock.speed == Fraction(1, 10)
    fake.mono_ns += 7
    assert clock.now_ns() == 0  # floor(0.7)
    fake.mono_ns += 3
    assert clock.now_ns() == 1
    third = SystemClock(Fraction(1, 3), start_ns=0, wall=fake.wall, monotonic=fake.monotonic)
    fake.mono_ns += 3 * NS_PER_DAY
    assert third.now_ns() == NS_PER_DAY


@pytest.mark.parametrize("speed", [0, -1, float("nan"), "fast", True])
def test_system_clock_rejects_bad_speed(speed: object) -> None:
    with pytest.raises(InvalidConfigError):
        SystemClock(speed)  # type: ignore[arg-type]


def test_system_clock_rejects_negative_start() -> None:
    with pytest.raises(InvalidTimeError):
        SystemClock(start_ns=-1)
