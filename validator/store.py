"""The token store: a small storage interface and its SQLite implementation.

:class:`TokenStore` is what the validator needs from a database: add tokens
in one all-or-nothing batch, read them, and change them inside a
:meth:`~TokenStore.transaction` that takes the write lock at once, with
compare-and-set updates on a per-row ``version``. A backend for a shared SQL
server (several validator nodes, one database) implements the same two
abstract classes with the same semantics.

:class:`SQLiteStore` keeps everything in one file in WAL mode with
``synchronous=FULL``, so a committed transaction survives a crash, readers
never block the writer, and two processes on one file serialise their writes
(``BEGIN IMMEDIATE`` and a busy timeout). The schema is versioned: the
ordered :data:`MIGRATIONS` are applied on open, each once, and recorded in
``schema_migrations`` (and mirrored in ``PRAGMA user_version``).

Seeds are stored only sealed (see :mod:`validator.sealing`): key id, nonce
and ciphertext columns. Nothing here logs or formats a seed.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import dataclasses
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from validator.records import HistoryEntry, SealedSeed, TokenParams, TokenRecord, evolve
from validator.sealing import Keyring, MasterKey, seal, unseal
from vtoken.errors import (
    ConcurrentUpdateError,
    CorruptStateError,
    DuplicateTokenError,
    InvalidInputError,
    InvalidSerialError,
    StorageError,
    UnknownTokenError,
)
from vtoken.oath import Algorithm, TokenKind
from vtoken.serialno import normalize

__all__ = [
    "BUSY_TIMEOUT_S",
    "CREDENTIAL_KINDS",
    "Credential",
    "MIGRATIONS",
    "AuditEvent",
    "Migration",
    "SQLiteStore",
    "StoreTransaction",
    "TokenStore",
    "check_token_row",
    "describe_db",
    "record_row",
    "is_postgres_url",
]

#: How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_S = 10.0
#: The database file (and, through SQLite, its -wal and -shm files) is created with this mode.
DB_FILE_MODE = 0o600
#: SQLite integers are signed 64-bit.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: Serials per ``IN (...)`` query (well under SQLite's variable limit).
_QUERY_CHUNK = 500
#: Attempts to switch a fresh database to WAL while another process does the same.
_WAL_ATTEMPTS = 50
_WAL_RETRY_S = 0.05

#: Event names the store writes itself.
EVENT_ADDED = "added"
EVENT_REKEY = "rekey"


@dataclasses.dataclass(frozen=True)
class AuditEvent:
    """One line of the audit log. ``serial`` is None for store-wide events (e.g. a key rotation)."""

    serial: str | None
    at_ns: int
    event: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Credential:
    """A bearer credential of the network service: an administrator token or a client API key.

    Only a SHA-256 digest of the secret is stored (the secret is 32 random
    bytes: a fast hash suffices); the secret itself is shown once, when made.
    """

    ident: str
    kind: str
    digest: bytes
    label: str
    created_ns: int
    revoked_ns: int | None = None

    def __repr__(self) -> str:
        state = "revoked" if self.revoked_ns is not None else "active"
        return f"Credential({self.ident!r}, {self.kind}, {self.label!r}, {state})"


#: Credential kinds: administrators (import, unlock, list, status) and clients (check, register).
CREDENTIAL_KINDS = ("admin", "client")


def is_postgres_url(text: str) -> bool:
    """Whether a ``--db`` value names a PostgreSQL database (:mod:`validator.pgstore`) rather than a file."""
    return text.startswith(("postgresql://", "postgres://"))


def describe_db(text: str) -> str:
    """A ``--db`` value as messages name it: a file as given, a URL without its user and password."""
    if not is_postgres_url(text):
        return text
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


# --- the interface -------------------------------------------------------------------------


class StoreTransaction(abc.ABC):
    """Reads and writes inside one open write transaction (see :meth:`TokenStore.transaction`)."""

    @abc.abstractmethod
    def get(self, serial: str) -> TokenRecord | None:
        """The token ``serial``, or None."""

    @abc.abstractmethod
    def update(self, record: TokenRecord, *, expected_version: int) -> TokenRecord:
        """Replace the row of ``record.serial`` if its version is still ``expected_version``.

        Returns the record as stored, with ``version = expected_version + 1``.
        Raises :class:`ConcurrentUpdateError` if the row changed, and
        :class:`UnknownTokenError` if there is no such token.
        """

    @abc.abstractmethod
    def add_history(self, serial: str, entry: HistoryEntry) -> None:
        """Append a matched step to the token's history."""

    @abc.abstractmethod
    def history(self, serial: str, limit: int | None = None) -> list[HistoryEntry]:
        """The token's history in ascending time; with ``limit``, only the latest ``limit`` entries."""

    @abc.abstractmethod
    def log_event(self, serial: str | None, at_ns: int, event: str, detail: str = "") -> None:
        """Append to the audit log (never pass secrets)."""


class TokenStore(abc.ABC):
    """Where the validator keeps its tokens, their history, and an audit log."""

    @abc.abstractmethod
    def add_tokens(
        self,
        items: Sequence[tuple[TokenParams, SealedSeed]],
        *,
        at_ns: int | None = None,
        detail: str = "",
    ) -> None:
        """Add new tokens in one transaction, all or nothing, logging an ``added`` event for each.

        Raises :class:`DuplicateTokenError` (listing the serials) if any serial
        is already stored or appears twice in ``items``; nothing is written then.
        """

    @abc.abstractmethod
    def get(self, serial: str) -> TokenRecord | None:
        """The token ``serial``, or None."""

    @abc.abstractmethod
    def list_tokens(self) -> list[TokenRecord]:
        """Every token, ordered by serial."""

    @abc.abstractmethod
    def history(self, serial: str, limit: int | None = None) -> list[HistoryEntry]:
        """The token's history in ascending time; with ``limit``, only the latest ``limit`` entries."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[StoreTransaction]:
        """A write transaction that holds the write lock from its start.

        Commits (durably) when the block ends normally, rolls back if it
        raises. Read-decide-write inside it is atomic across processes.
        """

    @abc.abstractmethod
    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Group commit: one durable transaction around many :meth:`transaction` blocks.

        Inside the block each :meth:`transaction` runs in the batch's transaction:
        nothing is durable until the batch commits once at the end. If a
        :meth:`transaction` block raises, the batch is spoiled: nothing of it is
        kept (the exception propagates; a batch left normally after one raises
        :class:`StorageError`), and the caller decides its requests again one by
        one. If the commit fails, every change of the batch is lost and the error
        is raised: a caller answers no request of the batch as accepted until
        this block has returned.
        """

    @abc.abstractmethod
    def log_event(self, serial: str | None, at_ns: int, event: str, detail: str = "") -> None:
        """Append to the audit log in its own transaction (never pass secrets)."""

    @abc.abstractmethod
    def events(self, serial: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        """Audit events in the order written: of token ``serial``, or all of them if None."""

    @abc.abstractmethod
    def add_credential(self, credential: Credential) -> None:
        """Store a new credential (its ident must be new)."""

    @abc.abstractmethod
    def credentials(self) -> list[Credential]:
        """Every credential, revoked ones included, ordered by ident."""

    @abc.abstractmethod
    def revoke_credential(self, ident: str, at_ns: int) -> bool:
        """Mark credential ``ident`` revoked at ``at_ns``; False if there is no such active credential."""

    @abc.abstractmethod
    def sealed_key_ids(self) -> dict[str, int]:
        """How many stored seeds are sealed under each master key id."""

    @abc.abstractmethod
    def rekey(self, keyring: Keyring, new_key: MasterKey, *, at_ns: int | None = None) -> int:
        """Re-seal every seed under ``new_key`` in one transaction; return how many were re-sealed.

        Each row is opened with the key its ``key_id`` names (from ``keyring``);
        if any row cannot be opened nothing changes. Every re-sealed row's
        ``version`` increases.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection. The store cannot be used afterwards."""

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- schema and migrations ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Migration:
    """One schema step: SQL statements, then an optional Python step, run in the migrating transaction."""

    version: int
    description: str
    statements: tuple[str, ...] = ()
    apply: Callable[[sqlite3.Connection], None] | None = None


_MIGRATION_1 = Migration(
    1,
    "tokens, history and audit events",
    (
        """
        CREATE TABLE tokens (
            serial           TEXT    NOT NULL PRIMARY KEY,
            kind             TEXT    NOT NULL CHECK (kind IN ('totp', 'hotp')),
            algorithm        TEXT    NOT NULL CHECK (algorithm IN ('sha1', 'sha256', 'sha512')),
            digits           INTEGER NOT NULL CHECK (digits BETWEEN 6 AND 10),
            period           INTEGER NOT NULL CHECK (period > 0),
            t0               INTEGER NOT NULL CHECK (t0 >= 0),
            counter          INTEGER NOT NULL CHECK (counter >= 0),
            drift_steps      INTEGER NOT NULL,
            has_check_digit  INTEGER NOT NULL CHECK (has_check_digit IN (0, 1)),
            seed_key_id      TEXT    NOT NULL,
            seed_nonce       BLOB    NOT NULL,
            seed_ciphertext  BLOB    NOT NULL,
            registered       INTEGER NOT NULL DEFAULT 0 CHECK (registered IN (0, 1)),
            last_step        INTEGER,
            drift_anchor_ns  INTEGER,
            drift_offset_ns  INTEGER NOT NULL DEFAULT 0,
            drift_rate_ppb   INTEGER NOT NULL DEFAULT 0,
            last_used_ns     INTEGER,
            failures         INTEGER NOT NULL DEFAULT 0,
            resync_failures  INTEGER NOT NULL DEFAULT 0,
            locked           INTEGER NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
            lock_reason      TEXT    NOT NULL DEFAULT '',
            not_before_ns    INTEGER NOT NULL DEFAULT 0,
            pending_step     INTEGER,
            pending_until_ns INTEGER NOT NULL DEFAULT 0,
            version          INTEGER NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE history (
            id     INTEGER PRIMARY KEY AUTOINCREMENT,
            serial TEXT    NOT NULL REFERENCES tokens (serial) ON DELETE CASCADE,
            at_ns  INTEGER NOT NULL,
            step   INTEGER NOT NULL,
            event  TEXT    NOT NULL
        )
        """,
        "CREATE INDEX history_by_serial ON history (serial, at_ns, id)",
        """
        CREATE TABLE events (
            id     INTEGER PRIMARY KEY AUTOINCREMENT,
            serial TEXT,
            at_ns  INTEGER NOT NULL,
            event  TEXT    NOT NULL,
            detail TEXT    NOT NULL DEFAULT ''
        )
        """,
        "CREATE INDEX events_by_serial ON events (serial, id)",
    ),
)

_MIGRATION_2 = Migration(
    2,
    "long-term drift rate",
    ("ALTER TABLE tokens ADD COLUMN drift_long_rate_ppb INTEGER NOT NULL DEFAULT 0",),
)

# The prior of validator.drift, written out so that this shipped migration never changes with it.
_MIGRATION_3 = Migration(
    3,
    "drift state with covariance (Kalman filter); the time a next-code round started",
    (
        "ALTER TABLE tokens DROP COLUMN drift_long_rate_ppb",
        "ALTER TABLE tokens ADD COLUMN drift_var_offset REAL NOT NULL DEFAULT 0",
        "ALTER TABLE tokens ADD COLUMN drift_cov REAL NOT NULL DEFAULT 0",
        "ALTER TABLE tokens ADD COLUMN drift_var_rate REAL NOT NULL DEFAULT 0",
        "ALTER TABLE tokens ADD COLUMN pending_at_ns INTEGER NOT NULL DEFAULT 0",
        # A rate fitted by the old model is kept as the estimate, with the full prior uncertainty.
        "UPDATE tokens SET drift_var_offset = period * period / 12.0 + 9.0, drift_var_rate = 8.333333333333334e-10 "
        "WHERE drift_anchor_ns IS NOT NULL",
        # A next-code round open during the upgrade has no start time: it ends (the user is asked again).
        "UPDATE tokens SET pending_step = NULL, pending_until_ns = 0",
    ),
)

_MIGRATION_4 = Migration(
    4,
    "bearer credentials of the network service (digests only)",
    (
        """
        CREATE TABLE credentials (
            ident      TEXT    NOT NULL PRIMARY KEY,
            kind       TEXT    NOT NULL CHECK (kind IN ('admin', 'client')),
            digest     BLOB    NOT NULL,
            label      TEXT    NOT NULL DEFAULT '',
            created_ns INTEGER NOT NULL,
            revoked_ns INTEGER
        )
        """,
    ),
)

#: Every schema step, in order. Add a schema change by appending ``Migration(n, ...)``; never edit a shipped one.
MIGRATIONS: tuple[Migration, ...] = (_MIGRATION_1, _MIGRATION_2, _MIGRATION_3, _MIGRATION_4)

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT    NOT NULL,
    applied_ns  INTEGER NOT NULL
)
"""

#: Token columns in the order :func:`_record_values` produces them (serial last, for UPDATE ... WHERE).
_TOKEN_COLUMNS: tuple[str, ...] = (
    "kind",
    "algorithm",
    "digits",
    "period",
    "t0",
    "counter",
    "drift_steps",
    "has_check_digit",
    "seed_key_id",
    "seed_nonce",
    "seed_ciphertext",
    "registered",
    "last_step",
    "drift_anchor_ns",
    "drift_offset_ns",
    "drift_rate_ppb",
    "drift_var_offset",
    "drift_cov",
    "drift_var_rate",
    "last_used_ns",
    "failures",
    "resync_failures",
    "locked",
    "lock_reason",
    "not_before_ns",
    "pending_step",
    "pending_until_ns",
    "pending_at_ns",
    "version",
)
_SELECT_TOKEN = f"SELECT serial, {', '.join(_TOKEN_COLUMNS)} FROM tokens"
_INSERT_TOKEN = (
    f"INSERT INTO tokens ({', '.join(_TOKEN_COLUMNS)}, serial) VALUES ({', '.join('?' * (len(_TOKEN_COLUMNS) + 1))})"
)
_UPDATE_TOKEN = (
    "UPDATE tokens SET "
    + ", ".join(f"{c} = ?" for c in _TOKEN_COLUMNS)
    + " WHERE serial = ? AND version = ?"
)
#: The synchronisation state: what a check changes (everything after the sealed seed).
_STATE_COLUMNS = _TOKEN_COLUMNS[_TOKEN_COLUMNS.index("registered"):]
_UPDATE_STATE = (
    "UPDATE tokens SET "
    + ", ".join(f"{c} = ?" for c in _STATE_COLUMNS)
    + " WHERE serial = ? AND version = ?"
)


# --- row mapping (shared by any SQL backend) ----------------------------------------------------


def _check_int(name: str, value: object, serial: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"token {serial}: {name} must be an integer, not {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidInputError(f"token {serial}: {name} = {value} does not fit a signed 64-bit integer")


def _check_float(name: str, value: object, serial: str, *, non_negative: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"token {serial}: {name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or (non_negative and value < 0):
        raise InvalidInputError(f"token {serial}: {name} = {value!r} must be finite{' and not negative' if non_negative else ''}")


_STATE_INTS = ("drift_offset_ns", "drift_rate_ppb", "failures", "resync_failures", "not_before_ns",
               "pending_until_ns", "pending_at_ns", "version")
#: State integers that count something and are never negative (a negative failure count would give a
#: token extra tries before its lockout).
_STATE_COUNTS = frozenset({"failures", "resync_failures", "version"})
_STATE_OPTIONAL_INTS = ("last_step", "drift_anchor_ns", "last_used_ns", "pending_step")
_STATE_FLOATS = ("drift_var_offset", "drift_cov", "drift_var_rate")


def check_state(record: TokenRecord) -> None:
    """Validate the synchronisation state of ``record`` (everything but its parameters and seed).

    The common case (exact ints in range, finite floats) takes a fast path: this runs on every check.
    """
    values = record.__dict__
    serial = record.params.serial
    for name in _STATE_INTS:
        v = values[name]
        if type(v) is not int or not INT64_MIN <= v <= INT64_MAX:
            _check_int(name, v, serial)
        if v < 0 and name in _STATE_COUNTS:
            raise InvalidInputError(f"token {serial}: {name} = {v} must not be negative")
    for name in _STATE_OPTIONAL_INTS:
        v = values[name]
        if v is not None and (type(v) is not int or not INT64_MIN <= v <= INT64_MAX):
            _check_int(name, v, serial, optional=True)
    for name in _STATE_FLOATS:
        v = values[name]
        if type(v) is not float or not math.isfinite(v) or (v < 0 and name != "drift_cov"):
            _check_float(name, v, serial, non_negative=name != "drift_cov")


def _record_values(record: TokenRecord) -> tuple[object, ...]:
    """The column values of ``record`` in :data:`_TOKEN_COLUMNS` order, then the serial; validated."""
    params, sealed = record.params, record.sealed
    serial = params.serial
    if not isinstance(serial, str) or not serial:
        raise InvalidInputError("a token needs a non-empty serial string")
    try:
        canonical = normalize(serial)
    except InvalidSerialError as exc:
        raise InvalidInputError(f"token serial: {exc}") from None
    if canonical != serial:
        raise InvalidInputError(f"token serial {serial!r} is not in its stored form {canonical!r}")
    if not isinstance(sealed, SealedSeed):
        raise InvalidInputError(f"token {serial}: sealed seed must be a SealedSeed, not {type(sealed).__name__}")
    for name in ("digits", "period", "t0", "counter", "drift_steps"):
        _check_int(name, getattr(params, name), serial)
    check_state(record)
    try:
        kind = TokenKind(params.kind).value
        algorithm = Algorithm(params.algorithm).value
    except ValueError as exc:
        raise InvalidInputError(f"token {serial}: {exc}") from None
    return (
        kind,
        algorithm,
        params.digits,
        params.period,
        params.t0,
        params.counter,
        params.drift_steps,
        int(bool(params.has_check_digit)),
        str(sealed.key_id),
        bytes(sealed.nonce),
        bytes(sealed.ciphertext),
        *_state_values(record),
    )


def _state_values(record: TokenRecord) -> tuple[object, ...]:
    """The :data:`_STATE_COLUMNS` values of ``record`` (already checked by :func:`check_state`), then the serial.

    The tail of :func:`_record_values`: one mapping of the state columns for both UPDATEs.
    """
    return (
        int(bool(record.registered)),
        record.last_step,
        record.drift_anchor_ns,
        record.drift_offset_ns,
        record.drift_rate_ppb,
        float(record.drift_var_offset),
        float(record.drift_cov),
        float(record.drift_var_rate),
        record.last_used_ns,
        record.failures,
        record.resync_failures,
        int(bool(record.locked)),
        str(record.lock_reason),
        record.not_before_ns,
        record.pending_step,
        record.pending_until_ns,
        record.pending_at_ns,
        record.version,
        record.params.serial,
    )


# --- what a stored token row may hold, checked on every read (every store) --------------------------

#: The columns of a token row as every store reads it: the serial, then :data:`_TOKEN_COLUMNS`.
_ROW_COLUMNS: tuple[str, ...] = ("serial", *_TOKEN_COLUMNS)
_ROW_INDEX = {name: index for index, name in enumerate(_ROW_COLUMNS)}
#: Integer columns and their allowed ranges (the schema's CHECK constraints, and the state rules of
#: :func:`check_state`): a value outside them is damage, not something to act on.
_ROW_INT_RANGES: dict[str, tuple[int, int]] = {
    "digits": (6, 10),
    "period": (1, INT64_MAX),
    "t0": (0, INT64_MAX),
    "counter": (0, INT64_MAX),
    "drift_steps": (INT64_MIN, INT64_MAX),
    "drift_offset_ns": (INT64_MIN, INT64_MAX),
    "drift_rate_ppb": (INT64_MIN, INT64_MAX),
    "failures": (0, INT64_MAX),
    "resync_failures": (0, INT64_MAX),
    "not_before_ns": (INT64_MIN, INT64_MAX),
    "pending_until_ns": (INT64_MIN, INT64_MAX),
    "pending_at_ns": (INT64_MIN, INT64_MAX),
    "version": (0, INT64_MAX),
}
_ROW_INTS = tuple((_ROW_INDEX[name], name, lo, hi) for name, (lo, hi) in _ROW_INT_RANGES.items())
_ROW_OPTIONAL_INTS = tuple((_ROW_INDEX[name], name) for name in _STATE_OPTIONAL_INTS)
#: 0/1 columns (SQLite and PostgreSQL give 0 or 1, the memory store a bool).
_ROW_FLAGS = tuple((_ROW_INDEX[name], name) for name in ("has_check_digit", "registered", "locked"))
#: Float columns, and whether each must not be negative (variances).
_ROW_FLOATS = tuple((_ROW_INDEX[name], name, name != "drift_cov") for name in _STATE_FLOATS)
_ROW_BLOBS = tuple((_ROW_INDEX[name], name) for name in ("seed_nonce", "seed_ciphertext"))
_ROW_CHOICES = (
    (_ROW_INDEX["kind"], "kind", frozenset(k.value for k in TokenKind)),
    (_ROW_INDEX["algorithm"], "algorithm", frozenset(a.value for a in Algorithm)),
)
_ROW_TEXTS = tuple((_ROW_INDEX[name], name) for name in ("seed_key_id", "lock_reason"))
#: Longest piece of a stored text value quoted in a message (never a seed column's).
_ROW_QUOTE_MAX = 40


def _corrupt(serial: object, column: str, problem: str) -> CorruptStateError:
    who = f"token {serial}" if isinstance(serial, str) and serial else "a token row"
    return CorruptStateError(
        f"{who}: the stored {column} {problem}; the row is damaged (restore it from a backup, or correct the "
        "column by hand)"
    )


def _kind_of_value(value: object) -> str:
    """What sort of value ``value`` is, for a message (never the value: it may be a seed column's)."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "binary data"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a floating-point number"
    return f"a {type(value).__name__} value"


def check_token_row(row: Sequence[object]) -> None:
    """Refuse a token row read from a store unless every column holds what the schema allows.

    ``row`` is the serial then the :data:`_TOKEN_COLUMNS` values, as SQLite and
    PostgreSQL return them and as the memory store lays out a record. A
    damaged row (text in the seed column, a negative failure count, a float
    where an integer belongs, an unknown kind) raises
    :class:`~vtoken.errors.CorruptStateError` naming the serial and the column,
    instead of a ``TypeError`` from deep in the validator or a token that
    quietly gets extra tries. Every store runs this on every read. Messages
    never show a seed column's value.
    """
    serial = row[0]
    if type(serial) is not str or not serial:
        raise _corrupt(None, "serial", f"is {_kind_of_value(serial)}, not a serial number")
    for index, name, lo, hi in _ROW_INTS:
        value = row[index]
        if type(value) is not int or not lo <= value <= hi:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _corrupt(serial, name, f"is {_kind_of_value(value)} where an integer belongs")
            raise _corrupt(serial, name, f"is {value}, outside {lo} to {hi}")
    for index, name in _ROW_OPTIONAL_INTS:
        value = row[index]
        if value is not None and (type(value) is not int or not INT64_MIN <= value <= INT64_MAX):
            if isinstance(value, bool) or not isinstance(value, int):
                raise _corrupt(serial, name, f"is {_kind_of_value(value)} where an integer or NULL belongs")
            raise _corrupt(serial, name, f"is {value}, outside the signed 64-bit range")
    for index, name in _ROW_FLAGS:
        value = row[index]
        if value is not True and value is not False and (type(value) is not int or value not in (0, 1)):
            raise _corrupt(serial, name, f"is {_kind_of_value(value) if type(value) is not int else value}, not 0 or 1")
    for index, name, non_negative in _ROW_FLOATS:
        value = row[index]
        if type(value) is not float or not math.isfinite(value) or (non_negative and value < 0):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _corrupt(serial, name, f"is {_kind_of_value(value)} where a number belongs")
            if not math.isfinite(value) or (non_negative and value < 0):
                raise _corrupt(serial, name, f"is {value!r}, not a finite{' non-negative' if non_negative else ''} "
                                             "number")
    for index, name in _ROW_BLOBS:
        value = row[index]
        if type(value) is not bytes and not isinstance(value, (bytes, bytearray, memoryview)):
            raise _corrupt(serial, name, f"is {_kind_of_value(value)} where binary data belongs")
    for index, name, allowed in _ROW_CHOICES:
        value = row[index]
        if not isinstance(value, str) or value not in allowed:
            shown = repr(value[:_ROW_QUOTE_MAX]) if isinstance(value, str) else _kind_of_value(value)
            raise _corrupt(serial, name, f"is {shown}, not one of {', '.join(sorted(allowed))}")
    for index, name in _ROW_TEXTS:
        value = row[index]
        if not isinstance(value, str):
            raise _corrupt(serial, name, f"is {_kind_of_value(value)} where text belongs")
    if not row[_ROW_INDEX["seed_key_id"]]:
        raise _corrupt(serial, "seed_key_id", "is empty")


def record_row(record: TokenRecord) -> tuple[object, ...]:
    """``record``'s values, unconverted, in the order of a stored row (:data:`_ROW_COLUMNS`).

    For a store that keeps records rather than rows (memory), so that
    :func:`check_token_row` sees what it holds exactly as it is.
    """
    params, sealed = record.params, record.sealed
    return (
        params.serial, params.kind, params.algorithm, params.digits, params.period, params.t0, params.counter,
        params.drift_steps, params.has_check_digit, sealed.key_id, sealed.nonce, sealed.ciphertext,
        record.registered, record.last_step, record.drift_anchor_ns, record.drift_offset_ns, record.drift_rate_ppb,
        record.drift_var_offset, record.drift_cov, record.drift_var_rate, record.last_used_ns, record.failures,
        record.resync_failures, record.locked, record.lock_reason, record.not_before_ns, record.pending_step,
        record.pending_until_ns, record.pending_at_ns, record.version,
    )


#: Parsed parameters and sealed seeds kept per store, keyed by their raw column values (they rarely change).
_PARAMS_CACHE_SIZE = 65_536
_PARAMS_COLUMNS = 12  # serial .. seed_ciphertext


def _row_to_record(row: Sequence[object], cache: dict[tuple[object, ...], tuple[TokenParams, SealedSeed]] | None = None
                   ) -> TokenRecord:
    (serial, kind, algorithm, digits, period, t0, counter, drift_steps, has_check_digit, key_id, nonce,
     ciphertext, registered, last_step, drift_anchor_ns, drift_offset_ns, drift_rate_ppb, drift_var_offset,
     drift_cov, drift_var_rate, last_used_ns,
     failures, resync_failures, locked, lock_reason, not_before_ns, pending_step, pending_until_ns,
     pending_at_ns, version) = row
    check_token_row(row)
    key = tuple(row[:_PARAMS_COLUMNS])
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        params, sealed = cached
    else:
        params, sealed = _params_of(row)
        if cache is not None:
            if len(cache) >= _PARAMS_CACHE_SIZE:
                cache.clear()
            cache[key] = (params, sealed)
    return TokenRecord(
        params=params,
        sealed=sealed,
        registered=bool(registered),
        last_step=last_step,  # type: ignore[arg-type]
        drift_anchor_ns=drift_anchor_ns,  # type: ignore[arg-type]
        drift_offset_ns=drift_offset_ns,  # type: ignore[arg-type]
        drift_rate_ppb=drift_rate_ppb,  # type: ignore[arg-type]
        drift_var_offset=float(drift_var_offset),  # type: ignore[arg-type]
        drift_cov=float(drift_cov),  # type: ignore[arg-type]
        drift_var_rate=float(drift_var_rate),  # type: ignore[arg-type]
        last_used_ns=last_used_ns,  # type: ignore[arg-type]
        failures=failures,  # type: ignore[arg-type]
        resync_failures=resync_failures,  # type: ignore[arg-type]
        locked=bool(locked),
        lock_reason=str(lock_reason),
        not_before_ns=not_before_ns,  # type: ignore[arg-type]
        pending_step=pending_step,  # type: ignore[arg-type]
        pending_until_ns=pending_until_ns,  # type: ignore[arg-type]
        pending_at_ns=pending_at_ns,  # type: ignore[arg-type]
        version=version,  # type: ignore[arg-type]
    )


def _params_of(row: Sequence[object]) -> tuple[TokenParams, SealedSeed]:
    (serial, kind, algorithm, digits, period, t0, counter, drift_steps, has_check_digit, key_id, nonce,
     ciphertext) = row[:_PARAMS_COLUMNS]
    params = TokenParams(
        serial=str(serial),
        kind=TokenKind(kind),
        algorithm=Algorithm(algorithm),
        digits=int(digits),  # type: ignore[call-overload]
        period=int(period),  # type: ignore[call-overload]
        t0=int(t0),  # type: ignore[call-overload]
        counter=int(counter),  # type: ignore[call-overload]
        drift_steps=int(drift_steps),  # type: ignore[call-overload]
        has_check_digit=bool(has_check_digit),
    )
    sealed = SealedSeed(key_id=str(key_id), nonce=bytes(nonce), ciphertext=bytes(ciphertext))  # type: ignore[call-overload]
    return params, sealed


def duplicate_error(twice: Sequence[str], stored: Sequence[str]) -> DuplicateTokenError:
    """The refusal of a batch with serials repeated in it (``twice``) or already stored (``stored``)."""
    parts = []
    if twice:
        parts.append(f"appear more than once: {', '.join(sorted(twice))}")
    if stored:
        parts.append(f"already in the store: {', '.join(sorted(stored))}")
    return DuplicateTokenError(set(twice) | set(stored), f"duplicate tokens ({'; '.join(parts)}); nothing was added")


def _check_event(serial: str | None, at_ns: int, event: str, detail: str) -> None:
    # The common case first (one event per check): exact types, a time in range.
    if (
        type(serial) is str and type(at_ns) is int and type(event) is str and type(detail) is str
        and event and INT64_MIN <= at_ns <= INT64_MAX
    ):
        return
    if serial is not None and not isinstance(serial, str):
        raise InvalidInputError(f"event serial must be a string or None, not {type(serial).__name__}")
    _check_int("event time", at_ns, serial or "-")
    if not isinstance(event, str) or not event:
        raise InvalidInputError("an event needs a non-empty name")
    if not isinstance(detail, str):
        raise InvalidInputError(f"event detail must be text, not {type(detail).__name__}")


def check_credential(credential: Credential) -> None:
    """Refuse a malformed credential before it is stored."""
    if not isinstance(credential, Credential):
        raise InvalidInputError(f"expected a Credential, not {type(credential).__name__}")
    if not isinstance(credential.ident, str) or not credential.ident:
        raise InvalidInputError("a credential needs a non-empty ident")
    if credential.kind not in CREDENTIAL_KINDS:
        raise InvalidInputError(f"credential kind must be one of {', '.join(CREDENTIAL_KINDS)}")
    if not isinstance(credential.digest, bytes) or len(credential.digest) != 32:
        raise InvalidInputError("a credential digest is 32 bytes (SHA-256)")
    if not isinstance(credential.label, str):
        raise InvalidInputError("a credential label is text")
    _check_int("created time", credential.created_ns, credential.ident)
    _check_int("revoked time", credential.revoked_ns, credential.ident, optional=True)


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidInputError(f"limit must be a non-negative integer or None, not {limit!r}")


def _history_query(limit: int | None) -> str:
    base = "SELECT at_ns, step, event, id FROM history WHERE serial = ?"
    if limit is None:
        return base + " ORDER BY at_ns, id"
    return f"SELECT at_ns, step, event FROM ({base} ORDER BY at_ns DESC, id DESC LIMIT ?) ORDER BY at_ns, id"


def _chunks(items: Sequence[str], size: int = _QUERY_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _sqlite_errors:  # noqa: N801 - used like the context-manager function it replaces
    """Turn sqlite3 errors into :class:`StorageError` naming the operation (a class: it runs per statement)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            return False
        what = self.what
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise StorageError(f"{what}: the database stayed locked by another process; try again") from exc
            raise StorageError(f"{what}: {text}") from exc
        if isinstance(exc, sqlite3.DatabaseError):
            raise StorageError(f"{what}: {exc}") from exc
        return False


# --- SQLite ---------------------------------------------------------------------------------


class _SQLiteTransaction(StoreTransaction):
    """A :class:`StoreTransaction` on an SQLite connection that has run ``BEGIN IMMEDIATE``."""

    def __init__(
        self, conn: sqlite3.Connection, cache: dict[tuple[object, ...], tuple[TokenParams, SealedSeed]] | None = None
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._cache = cache
        #: The record last read by :meth:`get` (its parameters and seed need no rewrite).
        self._read: TokenRecord | None = None

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("this transaction has ended")
        return self._conn

    def _end(self) -> None:
        self._conn = None

    def get(self, serial: str) -> TokenRecord | None:
        with _sqlite_errors(f"reading token {serial}"):
            row = self._c().execute(_SELECT_TOKEN + " WHERE serial = ?", (serial,)).fetchone()
        if row is None:
            return None
        record = _row_to_record(row, self._cache)
        self._read = record
        return record

    def update(self, record: TokenRecord, *, expected_version: int) -> TokenRecord:
        serial = record.serial
        _check_int("expected version", expected_version, serial)
        new = record if record.version == expected_version + 1 else evolve(record, version=expected_version + 1)
        read = self._read
        conn = self._c()
        if read is not None and read.params is record.params and read.sealed is record.sealed:
            # The check path: parameters and seed as read, only the state changes (no blobs rewritten).
            check_state(new)
            statement, values = _UPDATE_STATE, _state_values(new)
        else:
            statement, values = _UPDATE_TOKEN, _record_values(new)
        with _sqlite_errors(f"updating token {serial}"):
            cursor = conn.execute(statement, (*values, expected_version))
            if cursor.rowcount == 1:
                return new
            row = conn.execute("SELECT version FROM tokens WHERE serial = ?", (serial,)).fetchone()
        if row is None:
            raise UnknownTokenError(f"no token with serial {serial}")
        raise ConcurrentUpdateError(
            f"token {serial} changed since it was read (expected version {expected_version}, found {row[0]})"
        )

    def add_history(self, serial: str, entry: HistoryEntry) -> None:
        _check_int("history time", entry.at_ns, serial)
        _check_int("history step", entry.step, serial)
        if not isinstance(entry.event, str) or not entry.event:
            raise InvalidInputError("a history entry needs a non-empty event name")
        conn = self._c()
        with _sqlite_errors(f"adding history of token {serial}"):
            try:
                conn.execute(
                    "INSERT INTO history (serial, at_ns, step, event) VALUES (?, ?, ?, ?)",
                    (serial, entry.at_ns, entry.step, entry.event),
                )
            except sqlite3.IntegrityError:
                raise UnknownTokenError(f"no token with serial {serial}") from None

    def history(self, serial: str, limit: int | None = None) -> list[HistoryEntry]:
        return _read_history(self._c(), serial, limit)

    def log_event(self, serial: str | None, at_ns: int, event: str, detail: str = "") -> None:
        _check_event(serial, at_ns, event, detail)
        with _sqlite_errors("writing the audit log"):
            self._c().execute(
                "INSERT INTO events (serial, at_ns, event, detail) VALUES (?, ?, ?, ?)",
                (serial, at_ns, event, detail),
            )


def _read_history(conn: sqlite3.Connection, serial: str, limit: int | None) -> list[HistoryEntry]:
    _check_limit(limit)
    params: tuple[object, ...] = (serial,) if limit is None else (serial, limit)
    with _sqlite_errors(f"reading history of token {serial}"):
        rows = conn.execute(_history_query(limit), params).fetchall()
    return [HistoryEntry(at_ns=row[0], step=row[1], event=row[2]) for row in rows]


def _create_db_file(path: Path) -> None:
    """Create an empty database file with mode 0600 (SQLite gives its -wal/-shm files the same mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), DB_FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise StorageError(f"cannot create database {path}: {exc.strerror}") from None
    os.close(fd)


class SQLiteStore(TokenStore):
    """A :class:`TokenStore` in one SQLite file (WAL, ``synchronous=FULL``, schema migrations on open).

    One connection per store object; use it from the thread that opened it.
    Any number of processes may open the same file at once.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self._path = Path(path)
        self._tx: _SQLiteTransaction | None = None
        self._in_batch = False
        self._batch_spoiled = False
        self._params_cache: dict[tuple[object, ...], tuple[TokenParams, SealedSeed]] = {}
        self._conn: sqlite3.Connection | None = None
        _create_db_file(self._path)
        with _sqlite_errors(f"opening database {self._path}"):
            conn = sqlite3.connect(str(self._path), timeout=busy_timeout_s, isolation_level=None)
        self._conn = conn
        try:
            with _sqlite_errors(f"opening database {self._path}"):
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
                self._enable_wal(conn)
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self.close()
            raise

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        for attempt in range(_WAL_ATTEMPTS):
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                # Two processes switching a fresh file to WAL at once: one may get SQLITE_BUSY at once.
                if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                    raise
                time.sleep(_WAL_RETRY_S)
        if str(mode).lower() != "wal":
            raise StorageError(f"database {self._path} cannot use WAL journaling (got {mode!r})")

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"store {self._path} is closed")
        return self._conn

    # -- schema ----------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The highest migration applied to this database."""
        with _sqlite_errors("reading the schema version"):
            row = self._c().execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        return int(row[0])

    def applied_migrations(self) -> list[tuple[int, str, int]]:
        """(version, description, applied_ns) of every migration applied, in order."""
        with _sqlite_errors("reading the schema version"):
            rows = self._c().execute(
                "SELECT version, description, applied_ns FROM schema_migrations ORDER BY version"
            ).fetchall()
        return [(int(v), str(d), int(a)) for v, d, a in rows]

    def _migrate(self) -> None:
        latest = MIGRATIONS[-1].version
        conn = self._c()
        with _sqlite_errors(f"reading the schema of {self._path}"):
            if conn.execute("PRAGMA user_version").fetchone()[0] == latest:
                return
        with self.transaction():
            with _sqlite_errors(f"migrating {self._path}"):
                conn.execute(_MIGRATIONS_TABLE)
                current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
                if current > latest:
                    raise StorageError(
                        f"database {self._path} has schema version {current}, newer than this vtoken "
                        f"understands ({latest}); upgrade vtoken"
                    )
                for migration in MIGRATIONS:
                    if migration.version <= current:
                        continue
                    for statement in migration.statements:
                        conn.execute(statement)
                    if migration.apply is not None:
                        migration.apply(conn)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, description, applied_ns) VALUES (?, ?, ?)",
                        (migration.version, migration.description, time.time_ns()),
                    )
                conn.execute(f"PRAGMA user_version = {int(max(current, latest))}")

    # -- transactions --------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` if the block raises); part of the batch in one."""
        conn = self._c()
        if self._tx is not None:
            raise StorageError("a transaction is already open on this store")
        if self._in_batch:
            # Inside a batch: no savepoint (two statements per decision saved); a block that raises
            # spoils the batch, which then keeps nothing (see TokenStore.batch).
            tx = _SQLiteTransaction(conn, self._params_cache)
            self._tx = tx
            try:
                yield tx
            except BaseException:
                self._batch_spoiled = True
                raise
            finally:
                tx._end()
                self._tx = None
            return
        with _sqlite_errors(f"starting a transaction on {self._path}"):
            conn.execute("BEGIN IMMEDIATE")
        tx = _SQLiteTransaction(conn, self._params_cache)
        self._tx = tx
        try:
            yield tx
        except BaseException:
            tx._end()
            self._tx = None
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        tx._end()
        self._tx = None
        self._commit(conn)

    def _commit(self, conn: sqlite3.Connection) -> None:
        try:
            with _sqlite_errors(f"committing to {self._path}"):
                conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE``, the block's transactions, one ``COMMIT`` (one fsync)."""
        conn = self._c()
        if self._tx is not None or self._in_batch:
            raise StorageError("a transaction is already open on this store")
        with _sqlite_errors(f"starting a transaction on {self._path}"):
            conn.execute("BEGIN IMMEDIATE")
        self._in_batch, self._batch_spoiled = True, False
        try:
            yield
        except BaseException:
            self._in_batch = False
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        self._in_batch = False
        if self._batch_spoiled:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise StorageError("a transaction in the batch failed: nothing of the batch was kept")
        self._commit(conn)

    # -- tokens ------------------------------------------------------------------------------------

    def add_tokens(
        self,
        items: Sequence[tuple[TokenParams, SealedSeed]],
        *,
        at_ns: int | None = None,
        detail: str = "",
    ) -> None:
        when = time.time_ns() if at_ns is None else at_ns
        rows = []
        for params, sealed in items:
            if not isinstance(params, TokenParams):
                raise InvalidInputError(f"expected TokenParams, not {type(params).__name__}")
            rows.append(_record_values(TokenRecord(params=params, sealed=sealed)))
        _check_event(None, when, EVENT_ADDED, detail)
        if not rows:
            return
        serials = [params.serial for params, _ in items]
        twice = sorted(s for s, n in collections.Counter(serials).items() if n > 1)
        conn = self._c()
        with self.transaction():
            with _sqlite_errors("adding tokens"):
                unique = sorted(set(serials))
                stored: list[str] = []
                for chunk in _chunks(unique):
                    marks = ", ".join("?" * len(chunk))
                    stored.extend(
                        row[0] for row in conn.execute(f"SELECT serial FROM tokens WHERE serial IN ({marks})", chunk)
                    )
                if twice or stored:
                    raise duplicate_error(twice, stored)
                conn.executemany(_INSERT_TOKEN, rows)
                conn.executemany(
                    "INSERT INTO events (serial, at_ns, event, detail) VALUES (?, ?, ?, ?)",
                    [(serial, when, EVENT_ADDED, detail) for serial in serials],
                )

    def get(self, serial: str) -> TokenRecord | None:
        with _sqlite_errors(f"reading token {serial}"):
            row = self._c().execute(_SELECT_TOKEN + " WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else _row_to_record(row)

    def list_tokens(self) -> list[TokenRecord]:
        with _sqlite_errors("listing tokens"):
            rows = self._c().execute(_SELECT_TOKEN + " ORDER BY serial").fetchall()
        return [_row_to_record(row) for row in rows]

    def history(self, serial: str, limit: int | None = None) -> list[HistoryEntry]:
        return _read_history(self._c(), serial, limit)

    # -- audit log -------------------------------------------------------------------------------------

    def log_event(self, serial: str | None, at_ns: int, event: str, detail: str = "") -> None:
        _check_event(serial, at_ns, event, detail)
        with self.transaction() as tx:
            tx.log_event(serial, at_ns, event, detail)

    def events(self, serial: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        _check_limit(limit)
        where, params = ("", ()) if serial is None else (" WHERE serial = ?", (serial,))
        query = f"SELECT serial, at_ns, event, detail FROM events{where} ORDER BY id"
        if limit is not None:
            query = (
                f"SELECT serial, at_ns, event, detail FROM (SELECT id, serial, at_ns, event, detail FROM events"
                f"{where} ORDER BY id DESC LIMIT ?) ORDER BY id"
            )
            params = (*params, limit)
        with _sqlite_errors("reading the audit log"):
            rows = self._c().execute(query, params).fetchall()
        return [AuditEvent(serial=r[0], at_ns=r[1], event=r[2], detail=r[3]) for r in rows]

    # -- credentials ---------------------------------------------------------------------------------

    def add_credential(self, credential: Credential) -> None:
        check_credential(credential)
        with self.transaction():
            with _sqlite_errors("adding a credential"):
                try:
                    self._c().execute(
                        "INSERT INTO credentials (ident, kind, digest, label, created_ns, revoked_ns) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (credential.ident, credential.kind, credential.digest, credential.label,
                         credential.created_ns, credential.revoked_ns),
                    )
                except sqlite3.IntegrityError:
                    raise InvalidInputError(f"credential {credential.ident} already exists") from None

    def credentials(self) -> list[Credential]:
        with _sqlite_errors("reading credentials"):
            rows = self._c().execute(
                "SELECT ident, kind, digest, label, created_ns, revoked_ns FROM credentials ORDER BY ident"
            ).fetchall()
        return [Credential(str(i), str(k), bytes(d), str(lb), int(c), r) for i, k, d, lb, c, r in rows]

    def revoke_credential(self, ident: str, at_ns: int) -> bool:
        _check_int("revoked time", at_ns, ident)
        with self.transaction():
            with _sqlite_errors("revoking a credential"):
                cursor = self._c().execute(
                    "UPDATE credentials SET revoked_ns = ? WHERE ident = ? AND revoked_ns IS NULL", (at_ns, ident)
                )
        return cursor.rowcount == 1

    # -- master keys -------------------------------------------------------------------------------------

    def sealed_key_ids(self) -> dict[str, int]:
        with _sqlite_errors("counting sealed seeds"):
            rows = self._c().execute(
                "SELECT seed_key_id, COUNT(*) FROM tokens GROUP BY seed_key_id ORDER BY seed_key_id"
            ).fetchall()
        return {str(k): int(n) for k, n in rows}

    def rekey(self, keyring: Keyring, new_key: MasterKey, *, at_ns: int | None = None) -> int:
        when = time.time_ns() if at_ns is None else at_ns
        _check_event(None, when, EVENT_REKEY, "")
        conn = self._c()
        count = 0
        with self.transaction() as tx:
            with _sqlite_errors("reading sealed seeds"):
                rows = conn.execute(_SELECT_TOKEN).fetchall()
            records = [_row_to_record(row) for row in rows]  # every row checked before any is re-sealed
            old_ids = sorted({record.sealed.key_id for record in records})
            for record in records:
                serial = record.serial
                fresh = seal(new_key, serial, unseal(keyring, serial, record.sealed))
                with _sqlite_errors(f"re-sealing token {serial}"):
                    conn.execute(
                        "UPDATE tokens SET seed_key_id = ?, seed_nonce = ?, seed_ciphertext = ?, "
                        "version = version + 1 WHERE serial = ?",
                        (fresh.key_id, fresh.nonce, fresh.ciphertext, serial),
                    )
                count += 1
            tx.log_event(
                None,
                when,
                EVENT_REKEY,
                f"{count} seed(s) re-sealed from key(s) {', '.join(old_ids) or '-'} to key {new_key.key_id}",
            )
        return count

    # -- lifetime ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"SQLiteStore({str(self._path)!r}, {state})"
