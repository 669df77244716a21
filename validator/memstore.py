"""An in-memory :class:`~validator.store.TokenStore`: same semantics as SQLite, no durability.

For tests and for benchmarking the validator's decisions with storage taken
out (``python -m bench``). Everything lives in dictionaries of this process;
nothing survives it. The semantics follow :class:`~validator.store.SQLiteStore`:

* :meth:`MemoryStore.transaction` takes a lock at once (one writer at a time;
  threads of this process wait for it), refuses to nest on one store, and
  rolls every change back if its block raises;
* :meth:`StoreTransaction.update` is a compare-and-set on the row version and
  returns the record with ``version = expected_version + 1``;
* values are checked as strictly as SQLite checks them (signed 64-bit
  integers, known kinds and algorithms), so a record that one store refuses
  the other refuses too;
* history is returned in ascending time (ties in insertion order), events in
  the order written.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
import time
from collections.abc import Sequence

from validator.records import HistoryEntry, SealedSeed, TokenParams, TokenRecord, evolve
from validator.sealing import Keyring, MasterKey, seal, unseal
from validator.store import (
    EVENT_ADDED,
    EVENT_REKEY,
    INT64_MAX,
    INT64_MIN,
    AuditEvent,
    Credential,
    StoreTransaction,
    TokenStore,
    _check_event,
    _check_int,
    _check_limit,
    _record_values,
    check_credential,
    check_state,
    check_token_row,
    duplicate_error,
    record_row,
)
from vtoken.errors import ConcurrentUpdateError, InvalidInputError, StorageError, UnknownTokenError

__all__ = ["MemoryStore"]


def _checked(record: TokenRecord | None) -> TokenRecord | None:
    """``record`` after the row check every store runs on every read (:func:`~validator.store.check_token_row`).

    Records are validated when written; this catches one changed behind the
    store's back, as a damaged database row is caught in SQLite or PostgreSQL.
    """
    if record is not None:
        check_token_row(record_row(record))
    return record


class _MemoryTransaction(StoreTransaction):
    """Changes to a :class:`MemoryStore` made in place, with an undo log for rollback."""

    __slots__ = ("_store", "_undo")

    def __init__(self, store: MemoryStore) -> None:
        self._store: MemoryStore | None = store
        self._undo: list[tuple] = []

    def _s(self) -> MemoryStore:
        if self._store is None:
            raise StorageError("this transaction has ended")
        return self._store

    def _rollback(self) -> None:
        store = self._s()
        for kind, serial, value in reversed(self._undo):
            if kind == "record":
                store._tokens[serial] = value
            elif kind == "history":
                entries = store._history[serial]
                entries.remove(value)
                if not entries:
                    del store._history[serial]
            else:  # "events": the length before
                del store._events[value:]
        self._undo.clear()

    def get(self, serial: str) -> TokenRecord | None:
        return _checked(self._s()._tokens.get(serial))

    def update(self, record: TokenRecord, *, expected_version: int) -> TokenRecord:
        store = self._s()
        serial = record.serial
        _check_int("expected version", expected_version, serial)
        new = record if record.version == expected_version + 1 else evolve(record, version=expected_version + 1)
        old = store._tokens.get(serial)
        # The same validation SQLite applies; parameters and seed only when they changed.
        if old is not None and new.params is old.params and new.sealed is old.sealed:
            check_state(new)
        else:
            _record_values(new)
        if old is None:
            raise UnknownTokenError(f"no token with serial {serial}")
        if old.version != expected_version:
            raise ConcurrentUpdateError(
                f"token {serial} changed since it was read (expected version {expected_version}, found {old.version})"
            )
        self._undo.append(("record", serial, old))
        store._tokens[serial] = new
        return new

    def add_history(self, serial: str, entry: HistoryEntry) -> None:
        store = self._s()
        at_ns, step, event = entry.at_ns, entry.step, entry.event
        if not (type(at_ns) is int and type(step) is int and INT64_MIN <= at_ns <= INT64_MAX
                and INT64_MIN <= step <= INT64_MAX):
            _check_int("history time", at_ns, serial)
            _check_int("history step", step, serial)
        if type(event) is not str or not event:
            raise InvalidInputError("a history entry needs a non-empty event name")
        if serial not in store._tokens:
            raise UnknownTokenError(f"no token with serial {serial}")
        if type(entry) is not HistoryEntry:
            entry = HistoryEntry(at_ns, step, event)
        store._insert_history(serial, entry)
        self._undo.append(("history", serial, entry))

    def history(self, serial: str, limit: int | None = None) -> list[HistoryEntry]:
        return self._s().history(serial, limit)

    def log_event(self, serial: str | None, at_ns: int, event: str, detail: str = "") -> None:
        store = self._s()
        _check_event(serial, at_ns, event, detail)
        self._undo.append(("events", serial, len(store._events)))
        store._events.append(AuditEvent(serial=serial, at_ns=at_ns, event=event, detail=detail))


class _MemoryTransactionContext:
    """``with store.transaction() as tx``: a class, not a generator, since it runs on every check."""

    __slots__ = ("_store", "_tx", "_in_batch")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._tx: _MemoryTransaction | None = None
        self._in_batch = False

    def __enter__(self) -> StoreTransaction:
        store = self._store
        me = threading.get_ident()
        self._in_batch = store._batch_owner == me
        if not self._in_batch:
            store._lock.acquire()
        tx = _MemoryTransaction(store)
        self._tx = tx
        store._tx, store._owner = tx, me
        return tx

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        store, tx = self._store, self._tx
        try:
            if tx is not None:
                if exc_type is not None:
                    tx._rollback()
                    if self._in_batch:
                        store._batch_spoiled = True
                elif self._in_batch:
                    store._batch_undo.append(list(tx._undo))  # undone if the batch fails
        finally:
            if tx is not None:
                tx._store = None
            store._tx, store._owner = None, None
            if not self._in_batch:
                store._lock.release()


class _MemoryBatch:
    """``with store.batch()``: the lock held across many transactions, all undone if the block raises."""

    __slots__ = ("_store",)

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def __enter__(self) -> None:
        store = self._store
        store._check_open()
        me = threading.get_ident()
        if store._batch_owner == me or (store._tx is not None and store._owner == me):
            raise StorageError("a transaction is already open on this store")
        store._lock.acquire()
        store._batch_owner, store._batch_undo, store._batch_spoiled = me, [], False

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        store = self._store
        spoiled = store._batch_spoiled
        try:
            if exc_type is not None or spoiled:
                for undo in reversed(store._batch_undo):
                    tx = _MemoryTransaction(store)
                    tx._undo = undo
                    tx._rollback()
        finally:
            store._batch_owner, store._batch_undo, store._batch_spoiled = None, [], False
            store._lock.release()
        if spoiled and exc_type is None:
            raise StorageError("a transaction in the batch failed: nothing of the batch was kept")


class MemoryStore(TokenStore):
    """A :class:`TokenStore` held in this process's memory (nothing is durable)."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}
        self._history: dict[str, list[HistoryEntry]] = {}
        self._events: list[AuditEvent] = []
        self._credentials: dict[str, Credential] = {}
        self._lock = threading.Lock()
        self._tx: _MemoryTransaction | None = None
        self._owner: int | None = None
        self._batch_owner: int | None = None
        self._batch_undo: list[list[tuple]] = []
        self._batch_spoiled = False
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("in-memory store is closed")

    def _insert_history(self, serial: str, entry: HistoryEntry) -> None:
        entries = self._history.setdefault(serial, [])
        # Ascending time, ties in insertion order (SQLite: ORDER BY at_ns, id).
        index = len(entries)
        while index and entries[index - 1].at_ns > entry.at_ns:
            index -= 1
        entries.insert(index, entry)

    # -- transactions ---------------------------------------------------------------------------

    def transaction(self) -> contextlib.AbstractContextManager[StoreTransaction]:
        """Take the store's lock, yield a transaction, keep its changes or undo them if the block raises."""
        self._check_open()
        if self._tx is not None and self._owner == threading.get_ident():
            raise StorageError("a transaction is already open on this store")
        return _MemoryTransactionContext(self)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Hold the lock across many transactions; undo them all if the block raises (nothing is durable)."""
        return _MemoryBatch(self)

    # -- tokens -------------------------------------------------------------------------------------

    def add_tokens(
        self,
        items: Sequence[tuple[TokenParams, SealedSeed]],
        *,
        at_ns: int | None = None,
        detail: str = "",
    ) -> None:
        self._check_open()
        when = time.time_ns() if at_ns is None else at_ns
        records = []
        for params, sealed in items:
            if not isinstance(params, TokenParams):
                raise InvalidInputError(f"expected TokenParams, not {type(params).__name__}")
            record = TokenRecord(params=params, sealed=sealed)
            _record_values(record)
            records.append(record)
        _check_event(None, when, EVENT_ADDED, detail)
        if not records:
            return
        serials = [r.serial for r in records]
        with self.transaction():
            twice = sorted(s for s, n in collections.Counter(serials).items() if n > 1)
            stored = sorted(s for s in set(serials) if s in self._tokens)
            if twice or stored:
                raise duplicate_error(twice, stored)
            for record in records:
                self._tokens[record.serial] = record
            self._events.extend(AuditEvent(serial, when, EVENT_ADDED, detail) for serial in serials)

    def get(self, serial: str) -> TokenRecord | None:
        self._check_open()
        return _checked(self._tokens.get(serial))

    def list_tokens(self) -> list[TokenRecord]:
        self._check_open()
        return [_checked(self._tokens[s]) for s in sorted(self._tokens)]  # type: ignore[misc]

    def history(self, serial: str, limit: int | None = None) -> list[HistoryEntry]:
        self._check_open()
        _check_limit(limit)
        entries = self._history.get(serial, ())
        if limit is None:
            return list(entries)
        return list(entries[len(entries) - limit :]) if limit else []

    # -- audit log ------------------------------------------------------------------------------------

    def log_event(self, serial: str | None, at_ns: int, event: str, detail: str = "") -> None:
        _check_event(serial, at_ns, event, detail)
        with self.transaction() as tx:
            tx.log_event(serial, at_ns, event, detail)

    def events(self, serial: str | None = None, limit: int | None = None) -> list[AuditEvent]:
        self._check_open()
        _check_limit(limit)
        chosen = self._events if serial is None else [e for e in self._events if e.serial == serial]
        if limit is None:
            return list(chosen)
        return list(chosen[len(chosen) - limit :]) if limit else []

    # -- credentials ----------------------------------------------------------------------------------

    def add_credential(self, credential: Credential) -> None:
        check_credential(credential)
        with self.transaction():
            if credential.ident in self._credentials:
                raise InvalidInputError(f"credential {credential.ident} already exists")
            self._credentials[credential.ident] = credential

    def credentials(self) -> list[Credential]:
        self._check_open()
        return [self._credentials[i] for i in sorted(self._credentials)]

    def revoke_credential(self, ident: str, at_ns: int) -> bool:
        _check_int("revoked time", at_ns, ident)
        with self.transaction():
            found = self._credentials.get(ident)
            if found is None or found.revoked_ns is not None:
                return False
            self._credentials[ident] = dataclasses.replace(found, revoked_ns=at_ns)
            return True

    # -- master keys ----------------------------------------------------------------------------------

    def sealed_key_ids(self) -> dict[str, int]:
        self._check_open()
        counts = collections.Counter(r.sealed.key_id for r in self._tokens.values())
        return {k: counts[k] for k in sorted(counts)}

    def rekey(self, keyring: Keyring, new_key: MasterKey, *, at_ns: int | None = None) -> int:
        when = time.time_ns() if at_ns is None else at_ns
        _check_event(None, when, EVENT_REKEY, "")
        self._check_open()
        # Open every seed first: if one fails, nothing changes.
        for rec in self._tokens.values():
            _checked(rec)  # every record checked before any is re-sealed, as the SQL stores check every row
        fresh = {
            serial: seal(new_key, serial, unseal(keyring, serial, rec.sealed)) for serial, rec in self._tokens.items()
        }
        old_ids = sorted({rec.sealed.key_id for rec in self._tokens.values()})
        with self.transaction() as tx:
            for serial, sealed in fresh.items():
                rec = self._tokens[serial]
                tx.update(dataclasses.replace(rec, sealed=sealed), expected_version=rec.version)
            tx.log_event(
                None,
                when,
                EVENT_REKEY,
                f"{len(fresh)} seed(s) re-sealed from key(s) {', '.join(old_ids) or '-'} to key {new_key.key_id}",
            )
        return len(fresh)

    # -- lifetime -------------------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> MemoryStore:
        return self

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._tokens)} tokens{', closed' if self._closed else ''})"
