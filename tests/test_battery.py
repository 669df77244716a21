"""The coin cell: standby and press drain, low and dead thresholds, exact death time."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.battery import LOW_BATTERY_LEVEL, Battery
from vtoken.clock import NS_PER_DAY, NS_PER_YEAR
from vtoken.errors import BatteryDeadError, InvalidConfigError, InvalidTimeError

T0 = 1_700_000_000 * 10**9
FIVE_YEARS = 5 * NS_PER_YEAR


def test_defaults_and_level_arithmetic() -> None:
    battery = Battery(installed_ns=T0)
    assert battery.capacity_years == 5 and battery.capacity_presses == 14_000
    assert battery.level(T0) == 1
    assert battery.level(T0 + NS_PER_YEAR) == Fraction(4, 5)
    assert battery.level(T0 + FIVE_YEARS // 2) == Fraction(1, 2)
    assert battery.level(T0 + FIVE_YEARS) == 0
    assert battery.level(T0 + 2 * FIVE_YEARS) == 0  # clamped


def test_presses_cost_a_fixed_share() -> None:
    battery = Battery(installed_ns=T0)
    for i in range(1400):
        battery.record_press(T0 + i)
    assert battery.presses == 1400
    assert battery.press_cost == Fraction(1, 14_000)
    # 1400 presses = 10 %; standby over 1399 ns is tiny but exact
    assert battery.level(T0 + NS_PER_YEAR) == Fraction(1) - Fraction(1, 10) - Fraction(1, 5)


def test_low_threshold() -> None:
    battery = Battery(capacity_years=10, installed_ns=T0)
    assert LOW_BATTERY_LEVEL == Fraction(1, 10)
    assert not battery.is_low(T0 + 9 * NS_PER_YEAR - 1)
    assert battery.is_low(T0 + 9 * NS_PER_YEAR)  # exactly 10 %
    assert battery.is_low(T0 + 20 * NS_PER_YEAR)


def test_death_time_is_exact() -> None:
    battery = Battery(installed_ns=T0)
    death = T0 + FIVE_YEARS
    assert battery.death_ns(T0) == death
    assert not battery.is_dead(death - 1)
    assert battery.is_dead(death)
    # a non-integer death instant rounds up to the first ns at which the level is 0
    odd = Battery(capacity_years=Fraction(1, 3), installed_ns=0)
    d = odd.death_ns(0)
    assert d == -(-NS_PER_YEAR // 3)
    assert not odd.is_dead(d - 1) and odd.is_dead(d)


def test_presses_shorten_life() -> None:
    battery = Battery(installed_ns=T0)
    battery.record_press(T0 + NS_PER_DAY)
    # one press = 1/14000 of 5 years of standby
    assert battery.death_ns(T0 + NS_PER_DAY) == T0 + FIVE_YEARS - FIVE_YEARS // 14_000
    for i in range(7000):
        battery.record_press(T0 + NS_PER_DAY + i)
    # 7001 presses: half the charge and a bit gone, plus ~1 day of standby
    death = battery.death_ns(T0 + 2 * NS_PER_DAY)
    assert death is not None
    assert death == T0 + FIVE_YEARS - 7001 * FIVE_YEARS // 14_000


def test_press_capacity_alone_kills_it() -> None:
    battery = Battery(capacity_years=None, capacity_presses=3, installed_ns=0)
    assert battery.death_ns(0) is None
    assert battery.level(10**20) == 1
    for t in (1, 2):
        battery.record_press(t)
    assert battery.level(5) == Fraction(1, 3) and battery.is_low(5) is False
    battery.record_press(9)
    assert battery.is_dead(9) and battery.death_ns(20) == 9
    with pytest.raises(BatteryDeadError):
        battery.record_press(30)


def test_a_press_that_takes_more_than_is_left_empties_it_then() -> None:
    battery = Battery(installed_ns=0)
    battery.set_level(100, Fraction(1, 28_000))
    battery.record_press(200)
    assert battery.level(200) == 0
    assert battery.death_ns(200) == 200


def test_no_drain_at_all() -> None:
    battery = Battery(capacity_years=None, capacity_presses=None, installed_ns=0)
    for t in range(100):
        battery.record_press(t)
    assert battery.level(10**19) == 1 and battery.death_ns(10**19) is None


def test_set_level_rebases() -> None:
    battery = Battery(installed_ns=T0)
    battery.set_level(T0 + NS_PER_DAY, "0.5")
    assert battery.level(T0 + NS_PER_DAY) == Fraction(1, 2)
    assert battery.level(T0 + NS_PER_DAY + NS_PER_YEAR) == Fraction(3, 10)
    assert battery.death_ns(T0 + NS_PER_DAY) == T0 + NS_PER_DAY + FIVE_YEARS // 2
    battery.set_level(T0 + 2 * NS_PER_DAY, 0)
    assert battery.is_dead(T0 + 2 * NS_PER_DAY)
    assert battery.death_ns(T0 + 3 * NS_PER_DAY) == T0 + 2 * NS_PER_DAY
    battery.set_level(T0 + 3 * NS_PER_DAY, 1)  # revived for the simulation
    assert not battery.is_dead(T0 + 3 * NS_PER_DAY)
    for bad in (-0.1, 1.01, "x", True):
        with pytest.raises(InvalidConfigError):
            battery.set_level(T0 + 3 * NS_PER_DAY, bad)  # type: ignore[arg-type]


def test_events_and_queries_must_be_in_order() -> None:
    battery = Battery(installed_ns=T0)
    with pytest.raises(InvalidTimeError):
        battery.level(T0 - 1)
    battery.record_press(T0 + 100)
    for call in (battery.level, battery.is_low, battery.is_dead, battery.death_ns, battery.record_press):
        with pytest.raises(InvalidTimeError):
            call(T0 + 99)
    with pytest.raises(InvalidTimeError):
        battery.set_level(T0 + 99, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity_years": 0},
        {"capacity_years": -1},
        {"capacity_years": 101},
        {"capacity_years": "abc"},
        {"capacity_presses": 0},
        {"capacity_presses": 1.5},
        {"capacity_presses": True},
        {"presses": -1},
        {"ref_level": 2},
    ],
)
def test_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidConfigError):
        Battery(**kwargs)  # type: ignore[arg-type]


def test_time_validation() -> None:
    with pytest.raises(InvalidTimeError):
        Battery(installed_ns=-1)
    with pytest.raises(InvalidTimeError):
        Battery(installed_ns=10, ref_ns=5)


def test_float_capacity_is_exact() -> None:
    battery = Battery(capacity_years=0.1, installed_ns=0)
    assert battery.capacity_years == Fraction(1, 10)
    assert battery.death_ns(0) == NS_PER_YEAR // 10


def test_round_trip() -> None:
    battery = Battery(capacity_years="4.5", capacity_presses=1234, installed_ns=T0)
    battery.record_press(T0 + 7)
    battery.record_press(T0 + NS_PER_DAY + 3)
    data = json.loads(json.dumps(battery.to_dict()))
    again = Battery.from_dict(data)
    assert again == battery and again.to_dict() == data
    assert again.level(T0 + NS_PER_YEAR) == battery.level(T0 + NS_PER_YEAR)
    assert again.presses == 2
    free = Battery(capacity_years=None, capacity_presses=None)
    assert Battery.from_dict(json.loads(json.dumps(free.to_dict()))) == free
    with pytest.raises(InvalidConfigError):
        Battery.from_dict({"capacity_years": "5"})


@settings(max_examples=60, deadline=None)
@given(
    st.fractions(min_value=Fraction(1, 100), max_value=10, max_denominator=1000),
    st.integers(1, 20_000),
    st.lists(st.integers(0, NS_PER_YEAR), max_size=30),
    st.integers(0, 12 * NS_PER_YEAR),
)
def test_dead_exactly_from_death_time(years: Fraction, capacity: int, presses: list[int], probe: int) -> None:
    battery = Battery(capacity_years=years, capacity_presses=capacity, installed_ns=0)
    last = 1
    for t in sorted(presses):
        if battery.is_dead(t):
            break
        battery.record_press(t)
        assert battery.level(t) <= last
        last = battery.level(t)
    start = battery.to_dict()["ref_ns"]
    probe = max(probe, start)
    death = battery.death_ns(probe)
    assert death is not None
    assert battery.is_dead(probe) == (probe >= death)
    assert battery.is_dead(max(death, start))
    if death - 1 >= start:
        assert not battery.is_dead(death - 1)
