"""The portal's tables, kept in the validator's SQLite database file.

Entities are stored as JSON documents keyed by kind and id, with a few
indexed fields for look-ups. The schema version is the ``schema_version`` row
of ``portal_counters``; opening a store applies every :data:`MIGRATIONS` step
above it, in the same ``BEGIN IMMEDIATE`` transaction, and refuses a database
newer than this code. Every service operation runs in one ``BEGIN IMMEDIATE``
transaction, so two portal processes never interleave.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import json
import os
import sqlite3
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from portal.records import ENTITY_TYPES
from vtoken.errors import StorageError

BUSY_TIMEOUT_S = 10.0
SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS portal_entities (
        kind    TEXT NOT NULL,
        id      TEXT NOT NULL,
        owner   TEXT NOT NULL DEFAULT '',
        data    TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    )
    """,
    "CREATE INDEX IF NOT EXISTS portal_by_owner ON portal_entities (kind, owner)",
    """
    CREATE TABLE IF NOT EXISTS portal_counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS portal_log (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ns  INTEGER NOT NULL,
        actor  TEXT NOT NULL,
        event  TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )
    """,
)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Migration:
    """One schema step, run in the opening transaction (on raw rows: it never changes with the dataclasses)."""

    version: int
    description: str
    apply: Callable[[sqlite3.Connection], None] | None = None


#: Id (and ``code_hash``) given to an activation code whose unkeyed hash schema 2 erased; the row id follows.
LEGACY_ACTIVATION_ID_PREFIX = "legacy-unkeyed-"


def _revoke_unkeyed_activation_codes(conn: sqlite3.Connection) -> None:
    """Schema 2: activation codes were SHA-256(purpose, credential id, code), which a read database gives away.

    The code itself is not known here, so it cannot be re-hashed under the keyed scheme: the hash is erased
    and an unused code is revoked (it would have expired within 72 hours anyway). Entering it is refused
    with ``activation-invalidated``, which says to book a new video session.
    """
    rows = conn.execute("SELECT rowid, data FROM portal_entities WHERE kind = 'activation'").fetchall()
    for rowid, text in rows:
        raw = json.loads(text)
        if raw.get("key_id"):
            continue
        marker = f"{LEGACY_ACTIVATION_ID_PREFIX}{rowid}"
        raw.update(code_hash=marker, key_id="")
        if raw.get("used_ns") is None and raw.get("revoked") is None:
            raw.update(revoked="legacy-hash", revoked_ns=None)
        conn.execute(
            "UPDATE portal_entities SET id = ?, data = ? WHERE rowid = ?",
            (marker, json.dumps(raw, sort_keys=True), rowid),
        )


#: ``code_hash`` given to a phone OTP whose unkeyed hash schema 3 erased.
LEGACY_PHONE_OTP_HASH = "legacy-unkeyed"


def _expire_unkeyed_phone_otps(conn: sqlite3.Connection) -> None:
    """Schema 3: phone OTPs were SHA-256(purpose, id, code), which a read database gives away.

    As for activation codes in schema 2, the hash is erased; an unused code is expired (it lived five
    minutes at most), so entering it is refused with ``otp-expired``, which says to ask for a new one.
    """
    rows = conn.execute("SELECT rowid, data FROM portal_entities WHERE kind = 'phone_otp'").fetchall()
    for rowid, text in rows:
        raw = json.loads(text)
        if raw.get("key_id"):
            continue
        raw.update(code_hash=LEGACY_PHONE_OTP_HASH, key_id="")
        if raw.get("used_ns") is None:
            raw["expires_ns"] = min(raw["expires_ns"], raw["sent_ns"])
        conn.execute("UPDATE portal_entities SET data = ? WHERE rowid = ?", (json.dumps(raw, sort_keys=True), rowid))


#: Every schema step, in order. Change the schema by appending ``Migration(n, ...)``; never edit a shipped one.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "entities, counters and the audit log"),
    Migration(2, "activation codes keyed by a pepper from the master key; unkeyed ones revoked",
              _revoke_unkeyed_activation_codes),
    Migration(3, "phone OTPs keyed by the same pepper; unkeyed ones expired", _expire_unkeyed_phone_otps),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _to_json(obj: Any) -> str:
    return json.dumps({f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}, sort_keys=True)


def _from_json(cls: type[T], text: str) -> T:
    raw = json.loads(text)
    enums = _enum_fields(cls)
    return cls(**{name: enums[name](v) if name in enums and v is not None else v for name, v in raw.items()})


@functools.cache
def _enum_fields(cls: type) -> dict[str, type[enum.Enum]]:
    """The fields of dataclass ``cls`` whose type is (optionally) an Enum."""
    found = {}
    for name, hint in typing.get_type_hints(cls).items():
        for candidate in (hint, *typing.get_args(hint)):
            if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
                found[name] = candidate
    return found


class PortalStore:
    """Portal entities in a SQLite file (normally the validator's)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the portal tables in {self.path}: {exc}") from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self.transaction():
                for statement in SCHEMA:
                    self._conn.execute(statement)
                self._migrate()
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"cannot open the portal tables in {self.path}: {exc}") from None
            if isinstance(exc, ValueError):  # a row that is not JSON
                raise StorageError(f"cannot migrate the portal tables in {self.path}: {exc}") from None
            raise
        self._depth = 0

    def _migrate(self) -> None:
        """Apply every migration above the stored version (a fresh database runs them all over empty tables)."""
        self._conn.execute("INSERT OR IGNORE INTO portal_counters (name, value) VALUES ('schema_version', 1)")
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StorageError(
                f"the portal tables in {self.path} have schema version {current}, newer than this vtoken "
                f"understands ({SCHEMA_VERSION}); upgrade vtoken"
            )
        for migration in MIGRATIONS:
            if migration.version > current:
                if migration.apply is not None:
                    migration.apply(self._conn)
                self._conn.execute(
                    "UPDATE portal_counters SET value = ? WHERE name = 'schema_version'", (migration.version,)
                )

    def schema_version(self) -> int:
        """The portal schema version of this database."""
        row = self._conn.execute("SELECT value FROM portal_counters WHERE name = 'schema_version'").fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE); commits on success, rolls back on error."""
        if getattr(self, "_depth", 0):
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._depth = 0

    def put(self, kind: str, obj: Any, *, owner: str = "") -> None:
        """Insert or replace an entity."""
        # An upsert, not INSERT OR REPLACE: REPLACE deletes the row and gives it a new rowid, which
        # would move an updated entity to the end of by_owner's "insertion order".
        self._conn.execute(
            "INSERT INTO portal_entities (kind, id, owner, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (kind, id) DO UPDATE SET owner = excluded.owner, data = excluded.data",
            (kind, self._id(kind, obj), owner, _to_json(obj)),
        )

    @staticmethod
    def _id(kind: str, obj: Any) -> str:
        for field in ("id", "key_hash", "code_hash"):
            if hasattr(obj, field):
                return str(getattr(obj, field))
        raise StorageError(f"{kind} has no id field")

    def get(self, kind: str, ident: str) -> Any | None:
        """The entity of ``kind`` with id ``ident``, or None."""
        row = self._conn.execute("SELECT data FROM portal_entities WHERE kind = ? AND id = ?", (kind, ident)).fetchone()
        return None if row is None else _from_json(ENTITY_TYPES[kind], row[0])

    def by_owner(self, kind: str, owner: str) -> list[Any]:
        """Every entity of ``kind`` filed under ``owner`` (in insertion order)."""
        rows = self._conn.execute(
            "SELECT data FROM portal_entities WHERE kind = ? AND owner = ? ORDER BY rowid", (kind, owner)
        ).fetchall()
        return [_from_json(ENTITY_TYPES[kind], row[0]) for row in rows]

    def all(self, kind: str) -> list[Any]:
        """Every entity of ``kind``."""
        rows = self._conn.execute("SELECT data FROM portal_entities WHERE kind = ? ORDER BY rowid", (kind,)).fetchall()
        return [_from_json(ENTITY_TYPES[kind], row[0]) for row in rows]

    def next_number(self, name: str, start: int) -> int:
        """The next value of a named counter (order numbers), starting at ``start``."""
        self._conn.execute("INSERT OR IGNORE INTO portal_counters (name, value) VALUES (?, ?)", (name, start - 1))
        self._conn.execute("UPDATE portal_counters SET value = value + 1 WHERE name = ?", (name,))
        return int(self._conn.execute("SELECT value FROM portal_counters WHERE name = ?", (name,)).fetchone()[0])

    def log(self, at_ns: int, actor: str, event: str, detail: str = "") -> None:
        """Append to the portal's audit log (never secrets)."""
        self._conn.execute(
            "INSERT INTO portal_log (at_ns, actor, event, detail) VALUES (?, ?, ?, ?)", (at_ns, actor, event, detail)
        )

    def audit(self, actor: str | None = None) -> list[tuple[int, str, str, str]]:
        """The audit log, oldest first."""
        query = "SELECT at_ns, actor, event, detail FROM portal_log"
        rows = self._conn.execute(query + (" WHERE actor = ?" if actor else "") + " ORDER BY id", (actor,) if actor else ())
        return [tuple(row) for row in rows.fetchall()]  # type: ignore[misc]

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> PortalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
