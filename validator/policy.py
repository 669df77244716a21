"""The validator's tunable rules: windows, look-ahead, lockout and throttling."""

from __future__ import annotations

import dataclasses

from vtoken.clock import NS_PER_DAY, NS_PER_SECOND
from vtoken.errors import InvalidConfigError


@dataclasses.dataclass(frozen=True)
class Policy:
    """How far to search, when to ask for the next code, when to lock.

    The defaults follow common practice: RFC 6238 §5.2 (±1 step), RFC 4226
    §7.3/§7.4 (throttling, small look-ahead), and commercial servers' next-code
    mode (a match further out is accepted only with the code that follows it).
    """

    #: Registration and resync search ± this much time around the expected offset (TOTP).
    sync_window_ns: int = NS_PER_DAY
    #: Registration and resync search this many counters ahead (HOTP).
    hotp_sync_lookahead: int = 1000
    #: A TOTP code is accepted alone within ± this many steps of the predicted step (3 codes).
    verify_window: int = 1
    #: Further out, a match asks for the next code within the prediction's interval of ± this many
    #: standard deviations (see :mod:`validator.drift`) ...
    next_code_sigmas: int = 5
    #: ... widened on the late side by this much: a code may be typed well after it was shown ...
    late_typing_s: int = 90
    #: ... and never narrower than ± this many steps, nor wider than ± this many.
    min_next_code_window: int = 3
    max_next_code_window: int = 720
    #: The next code must arrive within this time of the request for it.
    next_code_timeout_ns: int = 5 * 60 * NS_PER_SECOND
    #: A HOTP code is accepted within this many counters after the last one.
    hotp_lookahead: int = 10
    #: Consecutive failed checks that lock the token (until a two-code resync or admin unlock).
    max_failures: int = 10
    #: Consecutive failed resyncs that lock the token (until an admin unlock).
    max_resync_failures: int = 5
    #: After the n-th consecutive failure, no check is attempted for n times this long (RFC 4226 §7.3).
    failure_delay_ns: int = NS_PER_SECOND

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidConfigError(f"policy {field.name} must be a non-negative integer, not {value!r}")
        if not self.verify_window < self.min_next_code_window <= self.max_next_code_window:
            raise InvalidConfigError(
                "the next-code window must be wider than the verification window, and its minimum at most its maximum"
            )
        if self.max_failures < 1 or self.max_resync_failures < 1:
            raise InvalidConfigError("lockout thresholds must be at least 1")

    def sync_window_steps(self, period: int) -> int:
        """The registration window in steps of ``period`` seconds."""
        return max(1, self.sync_window_ns // (period * NS_PER_SECOND))
