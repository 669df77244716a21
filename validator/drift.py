"""The drift model: a token's clock as a state with its uncertainty, updated in O(1) per code.

The state is the token's clock offset θ (token minus true time, in s) and rate
r (s/s, + = the token runs fast), with a 2×2 covariance. It is a Kalman filter
on the model every clock-discipline text starts from::

    θ(t + Δ) = θ(t) + r·Δ        r(t + Δ) = r(t) + w,   w ~ N(0, q·Δ)

**Measurement.** A code for step ``s`` typed at true time ``t`` says the token
read somewhere in ``[t0 + s·P, t0 + (s+1)·P)`` when the code was shown, a few
seconds before ``t``. We observe the middle of that interval minus ``t``; its
error is the quantisation, uniform over one step (variance P²/12), plus the
spread of the typing delay. The mean typing delay is absorbed into θ, which is
what the validator needs: the step a user *types*, not the step the token shows
at the same instant.

**Prior.** A new token's rate is 0 ± :data:`RATE_PRIOR_SIGMA_PPM` (the
tolerance of a 32 kHz watch crystal, ±20 ppm at 25 °C, plus temperature and
aging: the spread of a uniform ±50 ppm). So two codes a day apart, which carry
±15 s of quantisation each (±170 ppm over a day), move the rate only as far as
that evidence outweighs the prior; a month of use pins it to a ppm.

**Process noise.** Temperature and aging change the rate: a car's seasons move
a crystal between 0 and −14 ppm over months, aging adds 1–3 ppm a year. Both
are modelled as a random walk of the rate, :data:`RATE_WALK_PPM_PER_SQRT_YEAR`.
The offset's predicted variance therefore grows with idle time Δ as
``P_θθ + 2Δ·P_θr + Δ²·P_rr + q·Δ³/3``: after a year in a drawer the model
knows it is unsure, and the next-code window (see :mod:`validator.service`)
widens with exactly that.

What we took from chrony and NTP, and why:

* chrony's ``sourcestats`` fits offset and frequency by weighted regression and
  keeps the *skew* (the frequency's error bound) next to the estimate, so the
  dispersion of a prediction grows with the time since the last sample. The
  Kalman covariance is the same idea in recursive form: ``P_rr`` is the skew²,
  and the growth of ``P_θθ`` with Δ is chrony's dispersion. Recursion keeps the
  check path O(1): no history is read to decide.
* chrony's runs test drops old samples when the residuals show a trend the
  model does not explain. Its recursive counterpart here is the innovation
  test: an observation whose innovation exceeds :data:`GATE_SIGMAS` standard
  deviations is weighted down (Huber) when it comes alone, since it is most
  likely a code typed late; when two consecutive codes confirm it (a next-code
  round), the offset's variance is raised until the innovation sits on the
  gate, so the model follows a clock that really moved instead of arguing with
  it, and the rate is left to the codes that follow (a resync does the same).
* NTP's clock discipline (RFC 5905 §11.3) mixes a phase-locked loop at short
  poll intervals with a frequency-locked loop at long ones. The Kalman gain
  does this by itself: an observation soon after the last one mostly corrects
  the offset; one after a long gap mostly corrects the rate. NTP's frequency
  clamp (500 ppm) becomes the prior and :data:`MAX_RATE_PPB`.

Aging as a third state did not earn its keep: over the five-year field
scenario (``python -m tests.drift_scenario``) the temperature-driven rate
changes are ten times larger than aging, which the rate random walk absorbs.

The filter runs in IEEE 754 double precision (the same on every machine); the
stored state is the offset in ns and the rate in ppb as integers, and the
covariance as three doubles.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

from vtoken.clock import NS_PER_SECOND, NS_PER_YEAR

PPB = 1_000_000_000
PPM = 1_000_000

#: The rate prior's standard deviation (ppm): a uniform ±50 ppm crystal error has σ = 50/√3.
RATE_PRIOR_SIGMA_PPM = 50 / math.sqrt(3)
#: Temperature and aging as a random walk of the rate: its standard deviation after one year (ppm).
RATE_WALK_PPM_PER_SQRT_YEAR = 3.0
#: Short-term wander of the offset (daily temperature cycles, the moment of the day a code is typed) as a
#: random walk: its standard deviation after one day (s).
OFFSET_WALK_S_PER_SQRT_DAY = 0.5
#: The spread (standard deviation) of the delay between a code being shown and it being typed (s).
TYPING_SIGMA_S = 3.0
#: An innovation beyond this many standard deviations is weighted down (alone) or widens the state (confirmed).
GATE_SIGMAS = 3.0
#: A resync keeps the rate but widens its standard deviation by this factor, plus :data:`RESYNC_RATE_SIGMA_PPM`.
RESYNC_RATE_WIDEN = 2.0
RESYNC_RATE_SIGMA_PPM = 5.0
#: The rate estimate is clamped to what a working watch crystal can do (± this many ppb).
MAX_RATE_PPB = 200_000

_S = float(NS_PER_SECOND)
_YEAR_S = NS_PER_YEAR / NS_PER_SECOND
_DAY_S = 86_400.0


@dataclasses.dataclass(frozen=True)
class DriftParams:
    """The filter's noise model; the defaults are the module constants."""

    rate_prior_sigma_ppm: float = RATE_PRIOR_SIGMA_PPM
    rate_walk_ppm_per_sqrt_year: float = RATE_WALK_PPM_PER_SQRT_YEAR
    typing_sigma_s: float = TYPING_SIGMA_S
    gate_sigmas: float = GATE_SIGMAS
    offset_walk_s_per_sqrt_day: float = OFFSET_WALK_S_PER_SQRT_DAY

    @functools.cached_property
    def rate_prior_var(self) -> float:
        """The rate prior's variance, (s/s)²."""
        return (self.rate_prior_sigma_ppm / PPM) ** 2

    @functools.cached_property
    def rate_walk_q(self) -> float:
        """The rate random walk's spectral density, (s/s)² per second."""
        return (self.rate_walk_ppm_per_sqrt_year / PPM) ** 2 / _YEAR_S

    @functools.cached_property
    def offset_walk_q(self) -> float:
        """The offset random walk's spectral density, s² per second."""
        return self.offset_walk_s_per_sqrt_day**2 / _DAY_S

    @functools.cached_property
    def typing_var(self) -> float:
        """The typing delay's variance, s²."""
        return self.typing_sigma_s**2

    @functools.cached_property
    def gate2(self) -> float:
        """The innovation gate, squared (in standard deviations²)."""
        return self.gate_sigmas**2

    def measurement_var(self, period: int) -> float:
        """Variance (s²) of one observed offset: quantisation over one step plus typing spread."""
        return period * period / 12.0 + self.typing_var


DEFAULT_PARAMS = DriftParams()


class Prediction(NamedTuple):
    """The predicted offset at one instant: mean (ns) and standard deviation (s)."""

    offset_ns: int
    sigma_s: float


class ClockState(NamedTuple):
    """A token's clock at true time ``anchor_ns``: offset (ns), rate (ppb), and their covariance.

    ``var_offset`` is in s², ``cov`` in s (offset s × rate s/s), ``var_rate`` in (s/s)².
    An immutable value (a named tuple: cheap to make on every check).
    """

    anchor_ns: int
    offset_ns: int
    rate_ppb: int = 0
    var_offset: float = 0.0
    cov: float = 0.0
    var_rate: float = 0.0

    @property
    def rate_ppm(self) -> float:
        """The rate in ppm."""
        return self.rate_ppb / 1000

    @property
    def rate_sigma_ppm(self) -> float:
        """The rate's standard deviation in ppm."""
        return math.sqrt(max(0.0, self.var_rate)) * PPM

    def offset_at(self, at_ns: int) -> int:
        """The predicted offset (token minus true time, ns) at true time ``at_ns``."""
        return self.offset_ns + (at_ns - self.anchor_ns) * self.rate_ppb // PPB

    def predict(self, at_ns: int, params: DriftParams = DEFAULT_PARAMS) -> Prediction:
        """The offset at ``at_ns`` with its standard deviation (process noise included for Δ > 0)."""
        return Prediction(self.offset_at(at_ns), math.sqrt(self.offset_var_at(at_ns, params)))

    def offset_var_at(self, at_ns: int, params: DriftParams = DEFAULT_PARAMS) -> float:
        """The predicted offset's variance (s²) at ``at_ns``."""
        dt = (at_ns - self.anchor_ns) / _S
        var = self.var_offset + 2.0 * dt * self.cov + dt * dt * self.var_rate
        if dt > 0:
            var += params.rate_walk_q * dt * dt * dt / 3.0 + params.offset_walk_q * dt
        return max(var, 0.0)


def observed_offset_ns(at_ns: int, step: int, period: int, t0: int) -> int:
    """The middle of the offsets consistent with seeing ``step`` at ``at_ns``."""
    step_start_ns = (t0 + step * period) * NS_PER_SECOND
    return step_start_ns + period * NS_PER_SECOND // 2 - at_ns


def initial_state(
    at_ns: int, step: int, period: int, t0: int, params: DriftParams = DEFAULT_PARAMS
) -> ClockState:
    """A new token's state from its first observed step: offset as observed, rate from the prior."""
    return ClockState(
        anchor_ns=at_ns,
        offset_ns=observed_offset_ns(at_ns, step, period, t0),
        rate_ppb=0,
        var_offset=params.measurement_var(period),
        cov=0.0,
        var_rate=params.rate_prior_var,
    )


def update(
    state: ClockState,
    at_ns: int,
    step: int,
    period: int,
    t0: int,
    *,
    confirmed: bool = False,
    params: DriftParams = DEFAULT_PARAMS,
) -> ClockState:
    """The state after observing ``step`` typed at ``at_ns``.

    ``confirmed``: the step is backed by a second consecutive code, so a large
    innovation means the clock really moved: the predicted covariance is scaled
    to fit it. Otherwise a large innovation (most likely a late-typed code) is
    weighted down.
    """
    dt = (at_ns - state.anchor_ns) / _S
    # Predict: F = [[1, dt], [0, 1]], Q = q·[[dt³/3, dt²/2], [dt²/2, dt]] (for dt > 0).
    p00 = state.var_offset + 2.0 * dt * state.cov + dt * dt * state.var_rate
    p01 = state.cov + dt * state.var_rate
    p11 = state.var_rate
    if dt > 0:
        q = params.rate_walk_q
        p00 += q * dt * dt * dt / 3.0 + params.offset_walk_q * dt
        p01 += q * dt * dt / 2.0
        p11 += q * dt
    predicted_ns = state.offset_at(at_ns)
    rate = state.rate_ppb / PPB
    # Observe: H = [1, 0].
    r = params.measurement_var(period)
    innovation = (observed_offset_ns(at_ns, step, period, t0) - predicted_ns) / _S
    nu2 = innovation * innovation
    if not confirmed and innovation < 0 and nu2 > params.gate2 * r:
        # The token looks further behind than the typing spread allows: the code may have been typed
        # late (a code is never typed before it is shown). Count that lateness as noise, so the state
        # keeps the doubt and the next windows cover both readings.
        r += nu2
    s = p00 + r
    gate2 = params.gate2 * s
    if nu2 > gate2:
        if confirmed:
            # A step of the clock the model did not foresee (set by hand, a drift it missed): raise the
            # offset's variance until the innovation sits on the gate. The rate learns from later codes.
            p00 += nu2 / params.gate2 - s
            s = p00 + r
        else:
            # Huber: beyond the gate the observation counts as if its noise were larger.
            s = s * math.sqrt(nu2 / gate2)
            r = s - p00
    k0 = p00 / s
    k1 = p01 / s
    offset_s = innovation * k0
    rate += innovation * k1
    # Joseph-free form is stable here: 2×2, well-conditioned, and P stays symmetric by construction.
    n00 = (1.0 - k0) * p00
    n01 = (1.0 - k0) * p01
    n11 = p11 - k1 * p01
    return ClockState(
        anchor_ns=at_ns,
        offset_ns=predicted_ns + round(offset_s * _S),
        rate_ppb=_clamp_rate(rate),
        var_offset=max(n00, 0.0),
        cov=n01,
        var_rate=max(n11, 0.0),
    )


def resync(
    state: ClockState, at_ns: int, step: int, period: int, t0: int, params: DriftParams = DEFAULT_PARAMS
) -> ClockState:
    """Re-anchor the offset on a two-code resync; keep the rate with its uncertainty widened.

    A resync may follow a clock set by hand or a drift the model missed: the
    offset is taken from the pair alone, the rate learnt so far is kept (it is
    still the crystal's), and its standard deviation is widened so the next
    codes can correct it quickly.
    """
    widened = (RESYNC_RATE_WIDEN**2) * state.var_rate + (RESYNC_RATE_SIGMA_PPM / PPM) ** 2
    return ClockState(
        anchor_ns=at_ns,
        offset_ns=observed_offset_ns(at_ns, step, period, t0),
        rate_ppb=state.rate_ppb,
        var_offset=params.measurement_var(period),
        cov=0.0,
        var_rate=min(widened, params.rate_prior_var),
    )


def predicted_step(state: ClockState, at_ns: int, period: int, t0: int) -> int:
    """The step the token shows (as typed) at true time ``at_ns`` according to ``state``."""
    device_ns = at_ns + state.offset_at(at_ns)
    return max(0, (device_ns - t0 * NS_PER_SECOND) // (period * NS_PER_SECOND))


def _clamp_rate(rate: float) -> int:
    return max(-MAX_RATE_PPB, min(MAX_RATE_PPB, round(rate * PPB)))


__all__ = [
    "DEFAULT_PARAMS",
    "ClockState",
    "DriftParams",
    "Prediction",
    "initial_state",
    "observed_offset_ns",
    "predicted_step",
    "resync",
    "update",
]
