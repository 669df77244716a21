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

from validator.records import HistoryEntry

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND
PPB = 1_000_000_000

#: Short-term fit: an observation's weight halves every this long into the past. The short-term
#: rate is trusted this far ahead of the last observation.
DEFAULT_HALF_LIFE_NS = 14 * NS_PER_DAY
#: Long-term fit: the half-life over which seasons average out; its rate is used beyond the short horizon.
LONG_HALF_LIFE_NS = 180 * NS_PER_DAY
#: With no two observations this far apart, the rate is not fitted (quantisation would swamp it).
MIN_BASELINE_NS = NS_PER_DAY
#: At most this many recent observations are fitted.
MAX_FIT_POINTS = 200
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
    points = [
        ((h.at_ns - latest) / NS_PER_SECOND, observed_offset_ns(h.at_ns, h.step, period, t0) / NS_PER_SECOND)
        for h in recent
    ]
    prior = prior_rate_ppb / PPB
    offset, rate = _robust_line(points, max(half_life_ns, 1) / NS_PER_SECOND, prior, period)
    _, long_rate = _robust_line(points, max(long_half_life_ns, 1) / NS_PER_SECOND, prior, period)
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
    points: Sequence[tuple[float, float]], half_life_s: float, prior_rate: float, period: int
) -> tuple[float, float]:
    """The weighted line, refitted without its worst point when that lies more than a period off."""
    offset, rate = _weighted_line(points, half_life_s, prior_rate)
    if len(points) >= MIN_POINTS_FOR_OUTLIER:
        residuals = [abs(o - (offset + rate * t)) for t, o in points]
        worst = max(range(len(points)), key=residuals.__getitem__)
        if residuals[worst] > period:
            offset, rate = _weighted_line([*points[:worst], *points[worst + 1 :]], half_life_s, prior_rate)
    return offset, rate


def _weighted_line(points: Sequence[tuple[float, float]], half_life_s: float, prior_rate: float) -> tuple[float, float]:
    """Offset at t = 0 and rate of the weighted least-squares line through ``points`` (t <= 0)."""
    weights = [2.0 ** (t / half_life_s) for t, _ in points]
    total = sum(weights)
    mean_t = sum(w * t for w, (t, _) in zip(weights, points)) / total
    mean_o = sum(w * o for w, (_, o) in zip(weights, points)) / total
    spread = points[-1][0] - points[0][0]
    if len(points) < 2 or spread < MIN_BASELINE_NS / NS_PER_SECOND:
        return mean_o - prior_rate * mean_t, prior_rate
    s_tt = sum(w * (t - mean_t) ** 2 for w, (t, _) in zip(weights, points))
    s_to = sum(w * (t - mean_t) * (o - mean_o) for w, (t, o) in zip(weights, points))
    rate = s_to / s_tt if s_tt > 0 else prior_rate
    return mean_o - rate * mean_t, rate
