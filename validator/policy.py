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
    #: A TOTP code is accepted alone within ± this many steps of the predicted step.
    verify_window: int = 1
    #: Further out, up to ± this many steps, a match asks for the next code.
    next_code_window: int = 10
    #: The next-code window widens by the drift an unmodelled crystal error of this size
    #: could have built up since the token was last used.
    widen_ppm: int = 30
    #: The next-code window never exceeds ± this many steps.
    max_next_code_window: int = 120
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
    #: The drift model weighs an observation half as much for every this long in the past.
    drift_half_life_ns: int = 14 * NS_PER_DAY
    #: ... and for the long-term rate (over which seasons average out), this long.
    drift_long_half_life_ns: int = 180 * NS_PER_DAY

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidConfigError(f"policy {field.name} must be a non-negative integer, not {value!r}")
        if self.next_code_window < self.verify_window:
            raise InvalidConfigError("the next-code window must be at least the verification window")
        if self.max_failures < 1 or self.max_resync_failures < 1:
            raise InvalidConfigError("lockout thresholds must be at least 1")

    def sync_window_steps(self, period: int) -> int:
        """The registration window in steps of ``period`` seconds."""
        return max(1, self.sync_window_ns // (period * NS_PER_SECOND))

    def next_code_steps(self, period: int, idle_ns: int) -> int:
        """The next-code window in steps, widened with the time since the last use."""
        widen = idle_ns * self.widen_ppm // (1_000_000 * period * NS_PER_SECOND)
        return min(self.max_next_code_window, self.next_code_window + widen)
