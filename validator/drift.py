"""The drift model: predict a token's clock offset from the history of its codes.

Every accepted code is an observation: at true time ``t`` the token showed step
``s``, so its clock read somewhere in ``[t0 + s·P, t0 + (s+1)·P)`` and its offset
(token minus true time) lay in ``[t0 + s·P − t, t0 + (s+1)·P − t)``. We take the
middle of that interval (an error of at most ``P/2``) and fit a line,
``offset(t) = offset_at_anchor + rate · (t − anchor)``, by weighted least
squares, the weight of an observation halving every ``half_life`` into the
past. Recent observations dominate, so the rate follows a crystal whose
temperature changes with the seasons (at 0 °C a watch crystal runs 21 ppm
slower than at 25 °C); older ones still steady the slope against the ±P/2
quantisation. Then the single worst observation is dropped and the line refitted
if it lies more than one period off, which makes the fit robust to one outlier
(a code typed long after it was shown, a clock set by hand).

The fit is done in floating point (IEEE 754 double, the same on every
machine); the model it yields is stored as integers: ns and parts per billion.

A five-year simulation (``python -m tests.drift_scenario``) chose the default
half-life of 14 days: 7 and 20 days gave similar errors, 40 and 80 days twice
the error, a Theil–Sen fit over 120 days 60 % more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction
from operator import mul as _mul

from validator.records import HistoryEntry
from vtoken.clock import NS_PER_DAY, NS_PER_SECOND

PPB = 1_000_000_000

#: Short-term fit: an observation's weight halves every this long into the past. The short-term
#: rate is trusted this far ahead of the last observation.
DEFAULT_HALF_LIFE_NS = 14 * NS_PER_DAY
#: Long-term fit: the half-life over which seasons average out; its rate is used beyond the short horizon.
LONG_HALF_LIFE_NS = 180 * NS_PER_DAY
#: With no two observations this far apart, the rate is not fitted (quantisation would swamp it).
MIN_BASELINE_NS = NS_PER_DAY
#: At most this many recent observations are fitted: beyond them the short fit's weights are
#: negligible and the long fit already spans well over a year of weekly use. It bounds the cost
#: of the refit after each accepted code (the five-year scenario gives the same accuracy as 200).
MAX_FIT_POINTS = 64
#: Outlier removal needs at least this many observations.
MIN_POINTS_FOR_OUTLIER = 4
#: A fitted rate is clamped to what a working watch crystal can do (± this many ppb).
MAX_RATE_PPB = 200_000


@dataclasses.dataclass(frozen=True)
class DriftModel:
    """A token's clock: offset (ns) at an anchor time, and its rates (ppb, + = token runs fast).

    ``rate_ppb`` is the recent rate, followed for ``horizon_ns`` after the anchor;
    beyond that the clock is extrapolated at ``long_rate_ppb``, the rate over
    months, in which the seasons' temperatures average out.
    """

    anchor_ns: int
    offset_ns: int
    rate_ppb: int = 0
    long_rate_ppb: int = 0
    horizon_ns: int = DEFAULT_HALF_LIFE_NS

    def offset_at(self, at_ns: int) -> int:
        """The predicted offset (token minus true time) at true time ``at_ns``."""
        elapsed = at_ns - self.anchor_ns
        near = max(-self.horizon_ns, min(self.horizon_ns, elapsed))
        far = elapsed - near
        return self.offset_ns + (near * self.rate_ppb + far * self.long_rate_ppb) // PPB

    @property
    def rate_ppm(self) -> Fraction:
        """The recent rate in ppm."""
        return Fraction(self.rate_ppb, 1000)

    @property
    def long_rate_ppm(self) -> Fraction:
        """The long-term rate in ppm."""
        return Fraction(self.long_rate_ppb, 1000)


def observed_offset_ns(at_ns: int, step: int, period: int, t0: int) -> int:
    """The middle of the offsets consistent with seeing ``step`` at ``at_ns``."""
    step_start_ns = (t0 + step * period) * NS_PER_SECOND
    return step_start_ns + period * NS_PER_SECOND // 2 - at_ns


def predicted_step(model: DriftModel, at_ns: int, period: int, t0: int) -> int:
    """The step the token shows at true time ``at_ns`` according to ``model``."""
    device_ns = at_ns + model.offset_at(at_ns)
    return max(0, (device_ns - t0 * NS_PER_SECOND) // (period * NS_PER_SECOND))


def fit(
    history: Sequence[HistoryEntry],
    period: int,
    t0: int,
    *,
    half_life_ns: int = DEFAULT_HALF_LIFE_NS,
    long_half_life_ns: int = LONG_HALF_LIFE_NS,
    prior_rate_ppb: int = 0,
) -> DriftModel | None:
    """Fit a :class:`DriftModel` to the observations in ``history`` (ascending time).

    Two weighted fits: a short one (``half_life_ns``) for the offset and the
    recent rate, a long one (``long_half_life_ns``) for the long-term rate.
    With no pair of observations :data:`MIN_BASELINE_NS` apart, the rates stay
    ``prior_rate_ppb``. Returns ``None`` for an empty history.
    """
    if not history:
        return None
    recent = history[-MAX_FIT_POINTS:]
    latest = recent[-1].at_ns
    # Times in seconds before the latest observation, and the observed offsets in seconds.
    ts = [(h.at_ns - latest) / NS_PER_SECOND for h in recent]
    offsets = [observed_offset_ns(h.at_ns, h.step, period, t0) / NS_PER_SECOND for h in recent]
    prior = prior_rate_ppb / PPB
    offset, rate = _robust_line(ts, offsets, max(half_life_ns, 1) / NS_PER_SECOND, prior, period)
    _, long_rate = _robust_line(ts, offsets, max(long_half_life_ns, 1) / NS_PER_SECOND, prior, period)
    return DriftModel(
        anchor_ns=latest,
        offset_ns=round(offset * NS_PER_SECOND),
        rate_ppb=_clamp_rate(rate),
        long_rate_ppb=_clamp_rate(long_rate),
        horizon_ns=half_life_ns,
    )


def _clamp_rate(rate: float) -> int:
    return max(-MAX_RATE_PPB, min(MAX_RATE_PPB, round(rate * PPB)))


def _robust_line(
    ts: list[float], offsets: list[float], half_life_s: float, prior_rate: float, period: int
) -> tuple[float, float]:
    """The weighted line, refitted without its worst point when that lies more than a period off."""
    # An observation's weight depends only on its own time, so the refit reuses the weights.
    weights = [2.0 ** (t / half_life_s) for t in ts]
    offset, rate = _weighted_line(ts, offsets, weights, prior_rate)
    if len(ts) >= MIN_POINTS_FOR_OUTLIER:
        residuals = [abs(o - (offset + rate * t)) for t, o in zip(ts, offsets)]
        worst = residuals.index(max(residuals))  # the first of the largest
        if residuals[worst] > period:
            offset, rate = _weighted_line(
                _without(ts, worst), _without(offsets, worst), _without(weights, worst), prior_rate
            )
    return offset, rate


def _without(values: list[float], index: int) -> list[float]:
    return values[:index] + values[index + 1 :]


def _weighted_line(
    ts: list[float], offsets: list[float], weights: list[float], prior_rate: float
) -> tuple[float, float]:
    """Offset at t = 0 and rate of the weighted least-squares line through ``(ts, offsets)`` (t <= 0).

    The sums run over the same products in the same order as a plain loop would
    (``sum`` of ``map(mul, ...)``), so the result is the same to the last bit.
    """
    total = sum(weights)
    mean_t = sum(map(_mul, weights, ts)) / total
    mean_o = sum(map(_mul, weights, offsets)) / total
    spread = ts[-1] - ts[0]
    if len(ts) < 2 or spread < MIN_BASELINE_NS / NS_PER_SECOND:
        return mean_o - prior_rate * mean_t, prior_rate
    dts = [t - mean_t for t in ts]
    weighted_dts = list(map(_mul, weights, dts))  # w * (t - mean_t)
    s_tt = sum(map(_mul, weights, [d**2 for d in dts]))  # w * (t - mean_t) ** 2
    s_to = sum(map(_mul, weighted_dts, [o - mean_o for o in offsets]))  # w * (t - mean_t) * (o - mean_o)
    rate = s_to / s_tt if s_tt > 0 else prior_rate
    return mean_o - rate * mean_t, rate
