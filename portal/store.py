"""The portal's tables, kept in the validator's SQLite database file.

Entities are stored as JSON documents keyed by kind and id, with a few
indexed fields for look-ups; the schema is versioned in its own
``portal_migrations`` table. Every service operation runs in one
``BEGIN IMMEDIATE`` transaction, so two portal processes never interleave.
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
from collections.abc import Iterator
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
SCHEMA_VERSION = 1

T = TypeVar("T")


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
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self.transaction():
                for statement in SCHEMA:
                    self._conn.execute(statement)
                self._conn.execute(
                    "INSERT OR IGNORE INTO portal_counters (name, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the portal tables in {self.path}: {exc}") from None
        self._depth = 0

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
