"""The TokenStore contract, run against every store (SQLite, memory, PostgreSQL: ``make_store`` in conftest).

Group commit (``TokenStore.batch``): many decisions, one durable commit; each decision
still atomic on its own.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from validator.records import TokenParams, evolve
from validator.sealing import Keyring, generate_master_key, seal
from validator.service import Reason, Validator
from validator.store import TokenStore
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import StorageError
from vtoken.oath import TokenKind, hotp
from vtoken.serialno import make_serial

SEED = b"12345678901234567890"
START_NS = (1_767_225_600 + 15) * NS_PER_SECOND


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(generate_master_key())


def _add(store: TokenStore, keyring: Keyring, numbers: list[int]) -> list[str]:
    serials = [make_serial(n) for n in numbers]
    store.add_tokens(
        [(TokenParams(serial=s, kind=TokenKind.TOTP, has_check_digit=True), seal(keyring, s, SEED)) for s in serials],
        at_ns=START_NS,
    )
    return serials


def _bump(store: TokenStore, serial: str, failures: int) -> None:
    with store.transaction() as tx:
        rec = tx.get(serial)
        assert rec is not None
        tx.update(evolve(rec, failures=failures), expected_version=rec.version)
        tx.log_event(serial, START_NS, "test", f"failures {failures}")


def test_a_batch_commits_every_transaction_in_it(make_store: Callable[[], TokenStore], keyring: Keyring) -> None:
    store = make_store()
    a, b = _add(store, keyring, [1, 2])
    with store.batch():
        _bump(store, a, 3)
        _bump(store, b, 4)
    again = make_store()
    assert again.get(a).failures == 3 and again.get(b).failures == 4
    assert [e.event for e in again.events(a)][-1] == "test"


def test_a_failing_transaction_spoils_its_batch(make_store: Callable[[], TokenStore], keyring: Keyring) -> None:
    """A block that raises inside a batch: the batch keeps nothing, even if its caller carries on."""
    store = make_store()
    a, b, c = _add(store, keyring, [1, 2, 3])
    with pytest.raises(StorageError, match="nothing of the batch was kept"):
        with store.batch():
            _bump(store, a, 1)
            with pytest.raises(RuntimeError):
                with store.transaction() as tx:
                    rec = tx.get(b)
                    tx.update(evolve(rec, failures=9), expected_version=rec.version)
                    tx.log_event(b, START_NS, "doomed")
                    raise RuntimeError("decision failed")
            _bump(store, c, 2)
    again = make_store()
    assert (again.get(a).failures, again.get(b).failures, again.get(c).failures) == (0, 0, 0)
    assert "doomed" not in [e.event for e in again.events(b)]
    _bump(store, a, 1)  # and the store works on
    assert make_store().get(a).failures == 1


def test_a_failed_batch_keeps_nothing(make_store: Callable[[], TokenStore], keyring: Keyring) -> None:
    store = make_store()
    a, b = _add(store, keyring, [1, 2])
    with pytest.raises(RuntimeError):
        with store.batch():
            _bump(store, a, 5)
            _bump(store, b, 6)
            raise RuntimeError("the commit failed")
    again = make_store()
    assert again.get(a).failures == 0 and again.get(b).failures == 0
    assert again.get(a).version == 0
    _bump(store, a, 1)  # the store is usable afterwards
    assert store.get(a).failures == 1


def test_batches_do_not_nest(make_store: Callable[[], TokenStore], keyring: Keyring) -> None:
    store = make_store()
    (a,) = _add(store, keyring, [1])
    with store.batch():
        with pytest.raises(StorageError):
            with store.batch():
                pass
        with store.transaction():
            with pytest.raises(StorageError):
                with store.transaction():
                    pass
    with store.transaction():
        with pytest.raises(StorageError):
            with store.batch():
                pass


def test_decisions_in_a_batch_are_the_decisions_alone(make_store: Callable[[], TokenStore], keyring: Keyring) -> None:
    """The same codes checked one by one and in one batch: the same results, the same replay refusals."""
    store = make_store()
    serials = _add(store, keyring, [1, 2, 3])
    clock = SimulatedClock(START_NS)
    validator = Validator(store, keyring, clock)
    step = lambda: clock.now_ns() // NS_PER_SECOND // 30  # noqa: E731 (an exact clock)
    clock.advance(30 * NS_PER_SECOND)
    for serial in serials:
        assert validator.register(serial, hotp(SEED, step() - 1), hotp(SEED, step())).accepted
    clock.advance(60 * NS_PER_SECOND)
    code = hotp(SEED, step())
    with store.batch():
        results = [validator.check(serial, code) for serial in serials]
        results += [validator.check(serials[0], code)]  # the same code again, same batch: a replay
    assert [r.reason for r in results] == [Reason.ACCEPTED] * 3 + [Reason.REPLAY]
    again = make_store()
    assert {again.get(s).last_step for s in serials} == {step()}
