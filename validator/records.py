"""What the validator stores about a token, as plain typed values.

A :class:`TokenRecord` is one row of the token store: the token's parameters,
its sealed (encrypted) seed, and its synchronisation state. The drift model is
kept as a clock state with its covariance, updated in O(1) from each accepted
code (see :mod:`validator.drift`): the check path never reads the history.
"""

from __future__ import annotations

import dataclasses

from vtoken.oath import Algorithm, TokenKind


@dataclasses.dataclass(frozen=True)
class SealedSeed:
    """A seed encrypted at rest: AES-256-GCM under the master key ``key_id``.

    The token's serial number is the associated data, so a sealed seed moved to
    another token's row does not decrypt.
    """

    key_id: str
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"SealedSeed(key_id={self.key_id!r}, {len(self.ciphertext)} bytes)"


@dataclasses.dataclass(frozen=True)
class TokenParams:
    """A token's OATH parameters, as imported."""

    serial: str
    kind: TokenKind
    algorithm: Algorithm = Algorithm.SHA1
    digits: int = 6
    period: int = 30
    t0: int = 0
    #: HOTP: the next counter the token will use (as imported).
    counter: int = 0
    #: TOTP: the token's clock offset in steps at import time (PSKC TimeDrift).
    drift_steps: int = 0
    #: The serial carries a check digit (vtoken's own); vendor serials may not.
    has_check_digit: bool = False


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    """One token as the store holds it. ``version`` increases with every update (compare-and-set)."""

    params: TokenParams
    sealed: SealedSeed
    registered: bool = False
    #: Last accepted TOTP step or HOTP counter; a code at or before it is a replay.
    last_step: int | None = None
    #: Drift model (:class:`validator.drift.ClockState`): the token's offset (device minus true
    #: time) at ``drift_anchor_ns``, its rate in parts per billion of true time, and their
    #: covariance (offset variance in s², offset-rate covariance in s, rate variance).
    drift_anchor_ns: int | None = None
    drift_offset_ns: int = 0
    drift_rate_ppb: int = 0
    drift_var_offset: float = 0.0
    drift_cov: float = 0.0
    drift_var_rate: float = 0.0
    #: True time of the last accepted code (for the idle-time window widening).
    last_used_ns: int | None = None
    failures: int = 0
    resync_failures: int = 0
    locked: bool = False
    lock_reason: str = ""
    #: Throttle: no verification is attempted before this true time.
    not_before_ns: int = 0
    #: HOTP/TOTP: a match in the wide window awaiting the next code (step number), if any.
    pending_step: int | None = None
    pending_until_ns: int = 0
    #: True time the code that started the next-code round was typed.
    pending_at_ns: int = 0
    version: int = 0

    @property
    def serial(self) -> str:
        """The token's serial number."""
        return self.params.serial


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """One matched code: at true time ``at_ns`` the token showed step ``step``."""

    at_ns: int
    step: int
    #: What happened: "register", "resync", "accept".
    event: str


_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(TokenRecord))


def evolve(record: TokenRecord, **changes: object) -> TokenRecord:
    """``record`` with ``changes``: :func:`dataclasses.replace` for the check path, without its cost.

    A :class:`TokenRecord` has no ``__post_init__``; the stores validate every value they write.
    """
    unknown = changes.keys() - _RECORD_FIELDS
    if unknown:
        raise TypeError(f"TokenRecord has no field(s) {', '.join(sorted(unknown))}")
    new = object.__new__(TokenRecord)
    values = new.__dict__
    values.update(record.__dict__)
    values.update(changes)
    return new
