"""The 32.768 kHz crystal RTC: exact drift over temperature, aging and calibration."""

from __future__ import annotations

import json
import time
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.rtc import (
    CALIBRATION_STEP_PPM,
    NOMINAL_HZ,
    RTC,
    Calibration,
    CrystalParams,
    TemperatureProfile,
)
from vtoken.clock import NS_PER_DAY, NS_PER_SECOND, NS_PER_YEAR
from vtoken.errors import InvalidConfigError, InvalidTimeError

T0 = 1_700_000_000 * NS_PER_SECOND  # a factory date
HOUR_NS = 3600 * NS_PER_SECOND


def rtc_at(ppm: object = 0, celsius: object = 25, **crystal: object) -> RTC:
    """An RTC made and set correctly at T0."""
    return RTC(
        CrystalParams(ppm_25=ppm, **crystal),  # type: ignore[arg-type]
        TemperatureProfile.constant(celsius),
        factory_ns=T0,
    )


# --- headline figures -------------------------------------------------------------------------


def test_20_ppm_gains_630_72_s_per_year() -> None:
    rtc = rtc_at(20)
    assert rtc.offset_ns(T0 + NS_PER_YEAR) == 630_720_000_000
    assert rtc.device_time_ns(T0 + NS_PER_YEAR) == T0 + NS_PER_YEAR + 630_720_000_000


def test_1_ppm_is_86_4_ms_per_day() -> None:
    assert rtc_at(1).offset_ns(T0 + NS_PER_DAY) == 86_400_000
    assert rtc_at(-1).offset_ns(T0 + NS_PER_DAY) == -86_400_000


def test_0_celsius_is_minus_21_25_ppm() -> None:
    rtc = rtc_at(0, 0)
    assert rtc.ppm(T0) == Fraction("-21.25")
    assert rtc.crystal.temperature_ppm(0) == Fraction("-21.25")
    assert rtc.offset_ns(T0 + NS_PER_YEAR) == -670_140_000_000  # −21.25 × 31.536 s


def test_heat_and_cold_both_slow_it() -> None:
    assert rtc_at(0, 50).offset_ns(T0 + NS_PER_DAY) == rtc_at(0, 0).offset_ns(T0 + NS_PER_DAY) < 0


def test_float_parameters_are_exact() -> None:
    crystal = CrystalParams(ppm_25=0.1, temp_coeff=-0.034)
    assert crystal.ppm_25 == Fraction(1, 10)
    assert crystal.temp_coeff == Fraction(-17, 500)
    assert rtc_at(0.1).offset_ns(T0 + 10 * NS_PER_SECOND) == 1_000


def test_aging_3_ppm_per_year_averages_1_5_ppm() -> None:
    rtc = rtc_at(0, aging_ppm_per_year=3)
    assert rtc.offset_ns(T0 + NS_PER_YEAR) == 47_304_000_000
    assert rtc.ppm(T0 + NS_PER_YEAR) == 3
    assert rtc.ppm(T0) == 0


def test_aging_counts_from_factory_not_reference() -> None:
    rtc = RTC(CrystalParams(aging_ppm_per_year=3), factory_ns=T0, ref_true_ns=T0 + NS_PER_YEAR)
    # second year: average 4.5 ppm
    assert rtc.offset_ns(T0 + 2 * NS_PER_YEAR) == 3 * 47_304_000_000


def test_constant_evaluation_is_cheap_over_a_century() -> None:
    rtc = rtc_at(20)
    assert rtc.offset_ns(T0 + 100 * NS_PER_YEAR) == 100 * 630_720_000_000


# --- calibration ------------------------------------------------------------------------------


def test_calibration_arithmetic() -> None:
    assert Calibration().ppm == 0
    assert Calibration(calm=1).ppm == Fraction(-10**6, 2**20)
    assert Calibration(calp=True).ppm == Fraction("488.28125")
    assert Calibration(calm=511).ppm == Fraction(-511 * 10**6, 2**20)
    assert Calibration(calm=511, calp=True).ppm == CALIBRATION_STEP_PPM
    assert float(CALIBRATION_STEP_PPM) == pytest.approx(0.9537, abs=1e-4)


def test_calibration_applies_to_drift() -> None:
    rtc = RTC(CrystalParams(ppm_25=20), calibration=Calibration(calm=21), factory_ns=T0)
    # 20 − 21 × 0.95367431640625 = −0.02716064453125 ppm
    expected = Fraction(20) - 21 * CALIBRATION_STEP_PPM
    assert rtc.ppm(T0) == expected
    assert rtc.offset_ns(T0 + 2**20 * NS_PER_SECOND) == int(expected * 2**20 * 1000)


@pytest.mark.parametrize(
    ("ppm", "calm", "calp"),
    [
        (0, 0, False),
        (-20, 21, False),  # 20 / 0.9537 = 20.97
        (-0.4, 0, False),
        (-0.5, 1, False),
        (0.9, 511, True),
        (20, 491, True),  # +21 pulses
        (488.28125, 0, True),
        (-487.3, 511, False),
    ],
)
def test_calibration_nearest(ppm: float, calm: int, calp: bool) -> None:
    assert Calibration.nearest(ppm) == Calibration(calm=calm, calp=calp)


@given(st.fractions(min_value=-487, max_value=488))
def test_calibration_nearest_is_within_half_a_step(ppm: Fraction) -> None:
    assert abs(Calibration.nearest(ppm).ppm - ppm) <= CALIBRATION_STEP_PPM / 2


def test_calibration_nearest_out_of_range() -> None:
    with pytest.raises(InvalidConfigError):
        Calibration.nearest(-500)
    with pytest.raises(InvalidConfigError):
        Calibration.nearest(490)
    assert Calibration.nearest(-500, clamp=True) == Calibration(calm=511)
    assert Calibration.nearest(1000, clamp=True) == Calibration(calm=0, calp=True)


def test_calibration_from_pulses_covers_every_setting_once() -> None:
    settings_seen = {Calibration.from_pulses(n) for n in range(-511, 513)}
    assert len(settings_seen) == 1024
    assert all(Calibration.from_pulses(c.pulses) == c for c in settings_seen)


@pytest.mark.parametrize(
    "kwargs", [{"calm": -1}, {"calm": 512}, {"calm": 1.0}, {"calm": True}, {"calp": 1}, {"calp": "yes"}]
)
def test_calibration_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidConfigError):
        Calibration(**kwargs)  # type: ignore[arg-type]


# --- parameters and profiles --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ppm_25": 1001},
        {"ppm_25": float("nan")},
        {"ppm_25": "x"},
        {"temp_coeff": 2},
        {"turnover_c": 298},
        {"aging_ppm_per_year": -101},
        {"ppm_25": True},
    ],
)
def test_crystal_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidConfigError):
        CrystalParams(**kwargs)  # type: ignore[arg-type]


def test_crystal_defaults_and_round_trip() -> None:
    crystal = CrystalParams(ppm_25="-12.5", aging_ppm_per_year=0.7)
    assert crystal.temp_coeff == Fraction(-34, 1000)
    assert crystal.turnover_c == 25
    assert CrystalParams.from_dict(json.loads(json.dumps(crystal.to_dict()))) == crystal
    assert crystal.to_dict()["temp_coeff"] == "-17/500"


def test_profile_schedule_and_segments() -> None:
    profile = TemperatureProfile.schedule([(100, 20), (200, "-5.5"), (300, 30)])
    assert profile.celsius_at(0) == 20  # the first value holds before the first step
    assert profile.celsius_at(199) == 20
    assert profile.celsius_at(200) == Fraction(-11, 2)
    assert profile.celsius_at(10**20) == 30
    # a step that repeats the value in force still starts a new piece
    assert list(profile.segments(50, 250)) == [(50, 100, 20), (100, 200, 20), (200, 250, Fraction(-11, 2))]
    assert list(profile.segments(200, 300)) == [(200, 300, Fraction(-11, 2))]
    assert list(profile.segments(150, 400)) == [(150, 200, 20), (200, 300, Fraction(-11, 2)), (300, 400, 30)]
    assert list(profile.segments(5, 5)) == []
    assert list(TemperatureProfile.constant(7).segments(0, 9)) == [(0, 9, 7)]


def test_profile_with_step_replaces_the_future() -> None:
    profile = TemperatureProfile.schedule([(100, 20), (200, 0), (300, 30)])
    changed = profile.with_step(150, 40)
    assert changed.steps == ((100, 20), (150, 40))
    assert changed.celsius_at(50) == 20
    early = profile.with_step(10, 5)
    assert early.celsius_at(9) == 20 and early.celsius_at(10) == 5 and early.celsius_at(10**15) == 5
    assert profile.with_step(150, 20).steps == ((100, 20),)  # no change, no new step


@pytest.mark.parametrize(
    "steps",
    [[], [(100, 20), (100, 21)], [(200, 20), (100, 21)], [(0, 500)], [(-1, 20)], [(0.5, 20)], [(0,)]],
)
def test_profile_validation(steps: list[tuple[object, ...]]) -> None:
    with pytest.raises((InvalidConfigError, InvalidTimeError)):
        TemperatureProfile.schedule(steps)  # type: ignore[arg-type]


def test_profile_round_trip() -> None:
    profile = TemperatureProfile.schedule([(0, 20), (5, "-3.25"), (99, 0.1)])
    data = json.loads(json.dumps(profile.to_dict()))
    assert TemperatureProfile.from_dict(data) == profile


# --- schedules against brute force ----------------------------------------------------------


def hourly_schedule(hours: int) -> list[tuple[int, Fraction]]:
    """A day/night cycle with a cold snap, changing every 3 hours."""
    temps = [Fraction(v, 10) for v in (182, 231, 274, 305, 260, 205, 120, -35, -80, 15, 95, 150)]
    return [(T0 + h * HOUR_NS, temps[(h // 3) % len(temps)]) for h in range(0, hours, 3)]


def test_schedule_matches_brute_force_integration() -> None:
    hours = 24 * 60
    crystal = CrystalParams(ppm_25="13.7", temp_coeff="-0.036", turnover_c="24.5", aging_ppm_per_year="2.9")
    cal = Calibration(calm=7)
    profile = TemperatureProfile.schedule(hourly_schedule(hours))
    rtc = RTC(crystal, profile, cal, factory_ns=T0 - 30 * NS_PER_DAY, ref_true_ns=T0, ref_device_ns=T0)
    end = T0 + hours * HOUR_NS
    # Brute force in floats, one hour at a time (midpoint rule; ppm is linear within an hour).
    total = 0.0
    for h in range(hours):
        mid = T0 + h * HOUR_NS + HOUR_NS // 2
        total += HOUR_NS * float(rtc.ppm(mid)) * 1e-6
    assert rtc.offset_ns(end) == pytest.approx(total, abs=1_000)  # 1 µs on tens of seconds
    # The midpoint rule is exact for a linear integrand: in Fractions it must match to the ns.
    exact = sum((HOUR_NS * rtc.ppm(T0 + h * HOUR_NS + HOUR_NS // 2) / 10**6 for h in range(hours)), Fraction(0))
    assert rtc.device_time_exact(end) == end + exact


def test_long_schedule_is_fast() -> None:
    span = 5 * NS_PER_YEAR
    steps = [(T0 + i * (span // 10_000), Fraction((i * 7919) % 600 - 200, 10)) for i in range(10_000)]
    rtc = RTC(CrystalParams(ppm_25=-8, aging_ppm_per_year=1), TemperatureProfile.schedule(steps), factory_ns=T0)
    started = time.perf_counter()
    offset = rtc.offset_ns(T0 + span)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5
    assert -3 * 3600 * NS_PER_SECOND < offset < 0


# --- rebasing -------------------------------------------------------------------------------


def test_set_temperature_keeps_past_drift() -> None:
    rtc = rtc_at(20)
    mid = T0 + NS_PER_YEAR
    rtc.set_temperature(mid, 0)
    assert rtc.ref_true_ns == mid
    assert rtc.device_time_ns(mid) == mid + 630_720_000_000
    # second year at 0 °C: 20 − 21.25 = −1.25 ppm → −39.42 s
    assert rtc.offset_ns(mid + NS_PER_YEAR) == 630_720_000_000 - 39_420_000_000
    # the same as one schedule evaluated in one go
    scheduled = RTC(CrystalParams(ppm_25=20), TemperatureProfile.schedule([(T0, 25), (mid, 0)]), factory_ns=T0)
    assert scheduled.device_time_ns(mid + NS_PER_YEAR) == rtc.device_time_ns(mid + NS_PER_YEAR)


def test_set_temperature_replaces_the_scheduled_future() -> None:
    rtc = RTC(profile=TemperatureProfile.schedule([(T0, 25), (T0 + HOUR_NS, 0)]), factory_ns=T0)
    rtc.set_temperature(T0 + HOUR_NS // 2, 25)
    assert rtc.offset_ns(T0 + 10 * HOUR_NS) == 0


def test_set_crystal_ppm_and_calibration_rebase() -> None:
    rtc = rtc_at(20)
    rtc.set_crystal_ppm(T0 + NS_PER_YEAR, -20)
    assert rtc.offset_ns(T0 + 2 * NS_PER_YEAR) == 0
    rtc.set_calibration(T0 + 2 * NS_PER_YEAR, Calibration.nearest(20))
    assert rtc.calibration == Calibration(calp=True, calm=491)
    assert abs(rtc.offset_ns(T0 + 3 * NS_PER_YEAR)) < NS_PER_SECOND  # within 1 s/year


def test_changes_must_be_in_time_order() -> None:
    rtc = rtc_at(20)
    rtc.set_temperature(T0 + 100, 10)
    with pytest.raises(InvalidTimeError):
        rtc.set_temperature(T0 + 99, 20)
    with pytest.raises(InvalidTimeError):
        rtc.set_crystal_ppm(T0, 1)
    with pytest.raises(InvalidTimeError):
        rtc.set_calibration(T0, Calibration())


def test_set_time_and_offset() -> None:
    rtc = rtc_at(20)
    rtc.set_time(T0 + NS_PER_DAY, T0 + NS_PER_DAY - 5 * NS_PER_SECOND)
    assert rtc.offset_ns(T0 + NS_PER_DAY) == -5 * NS_PER_SECOND
    assert rtc.offset_ns(T0 + 2 * NS_PER_DAY) == -5 * NS_PER_SECOND + 20 * 86_400_000
    with pytest.raises(InvalidTimeError):
        rtc.set_time(T0, -1)


def test_evaluating_before_the_reference_integrates_backwards() -> None:
    rtc = RTC(CrystalParams(ppm_25=20), factory_ns=T0, ref_true_ns=T0 + NS_PER_YEAR, ref_device_ns=T0 + NS_PER_YEAR)
    assert rtc.offset_ns(T0) == -630_720_000_000


def test_ticks_count_32768_per_device_second() -> None:
    rtc = RTC(factory_ns=0)
    assert rtc.ticks(NS_PER_SECOND) == NOMINAL_HZ
    assert rtc.ticks(10 * NS_PER_SECOND + 30_517) == 10 * NOMINAL_HZ  # one tick is 30517.578125 ns
    assert rtc.ticks(10 * NS_PER_SECOND + 30_518) == 10 * NOMINAL_HZ + 1
    fast = RTC(CrystalParams(ppm_25=20), factory_ns=0)
    assert fast.ticks(NS_PER_YEAR) == (NS_PER_YEAR + 630_720_000_000) * NOMINAL_HZ // NS_PER_SECOND


def test_true_time_inverts_device_time() -> None:
    rtc = rtc_at(20, aging_ppm_per_year=3)
    target = T0 + NS_PER_YEAR
    true = rtc.true_time_ns(target)
    assert rtc.device_time_ns(true) >= target > rtc.device_time_ns(true - 1)
    assert target - true == pytest.approx(630_720_000_000 + 47_304_000_000, rel=1e-4)
    assert rtc.true_time_ns(T0 - 5) == T0


# --- stopping -------------------------------------------------------------------------------


def test_stop_freezes_device_time_and_set_time_restarts() -> None:
    rtc = rtc_at(20)
    death = T0 + NS_PER_YEAR
    assert rtc.running
    rtc.stop(death)
    assert not rtc.running and rtc.stopped_at_true_ns == death
    frozen = death + 630_720_000_000
    assert rtc.device_time_ns(death) == frozen
    assert rtc.device_time_ns(death + 10 * NS_PER_YEAR) == frozen
    assert rtc.device_time_ns(death - NS_PER_YEAR) == T0  # the past is still there
    rtc.stop(death + 5)  # idempotent
    assert rtc.stopped_at_true_ns == death
    rtc.set_temperature(death + NS_PER_DAY, 0)  # allowed; does not move the frozen value
    assert rtc.device_time_ns(death + 2 * NS_PER_DAY) == frozen
    with pytest.raises(InvalidTimeError):
        rtc.true_time_ns(frozen + 1)
    restart = death + 2 * NS_PER_DAY
    rtc.set_time(restart, frozen)
    assert rtc.running
    # now at 0 °C: 20 − 21.25 = −1.25 ppm
    assert rtc.device_time_ns(restart + NS_PER_DAY) == frozen + NS_PER_DAY - 108_000_000


def test_stop_before_last_change_integrates_back() -> None:
    rtc = rtc_at(20)
    rtc.set_temperature(T0 + 2 * NS_PER_YEAR, 25)  # a no-op change that moves the reference
    rtc.stop(T0 + NS_PER_YEAR)
    assert rtc.device_time_ns(T0 + 3 * NS_PER_YEAR) == T0 + NS_PER_YEAR + 630_720_000_000


# --- persistence ----------------------------------------------------------------------------


def test_round_trip_is_exact() -> None:
    rtc = RTC(
        CrystalParams(ppm_25="17.3", aging_ppm_per_year="-0.9"),
        TemperatureProfile.schedule(hourly_schedule(48)),
        Calibration(calm=3, calp=True),
        factory_ns=T0,
    )
    rtc.set_temperature(T0 + 7 * HOUR_NS + 1, "-3.3")  # the reference becomes a non-integer ns
    assert rtc.ref_device.denominator != 1
    data = json.loads(json.dumps(rtc.to_dict()))
    again = RTC.from_dict(data)
    assert again == rtc
    assert again.to_dict() == rtc.to_dict()
    for t in (T0, T0 + 7 * HOUR_NS + 1, T0 + 100 * HOUR_NS):
        assert again.device_time_exact(t) == rtc.device_time_exact(t)
    rtc.stop(T0 + 200 * HOUR_NS)
    assert RTC.from_dict(json.loads(json.dumps(rtc.to_dict()))) == rtc


def test_from_dict_rejects_damage() -> None:
    data = rtc_at(1).to_dict()
    del data["crystal"]
    with pytest.raises(InvalidConfigError):
        RTC.from_dict(data)
    data = rtc_at(1).to_dict()
    data["crystal"]["ppm_25"] = "2000"
    with pytest.raises(InvalidConfigError):
        RTC.from_dict(data)


def test_rtc_reads_no_wall_clock() -> None:
    import firmware_sim.rtc as module

    source = Path(module.__file__).read_text(encoding="utf-8")  # closes the file (open().read() leaked it)
    assert "import time" not in source and "datetime" not in source


# --- invariants -----------------------------------------------------------------------------

celsius = st.fractions(min_value=-40, max_value=85, max_denominator=100)
profiles = st.lists(
    st.tuples(st.integers(0, 400 * NS_PER_DAY), celsius), min_size=1, max_size=8, unique_by=lambda s: s[0]
).map(lambda steps: TemperatureProfile.schedule(sorted((T0 + t, c) for t, c in steps)))
crystals = st.builds(
    CrystalParams,
    ppm_25=st.fractions(min_value=-1000, max_value=1000, max_denominator=1000),
    temp_coeff=st.fractions(min_value=-1, max_value=0, max_denominator=1000),
    aging_ppm_per_year=st.fractions(min_value=-100, max_value=100, max_denominator=100),
)
calibrations = st.builds(Calibration, calm=st.integers(0, 511), calp=st.booleans())
offsets = st.integers(0, 500 * NS_PER_DAY)


def build(crystal: CrystalParams, profile: TemperatureProfile, cal: Calibration) -> RTC:
    return RTC(crystal, profile, cal, factory_ns=T0)


@settings(max_examples=75, deadline=None)
@given(crystals, profiles, calibrations, offsets, offsets)
def test_device_time_is_monotonic(
    crystal: CrystalParams, profile: TemperatureProfile, cal: Calibration, a: int, b: int
) -> None:
    rtc = build(crystal, profile, cal)
    lo, hi = sorted((a, b))
    assert rtc.device_time_ns(T0 + lo) <= rtc.device_time_ns(T0 + hi)
    assert rtc.device_time_ns(T0 + hi + 1) >= rtc.device_time_ns(T0 + hi)


@settings(max_examples=75, deadline=None)
@given(crystals, profiles, calibrations, offsets, offsets)
def test_rebasing_anywhere_changes_nothing(
    crystal: CrystalParams, profile: TemperatureProfile, cal: Calibration, a: int, b: int
) -> None:
    whole = build(crystal, profile, cal)
    split = build(crystal, profile, cal)
    mid, end = sorted((a, b))
    split.set_crystal_ppm(T0 + mid, crystal.ppm_25)  # rebase, same physics
    split.set_calibration(T0 + mid, cal)
    split.set_profile(T0 + mid, profile)
    assert split.ref_true_ns == T0 + mid
    assert split.device_time_exact(T0 + end) == whole.device_time_exact(T0 + end)
    assert split.device_time_exact(T0 + mid // 2) == whole.device_time_exact(T0 + mid // 2)  # backwards too


@settings(max_examples=50, deadline=None)
@given(crystals, profiles, offsets)
def test_true_time_is_the_first_instant_reading_a_device_time(
    crystal: CrystalParams, profile: TemperatureProfile, offset: int
) -> None:
    rtc = build(crystal, profile, Calibration())
    target = T0 + offset
    true = rtc.true_time_ns(target)
    assert rtc.device_time_ns(true) >= target
    assert true == T0 or rtc.device_time_ns(true - 1) < target
