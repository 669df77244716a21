"""The validator: registration by two consecutive codes, and drift-tracking verification.

Every decision is made inside one store transaction that takes the write lock
first, reads the token, searches its windows, and writes the outcome
(compare-and-set on the row version) before the result is returned. So a step
is durable before it is reported accepted, and two processes submitting one
code at the same moment serialise: exactly one of them is accepted, the other
sees a replay.

Window searches go through the check kernel (C, or its Python twin), which
scans every window in full: there is no timing signal of where a code matched.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
from collections.abc import Callable

from validator.drift import DEFAULT_PARAMS, ClockState, DriftParams, initial_state, predicted_step, resync, update
from validator.kernel import Backend, PreparedKey, get_backend
from validator.policy import Policy
from validator.records import HistoryEntry, TokenRecord, evolve
from validator.sealing import Keyring, unseal
from validator.store import TokenStore
from validator.windows import pair_codes, pair_range, totp_windows
from vtoken.clock import NS_PER_SECOND, Clock
from vtoken.errors import InvalidCodeError, InvalidSerialError, UnknownTokenError
from vtoken.oath import TokenKind, parse_code, time_step
from vtoken.serialno import has_valid_check_digit, normalize

#: Prepared keys (HMAC midstates) kept in memory, most recently used first.
PREPARED_KEY_CACHE_SIZE = 4096
#: A serial this long was printed by vtoken with a check digit.
CHECKED_SERIAL_LENGTH = 10


class Reason(str, enum.Enum):
    """Why a check or registration ended as it did."""

    ACCEPTED = "accepted"
    REGISTERED = "registered"
    NEXT_CODE_REQUIRED = "next-code-required"
    WRONG_CODE = "wrong-code"
    REPLAY = "replay"
    LOCKED = "locked"
    THROTTLED = "throttled"
    UNKNOWN_SERIAL = "unknown-serial"
    MISTYPED_SERIAL = "mistyped-serial"
    BAD_FORMAT = "bad-format"
    NOT_REGISTERED = "not-registered"
    SAME_CODE = "same-code"
    NO_PAIR = "no-pair"
    AMBIGUOUS = "ambiguous"


@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of a check or a registration."""

    accepted: bool
    reason: Reason
    message: str
    serial: str
    #: The matched TOTP step or HOTP counter (for a registration: code 2's).
    step: int | None = None
    #: The token's offset after this result, in steps and in ns (TOTP).
    offset_steps: int | None = None
    offset_ns: int | None = None
    failures: int = 0
    attempts_left: int | None = None
    #: When refused for throttling: no attempt before this true time.
    retry_at_ns: int | None = None


@dataclasses.dataclass(frozen=True)
class TokenStatus:
    """What ``vtoken validator show`` prints: the record, the drift model's view now, and the history.

    The drift fields are None for a HOTP token or one not yet registered.
    """

    record: TokenRecord
    #: The predicted offset (token minus true time) now, in ns and in steps.
    offset_ns: int | None
    offset_steps: int | None
    #: The estimated drift rate (ppm, + = the token runs fast).
    rate_ppm: float | None
    history: list[HistoryEntry]
    #: One standard deviation of the predicted offset now (s) and of the rate (ppm).
    offset_sigma_s: float | None = None
    rate_sigma_ppm: float | None = None
    #: Codes a single code is accepted among now (TOTP: 3; HOTP: the look-ahead).
    single_window_codes: int | None = None
    #: Codes a match in which asks for the next code (TOTP; the single-code window included).
    next_code_window_codes: int | None = None
    #: Chance that one random guess is accepted alone now.
    false_accept_per_guess: float | None = None
    #: Chance that a random guess starts a next-code round and a random second guess completes it.
    false_accept_pair: float | None = None


class Validator:
    """Registers and verifies tokens held in a :class:`~validator.store.TokenStore`."""

    def __init__(
        self,
        store: TokenStore,
        keyring: Keyring,
        clock: Clock,
        *,
        policy: Policy | None = None,
        backend: Backend | None = None,
        drift: DriftParams | None = None,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.clock = clock
        self.policy = policy or Policy()
        self.backend = backend or get_backend()
        self.drift = drift or DEFAULT_PARAMS
        self._keys: collections.OrderedDict[tuple[str, str, bytes], PreparedKey] = collections.OrderedDict()

    # --- public operations ----------------------------------------------------------------

    def check(self, serial: str, code: str, at_ns: int | None = None) -> Result:
        """Verify one code typed by the user at true time ``at_ns`` (default: the clock's now)."""
        at = self.clock.now_ns() if at_ns is None else at_ns
        return self._with_token(serial, at, lambda tx, rec: self._check(tx, rec, code, at))

    def register(self, serial: str, code1: str, code2: str, at_ns: int | None = None) -> Result:
        """Register (or resync) a token from two consecutive codes, code 2 typed at ``at_ns``."""
        at = self.clock.now_ns() if at_ns is None else at_ns
        return self._with_token(serial, at, lambda tx, rec: self._register(tx, rec, code1, code2, at))

    def unlock(self, serial: str, at_ns: int | None = None) -> Result:
        """Administrator unlock: clear failures, throttling and any lock."""
        at = self.clock.now_ns() if at_ns is None else at_ns

        def run(tx, rec: TokenRecord) -> Result:
            new = evolve(
                rec, locked=False, lock_reason="", failures=0, resync_failures=0, not_before_ns=0, pending_step=None
            )
            tx.update(new, expected_version=rec.version)
            tx.log_event(rec.serial, at, "unlock", "administrator unlock")
            return Result(True, Reason.ACCEPTED, "unlocked", rec.serial)

        return self._with_token(serial, at, run)

    def lock(self, serial: str, reason: str, at_ns: int | None = None) -> Result:
        """Administrator lock (for example a lost token): refused until an unlock."""
        at = self.clock.now_ns() if at_ns is None else at_ns

        def run(tx, rec: TokenRecord) -> Result:
            new = evolve(rec, locked=True, lock_reason=reason, pending_step=None)
            tx.update(new, expected_version=rec.version)
            tx.log_event(rec.serial, at, "lock", reason)
            return Result(True, Reason.LOCKED, f"locked: {reason}", rec.serial)

        return self._with_token(serial, at, run)

    def status(self, serial: str, at_ns: int | None = None) -> TokenStatus:
        """The token's record, predicted offset with its uncertainty, windows, and history."""
        at = self.clock.now_ns() if at_ns is None else at_ns
        rec = self.store.get(normalize(serial))
        if rec is None:
            raise self._unknown_error(serial)
        history = self.store.history(rec.serial)
        params = rec.params
        if params.kind is TokenKind.HOTP:
            codes = self.policy.hotp_lookahead
            return TokenStatus(
                rec, None, None, None, history, single_window_codes=codes,
                false_accept_per_guess=-math.expm1(codes * math.log1p(-(10.0**-params.digits))),
            )
        state = self._state(rec)
        if state is None:
            return TokenStatus(rec, None, None, None, history)
        windows = totp_windows(state, at, params.period, params.t0, self.policy, self.drift)
        prediction = state.predict(at, self.drift)
        pair = pair_codes(params.period, self.policy)
        return TokenStatus(
            rec,
            prediction.offset_ns,
            _round_div(prediction.offset_ns, params.period * NS_PER_SECOND),
            state.rate_ppm,
            history,
            offset_sigma_s=prediction.sigma_s,
            rate_sigma_ppm=state.rate_sigma_ppm,
            single_window_codes=windows.single_codes,
            next_code_window_codes=windows.next_codes,
            false_accept_per_guess=windows.false_accept_single(params.digits),
            false_accept_pair=windows.false_accept_pair(params.digits, pair),
        )

    # --- transaction plumbing -----------------------------------------------------------------

    def _with_token(self, serial: str, at: int, action: Callable[..., Result]) -> Result:
        try:
            normal = normalize(serial)
        except InvalidSerialError as exc:
            return Result(False, Reason.BAD_FORMAT, str(exc), serial)
        with self.store.transaction() as tx:
            rec = tx.get(normal)
            if rec is None:
                return self._unknown(normal)
            return action(tx, rec)

    def _unknown(self, serial: str) -> Result:
        if len(serial) == CHECKED_SERIAL_LENGTH and not has_valid_check_digit(serial):
            return Result(
                False,
                Reason.MISTYPED_SERIAL,
                f"serial number {serial} fails its check digit: probably mistyped; check the back of the token",
                serial,
            )
        return Result(False, Reason.UNKNOWN_SERIAL, f"unknown serial number {serial}", serial)

    def _unknown_error(self, serial: str) -> Exception:
        return UnknownTokenError(self._unknown(normalize(serial)).message)

    def _prepared(self, rec: TokenRecord) -> PreparedKey:
        ident = (rec.serial, rec.sealed.key_id, rec.sealed.nonce)
        key = self._keys.get(ident)
        if key is None:
            seed = unseal(self.keyring, rec.serial, rec.sealed)
            key = self.backend.prepare(seed, algorithm=rec.params.algorithm, digits=rec.params.digits)
            del seed
            self._keys[ident] = key
            if len(self._keys) > PREPARED_KEY_CACHE_SIZE:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(ident)
        return key

    @staticmethod
    def _state(rec: TokenRecord) -> ClockState | None:
        """The stored drift state of a registered TOTP token, or None."""
        if rec.drift_anchor_ns is None:
            return None
        return ClockState(
            rec.drift_anchor_ns,
            rec.drift_offset_ns,
            rec.drift_rate_ppb,
            rec.drift_var_offset,
            rec.drift_cov,
            rec.drift_var_rate,
        )

    @staticmethod
    def _state_fields(state: ClockState) -> dict[str, int | float]:
        return {
            "drift_anchor_ns": state.anchor_ns,
            "drift_offset_ns": state.offset_ns,
            "drift_rate_ppb": state.rate_ppb,
            "drift_var_offset": state.var_offset,
            "drift_cov": state.cov,
            "drift_var_rate": state.var_rate,
        }

    @staticmethod
    def _offset_fields(rec: TokenRecord, state: ClockState | None, at: int) -> dict[str, int | None]:
        if rec.params.kind is not TokenKind.TOTP or state is None:
            return {"offset_steps": None, "offset_ns": None}
        offset = state.offset_at(at)
        return {"offset_ns": offset, "offset_steps": _round_div(offset, rec.params.period * NS_PER_SECOND)}

    # --- verification ----------------------------------------------------------------------

    def _check(self, tx, rec: TokenRecord, code: str, at: int) -> Result:
        params = rec.params
        try:
            value = parse_code(code, params.digits)
        except InvalidCodeError as exc:
            return Result(False, Reason.BAD_FORMAT, str(exc), rec.serial, failures=rec.failures)
        if rec.locked:
            return self._locked_result(rec)
        if not rec.registered:
            return Result(
                False, Reason.NOT_REGISTERED, "token is not registered: register it with two consecutive codes",
                rec.serial,
            )
        if at < rec.not_before_ns:
            return Result(
                False,
                Reason.THROTTLED,
                f"too many failed attempts: wait {_ceil_seconds(rec.not_before_ns - at)} s before the next try",
                rec.serial,
                failures=rec.failures,
                attempts_left=self.policy.max_failures - rec.failures,
                retry_at_ns=rec.not_before_ns,
            )
        key = self._prepared(rec)
        floor = self._floor(rec)
        if params.kind is TokenKind.HOTP:
            return self._check_hotp(tx, rec, key, value, floor, at)
        return self._check_totp(tx, rec, key, value, floor, at)

    def _check_totp(self, tx, rec: TokenRecord, key: PreparedKey, value: int, floor: int, at: int) -> Result:
        params, policy = rec.params, self.policy
        state = self._state(rec)
        assert state is not None  # registered TOTP tokens always have one
        windows = totp_windows(state, at, params.period, params.t0, policy, self.drift)
        if rec.pending_step is not None and rec.pending_at_ns and rec.pending_at_ns <= at <= rec.pending_until_ns:
            # The next code is the code the token shows now: any step after the first one's, up to
            # one past the step it shows now. Anything else is judged as a code on its own.
            lo, hi, likely = pair_range(windows, rec.pending_step, rec.pending_at_ns, at, params.period, policy)
            matches = _scan(key, max(floor, lo), hi, value)
            if matches:
                step = min(matches, key=lambda s: (abs(s - likely), s))
                return self._accept(tx, rec, state, step, at, "accept-next-code", confirmed=True)
        narrow = _scan(key, max(floor, windows.single_lo), windows.single_hi, value)
        if len(narrow) == 1:
            return self._accept(tx, rec, state, narrow[0], at, "accept")
        centre = windows.predicted_step
        candidates = narrow or _scan(key, max(floor, windows.next_lo), windows.next_hi, value)
        if candidates:
            pending = min(candidates, key=lambda s: (abs(s - centre), s))
            new = evolve(
                rec, pending_step=pending, pending_at_ns=at, pending_until_ns=at + policy.next_code_timeout_ns
            )
            tx.update(new, expected_version=rec.version)
            tx.log_event(rec.serial, at, "next-code", f"match {pending - centre:+d} steps from prediction")
            return Result(
                False,
                Reason.NEXT_CODE_REQUIRED,
                "the code is valid but the token's clock is further off than expected: "
                "wait for the code to change and enter the next code",
                rec.serial,
                failures=rec.failures,
            )
        return self._refuse(tx, rec, key, value, windows.next_lo, floor, at)

    def _check_hotp(self, tx, rec: TokenRecord, key: PreparedKey, value: int, floor: int, at: int) -> Result:
        lookahead = self.policy.hotp_lookahead
        matches = _scan(key, floor, floor + lookahead - 1, value)
        if matches:
            return self._accept(tx, rec, None, matches[0], at, "accept")
        return self._refuse(tx, rec, key, value, max(0, floor - lookahead), floor, at)

    def _refuse(self, tx, rec: TokenRecord, key: PreparedKey, value: int, replay_lo: int, floor: int, at: int) -> Result:
        """A code that matched nothing acceptable: a replay, or a wrong code; both count as failures, except
        a copy of the code just accepted (a double submit, the same code sent to several nodes at once),
        which can never succeed and tells nothing, so it is refused without throttling its owner and
        without a write (only the exact last accepted step; older codes in the window still count)."""
        replays = _scan(key, replay_lo, floor - 1, value) if floor > replay_lo else ()
        if replays and rec.last_step in replays:
            # No write at all: copies can come in any number, and each would cost a commit.
            return Result(False, Reason.REPLAY, "this code was already used", rec.serial, failures=rec.failures,
                          attempts_left=self.policy.max_failures - rec.failures)
        if replays:
            return self._fail(tx, rec, at, Reason.REPLAY, "this code was already used")
        return self._fail(tx, rec, at, Reason.WRONG_CODE, "wrong code")

    def _floor(self, rec: TokenRecord) -> int:
        if rec.last_step is not None:
            return rec.last_step + 1
        return rec.params.counter if rec.params.kind is TokenKind.HOTP else 0

    def _accept(
        self, tx, rec: TokenRecord, state: ClockState | None, step: int, at: int, event: str, *, confirmed: bool = False
    ) -> Result:
        # The hot path of every check: one record built, one update, history and audit rows, the result.
        fields: dict[str, int | float] = {}
        if state is not None:  # TOTP
            params = rec.params
            state = update(state, at, step, params.period, params.t0, confirmed=confirmed, params=self.drift)
            fields = self._state_fields(state)
        new = evolve(
            rec, last_step=step, last_used_ns=at, failures=0, not_before_ns=0, pending_step=None,
            pending_until_ns=0, pending_at_ns=0, version=rec.version + 1, **fields,
        )
        serial = rec.params.serial
        tx.update(new, expected_version=rec.version)
        tx.add_history(serial, HistoryEntry(at, step, event))
        tx.log_event(serial, at, event, f"step {step}")
        return Result(True, Reason.ACCEPTED, "accepted", serial, step, **self._offset_fields(new, state, at))

    def _fail(self, tx, rec: TokenRecord, at: int, reason: Reason, message: str) -> Result:
        failures = rec.failures + 1
        policy = self.policy
        locked = failures >= policy.max_failures
        new = evolve(
            rec,
            failures=failures,
            not_before_ns=at + failures * policy.failure_delay_ns,
            locked=locked or rec.locked,
            lock_reason="failures" if locked else rec.lock_reason,
            pending_step=None,
            pending_until_ns=0,
            pending_at_ns=0,
        )
        tx.update(new, expected_version=rec.version)
        tx.log_event(rec.serial, at, reason.value, f"failure {failures} of {policy.max_failures}")
        if locked:
            message += f"; the token is now locked after {failures} failed attempts: resync with two codes"
        return Result(
            False, reason, message, rec.serial, failures=failures, attempts_left=max(0, policy.max_failures - failures)
        )

    def _locked_result(self, rec: TokenRecord) -> Result:
        if rec.lock_reason == "failures":
            how = "resync with two consecutive codes or ask an administrator to unlock it"
        elif rec.lock_reason == "resync-failures":
            how = "ask an administrator to unlock it"
        else:
            how = f"({rec.lock_reason}); ask an administrator"
        return Result(False, Reason.LOCKED, f"token is locked: {how}", rec.serial, failures=rec.failures, attempts_left=0)

    # --- registration ------------------------------------------------------------------------

    def _register(self, tx, rec: TokenRecord, code1: str, code2: str, at: int) -> Result:
        params, policy = rec.params, self.policy
        try:
            value1 = parse_code(code1, params.digits)
            value2 = parse_code(code2, params.digits)
        except InvalidCodeError as exc:
            return Result(False, Reason.BAD_FORMAT, str(exc), rec.serial)
        if value1 == value2:
            return Result(
                False,
                Reason.SAME_CODE,
                "Token Code 2 is the same as Token Code 1: wait until the code changes, then press again",
                rec.serial,
            )
        if rec.locked and rec.lock_reason != "failures":
            return self._locked_result(rec)
        key = self._prepared(rec)
        floor = self._floor(rec)
        if params.kind is TokenKind.HOTP:
            lo, count = floor, policy.hotp_sync_lookahead
            where = f"the next {count} counters"
        else:
            state = self._state(rec)
            if state is not None:
                centre = predicted_step(state, at, params.period, params.t0)
            else:
                centre = time_step(at // NS_PER_SECOND, period=params.period, t0=params.t0) + params.drift_steps
            span = policy.sync_window_steps(params.period)
            lo = max(floor, centre - span - 1)
            count = max(0, centre + span - lo)
            where = f"±{span} steps of {params.period} s"
        pairs = key.find_pair(lo, count, value1, value2) if count else ()
        if not pairs:
            return self._fail_resync(
                tx, rec, at, Reason.NO_PAIR,
                f"no consecutive pair of codes within {where}: check the serial number, "
                "then press once for Token Code 1, wait for the code to change, and press again for Token Code 2",
            )
        if len(pairs) > 1:
            return self._fail_resync(
                tx, rec, at, Reason.AMBIGUOUS,
                "more than one consecutive pair matches: wait for the next code and register with two new codes",
            )
        step = pairs[0] + 1
        first = not rec.registered
        entry = HistoryEntry(at_ns=at, step=step, event="register" if first else "resync")
        fields: dict[str, int | float] = {}
        new_state: ClockState | None = None
        if params.kind is TokenKind.TOTP:
            old_state = self._state(rec)
            if old_state is None:
                new_state = initial_state(at, step, params.period, params.t0, self.drift)
            else:
                new_state = resync(old_state, at, step, params.period, params.t0, self.drift)
            fields = self._state_fields(new_state)
        new = evolve(
            rec,
            registered=True,
            last_step=step,
            last_used_ns=at,
            failures=0,
            resync_failures=0,
            not_before_ns=0,
            locked=False,
            lock_reason="",
            pending_step=None,
            pending_until_ns=0,
            pending_at_ns=0,
            **fields,
        )
        tx.update(new, expected_version=rec.version)
        tx.add_history(rec.serial, entry)
        tx.log_event(rec.serial, at, entry.event, f"pair at {step - 1},{step}")
        message = "registered" if first else "resynchronised"
        return Result(
            True, Reason.REGISTERED, message, rec.serial, step=step, **self._offset_fields(new, new_state, at)
        )

    def _fail_resync(self, tx, rec: TokenRecord, at: int, reason: Reason, message: str) -> Result:
        failures = rec.resync_failures + 1
        locked = failures >= self.policy.max_resync_failures
        new = evolve(
            rec,
            resync_failures=failures,
            locked=locked or rec.locked,
            lock_reason="resync-failures" if locked else rec.lock_reason,
        )
        tx.update(new, expected_version=rec.version)
        tx.log_event(rec.serial, at, f"register-{reason.value}", f"resync failure {failures}")
        if locked:
            message += "; the token is now locked: ask an administrator to unlock it"
        return Result(
            False, reason, message, rec.serial, failures=failures,
            attempts_left=max(0, self.policy.max_resync_failures - failures),
        )


def _scan(key: PreparedKey, lo: int, hi: int, value: int) -> tuple[int, ...]:
    """Every step in ``lo .. hi`` (inclusive) whose code is ``value``; whole range scanned."""
    if hi < lo:
        return ()
    return key.find(lo, hi - lo + 1, value)


def _round_div(a: int, b: int) -> int:
    return (2 * a + b) // (2 * b)


def _ceil_seconds(ns: int) -> int:
    return -(-ns // NS_PER_SECOND)


__all__ = ["Reason", "Result", "TokenStatus", "Validator"]
