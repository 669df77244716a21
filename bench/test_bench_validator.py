"""pytest-benchmark: verification through the Python API, and durable end-to-end through SQLite.

Run with ``pytest bench --benchmark-only`` (not part of the default test run).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from bench.operations import CENTRE_STEP, DIGITS, NS, PERIOD, START_S, VERIFY_STEPS
from bench.peers import RFC4226_KEY, Implementation, code_text
from validator.kernel import get_backend
from validator.memstore import MemoryStore
from validator.records import TokenParams
from validator.sealing import Keyring, MasterKey, seal
from validator.service import Reason, Validator
from validator.store import SQLiteStore
from vtoken.clock import SimulatedClock
from vtoken.oath import TokenKind
from vtoken.serialno import make_serial

WARM_HISTORY = 200


def test_verify_decision(benchmark, impl: Implementation, twin: Implementation) -> None:
    """One code within ±1 step: vtoken's drift prediction + scan, pyotp's TOTP.verify, stdlib."""
    if impl.subprocess:
        pytest.skip("oathtool: a process per code")
    prepared = impl.prepare(RFC4226_KEY, "sha1", DIGITS)
    codes = [code_text(v, DIGITS) for v in twin.prepare(RFC4226_KEY, "sha1", DIGITS).generate(CENTRE_STEP, VERIFY_STEPS)]
    work = [(CENTRE_STEP + i, c) for i, c in enumerate(codes)]
    assert all(prepared.verify(step, code) for step, code in work[:50])
    cycle = itertools.cycle(work).__next__
    verify = prepared.verify

    def one() -> bool:
        step, code = cycle()
        return verify(step, code)

    benchmark.group = "verify ±1 (decision)"
    assert benchmark(one)


class _Token:
    """A registered token whose genuine codes are typed one 30 s step apart."""

    def __init__(self, store, backend) -> None:
        keyring = Keyring(MasterKey(bytes(range(32))))
        self.serial = make_serial(1)
        params = TokenParams(serial=self.serial, kind=TokenKind.TOTP, has_check_digit=True)
        store.add_tokens([(params, seal(keyring, self.serial, RFC4226_KEY))], at_ns=START_S * NS)
        self.clock = SimulatedClock((START_S + PERIOD // 2) * NS)
        self.validator = Validator(store, keyring, self.clock, backend=backend)
        self.key = backend.prepare(RFC4226_KEY)
        self.step = START_S // PERIOD
        self.clock.advance(PERIOD * NS)
        c1, c2 = self._codes(2)
        assert self.validator.register(self.serial, c1, c2).accepted
        for _ in range(WARM_HISTORY):
            assert self.check_next()

    def _codes(self, n: int) -> list[str]:
        codes = [code_text(int(v), DIGITS) for v in self.key.generate(self.step, n)]
        self.step += n
        return codes

    def check_next(self) -> bool:
        self.clock.advance(PERIOD * NS)
        (code,) = self._codes(1)
        return self.validator.check(self.serial, code).reason is Reason.ACCEPTED


@pytest.mark.parametrize("backend_name", ["c", "python"])
def test_validator_check_memory_store(benchmark, backend_name: str) -> None:
    """Validator.check with every rule and the drift-state update; storage excluded (MemoryStore)."""
    try:
        backend = get_backend(backend_name)
    except Exception as exc:  # the C kernel may be missing
        pytest.skip(str(exc))
    token = _Token(MemoryStore(), backend)
    benchmark.group = "Validator.check"
    assert benchmark(token.check_next)


def test_durable_end_to_end(benchmark, tmp_path: Path) -> None:
    """Validator.check on SQLite (WAL, synchronous=FULL): the accepted step is fsynced before returning."""
    with SQLiteStore(tmp_path / "validator.db") as store:
        token = _Token(store, get_backend())
        benchmark.group = "Validator.check"
        assert benchmark.pedantic(token.check_next, rounds=500, iterations=1, warmup_rounds=5)
