"""The drift estimator (a Kalman filter on offset and rate) and the windows drawn from it (issue 10).

Pure functions on integers and floats: observations are built from a known clock, so every
figure the filter reports can be compared with the truth.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validator.drift import (
    DEFAULT_PARAMS,
    ClockState,
    initial_state,
    observed_offset_ns,
    predicted_step,
    resync,
    update,
)
from validator.policy import Policy
from validator.windows import pair_range, totp_windows
from vtoken.clock import NS_PER_DAY, NS_PER_SECOND

S = NS_PER_SECOND
PERIOD = 30
T_START = 1_767_225_600 * S  # 2026-01-01T00:00:00Z


def shown_step(at_ns: int, offset0_ns: int, rate: float, period: int = PERIOD, late_ns: int = 0) -> int:
    """The step a clock with ``offset0_ns`` at T_START and ``rate`` showed ``late_ns`` before ``at_ns``."""
    seen = at_ns - late_ns
    device = seen + offset0_ns + round((seen - T_START) * rate)
    return device // (period * S)


def feed(days: list[float], offset0_ns: int = 0, rate: float = 0.0, phase_s: float = 15.0) -> ClockState:
    """Register at T_START + phase, then accept one code at each day in ``days`` (typed at ``phase_s`` into its step)."""
    at = T_START + round(phase_s * S)
    state = initial_state(at, shown_step(at, offset0_ns, rate), PERIOD, 0)
    for day in days:
        at = T_START + round(day * NS_PER_DAY) + round(phase_s * S)
        state = update(state, at, shown_step(at, offset0_ns, rate), PERIOD, 0)
    return state


def test_observation_is_the_middle_of_the_step() -> None:
    # At t = 100 s the token shows step 3 (90..120 s): its offset is in [-10, +20) s, middle +5 s.
    assert observed_offset_ns(100 * S, 3, 30, 0) == 5 * S
    assert observed_offset_ns(100 * S, 3, 30, 10) == 15 * S  # T0 moves the steps


def test_a_new_token_starts_from_the_crystal_prior() -> None:
    state = initial_state(T_START, T_START // (PERIOD * S), PERIOD, 0)
    assert state.rate_ppb == 0
    assert state.rate_sigma_ppm == pytest.approx(50 / math.sqrt(3))
    assert state.var_offset == pytest.approx(PERIOD**2 / 12 + DEFAULT_PARAMS.typing_sigma_s**2)


@pytest.mark.parametrize("ppm", [-50, -12.5, 0, 20, 40])
def test_daily_use_pins_the_rate(ppm: float) -> None:
    state = feed([float(d) for d in range(1, 121)], rate=ppm * 1e-6, phase_s=7.0)
    assert abs(state.rate_ppm - ppm) < 0.5, state
    assert state.rate_sigma_ppm < 1.5
    # The prediction a month ahead is within a step, and the model says how sure it is.
    ahead = state.anchor_ns + 30 * NS_PER_DAY
    prediction = state.predict(ahead)
    truth = round((ahead - T_START) * ppm * 1e-6)
    assert abs(prediction.offset_ns - truth) < 10 * S
    assert prediction.sigma_s < 30


def test_a_short_baseline_moves_the_rate_only_as_far_as_the_evidence_allows() -> None:
    """Issue 10: two codes a day apart, the second typed late in its step, fit −170 ppm with the old model.

    Quantisation alone is ±15 s, i.e. ±170 ppm over one day: the prior (0 ± 29 ppm) must dominate."""
    at0 = T_START + 1 * S  # registered early in a step
    state = initial_state(at0, at0 // (PERIOD * S), PERIOD, 0)
    at1 = T_START + NS_PER_DAY + 29 * S  # typed 29 s into its step: the observation is 14 s late
    state = update(state, at1, at1 // (PERIOD * S), PERIOD, 0)
    assert abs(state.rate_ppm) < 20, state.rate_ppm
    assert state.rate_sigma_ppm > 25  # and it knows the rate is still unknown
    month = state.predict(at1 + 30 * NS_PER_DAY)
    assert abs(month.offset_ns) < 60 * S
    assert month.sigma_s > 60  # a month at ±28 ppm is ±73 s: the next-code window will be wide


@settings(max_examples=200, deadline=None)
@given(
    days=st.lists(st.floats(min_value=0.0, max_value=3_000.0, allow_nan=False), min_size=1, max_size=40),
    ppm=st.floats(min_value=-60, max_value=60),
    phase=st.floats(min_value=0.0, max_value=29.9),
)
def test_the_covariance_stays_a_covariance(days: list[float], ppm: float, phase: float) -> None:
    state = feed(sorted(days), rate=ppm * 1e-6, phase_s=phase)
    assert state.var_offset >= 0 and state.var_rate >= 0
    assert state.cov**2 <= state.var_offset * state.var_rate * (1 + 1e-6) + 1e-30
    assert math.isfinite(state.var_offset) and math.isfinite(state.cov) and math.isfinite(state.var_rate)


@settings(max_examples=100, deadline=None)
@given(
    idle=st.lists(st.integers(min_value=0, max_value=10 * 365 * NS_PER_DAY), min_size=2, max_size=10),
    ppm=st.floats(min_value=-50, max_value=50),
)
def test_uncertainty_grows_with_idle_time(idle: list[int], ppm: float) -> None:
    state = feed([1, 2, 3, 10, 20], rate=ppm * 1e-6)
    sigmas = [state.predict(state.anchor_ns + d).sigma_s for d in sorted(idle)]
    assert sigmas == sorted(sigmas)


def test_a_late_typed_code_alone_barely_moves_a_confident_model() -> None:
    state = feed([float(d) for d in range(1, 61)], phase_s=10.0)
    at = state.anchor_ns + NS_PER_DAY
    late = update(state, at, shown_step(at, 0, 0.0, late_ns=65 * S), PERIOD, 0)
    on_time = update(state, at, shown_step(at, 0, 0.0), PERIOD, 0)
    assert abs(late.offset_ns - on_time.offset_ns) < 12 * S
    assert abs(late.rate_ppm - on_time.rate_ppm) < 1.5


def test_a_confirmed_jump_is_followed() -> None:
    """Two consecutive codes 20 steps off a confident prediction: the clock really moved (set by hand)."""
    state = feed([float(d) for d in range(1, 61)], phase_s=10.0)
    at = state.anchor_ns + NS_PER_DAY
    moved = update(state, at, shown_step(at, 600 * S, 0.0), PERIOD, 0, confirmed=True)
    assert abs(moved.offset_ns - 600 * S) < PERIOD * S
    assert predicted_step(moved, at, PERIOD, 0) == shown_step(at, 600 * S, 0.0)


def test_resync_re_anchors_the_offset_and_keeps_the_rate_widened() -> None:
    state = feed([float(d) for d in range(1, 200, 7)], rate=25e-6, phase_s=12.0)
    assert state.rate_sigma_ppm < 3
    at = state.anchor_ns + 10 * NS_PER_DAY
    step = shown_step(at, 3_600 * S, 25e-6)  # an hour set forward
    after = resync(state, at, step, PERIOD, 0)
    assert after.rate_ppb == state.rate_ppb
    assert state.rate_sigma_ppm < after.rate_sigma_ppm <= 50 / math.sqrt(3) + 1e-9
    assert after.offset_ns == observed_offset_ns(at, step, PERIOD, 0)
    assert after.anchor_ns == at


# --- windows ---------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    offset_s=st.integers(min_value=-10_000, max_value=10_000),
    idle=st.integers(min_value=0, max_value=20 * 365 * NS_PER_DAY),
    var_offset=st.floats(min_value=0, max_value=1e6),
    var_rate=st.floats(min_value=0, max_value=1e-8),
    period=st.sampled_from([30, 60]),
)
def test_windows_are_three_codes_inside_a_bounded_next_code_window(
    offset_s: int, idle: int, var_offset: float, var_rate: float, period: int
) -> None:
    policy = Policy()
    state = ClockState(T_START, offset_s * S, 0, var_offset, 0.0, var_rate)
    w = totp_windows(state, T_START + idle, period, 0, policy)
    assert w.single_codes == 3
    assert w.next_lo <= w.single_lo <= w.predicted_step <= w.single_hi <= w.next_hi
    assert w.single_hi - w.predicted_step in (0, 1)
    assert w.next_hi - w.predicted_step <= policy.max_next_code_window
    assert w.predicted_step - w.next_lo <= policy.max_next_code_window
    assert w.next_hi - w.predicted_step >= policy.min_next_code_window
    assert w.false_accept_single(6) == pytest.approx(3e-6, rel=1e-5)


def test_next_code_window_is_narrow_when_sure_and_wide_when_not() -> None:
    policy = Policy()
    daily = feed([float(d) for d in range(1, 91)], rate=10e-6)
    sure = totp_windows(daily, daily.anchor_ns + NS_PER_DAY, PERIOD, 0, policy)
    unsure = totp_windows(daily, daily.anchor_ns + 365 * NS_PER_DAY, PERIOD, 0, policy)
    new = feed([])
    after_a_month = totp_windows(new, new.anchor_ns + 30 * NS_PER_DAY, PERIOD, 0, policy)
    assert sure.next_codes <= 12
    assert unsure.next_codes > 2 * sure.next_codes
    assert after_a_month.next_codes > 2 * sure.next_codes
    assert sure.false_accept_pair(6, 3) < unsure.false_accept_pair(6, 3) < 1e-8


def test_the_window_leans_back_only_when_the_step_ahead_is_improbable() -> None:
    policy = Policy()
    sure = ClockState(T_START, 0, 0, 1.0, 0.0, 0.0)  # σ ≈ 3.2 s with the typing spread
    early = totp_windows(sure, T_START + 2 * S, PERIOD, 0, policy)  # 2 s into a step: 28 s to the next
    late = totp_windows(sure, T_START + 25 * S, PERIOD, 0, policy)  # 5 s to the next step
    assert (early.single_lo, early.single_hi) == (early.predicted_step - 2, early.predicted_step)
    assert (late.single_lo, late.single_hi) == (late.predicted_step - 1, late.predicted_step + 1)


def test_pair_range_runs_from_the_first_code_to_one_past_the_step_shown_now() -> None:
    policy = Policy()  # late_typing_s 90: a first code may have been typed up to 3 steps late
    state = ClockState(T_START, 0, 0, 1.0, 0.0, 0.0)
    at = T_START + 20 * PERIOD * S + 5 * S
    w = totp_windows(state, at, PERIOD, 0, policy)
    c = w.predicted_step
    # The first code was typed 65 s late, 40 s ago: the token shows c now; the range allows 3 late steps.
    assert pair_range(w, c - 4, at - 40 * S, at, PERIOD, policy) == (c - 3, c + 1, c)
    # The first code was 6 steps ahead of the model (its clock really moved): the range follows it.
    assert pair_range(w, c + 6, at - 40 * S, at, PERIOD, policy) == (c + 7, c + 9, c + 8)
    # However far the model's prediction, the range stays a few codes past the first code ...
    far = totp_windows(ClockState(T_START, 600 * S, 0, 1.0, 0.0, 0.0), at, PERIOD, 0, policy)
    lo, hi, _ = pair_range(far, c, at - 10 * S, at, PERIOD, policy)
    assert hi - lo + 1 <= 5
    # ... and a round that started long ago counts only its timeout.
    lo, hi, _ = pair_range(w, c, 0, at, PERIOD, policy)
    assert hi - c <= policy.next_code_timeout_ns // (PERIOD * S) + 4
