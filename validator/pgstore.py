"""A :class:`~validator.store.TokenStore` on PostgreSQL: one database shared by many validator nodes.

The same contract as :class:`~validator.store.SQLiteStore`, with the guarantees
holding across nodes:

* a decision reads its token ``FOR UPDATE`` (a row lock held to ``COMMIT``) and
  writes it with a compare-and-set on ``version``, so one code sent to every
  node at once is accepted exactly once, and every node's failures count
  towards one lockout;
* an accept is answered only after ``COMMIT`` returns. With the server's
  default ``synchronous_commit = on`` the commit is on the primary's disk; an
  accept survives a failover only if it reached the standby first, which needs
  a synchronous standby (``synchronous_standby_names`` with
  ``synchronous_commit = on`` or ``remote_apply``). With an asynchronous
  standby a failover can lose the last accepts, and their codes become
  acceptable once more on the promoted server;
* the schema is versioned by ordered migrations applied under an advisory lock,
  so nodes starting at once do not race;
* the database unreachable or restarting: every operation raises
  :class:`~vtoken.errors.StorageError` (the service answers 503: nothing
  accepted, no failure counted); the connection pool reconnects by itself.

Connections come from a psycopg 3 pool; a transaction or batch holds one
connection from BEGIN to COMMIT. Seeds are sealed exactly as in SQLite (the
master key is per deployment: give every node the same key).
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from validator.records import HistoryEntry, SealedSeed, TokenParams, TokenRecord, evolve
from validator.sealing import Keyring, MasterKey, seal, unseal
from validator.store import (
    _SELECT_TOKEN,
    _TOKEN_COLUMNS,
    _UPDATE_STATE,
    _UPDATE_TOKEN,
    EVENT_ADDED,
    EVENT_REKEY,
    AuditEvent,
    Credential,
    Migration,
    StoreTransaction,
    TokenStore,
    _check_event,
    _check_int,
    _check_limit,
    _record_values,
    _row_to_record,
    _state_values,
    check_credential,
    check_state,
    describe_db,
    duplicate_error,
    is_postgres_url,
)
from vtoken.errors import ConcurrentUpdateError, InvalidInputError, StorageError, UnknownTokenError

__all__ = ["PG_MIGRATIONS", "PostgresStore", "is_postgres_url"]

#: Seconds to wait for a pooled connection (the database down: fail within this, closed).
POOL_TIMEOUT_S = 3.0
POOL_MIN, POOL_MAX = 1, 4
#: Connections give up on a database that does not answer.
CONNECT_TIMEOUT_S = 3
#: The advisory lock migrations take (any 64-bit number, the same on every node).
MIGRATION_LOCK = 0x76746F6B656E  # "vtoken"

_PG_MIGRATION_1 = Migration(
    1,
    "tokens, history, audit events and credentials (the schema of SQLite version 4)",
    (
        """
        CREATE TABLE tokens (
            serial           TEXT     NOT NULL PRIMARY KEY,
            kind             TEXT     NOT NULL CHECK (kind IN ('totp', 'hotp')),
            algorithm        TEXT     NOT NULL CHECK (algorithm IN ('sha1', 'sha256', 'sha512')),
            digits           INTEGER  NOT NULL CHECK (digits BETWEEN 6 AND 10),
            period           INTEGER  NOT NULL CHECK (period > 0),
            t0               BIGINT   NOT NULL CHECK (t0 >= 0),
            counter          BIGINT   NOT NULL CHECK (counter >= 0),
            drift_steps      BIGINT   NOT NULL,
            has_check_digit  SMALLINT NOT NULL CHECK (has_check_digit IN (0, 1)),
            seed_key_id      TEXT     NOT NULL,
            seed_nonce       BYTEA    NOT NULL,
            seed_ciphertext  BYTEA    NOT NULL,
            registered       SMALLINT NOT NULL DEFAULT 0 CHECK (registered IN (0, 1)),
            last_step        BIGINT,
            drift_anchor_ns  BIGINT,
            drift_offset_ns  BIGINT   NOT NULL DEFAULT 0,
            drift_rate_ppb   BIGINT   NOT NULL DEFAULT 0,
            drift_var_offset DOUBLE PRECISION NOT NULL DEFAULT 0,
            drift_cov        DOUBLE PRECISION NOT NULL DEFAULT 0,
            drift_var_rate   DOUBLE PRECISION NOT NULL DEFAULT 0,
            last_used_ns     BIGINT,
            failures         BIGINT   NOT NULL DEFAULT 0,
            resync_failures  BIGINT   NOT NULL DEFAULT 0,
            locked           SMALLINT NOT NULL DEFAULT 0 CHECK (locked IN (0, 1)),
            lock_reason      TEXT     NOT NULL DEFAULT '',
            not_before_ns    BIGINT   NOT NULL DEFAULT 0,
            pending_step     BIGINT,
            pending_until_ns BIGINT   NOT NULL DEFAULT 0,
            pending_at_ns    BIGINT   NOT NULL DEFAULT 0,
            version          BIGINT   NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE TABLE history (
            id     BIGSERIAL PRIMARY KEY,
            serial TEXT   NOT NULL REFERENCES tokens (serial) ON DELETE CASCADE,
            at_ns  BIGINT NOT NULL,
            step   BIGINT NOT NULL,
            event  TEXT   NOT NULL
        )
        """,
        "CREATE INDEX history_by_serial ON history (serial, at_ns, id)",
        """
        CREATE TABLE events (
            id     BIGSERIAL PRIMARY KEY,
            serial TEXT,
            at_ns  BIGINT NOT NULL,
            event  TEXT   NOT NULL,
            detail TEXT   NOT NULL DEFAULT ''
        )
        """,
        "CREATE INDEX events_by_serial ON events (serial, id)",
        """
        CREATE TABLE credentials (
            ident      TEXT   NOT NULL PRIMARY KEY,
            kind       TEXT   NOT NULL CHECK (kind IN ('admin', 'client')),
            digest     BYTEA  NOT NULL,
            label      TEXT   NOT NULL DEFAULT '',
            created_ns BIGINT NOT NULL,
            revoked_ns BIGINT
        )
        """,
    ),
)

#: PostgreSQL's schema steps, in order (its own list: the DDL differs from SQLite's). Append; never edit.
PG_MIGRATIONS: tuple[Migration, ...] = (_PG_MIGRATION_1,)

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT    NOT NULL,
    applied_ns  BIGINT  NOT NULL
)
"""


def _pg(statement: str) -> str:
    """An SQLite statement of the shared row mapping with psycopg's placeholders."""
    return statement.replace("?", "%s")


_SELECT_FOR_UPDATE = _SELECT_TOKEN + " WHERE serial = %s FOR UPDATE"
_SELECT_ONE = _SELECT_TOKEN + " WHERE serial = %s"
_INSERT_TOKEN = (
    f"INSERT INTO tokens ({', '.join(_TOKEN_COLUMNS)}, serial) VALUES ({', '.join(['%s'] * (len(_TOKEN_COLUMNS) + 1))})"
)
_PG_UPDATE_TOKEN = _pg(_UPDATE_TOKEN)
_PG_UPDATE_STATE = _pg(_UPDATE_STATE)


class _Errors:
    """psycopg and pool errors as :class:`StorageError` naming the operation (the database's word kept)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            return False
        if isinstance(exc, PoolTimeout):
            raise StorageError(f"{self.what}: the database is unreachable (no connection within {POOL_TIMEOUT_S} s)") from exc
        if isinstance(exc, psycopg.OperationalError):
            raise StorageError(f"{self.what}: the database is unreachable: {str(exc).strip()[:200]}") from exc
        if isinstance(exc, psycopg.Error):
            raise StorageError(f"{self.what}: {str(exc).strip()[:200]}") from exc
        return False


class _PgTransaction(StoreTransaction):
    """A :class:`StoreTransaction` on a connection inside ``BEGIN``."""

    def __init__(self, conn: psycopg.Connection[Any], cache: dict[tuple[object, ...], tuple[TokenParams, SealedSeed]]) -> None:
        self._conn: psycopg.Connection[Any] | None = conn
        self._cache = cache
        self._read: TokenRecord | None = None

    def _c(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise StorageError("this transaction has ended")
        return self._conn

    def _end(self) -> None:
        self._conn = None

    def get(self, serial: str) -> TokenRecord | None:
        with _Errors(f"reading token {serial}"):
            row = self._c().execute(_SELECT_FOR_UPDATE, (serial,)).fetchone()
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
        if read is not None and read.params is record.params and read.sealed is record.sealed:
            check_state(new)
            statement, values = _PG_UPDATE_STATE, _state_values(new)
        else:
            statement, values = _PG_UPDATE_TOKEN, _record_values(new)
        conn = self._c()
        with _Errors(f"updating token {serial}"):
            cursor = conn.execute(statement, (*values, expected_version))
            if cursor.rowcount == 1:
                return new
            row = conn.execute("SELECT version FROM tokens WHERE serial = %s", (serial,)).fetchone()
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
        try:
            with _Errors(f"adding history of token {serial}"):
                self._c().execute(
                    "INSERT INTO history (serial, at_ns, step, event) VALUES (%s, %s, %s, %s)",
                    (serial, entry.at_ns, entry.step, entry.event),
                )
        except StorageError as exc:
            if isinstance(exc.__cause__, psycopg.errors.ForeignKeyViolation):
                raise UnknownTokenError(f"no token with serial {serial}") from None
            raise

    def history(self, serial: str, limit: int | None = None) -> list[HistoryEntry]:
        return _read_history(self._c(), serial, limit)

    def log_event(self, serial: str | None, at_ns: int, event: str, detail: str = "") -> None:
        _check_event(serial, at_ns, event, detail)
        with _Errors("writing the audit log"):
            self._c().execute(
                "INSERT INTO events (serial, at_ns, event, detail) VALUES (%s, %s, %s, %s)", (serial, at_ns, event, detail)
            )


def _read_history(conn: psycopg.Connection[Any], serial: str, limit: int | None) -> list[HistoryEntry]:
    _check_limit(limit)
    base = "SELECT at_ns, step, event, id FROM history WHERE serial = %s"
    with _Errors(f"reading history of token {serial}"):
        if limit is None:
            rows = conn.execute(base + " ORDER BY at_ns, id", (serial,)).fetchall()
        else:
            rows = conn.execute(
                f"SELECT at_ns, step, event FROM ({base} ORDER BY at_ns DESC, id DESC LIMIT %s) AS h ORDER BY at_ns, id",
                (serial, limit),
            ).fetchall()
    return [HistoryEntry(at_ns=row[0], step=row[1], event=row[2]) for row in rows]


class _State(threading.local):
    tx: _PgTransaction | None = None
    batch_conn: psycopg.Connection[Any] | None = None
    spoiled: bool = False


class PostgresStore(TokenStore):
    """A :class:`TokenStore` in a PostgreSQL database (``postgresql://...``), shared by many nodes."""

    def __init__(self, url: str, *, pool_min: int = POOL_MIN, pool_max: int = POOL_MAX,
                 pool_timeout_s: float = POOL_TIMEOUT_S) -> None:
        if not is_postgres_url(url):
            raise InvalidInputError("a PostgreSQL store needs a postgresql:// URL")
        self._url = url
        self._state = _State()
        self._params_cache: dict[tuple[object, ...], tuple[TokenParams, SealedSeed]] = {}
        self._pool: ConnectionPool | None = ConnectionPool(
            url,
            min_size=pool_min,
            max_size=pool_max,
            timeout=pool_timeout_s,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            check=ConnectionPool.check_connection,  # a connection broken by a restart is replaced, not used
            open=False,
            name="vtoken",
        )
        with _Errors(f"opening database {self.safe_url}"):
            self._pool.open(wait=True, timeout=pool_timeout_s)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @property
    def safe_url(self) -> str:
        """The URL without its user and password (for messages)."""
        return describe_db(self._url)

    def _p(self) -> ConnectionPool:
        if self._pool is None:
            raise StorageError(f"store {self.safe_url} is closed")
        return self._pool

    @contextlib.contextmanager
    def _connection(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        with _Errors(what), self._p().connection() as conn:
            yield conn

    # -- schema ------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The highest migration applied."""
        with self._connection("reading the schema version") as conn:
            return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])

    def _migrate(self) -> None:
        latest = PG_MIGRATIONS[-1].version
        with self._connection(f"migrating {self.safe_url}") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))  # one node migrates at a time
            conn.execute(_MIGRATIONS_TABLE)
            current = int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])
            if current > latest:
                raise StorageError(
                    f"database {self.safe_url} has schema version {current}, newer than this vtoken understands "
                    f"({latest}); upgrade vtoken"
                )
            for migration in PG_MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, description, applied_ns) VALUES (%s, %s, %s)",
                    (migration.version, migration.description, time.time_ns()),
                )

    # -- transactions ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        """``BEGIN`` ... ``COMMIT`` on a pooled connection (rows read with ``FOR UPDATE``); part of a batch in one."""
        state = self._state
        if state.tx is not None:
            raise StorageError("a transaction is already open on this store")
        if state.batch_conn is not None:
            tx = _PgTransaction(state.batch_conn, self._params_cache)
            state.tx = tx
            try:
                yield tx
            except BaseException:
                state.spoiled = True
                raise
            finally:
                tx._end()
                state.tx = None
            return
        with self._connection(f"a transaction on {self.safe_url}") as conn:
            with _Errors("starting a transaction"):
                conn.execute("BEGIN")
            tx = _PgTransaction(conn, self._params_cache)
            state.tx = tx
            try:
                yield tx
            except BaseException:
                tx._end()
                state.tx = None
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise
            tx._end()
            state.tx = None
            self._commit(conn)

    @staticmethod
    def _commit(conn: psycopg.Connection[Any]) -> None:
        try:
            with _Errors("committing"):
                conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """One ``BEGIN``, the block's transactions, one ``COMMIT`` (see :meth:`TokenStore.batch`)."""
        state = self._state
        if state.tx is not None or state.batch_conn is not None:
            raise StorageError("a transaction is already open on this store")
        with self._connection(f"a batch on {self.safe_url}") as conn:
            with _Errors("starting a batch"):
                conn.execute("BEGIN")
            state.batch_conn, state.spoiled = conn, False
            try:
                yield
            except BaseException:
                state.batch_conn = None
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise
            state.batch_conn = None
            if state.spoiled:
                with contextlib.suppress(psycopg.Error):
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
        with self.transaction() as tx:
            conn = tx._c()  # type: ignore[attr-defined]
            with _Errors("adding tokens"):
                stored = [r[0] for r in conn.execute(
                    "SELECT serial FROM tokens WHERE serial = ANY(%s)", (sorted(set(serials)),)).fetchall()]
                if twice or stored:
                    raise duplicate_error(twice, stored)
                with conn.cursor() as cursor:
                    cursor.executemany(_INSERT_TOKEN, rows)
                    cursor.executemany(
                        "INSERT INTO events (serial, at_ns, event, detail) VALUES (%s, %s, %s, %s)",
                        [(serial, when, EVENT_ADDED, detail) for serial in serials],
                    )

    def get(self, serial: str) -> TokenRecord | None:
        with self._connection(f"reading token {serial}") as conn:
            row = conn.execute(_SELECT_ONE, (serial,)).fetchone()
        return None if row is None else _row_to_record(row, self._params_cache)

    def list_tokens(self) -> list[TokenRecord]:
        with self._connection("listing tokens") as conn:
            rows = conn.execute(_SELECT_TOKEN + " ORDER BY serial").fetchall()
        return [_row_to_record(row, self._params_cache) for row in rows]

    def history(self, serial: str, limit: int | None = None) -> list[HistoryEntry]:
        with self._connection(f"reading history of token {serial}") as conn:
            return _read_history(conn, serial, limit)

    # -- audit log ---------------------------------------------------------------------------------

    def log_event(self, serial: str | None, at_ns: int, event: str, detail: str = "") -> None:
        _check_event(serial, at_ns, event, detail)
        with self.transaction() as tx:
            tx.log_event(serial, at_ns, event, detail)

    def events(self, serial: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        _check_limit(limit)
        where, params = ("", ()) if serial is None else (" WHERE serial = %s", (serial,))
        query = f"SELECT serial, at_ns, event, detail FROM events{where} ORDER BY id"
        if limit is not None:
            query = (
                f"SELECT serial, at_ns, event, detail FROM (SELECT id, serial, at_ns, event, detail FROM events"
                f"{where} ORDER BY id DESC LIMIT %s) AS e ORDER BY id"
            )
            params = (*params, limit)
        with self._connection("reading the audit log") as conn:
            rows = conn.execute(query, params).fetchall()
        return [AuditEvent(serial=r[0], at_ns=r[1], event=r[2], detail=r[3]) for r in rows]

    # -- credentials -------------------------------------------------------------------------------

    def add_credential(self, credential: Credential) -> None:
        check_credential(credential)
        try:
            with self._connection("adding a credential") as conn:
                conn.execute(
                    "INSERT INTO credentials (ident, kind, digest, label, created_ns, revoked_ns) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (credential.ident, credential.kind, credential.digest, credential.label, credential.created_ns,
                     credential.revoked_ns),
                )
        except StorageError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise InvalidInputError(f"credential {credential.ident} already exists") from None
            raise

    def credentials(self) -> list[Credential]:
        with self._connection("reading credentials") as conn:
            rows = conn.execute(
                "SELECT ident, kind, digest, label, created_ns, revoked_ns FROM credentials ORDER BY ident"
            ).fetchall()
        return [Credential(str(i), str(k), bytes(d), str(lb), int(c), r) for i, k, d, lb, c, r in rows]

    def revoke_credential(self, ident: str, at_ns: int) -> bool:
        _check_int("revoked time", at_ns, ident)
        with self._connection("revoking a credential") as conn:
            cursor = conn.execute(
                "UPDATE credentials SET revoked_ns = %s WHERE ident = %s AND revoked_ns IS NULL", (at_ns, ident)
            )
        return cursor.rowcount == 1

    # -- master keys -------------------------------------------------------------------------------

    def sealed_key_ids(self) -> dict[str, int]:
        with self._connection("counting sealed seeds") as conn:
            rows = conn.execute(
                "SELECT seed_key_id, COUNT(*) FROM tokens GROUP BY seed_key_id ORDER BY seed_key_id"
            ).fetchall()
        return {str(k): int(n) for k, n in rows}

    def rekey(self, keyring: Keyring, new_key: MasterKey, *, at_ns: int | None = None) -> int:
        when = time.time_ns() if at_ns is None else at_ns
        _check_event(None, when, EVENT_REKEY, "")
        count = 0
        with self.transaction() as tx:
            conn = tx._c()  # type: ignore[attr-defined]
            with _Errors("reading sealed seeds"):
                rows = conn.execute(_SELECT_TOKEN + " ORDER BY serial FOR UPDATE").fetchall()
            records = [_row_to_record(row) for row in rows]  # every row checked before any is re-sealed
            old_ids = sorted({record.sealed.key_id for record in records})
            for record in records:
                serial = record.serial
                fresh = seal(new_key, serial, unseal(keyring, serial, record.sealed))
                with _Errors(f"re-sealing token {serial}"):
                    conn.execute(
                        "UPDATE tokens SET seed_key_id = %s, seed_nonce = %s, seed_ciphertext = %s, "
                        "version = version + 1 WHERE serial = %s",
                        (fresh.key_id, fresh.nonce, fresh.ciphertext, serial),
                    )
                count += 1
            tx.log_event(
                None, when, EVENT_REKEY,
                f"{count} seed(s) re-sealed from key(s) {', '.join(old_ids) or '-'} to key {new_key.key_id}",
            )
        return count

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __repr__(self) -> str:
        return f"PostgresStore({self.safe_url!r}, {'closed' if self._pool is None else 'open'})"
