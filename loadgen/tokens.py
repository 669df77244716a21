"""Virtual tokens at run time: codes from the check kernel, each token's drifting clock, its use so far.

Everything a request needs is precomputed or one kernel call away: a HOTP
token keeps a small buffer of its next codes, a TOTP token computes the code of
its device step (``floor((now + offset + (now - ref)·rate - T0) / period)``,
plain integer and float arithmetic), a decoy keeps the set of its codes within
a wide window so a random code is drawn outside it by a set lookup.
"""

from __future__ import annotations

import random
import urllib.parse

from loadgen.fleet import FleetToken
from validator.kernel import Backend, PreparedKey
from vtoken.clock import NS_PER_SECOND
from vtoken.oath import TokenKind

#: HOTP codes computed at once per token.
HOTP_CHUNK = 16
#: A replayed code must match no counter/step this far above the replay floor
#: (the validator's look-ahead is 10 counters, its single-code TOTP window ±1 step around a prediction).
REPLAY_GUARD = 32
#: A genuine TOTP code must be the only one of its value this many steps either side
#: (so a correct validator never sees two matches in its 3-code window).
TOTP_UNIQUE_STEPS = 2
#: A random code matches no counter/step within this many either side of the decoy's current one.
RANDOM_CODE_WINDOW = 2048
#: A TOTP decoy's forbidden window is recomputed once its step moves this far from the window's centre.
RANDOM_WINDOW_SLACK = RANDOM_CODE_WINDOW // 2


class VToken:
    """One token of the run: its key, where its counter/step stands, whether a request for it is out."""

    __slots__ = (
        "serial", "kind", "digits", "period_ns", "t0_ns", "key", "is_hotp", "path", "check_url",
        "next_counter", "last_step", "last_code", "busy", "retired", "decoy", "registered", "not_before_ns",
        "_offset_ns", "_ref_ns", "_rate", "_buf_base", "_buf", "_fmt",
        "_forbid_centre", "_forbidden",
    )

    def __init__(
        self, token: FleetToken, backend: Backend, *, used: int | None = None, not_before_ns: int = 0
    ) -> None:
        self.serial = token.serial
        self.kind = token.kind
        self.is_hotp = token.kind is TokenKind.HOTP
        self.digits = token.digits
        self.period_ns = token.period * NS_PER_SECOND
        self.t0_ns = token.t0 * NS_PER_SECOND
        self.key: PreparedKey = backend.prepare(token.seed, algorithm=token.algorithm, digits=token.digits)
        self.path = urllib.parse.quote(token.serial, safe="")
        #: The check URL, built (and parsed) once by the HTTP dialect.
        self.check_url: object = None
        #: HOTP: the next counter to send. ``used`` (the run state) is the last one sent before.
        self.next_counter = max(token.counter, used + 1 if used is not None and self.is_hotp else 0)
        #: TOTP: the last step sent or registered (a later code must be for a later step).
        self.last_step = used if used is not None and not self.is_hotp else -1
        self.last_code = ""
        self.busy = False
        self.retired = False
        self.decoy = False
        self.registered = False
        #: No genuine check before this true time (the validator throttles after a replay).
        self.not_before_ns = not_before_ns
        self._offset_ns = token.clock_offset_ns
        self._ref_ns = token.clock_ref_ns
        self._rate = token.clock_rate
        self._buf_base = -(2**70)
        self._buf: list[str] = []
        self._fmt = f"%0{token.digits}d"
        self._forbid_centre = -(10**9)
        self._forbidden: frozenset[int] = frozenset()

    # --- codes -----------------------------------------------------------------------------------------

    def code(self, counter: int) -> str:
        """The code of HOTP counter / TOTP step ``counter``."""
        base = self._buf_base
        if base <= counter < base + HOTP_CHUNK:
            return self._buf[counter - base]
        if self.is_hotp:  # sequential use: compute the next few at once
            fmt = self._fmt
            self._buf = [fmt % v for v in self.key.generate(counter, HOTP_CHUNK).tolist()]
            self._buf_base = counter
            return self._buf[0]
        return self._fmt % int(self.key.generate(counter, 1)[0])

    def collides(self, code: str, lo: int, count: int) -> bool:
        """Whether ``code`` is the code of some counter/step in ``lo .. lo+count-1``."""
        return bool(self.key.find(max(0, lo), count, code))

    # --- the token's clock (TOTP) --------------------------------------------------------------------------

    def device_step(self, now_ns: int) -> int:
        """The step the token shows at true time ``now_ns`` (its own drifting clock)."""
        device = now_ns + self._offset_ns + int((now_ns - self._ref_ns) * self._rate)
        return (device - self.t0_ns) // self.period_ns

    def step_start_ns(self, step: int) -> int:
        """The true time at which the token's clock reaches ``step`` (1 ms late rather than early)."""
        device = self.t0_ns + step * self.period_ns
        # device = t + offset + (t - ref)·rate  ⇒  t = (device - offset + ref·rate) / (1 + rate)
        true = self._ref_ns + (device - self._offset_ns - self._ref_ns) / (1.0 + self._rate)
        return int(true) + 1_000_000

    # --- random codes (decoys) ---------------------------------------------------------------------------

    def random_code(self, rng: random.Random, now_ns: int) -> str:
        """A code that matches none of the decoy's counters/steps within ``RANDOM_CODE_WINDOW`` of its current one."""
        centre = self.next_counter if self.is_hotp else self.device_step(now_ns)
        if abs(centre - self._forbid_centre) > RANDOM_WINDOW_SLACK or not self._forbidden:
            lo = max(0, centre - RANDOM_CODE_WINDOW)
            self._forbidden = frozenset(self.key.generate(lo, centre + RANDOM_CODE_WINDOW - lo + 1).tolist())
            self._forbid_centre = centre
        space, forbidden = 10**self.digits, self._forbidden
        while True:
            value = rng.randrange(space)
            if value not in forbidden:
                return self._fmt % value

    def __repr__(self) -> str:
        return f"<VToken {self.serial} {self.kind.value}>"


__all__ = ["HOTP_CHUNK", "RANDOM_CODE_WINDOW", "REPLAY_GUARD", "TOTP_UNIQUE_STEPS", "VToken"]
