"""Every store keeps one contract: the interface tests here run on SQLite, memory and PostgreSQL alike.

A scripted validator session (registration, accepted codes, replays, wrong
codes, a next-code round, lock and unlock) gives identical results, records,
history and events on all three.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from validator.kernel import python_backend
from validator.memstore import MemoryStore
from validator.records import HistoryEntry, SealedSeed, TokenParams, TokenRecord
from validator.sealing import Keyring, MasterKey, generate_master_key, seal, unseal
from validator.service import Validator
from validator.store import AuditEvent, SQLiteStore, TokenStore
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import (
    ConcurrentUpdateError,
    DuplicateTokenError,
    InvalidInputError,
    MasterKeyError,
    StorageError,
    UnknownTokenError,
)
from vtoken.oath import TokenKind, hotp
from vtoken.serialno import make_serial

SEED = b"12345678901234567890"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(MasterKey(bytes(range(32))))


@pytest.fixture
def store(make_store: Callable[[], TokenStore]) -> Iterator[TokenStore]:
    """Each store of the contract in turn (SQLite, memory, PostgreSQL: ``make_store`` in conftest)."""
    yield make_store()


def items(keyring: Keyring, numbers, **overrides) -> list[tuple[TokenParams, SealedSeed]]:
    out = []
    for n in numbers:
        serial = make_serial(n)
        params = TokenParams(serial=serial, kind=TokenKind.TOTP, has_check_digit=True, **overrides)
        out.append((params, seal(keyring, serial, SEED + serial.encode())))
    return out


def snapshot(store: TokenStore):
    return store.list_tokens(), store.events(), store.sealed_key_ids()


def test_memory_store_is_a_token_store() -> None:
    assert isinstance(MemoryStore(), TokenStore)


def test_add_get_list_and_duplicates(store: TokenStore, keyring: Keyring) -> None:
    store.add_tokens(items(keyring, [30, 10]), at_ns=5, detail="batch")
    assert [r.serial for r in store.list_tokens()] == [make_serial(10), make_serial(30)]
    assert store.get(make_serial(10)).version == 0 and store.get("999999") is None
    assert store.events(make_serial(10)) == [AuditEvent(make_serial(10), 5, "added", "batch")]
    before = snapshot(store)
    with pytest.raises(DuplicateTokenError, match="already in the store"):
        store.add_tokens(items(keyring, [20, 10]))
    with pytest.raises(DuplicateTokenError, match="more than once"):
        store.add_tokens(items(keyring, [40, 40]))
    with pytest.raises(InvalidInputError):
        store.add_tokens(items(keyring, [50], counter=2**64 - 1))
    assert snapshot(store) == before


def vendor_item(keyring: Keyring, serial: str) -> tuple[TokenParams, SealedSeed]:
    return TokenParams(serial=serial, kind=TokenKind.HOTP), seal(keyring, serial, SEED)


@pytest.mark.parametrize("serial", ["VT00000001", "306EUO4-00960", "PW001", "htok_sha256_1", "A" * 64])
def test_vendor_serials_are_stored_and_checked_by_the_one_rule(
    store: TokenStore, keyring: Keyring, serial: str
) -> None:
    """A serial the store takes is one check, register and lookup accept exactly as stored."""
    store.add_tokens([vendor_item(keyring, serial)], at_ns=1)
    assert store.get(serial).serial == serial
    assert store.get(serial.lower()) is None or serial.lower() == serial  # compared exactly
    validator = Validator(store, keyring, clock=SimulatedClock(10**18), backend=python_backend())
    registered = validator.register(f" {serial} ", hotp(SEED, 0), hotp(SEED, 1))
    assert registered.accepted and registered.serial == serial, registered
    result = validator.check(serial, hotp(SEED, 2))
    assert result.accepted and result.serial == serial, result


@pytest.mark.parametrize("serial", ["000-000-572-4", " 0000005724", "ZZ 1", "a/b", "", "1" * 65, "ZZ#1"])
def test_store_refuses_serials_outside_the_rule(store: TokenStore, keyring: Keyring, serial: str) -> None:
    before = snapshot(store)
    with pytest.raises(InvalidInputError, match="serial"):
        store.add_tokens([vendor_item(keyring, serial)], at_ns=1)
    assert snapshot(store) == before


def test_compare_and_set_and_rollback(store: TokenStore, keyring: Keyring) -> None:
    store.add_tokens(items(keyring, [1]))
    serial = make_serial(1)
    with store.transaction() as tx:
        rec = tx.get(serial)
        new = tx.update(dataclasses.replace(rec, registered=True, last_step=7), expected_version=rec.version)
        assert new.version == 1
        tx.add_history(serial, HistoryEntry(100, 7, "register"))
    assert store.get(serial) == new
    with pytest.raises(ConcurrentUpdateError, match="version"):
        with store.transaction() as tx:
            tx.update(dataclasses.replace(rec, failures=5), expected_version=rec.version)
    before = snapshot(store)
    with pytest.raises(RuntimeError, match="boom"):
        with store.transaction() as tx:
            cur = tx.get(serial)
            tx.update(dataclasses.replace(cur, failures=9), expected_version=cur.version)
            tx.add_history(serial, HistoryEntry(1, 1, "accept"))
            tx.log_event(serial, 1, "locked")
            assert tx.get(serial).failures == 9
            raise RuntimeError("boom")
    assert snapshot(store) == before
    assert store.history(serial) == [HistoryEntry(100, 7, "register")]
    params, sealed = items(keyring, [2])[0]
    with store.transaction() as tx:
        with pytest.raises(UnknownTokenError):
            tx.update(TokenRecord(params, sealed), expected_version=0)
        with pytest.raises(UnknownTokenError):
            tx.add_history(params.serial, HistoryEntry(1, 1, "accept"))


def test_transactions_expire_and_do_not_nest(store: TokenStore) -> None:
    with store.transaction() as tx:
        with pytest.raises(StorageError, match="already open"):
            with store.transaction():
                pass
    with pytest.raises(StorageError, match="ended"):
        tx.get("123456")


def test_history_order_limit_and_events(store: TokenStore, keyring: Keyring) -> None:
    store.add_tokens(items(keyring, [1, 2]), at_ns=1)
    serial = make_serial(1)
    with store.transaction() as tx:
        for at in (30, 10, 20, 40, 20):
            tx.add_history(serial, HistoryEntry(at, at, "accept"))
        assert [h.at_ns for h in tx.history(serial, limit=2)] == [30, 40]
    assert [h.at_ns for h in store.history(serial)] == [10, 20, 20, 30, 40]
    assert [h.at_ns for h in store.history(serial, limit=3)] == [20, 30, 40]
    assert store.history(serial, limit=0) == [] and store.history("424242") == []
    with pytest.raises(InvalidInputError):
        store.history(serial, limit=-1)
    store.log_event(None, 3, "note", "maintenance")
    assert [e.event for e in store.events()] == ["added", "added", "note"]
    assert [e.event for e in store.events(limit=1)] == ["note"]
    with pytest.raises(InvalidInputError):
        store.log_event(serial, 4, "bad", b"bytes")  # type: ignore[arg-type]


def test_rekey(store: TokenStore, keyring: Keyring) -> None:
    older = generate_master_key()
    store.add_tokens(items(keyring, [1, 2]))
    store.add_tokens(items(Keyring(older), [3]))
    before = snapshot(store)
    with pytest.raises(MasterKeyError):
        store.rekey(keyring, generate_master_key())
    assert snapshot(store) == before
    new_key = generate_master_key()
    assert store.rekey(Keyring(keyring.current, [older]), new_key, at_ns=9) == 3
    assert store.sealed_key_ids() == {new_key.key_id: 3}
    for rec in store.list_tokens():
        assert rec.version == 1
        assert unseal(new_key, rec.serial, rec.sealed) == SEED + rec.serial.encode()


def test_closed_memory_store_refuses_use() -> None:
    s = MemoryStore()
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.get("123456")


def test_memory_store_lock_serialises_threads(keyring: Keyring) -> None:
    s = MemoryStore()
    s.add_tokens(items(keyring, [1]))
    serial = make_serial(1)

    def work() -> None:
        for _ in range(200):
            with s.transaction() as tx:
                rec = tx.get(serial)
                tx.update(dataclasses.replace(rec, failures=rec.failures + 1), expected_version=rec.version)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.get(serial).failures == 800 and s.get(serial).version == 800


TOTP_SERIAL, HOTP_SERIAL = make_serial(7), make_serial(8)


def _session(store: TokenStore, keyring: Keyring, sealed: dict[str, SealedSeed]) -> list:
    """A scripted HOTP + TOTP session; returns everything observable."""
    start = 1_767_225_600 * NS_PER_SECOND + 15 * NS_PER_SECOND
    clock = SimulatedClock(start)
    totp_serial, hotp_serial = TOTP_SERIAL, HOTP_SERIAL
    store.add_tokens(
        [
            (TokenParams(serial=totp_serial, kind=TokenKind.TOTP, has_check_digit=True), sealed[totp_serial]),
            (TokenParams(serial=hotp_serial, kind=TokenKind.HOTP, has_check_digit=True), sealed[hotp_serial]),
        ],
        at_ns=start,
    )
    v = Validator(store, keyring, clock, backend=python_backend())
    code = lambda s: hotp(SEED, s)  # noqa: E731  (TOTP step s = HOTP counter s)
    now_step = lambda: clock.now_ns() // NS_PER_SECOND // 30  # noqa: E731  (the token's clock is exact)
    out = []
    clock.advance(30 * NS_PER_SECOND)
    out.append(v.register(totp_serial, code(now_step() - 1), code(now_step())))
    for _ in range(30):
        clock.advance(3600 * NS_PER_SECOND)
        out.append(v.check(totp_serial, code(now_step())))
    out.append(v.check(totp_serial, code(now_step())))  # replay
    for _ in range(3):
        clock.advance(60 * NS_PER_SECOND)
        out.append(v.check(totp_serial, "000000"))
    current = now_step()
    out.append(v.check(totp_serial, code(current + 3)))  # next-code round
    clock.advance(30 * NS_PER_SECOND)
    out.append(v.check(totp_serial, code(current + 4)))
    out.append(v.register(hotp_serial, code(3), code(4)))
    out.append(v.check(hotp_serial, code(7)))
    out.append(v.check(hotp_serial, code(7)))
    out.append(v.lock(hotp_serial, "lost"))
    out.append(v.check(hotp_serial, code(8)))
    out.append(v.unlock(hotp_serial))
    out.append(v.check(hotp_serial, code(8)))
    status = v.status(totp_serial)
    return [out, store.list_tokens(), store.history(totp_serial), store.history(hotp_serial), store.events(), status]


def test_validator_behaves_the_same_on_every_store(tmp_path: Path, keyring: Keyring, pg_url: str) -> None:
    from tests.conftest import truncate_pg
    from validator.pgstore import PostgresStore

    sealed = {serial: seal(keyring, serial, SEED) for serial in (TOTP_SERIAL, HOTP_SERIAL)}
    with SQLiteStore(tmp_path / "v.db") as sqlite_store:
        on_sqlite = _session(sqlite_store, keyring, sealed)
    on_memory = _session(MemoryStore(), keyring, sealed)
    PostgresStore(pg_url).close()
    truncate_pg(pg_url)
    with PostgresStore(pg_url) as pg_store:
        on_postgres = _session(pg_store, keyring, sealed)
    assert on_memory == on_sqlite == on_postgres
    results = on_memory[0]
    assert sum(r.accepted for r in results) >= 30  # the session really exercised acceptance
    assert {r.reason.value for r in results} >= {"registered", "accepted", "replay", "wrong-code", "next-code-required", "locked"}


# --- a damaged row is refused on read, the same on every store (issue 15, item 10) ---------------------------


def _damage(store: TokenStore, serial: str, column: str, value: object) -> None:
    """Write ``value`` into ``column`` of ``serial``'s row behind the store's back (as a damaged file or a
    hand-edited database would)."""
    if isinstance(store, MemoryStore):
        rec = store._tokens[serial]
        if column.startswith("seed_"):
            field = column.removeprefix("seed_")
            sealed = SealedSeed(**{**dataclasses.asdict(rec.sealed), field: value})
            store._tokens[serial] = dataclasses.replace(rec, sealed=sealed)
        elif column in {f.name for f in dataclasses.fields(TokenParams)}:
            object.__setattr__(rec.params, column, value)
        else:
            store._tokens[serial] = dataclasses.replace(rec, **{column: value})
        return
    if isinstance(store, SQLiteStore):
        import sqlite3

        with sqlite3.connect(store.path) as conn:
            conn.execute(f"UPDATE tokens SET {column} = ? WHERE serial = ?", (value, serial))
        conn.close()
        return
    import psycopg

    with psycopg.connect(_pg_url_of(store), autocommit=True) as conn:
        conn.execute(f"UPDATE tokens SET {column} = %s WHERE serial = %s", (value, serial))


def _pg_url_of(store: TokenStore) -> str:
    return store._url  # type: ignore[attr-defined]


#: Damage every store can hold (PostgreSQL's column types keep text out of its integer and bytea columns).
DAMAGE = [
    ("failures", -3, r"failures is -3, outside 0 to"),
    ("resync_failures", -1, r"resync_failures is -1, outside 0 to"),
    ("version", -7, r"version is -7, outside 0 to"),
    ("drift_var_offset", -1.0, r"drift_var_offset is -1.0, not a finite non-negative number"),
]
#: Damage only a store without column types can hold (SQLite's type affinity, a record changed in memory), and
#: the stores that can hold it (SQLite's CHECK constraints keep an unknown kind or a flag of 2 out).
UNTYPED = ("sqlite", "memory")
UNTYPED_DAMAGE = [
    ("seed_nonce", "not binary at all", r"seed_nonce is text where binary data belongs", UNTYPED),
    ("seed_ciphertext", 12345, r"seed_ciphertext is an integer where binary data belongs", UNTYPED),
    ("failures", "many", r"failures is text where an integer belongs", UNTYPED),
    ("last_step", 1.5, r"last_step is a floating-point number where an integer or NULL belongs", UNTYPED),
    ("drift_cov", "x", r"drift_cov is text where a number belongs", UNTYPED),
    ("seed_key_id", b"\x07", r"seed_key_id is binary data where text belongs", UNTYPED),
    ("kind", "ocra", r"kind is 'ocra', not one of hotp, totp", ("memory",)),
    ("registered", 2, r"registered is 2, not 0 or 1", ("memory",)),
]


def _check_refuses(store: TokenStore, keyring: Keyring, serial: str, column: str, match: str) -> None:
    from vtoken.errors import CorruptStateError

    expected = rf"token {serial}: the stored {match}"
    with pytest.raises(CorruptStateError, match=expected):
        store.get(serial)
    with pytest.raises(CorruptStateError, match=expected):
        store.list_tokens()
    with pytest.raises(CorruptStateError, match=expected):
        with store.transaction() as tx:
            tx.get(serial)
    with pytest.raises(CorruptStateError, match=expected):
        store.rekey(keyring, generate_master_key())
    validator = Validator(store, keyring, clock=SimulatedClock(10**18), backend=python_backend())
    with pytest.raises(CorruptStateError, match=column):  # not a TypeError, not extra tries
        validator.check(serial, hotp(SEED, 0))


@pytest.mark.parametrize(("column", "value", "match"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_row_is_refused_on_read(store: TokenStore, keyring: Keyring, column: str, value: object,
                                          match: str) -> None:
    store.add_tokens(items(keyring, [1, 2]), at_ns=1)
    serial = make_serial(1)
    _damage(store, serial, column, value)
    _check_refuses(store, keyring, serial, column, match)
    assert store.get(make_serial(2)) is not None  # the other row reads as before


@pytest.mark.parametrize(
    ("make_store", "column", "value", "match"),
    [(name, column, value, match) for column, value, match, holders in UNTYPED_DAMAGE for name in holders],
    ids=[f"{name}-{column}" for column, _, _, holders in UNTYPED_DAMAGE for name in holders],
    indirect=["make_store"],
)
def test_a_wrongly_typed_value_is_refused_on_read(store: TokenStore, keyring: Keyring, column: str, value: object,
                                                  match: str) -> None:
    store.add_tokens(items(keyring, [1]), at_ns=1)
    serial = make_serial(1)
    _damage(store, serial, column, value)
    _check_refuses(store, keyring, serial, column, match)


def test_a_negative_failure_count_is_never_written(store: TokenStore, keyring: Keyring) -> None:
    store.add_tokens(items(keyring, [1]), at_ns=1)
    serial = make_serial(1)
    before = snapshot(store)
    with pytest.raises(InvalidInputError, match="failures = -1 must not be negative"):
        with store.transaction() as tx:
            rec = tx.get(serial)
            tx.update(dataclasses.replace(rec, failures=-1), expected_version=rec.version)
    assert snapshot(store) == before
