"""Two processes submit the same genuine code at the same moment: exactly one is accepted, every time.

Each worker process opens its own :class:`~validator.store.SQLiteStore` and
:class:`~validator.service.Validator` on one database file (as two validator
nodes sharing a database would), waits at a barrier with the other, and checks
the code. The validator decides inside one write transaction with a
compare-and-set, so the loser must see the winner's step and refuse a replay.
"""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from firmware_sim.factory import manufacture
from firmware_sim.models import get_model
from validator.records import TokenParams
from validator.sealing import Keyring, generate_master_key, parse_master_key, seal
from validator.service import Reason, Validator
from validator.store import SQLiteStore
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.oath import TokenKind
from vtoken.serialno import make_serial

ROUNDS = 30
START_NS = (1_767_225_600 + 15) * NS_PER_SECOND
SEED = b"RACE-SEED-0123456789"
#: A worker that waits longer than this at the barrier has lost its partner: fail, don't hang.
BARRIER_TIMEOUT_S = 20

# Per-worker state, set up once by the pool initializer.
_validator: Validator | None = None
_barrier: threading.Barrier | None = None


def _init_worker(db_path: str, key_hex: str, barrier: threading.Barrier) -> None:
    global _validator, _barrier
    keyring = Keyring(parse_master_key(key_hex))
    store = SQLiteStore(db_path)
    _validator = Validator(store, keyring, SimulatedClock(START_NS))
    _barrier = barrier


def _check(serial: str, code: str, at_ns: int) -> tuple[str, int | None, int]:
    assert _validator is not None and _barrier is not None
    _validator.check(serial, "12345")  # warm up: bad format, nothing written, connection and key ready
    _barrier.wait(BARRIER_TIMEOUT_S)
    result = _validator.check(serial, code, at_ns=at_ns)
    return result.reason.value, result.step, multiprocessing.current_process().pid


def test_two_processes_racing_one_code(tmp_path: Path) -> None:
    db_path = tmp_path / "shared.db"
    key = generate_master_key()
    keyring = Keyring(key)
    clock = SimulatedClock(START_NS)
    serial = make_serial(4242)
    fob = manufacture(model=get_model("totp30"), seed=SEED, serial=serial, device_key=bytes(32), clock=clock)
    with SQLiteStore(db_path) as store:
        store.add_tokens([(TokenParams(serial=serial, kind=TokenKind.TOTP, has_check_digit=True),
                           seal(keyring, serial, SEED))])
        code1 = fob.press()
        clock.advance(30 * NS_PER_SECOND)
        code2 = fob.press()
        registered = Validator(store, keyring, clock).register(serial, code1, code2)
        assert registered.reason is Reason.REGISTERED

    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ctx.Pool(2, initializer=_init_worker, initargs=(str(db_path), key.to_hex(), barrier)) as pool:
            pids: set[int] = set()
            steps = []
            for round_no in range(ROUNDS):
                clock.advance(30 * NS_PER_SECOND)
                code = fob.press()
                at = clock.now_ns()
                pending = [pool.apply_async(_check, (serial, code, at)) for _ in range(2)]
                outcomes = [p.get(timeout=60) for p in pending]
                reasons = sorted(reason for reason, _, _ in outcomes)
                assert reasons == sorted([Reason.ACCEPTED.value, Reason.REPLAY.value]), (round_no, outcomes)
                assert outcomes[0][2] != outcomes[1][2], "both submissions ran in one process"
                pids.update(pid for _, _, pid in outcomes)
                steps.append(next(step for reason, step, _ in outcomes if reason == Reason.ACCEPTED.value))
            assert len(pids) == 2

    assert steps == sorted(set(steps)) and len(steps) == ROUNDS
    with SQLiteStore(db_path) as store:
        rec = store.get(serial)
        assert rec is not None and rec.last_step == steps[-1]
        history = store.history(serial)
        assert [h.step for h in history] == [registered.step, *steps]  # one history entry per accept
        accepts = [e for e in store.events(serial) if e.event == "accept"]
        replays = [e for e in store.events(serial) if e.event == Reason.REPLAY.value]
        # Each loser is a copy of the code just accepted: refused without a failure and without a write.
        assert len(accepts) == ROUNDS and not replays


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
