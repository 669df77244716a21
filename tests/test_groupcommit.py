"""Group commit (issue 11): many decisions, one commit; nothing accepted before, or without, its commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from server.groupcommit import GroupCommitter, ServiceUnavailableError
from tests.live_server import SEED, START_NS, add_tokens
from validator.sealing import Keyring, generate_master_key
from validator.service import Reason, Result, Validator
from validator.store import SQLiteStore
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import StorageError
from vtoken.oath import hotp

S = NS_PER_SECOND


class FlakyStore(SQLiteStore):
    """An SQLite store whose batch commits fail while ``failing`` is set (a full disk, a lost database)."""

    failing = False

    def _commit(self, conn) -> None:  # type: ignore[no-untyped-def]
        if FlakyStore.failing:
            conn.execute("ROLLBACK")
            raise StorageError("disk I/O error (simulated)")
        super()._commit(conn)


@contextmanager
def committer(tmp_path: Path, tokens: int, **kw: object) -> Iterator[tuple[GroupCommitter, SimulatedClock, list[str]]]:
    db = tmp_path / "v.db"
    keyring = Keyring(generate_master_key())
    with SQLiteStore(db) as store:
        serials = add_tokens(store, keyring, tokens)
    clock = SimulatedClock(START_NS + 30 * S)
    gc = GroupCommitter(lambda: FlakyStore(db), lambda st: Validator(st, keyring, clock), **kw)  # type: ignore[arg-type]
    gc.start()
    try:
        step = clock.now_ns() // S // 30
        for serial in serials:
            assert gc.run(lambda v, s=serial: v.register(s, hotp(SEED, step - 1), hotp(SEED, step))).accepted
        clock.advance(60 * S)
        yield gc, clock, serials
    finally:
        FlakyStore.failing = False
        gc.stop()


def test_concurrent_copies_of_one_code_give_exactly_one_accept(tmp_path: Path) -> None:
    with committer(tmp_path, 1) as (gc, clock, (serial,)):
        for round_ in range(20):
            code = hotp(SEED, clock.now_ns() // S // 30)
            barrier = threading.Barrier(16)
            results: list[Result] = []

            def send() -> None:
                barrier.wait()
                results.append(gc.run(lambda v: v.check(serial, code)))

            threads = [threading.Thread(target=send) for _ in range(16)]
            [t.start() for t in threads]
            [t.join() for t in threads]
            reasons = [r.reason for r in results]
            assert reasons.count(Reason.ACCEPTED) == 1, (round_, reasons)
            assert reasons.count(Reason.REPLAY) == 15  # the copies: refused as replays...
            assert all(r.failures == 0 for r in results)  # ...that count no failure and earn no throttle
            clock.advance(31 * S)  # into the next step, for a new code


def test_a_failed_commit_answers_the_whole_batch_with_an_error_and_accepts_nothing(tmp_path: Path) -> None:
    with committer(tmp_path, 8) as (gc, clock, serials):
        code = hotp(SEED, clock.now_ns() // S // 30)
        FlakyStore.failing = True
        futures = [gc.submit(lambda v, s=s: v.check(s, code)) for s in serials]
        for future in futures:
            with pytest.raises(ServiceUnavailableError, match="nothing in this batch was accepted"):
                future.result(10)
        FlakyStore.failing = False
        # Nothing was written: the same codes are accepted now, and only now.
        assert all(gc.run(lambda v, s=s: v.check(s, code)).accepted for s in serials)
        assert all(gc.run(lambda v, s=s: v.check(s, code)).reason is Reason.REPLAY for s in serials)


def test_a_refused_decision_does_not_spoil_its_batch(tmp_path: Path) -> None:
    with committer(tmp_path, 2) as (gc, clock, serials):
        code = hotp(SEED, clock.now_ns() // S // 30)
        futures = [gc.submit(lambda v: v.status("not a serial")), gc.submit(lambda v: v.check(serials[0], code))]
        with pytest.raises(Exception):
            futures[0].result(10)
        assert futures[1].result(10).accepted


def test_batches_grow_with_load_and_a_lone_request_waits_for_nobody(tmp_path: Path) -> None:
    sizes: list[int] = []
    with committer(tmp_path, 64, on_batch=lambda n, sec, ok: sizes.append(n)) as (gc, clock, serials):
        sizes.clear()
        start = time.perf_counter()
        gc.run(lambda v: v.status(serials[0]), batched=False)  # reads run alone, outside batches
        gc.run(lambda v: v.check(serials[0], hotp(SEED, clock.now_ns() // S // 30)))
        lone = time.perf_counter() - start
        assert sizes == [1]
        assert lone < 0.5  # one fsync, no waiting for company
        code = hotp(SEED, clock.now_ns() // S // 30 + 1)
        clock.advance(30 * S)
        barrier = threading.Barrier(64)

        def send(serial: str) -> None:
            barrier.wait()
            assert gc.run(lambda v: v.check(serial, code)).accepted

        threads = [threading.Thread(target=send, args=(s,)) for s in serials]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert sum(sizes[1:]) == 64 and max(sizes) > 1  # 64 concurrent checks shared commits


def test_the_writer_stops_cleanly_and_refuses_afterwards(tmp_path: Path) -> None:
    with committer(tmp_path, 1) as (gc, clock, serials):
        pass
    with pytest.raises(ServiceUnavailableError):
        gc.submit(lambda v: v.status(serials[0]))


def test_a_cancelled_future_does_not_stop_the_writer(tmp_path: Path) -> None:
    with committer(tmp_path, 1) as (gc, clock, (serial,)):
        gate = threading.Event()
        blocker = gc.submit(lambda v: gate.wait(5), batched=False)  # keeps the writer busy
        doomed = gc.submit(lambda v: v.status(serial), batched=False)
        assert doomed.cancel()
        gate.set()
        blocker.result(10)
        assert gc.run(lambda v: v.check(serial, hotp(SEED, clock.now_ns() // S // 30))).accepted


def test_one_failing_request_costs_its_batch_two_extra_commits_not_one_each(tmp_path: Path) -> None:
    sizes: list[tuple[int, bool]] = []
    with committer(tmp_path, 32, on_batch=lambda n, sec, ok: sizes.append((n, ok))) as (gc, clock, serials):
        gate = threading.Event()
        gc.submit(lambda v: gate.wait(5), batched=False)  # the batch gathers behind this
        code = hotp(SEED, clock.now_ns() // S // 30)
        futures = [gc.submit(lambda v, s=s: v.check(s, code), key=s) for s in serials]
        bad = gc.submit(lambda v: v.status("not a serial"), key="0")
        sizes.clear()
        gate.set()
        assert all(f.result(10).accepted for f in futures)
        with pytest.raises(Exception):
            bad.result(10)
    assert sizes[0] == (33, False) and len(sizes) == 3, sizes  # the spoiled batch, the bad one alone, the rest
