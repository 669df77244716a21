"""The SQLite token store: migrations, WAL, all-or-nothing batches, compare-and-set, two processes, rekey."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sqlite3
import stat
from pathlib import Path

import pytest

import validator.store as store_module
from validator.records import HistoryEntry, SealedSeed, TokenParams, TokenRecord
from validator.sealing import Keyring, MasterKey, generate_master_key, seal, unseal
from validator.store import MIGRATIONS, AuditEvent, Migration, SQLiteStore, TokenStore
from vtoken.errors import (
    ConcurrentUpdateError,
    DuplicateTokenError,
    ImportFailedError,
    InvalidInputError,
    MasterKeyError,
    StorageError,
    UnknownTokenError,
)
from vtoken.oath import Algorithm, TokenKind
from vtoken.serialno import make_serial

SEED_PREFIX = b"STORE-SEED-"
INCREMENTS_PER_PROCESS = 100


def seed_of(serial: str) -> bytes:
    return SEED_PREFIX + serial.encode()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(MasterKey(bytes(range(32))))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "validator.db"


@pytest.fixture
def store(db_path: Path) -> SQLiteStore:
    with SQLiteStore(db_path) as s:
        yield s


def make_items(keyring: Keyring, numbers: range | list[int], **overrides: object) -> list[tuple[TokenParams, SealedSeed]]:
    items = []
    for n in numbers:
        serial = make_serial(n)
        params = TokenParams(serial=serial, kind=TokenKind.TOTP, has_check_digit=True, **overrides)  # type: ignore[arg-type]
        items.append((params, seal(keyring, serial, seed_of(serial))))
    return items


def snapshot(store: SQLiteStore) -> tuple[list[TokenRecord], list[AuditEvent], dict[str, int]]:
    return store.list_tokens(), store.events(), store.sealed_key_ids()


# --- schema ------------------------------------------------------------------------------------------


def test_store_implements_the_interface(store: SQLiteStore) -> None:
    assert isinstance(store, TokenStore)


def test_migrations_applied_once_and_recorded(db_path: Path, keyring: Keyring) -> None:
    with SQLiteStore(db_path) as first:
        applied = first.applied_migrations()
        assert [v for v, _, _ in applied] == [m.version for m in MIGRATIONS]
        first.add_tokens(make_items(keyring, [1, 2]))
    with SQLiteStore(db_path) as again:
        assert again.applied_migrations() == applied  # not re-applied (same applied_ns)
        assert again.schema_version() == MIGRATIONS[-1].version
        assert [r.serial for r in again.list_tokens()] == [make_serial(1), make_serial(2)]
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == MIGRATIONS[-1].version
    tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"tokens", "history", "events", "schema_migrations"} <= tables
    raw.close()


def test_an_appended_migration_runs_once(db_path: Path, keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    with SQLiteStore(db_path) as s:
        s.add_tokens(make_items(keyring, [1]))
    latest = MIGRATIONS[-1].version
    extra = Migration(latest + 1, "a note column", ("ALTER TABLE tokens ADD COLUMN note TEXT NOT NULL DEFAULT ''",))
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, extra))
    with SQLiteStore(db_path) as s:
        assert [v for v, _, _ in s.applied_migrations()] == list(range(1, latest + 2))
        assert s.get(make_serial(1)) is not None
    with SQLiteStore(db_path) as s:  # reopening does not apply it again (ALTER TABLE would fail)
        assert s.schema_version() == latest + 1


def test_a_version_2_database_upgrades_to_the_drift_state(
    db_path: Path, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 3: a token fitted by the old model keeps its offset and rate, gains the prior's covariance."""
    with monkeypatch.context() as m:
        m.setattr(store_module, "MIGRATIONS", MIGRATIONS[:2])
        with SQLiteStore(db_path) as s:
            assert s.schema_version() == 2
    raw = sqlite3.connect(db_path)
    for params, sealed in make_items(keyring, [1, 2]):
        raw.execute(
            "INSERT INTO tokens (serial, kind, algorithm, digits, period, t0, counter, drift_steps, has_check_digit, "
            "seed_key_id, seed_nonce, seed_ciphertext) VALUES (?, 'totp', 'sha1', 6, 30, 0, 0, 0, 1, ?, ?, ?)",
            (params.serial, sealed.key_id, sealed.nonce, sealed.ciphertext),
        )
    raw.execute(
        "UPDATE tokens SET registered = 1, last_step = 7, drift_anchor_ns = 5, drift_offset_ns = -2000000000, "
        "drift_rate_ppb = 12000, drift_long_rate_ppb = 11000, pending_step = 9, pending_until_ns = 99 "
        "WHERE serial = ?",
        (make_serial(1),),
    )
    raw.commit()
    raw.close()
    with SQLiteStore(db_path) as s:
        assert s.schema_version() == MIGRATIONS[-1].version
        fitted, fresh = s.get(make_serial(1)), s.get(make_serial(2))
    assert (fitted.drift_anchor_ns, fitted.drift_offset_ns, fitted.drift_rate_ppb) == (5, -2_000_000_000, 12_000)
    assert fitted.drift_var_offset == pytest.approx(30 * 30 / 12 + 9)
    assert fitted.drift_var_rate == pytest.approx((50 / 3**0.5 * 1e-6) ** 2)
    assert fitted.drift_cov == 0.0 and fitted.pending_at_ns == 0
    assert fitted.pending_step is None and fitted.pending_until_ns == 0  # an open round has no start time: ended
    assert fresh.drift_anchor_ns is None and fresh.drift_var_offset == 0.0 and fresh.drift_var_rate == 0.0


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    SQLiteStore(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 0)")
    raw.execute("PRAGMA user_version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StorageError, match="newer"):
        SQLiteStore(db_path)


def test_wal_full_sync_and_private_file(store: SQLiteStore, db_path: Path) -> None:
    conn = store._c()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        SQLiteStore(path)


def test_closed_store_refuses_use(db_path: Path) -> None:
    s = SQLiteStore(db_path)
    s.close()
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.list_tokens()


# --- adding and reading -----------------------------------------------------------------------------------


def test_add_and_read_back_every_field(store: SQLiteStore, keyring: Keyring) -> None:
    serial = "1234567890123"
    params = TokenParams(
        serial=serial,
        kind=TokenKind.HOTP,
        algorithm=Algorithm.SHA512,
        digits=8,
        period=60,
        t0=120,
        counter=2**63 - 1,
        drift_steps=-3,
        has_check_digit=False,
    )
    sealed = seal(keyring, serial, seed_of(serial))
    store.add_tokens([(params, sealed)], at_ns=5, detail="unit test")
    record = store.get(serial)
    assert record == TokenRecord(params=params, sealed=sealed)
    assert unseal(keyring, serial, record.sealed) == seed_of(serial)
    assert store.get("999999") is None
    assert store.events(serial) == [AuditEvent(serial, 5, "added", "unit test")]


def test_list_tokens_is_ordered_by_serial(store: SQLiteStore, keyring: Keyring) -> None:
    store.add_tokens(make_items(keyring, [30, 10, 20]))
    assert [r.serial for r in store.list_tokens()] == [make_serial(n) for n in (10, 20, 30)]


def test_duplicates_in_the_batch_write_nothing(store: SQLiteStore, keyring: Keyring) -> None:
    store.add_tokens(make_items(keyring, [1]))
    before = snapshot(store)
    batch = make_items(keyring, [2, 3, 2, 4])
    with pytest.raises(DuplicateTokenError) as info:
        store.add_tokens(batch)
    assert info.value.serials == (make_serial(2),)
    assert isinstance(info.value, ImportFailedError)
    assert snapshot(store) == before


def test_duplicates_against_the_store_write_nothing(store: SQLiteStore, keyring: Keyring) -> None:
    store.add_tokens(make_items(keyring, [1, 2]))
    before = snapshot(store)
    with pytest.raises(DuplicateTokenError, match="already in the store") as info:
        store.add_tokens(make_items(keyring, [3, 2, 4, 1]))
    assert info.value.serials == (make_serial(1), make_serial(2))
    assert snapshot(store) == before


def test_large_batch_duplicate_check_spans_query_chunks(store: SQLiteStore, keyring: Keyring) -> None:
    store.add_tokens(make_items(keyring, [1_200]))
    with pytest.raises(DuplicateTokenError) as info:
        store.add_tokens(make_items(keyring, range(1, 1_300)))
    assert info.value.serials == (make_serial(1_200),)
    assert len(store.list_tokens()) == 1


def test_out_of_range_values_are_refused_before_writing(store: SQLiteStore, keyring: Keyring) -> None:
    with pytest.raises(InvalidInputError, match="64-bit"):
        store.add_tokens(make_items(keyring, [1, 2], counter=2**64 - 1))
    assert store.list_tokens() == []


# --- transactions and compare-and-set ------------------------------------------------------------------------


def test_update_is_compare_and_set(store: SQLiteStore, keyring: Keyring) -> None:
    store.add_tokens(make_items(keyring, [1]))
    serial = make_serial(1)
    with store.transaction() as tx:
        rec = tx.get(serial)
        new = tx.update(dataclasses.replace(rec, registered=True, last_step=7), expected_version=rec.version)
        assert new.version == rec.version + 1
        tx.add_history(serial, HistoryEntry(at_ns=100, step=7, event="register"))
    assert store.get(serial) == new
    stale = rec  # read before the update
    with pytest.raises(ConcurrentUpdateError, match="version"):
        with store.transaction() as tx:
            tx.update(dataclasses.replace(stale, failures=5), expected_version=stale.version)
    assert store.get(serial) == new
    assert store.history(serial) == [HistoryEntry(100, 7, "register")]


def test_update_and_history_of_unknown_token(store: SQLiteStore, keyring: Keyring) -> None:
    params, sealed = make_items(keyring, [1])[0]
    with store.transaction() as tx:
        with pytest.raises(UnknownTokenError):
            tx.update(TokenRecord(params, sealed), expected_version=0)
        with pytest.raises(UnknownTokenError):
            tx.add_history(params.serial, HistoryEntry(1, 1, "accept"))


def test_transaction_rolls_back_on_exception(store: SQLiteStore, keyring: Keyring) -> None:
    store.add_tokens(make_items(keyring, [1]))
    serial = make_serial(1)
    before = snapshot(store)
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as tx:
            rec = tx.get(serial)
            tx.update(dataclasses.replace(rec, failures=9, locked=True), expected_version=rec.version)
            tx.add_history(serial, HistoryEntry(1, 1, "accept"))
            tx.log_event(serial, 1, "locked", "too many failures")
            assert tx.get(serial).failures == 9  # visible inside the transaction
            raise RuntimeError("boom")
    assert snapshot(store) == before
    assert store.history(serial) == []


def test_transaction_object_expires_and_does_not_nest(store: SQLiteStore) -> None:
    with store.transaction() as tx:
        with pytest.raises(StorageError, match="already open"):
            with store.transaction():
                pass
    with pytest.raises(StorageError, match="ended"):
        tx.get("123456")


def test_transaction_takes_the_write_lock_at_once(db_path: Path, keyring: Keyring) -> None:
    with SQLiteStore(db_path) as a, SQLiteStore(db_path, busy_timeout_s=0.2) as b:
        a.add_tokens(make_items(keyring, [1]))
        with a.transaction():
            assert b.get(make_serial(1)) is not None  # readers are not blocked (WAL)
            with pytest.raises(StorageError, match="locked"):
                with b.transaction():
                    pass
        with b.transaction() as tx:  # free again
            assert tx.get(make_serial(1)) is not None


def _increment_worker(path: str, serial: str, count: int) -> None:
    """Read-modify-write ``failures`` ``count`` times, each in its own transaction."""
    with SQLiteStore(path) as s:
        for i in range(count):
            with s.transaction() as tx:
                rec = tx.get(serial)
                assert rec is not None
                tx.update(dataclasses.replace(rec, failures=rec.failures + 1), expected_version=rec.version)
                tx.add_history(serial, HistoryEntry(at_ns=i, step=rec.failures, event="accept"))


def test_two_processes_lose_no_update(db_path: Path, keyring: Keyring) -> None:
    with SQLiteStore(db_path) as s:
        s.add_tokens(make_items(keyring, [1]))
    serial = make_serial(1)
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=_increment_worker, args=(str(db_path), serial, INCREMENTS_PER_PROCESS)) for _ in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    with SQLiteStore(db_path) as s:
        rec = s.get(serial)
        assert rec.failures == 2 * INCREMENTS_PER_PROCESS
        assert rec.version == 2 * INCREMENTS_PER_PROCESS
        steps = sorted(h.step for h in s.history(serial))
        assert steps == list(range(2 * INCREMENTS_PER_PROCESS))  # every read saw the previous write


# --- history and events ----------------------------------------------------------------------------------------


def test_history_is_ascending_and_limit_keeps_the_latest(store: SQLiteStore, keyring: Keyring) -> None:
    store.add_tokens(make_items(keyring, [1, 2]))
    serial = make_serial(1)
    with store.transaction() as tx:
        for at in (30, 10, 20, 40):
            tx.add_history(serial, HistoryEntry(at_ns=at, step=at // 10, event="accept"))
        tx.add_history(make_serial(2), HistoryEntry(at_ns=5, step=0, event="register"))
        assert [h.at_ns for h in tx.history(serial, limit=2)] == [30, 40]
    assert [h.at_ns for h in store.history(serial)] == [10, 20, 30, 40]
    assert [h.at_ns for h in store.history(serial, limit=3)] == [20, 30, 40]
    assert store.history(serial, limit=0) == []
    assert store.history("424242") == []
    with pytest.raises(InvalidInputError):
        store.history(serial, limit=-1)


def test_events_log(store: SQLiteStore, keyring: Keyring) -> None:
    store.add_tokens(make_items(keyring, [1]), at_ns=1, detail="batch A")
    serial = make_serial(1)
    store.log_event(serial, 2, "locked", "6 failures")
    store.log_event(None, 3, "note", "maintenance")
    assert store.events(serial) == [AuditEvent(serial, 1, "added", "batch A"), AuditEvent(serial, 2, "locked", "6 failures")]
    assert [e.event for e in store.events()] == ["added", "locked", "note"]
    assert [e.event for e in store.events(limit=1)] == ["note"]
    with pytest.raises(InvalidInputError):
        store.log_event(serial, 4, "bad", b"bytes are not text")  # type: ignore[arg-type]


# --- rekey ------------------------------------------------------------------------------------------------


def test_rekey_reseals_everything(store: SQLiteStore, keyring: Keyring) -> None:
    older = generate_master_key()
    store.add_tokens(make_items(keyring, range(1, 6)))
    store.add_tokens(make_items(Keyring(older), range(6, 9)))
    both = Keyring(keyring.current, [older])
    new_key = generate_master_key()
    versions = {r.serial: r.version for r in store.list_tokens()}

    assert store.rekey(both, new_key, at_ns=77) == 8

    assert store.sealed_key_ids() == {new_key.key_id: 8}
    for record in store.list_tokens():
        assert record.sealed.key_id == new_key.key_id
        assert unseal(new_key, record.serial, record.sealed) == seed_of(record.serial)
        assert record.version == versions[record.serial] + 1
    (event,) = [e for e in store.events() if e.event == "rekey"]
    assert event.serial is None and event.at_ns == 77 and new_key.key_id in event.detail
    raw = sqlite3.connect(store.path)
    ids = {row[0] for row in raw.execute("SELECT DISTINCT seed_key_id FROM tokens")}
    raw.close()
    assert ids == {new_key.key_id}


def test_rekey_without_every_old_key_changes_nothing(store: SQLiteStore, keyring: Keyring) -> None:
    older = generate_master_key()
    store.add_tokens(make_items(keyring, range(1, 4)))
    store.add_tokens(make_items(Keyring(older), [4]))
    before = snapshot(store)
    with pytest.raises(MasterKeyError, match=older.key_id):
        store.rekey(keyring, generate_master_key())
    assert snapshot(store) == before


def test_seeds_are_not_in_the_database_file(store: SQLiteStore, keyring: Keyring) -> None:
    store.add_tokens(make_items(keyring, range(1, 4)))
    store.close()
    blob = b"".join(p.read_bytes() for p in store.path.parent.iterdir() if p.name.startswith(store.path.name))
    assert SEED_PREFIX not in blob
    assert os.path.getsize(store.path) > 0


def _open_and_add(path: str, number: int) -> None:
    keyring = Keyring(MasterKey(bytes(range(32))))
    with SQLiteStore(path) as s:
        s.add_tokens(make_items(keyring, [number]))


def test_processes_opening_a_fresh_file_at_once_migrate_once(db_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_open_and_add, args=(str(db_path), n)) for n in range(1, 4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    with SQLiteStore(db_path) as s:
        assert len(s.applied_migrations()) == len(MIGRATIONS)
        assert [r.serial for r in s.list_tokens()] == [make_serial(n) for n in range(1, 4)]
