"""Where a TOTP code is looked for: windows drawn from the drift model's uncertainty.

Two windows around the step the model predicts the user will type:

* the **single-code window**: 3 codes (``Policy.verify_window`` = 1 each side),
  a code in it is accepted alone. A code is always typed *after* it was shown,
  so when the step after the predicted one is improbable (the prediction is
  sure and early in its step) the three codes are the predicted step and the
  two before it; otherwise the predicted step and one either side.
* the **next-code window**: the prediction's ``next_code_sigmas``-sigma
  interval, widened on the late side by ``late_typing_s``, bounded by
  ``min_next_code_window`` and ``max_next_code_window``. A match there asks for
  the next code. It is wide after a year idle or a short baseline, narrow for
  a token in daily use.

The false-accept chance of one random guess follows from the window sizes and
is reported per token (:class:`Windows`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from validator.drift import DEFAULT_PARAMS, ClockState, DriftParams
from validator.policy import Policy
from vtoken.clock import NS_PER_SECOND

#: The single-code window leans back (toward late-typed codes) only when the step after the predicted
#: one has less than this chance under the prediction: ≈ 3.09 standard deviations.
LEAN_BACK_SIGMAS = 3.09


class Windows(NamedTuple):
    """The steps searched for one TOTP check (inclusive ranges) and the prediction behind them."""

    predicted_step: int
    single_lo: int
    single_hi: int
    next_lo: int
    next_hi: int
    #: The predicted offset (ns) and its standard deviation (s), typing spread included.
    offset_ns: int
    sigma_s: float

    @property
    def single_codes(self) -> int:
        """Codes accepted alone (3)."""
        return self.single_hi - self.single_lo + 1

    @property
    def next_codes(self) -> int:
        """Codes in the next-code window (the single-code window included)."""
        return self.next_hi - self.next_lo + 1

    def false_accept_single(self, digits: int) -> float:
        """Chance that one random code is accepted alone."""
        return -math.expm1(self.single_codes * math.log1p(-(10.0**-digits)))

    def false_accept_pair(self, digits: int, pair_codes: int) -> float:
        """Chance that a random code lands in the next-code window and a random second code then follows it."""
        first = -math.expm1((self.next_codes - self.single_codes) * math.log1p(-(10.0**-digits)))
        return first * -math.expm1(pair_codes * math.log1p(-(10.0**-digits)))


def totp_windows(
    state: ClockState,
    at_ns: int,
    period: int,
    t0: int,
    policy: Policy,
    params: DriftParams = DEFAULT_PARAMS,
) -> Windows:
    """The single-code and next-code windows at true time ``at_ns`` (steps are never negative).

    On every check's path: plain arithmetic on the state's one prediction.
    """
    offset_ns = state.offset_at(at_ns)
    sigma = math.sqrt(state.offset_var_at(at_ns, params) + params.typing_var)
    period_ns = period * NS_PER_SECOND
    device_ns = at_ns + offset_ns - t0 * NS_PER_SECOND
    centre, into_ns = divmod(device_ns, period_ns)
    half = policy.verify_window
    # Lean back when the next step's start lies beyond LEAN_BACK_SIGMAS of the prediction.
    if period_ns - into_ns >= LEAN_BACK_SIGMAS * sigma * NS_PER_SECOND:
        single_lo, single_hi = centre - 2 * half, centre
    else:
        single_lo, single_hi = centre - half, centre + half
    reach_ns = round(policy.next_code_sigmas * sigma * NS_PER_SECOND)
    next_lo = (device_ns - reach_ns - policy.late_typing_s * NS_PER_SECOND) // period_ns
    next_hi = (device_ns + reach_ns) // period_ns
    widest, narrowest = policy.max_next_code_window, policy.min_next_code_window
    if next_lo > centre - narrowest:
        next_lo = centre - narrowest
    elif next_lo < centre - widest:
        next_lo = centre - widest
    if next_hi < centre + narrowest:
        next_hi = centre + narrowest
    elif next_hi > centre + widest:
        next_hi = centre + widest
    if next_lo < 0:  # only near T0: steps are never negative
        centre, single_lo, single_hi, next_lo, next_hi = (max(0, v) for v in (centre, single_lo, single_hi, next_lo, next_hi))
    return Windows(centre, single_lo, single_hi, next_lo, next_hi, offset_ns, sigma)


def pair_range(
    windows_now: Windows, pending_step: int, pending_at_ns: int, at_ns: int, period: int, policy: Policy
) -> tuple[int, int, int]:
    """``(lo, hi, likely)``: steps accepted as "the next code" after a match at ``pending_step``.

    Any step after the first code's, up to one past the step the token shows
    now. That is the first code's step moved on by the time since it was typed
    (at most the round's timeout), or later by up to ``late_typing_s`` if the
    model's prediction says the first code was typed late. ``likely`` is that
    step (a match nearest to it wins). The range is a few codes whatever the
    model predicts.
    """
    period_ns = period * NS_PER_SECOND
    elapsed_ns = min(max(0, at_ns - pending_at_ns), policy.next_code_timeout_ns)
    expected = pending_step - (-elapsed_ns // period_ns)  # ceil: the code may have changed just now
    late_steps = -(-policy.late_typing_s // period)
    likely = min(max(windows_now.predicted_step, expected), expected + late_steps)
    return pending_step + 1, likely + 1, likely


def pair_codes(period: int, policy: Policy) -> int:
    """Codes a next-code round accepts when the second code is typed at once (for the false-accept chance)."""
    return 2 + -(-policy.late_typing_s // period)


__all__ = ["LEAN_BACK_SIGMAS", "Windows", "pair_codes", "pair_range", "totp_windows"]
