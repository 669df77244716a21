"""The benchmark operations, each run by every implementation on the same work.

Every measurement first checks the implementation's answers: against the
published RFC 4226 / RFC 6238 vectors, and against vtoken's Python twin on the
very work about to be timed (the same key, counters and codes). A wrong answer
stops the run; nothing is timed that does not compute the right thing.

Operations (see ``python -m bench --help`` for the sizes of each mode):

* generate 1 M codes, SHA-1 / SHA-256 / SHA-512 (RFC 6238 keys, 6 digits,
  counters from 0). Pure-Python peers time a prefix of the same counters;
* scan a window of ±1, ±10, ±1000, ±2880 steps for a code that occurs nowhere
  in it (whole window, no match);
* two-code resync over ±1 day of 30 s steps (``find_pair`` over 5761 counters,
  one genuine pair in the middle);
* verify one code (±1 step) through the Python API, storage excluded: the
  decision ``Validator.check`` makes (drift-model prediction, then a ±1 scan
  above the replay floor), and ``Validator.check`` itself on an in-memory store
  (every rule, the drift-state update, the history and audit rows);
* durable end-to-end verification: ``Validator.check`` on an SQLite store in a
  temporary file (WAL, synchronous=FULL: every accepted step is fsynced before
  the result is returned); beside it the group committer (``server/groupcommit.py``)
  in-process with 64 threads, each checking its own HOTP token's next code;
* durable verification over HTTP: ``vtoken validator serve`` in a subprocess,
  driven by ``vtoken loadgen`` (``loadgen/``) with an HOTP fleet at 1, 16 and 64
  concurrent clients, 10 % replays and 5 % random codes, every answer checked;
* PRESS round trip over a pty (``bench/press_roundtrip.py``);
* fleet creation: 100,000 tokens to a password-protected PSKC file.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import platform
import random
import re
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench import harness, peers
from bench.harness import VTOKEN, Progress, Row
from bench.peers import PERIOD, RFC4226_CODES, RFC4226_KEY, RFC6238_KEYS, RFC6238_VECTORS, Implementation, Prepared
from validator.drift import ClockState, predicted_step
from validator.kernel import Backend, c_backend, python_backend
from vtoken.errors import BackendError

NS = 1_000_000_000
#: 2026-01-01T00:00:00Z: scans, resyncs and verifications happen around this step.
START_S = 1_767_225_600
CENTRE_STEP = START_S // PERIOD
DIGITS = 6
ALGORITHMS = ("sha1", "sha256", "sha512")
#: ±steps of the window scans, and of the resync (±1 day of 30 s steps).
SCAN_HALF_WINDOWS = (1, 10, 1000, 2880)
RESYNC_HALF_WINDOW = 2880
#: Verifications cycle over this many consecutive steps.
VERIFY_STEPS = 1000
FLEET_OPERATION = "fleet 100k tokens → PSKC"
#: Validator.check is timed once the token's history holds this many accepted codes (the fit's cap).
WARM_HISTORY = 200
DURABLE_OPERATION = "verify, durable end-to-end (SQLite, fsync)"
GROUP_COMMIT_IMPL = "group commit, in-process, 64 threads"
GROUP_COMMIT_THREADS = 64
HTTP_OPERATION = "verify, durable over HTTP (validator serve + loadgen)"
#: Closed-loop clients of the HTTP rows, and the load's mix.
HTTP_CONCURRENCY = (1, 16, 64)
HTTP_REPLAYS = 0.10
HTTP_RANDOM = 0.05
#: Seconds to wait for ``vtoken validator serve`` to say where it listens.
SERVE_START_S = 20.0


@dataclasses.dataclass(frozen=True)
class Config:
    """How much work each measurement does."""

    mode: str
    repeats: int
    #: Each sample lasts at least this long (loops are calibrated).
    min_time: float
    #: Codes per "generate" sample, by implementation kind.
    generate_fast: int
    generate_slow: int
    generate_pyotp: int
    generate_oathtool: int
    #: Validator.check calls per sample (in-memory store / SQLite).
    checks_memory: int
    checks_durable: int
    warm_history: int
    #: PRESS round trips (one sample each).
    presses: int
    #: Fleet size, and how many times it is built.
    fleet_tokens: int
    fleet_runs: int
    #: Correctness check of every implementation on at most this many codes of the timed work.
    check_codes: int = 2000
    #: Group commit: checks per thread per sample.
    group_commit_checks: int = 100
    #: HTTP rows: HOTP fleet size, runs per concurrency, requests per run (one per HTTP_CONCURRENCY).
    http_tokens: int = 2000
    http_runs: int = 3
    http_requests: tuple[int, ...] = (3000, 15_000, 20_000)



FULL = Config(
    mode="full", repeats=7, min_time=0.2,
    generate_fast=1_000_000, generate_slow=200_000, generate_pyotp=50_000, generate_oathtool=1_000_000,
    checks_memory=2000, checks_durable=500, warm_history=WARM_HISTORY,
    presses=2001, fleet_tokens=100_000, fleet_runs=3,
    group_commit_checks=100, http_tokens=2000, http_runs=3, http_requests=(3000, 15_000, 20_000),
)
QUICK = Config(
    mode="quick", repeats=3, min_time=0.05,
    generate_fast=1_000_000, generate_slow=20_000, generate_pyotp=5_000, generate_oathtool=200_000,
    checks_memory=300, checks_durable=150, warm_history=WARM_HISTORY,
    presses=301, fleet_tokens=5_000, fleet_runs=1,
    group_commit_checks=30, http_tokens=1000, http_runs=1, http_requests=(1000, 4000, 6000),
)
SMOKE = Config(
    mode="smoke", repeats=2, min_time=0.0005,
    generate_fast=4_000, generate_slow=300, generate_pyotp=100, generate_oathtool=2_000,
    checks_memory=10, checks_durable=5, warm_history=3,
    presses=11, fleet_tokens=20, fleet_runs=1, check_codes=300,
    group_commit_checks=2, http_tokens=80, http_runs=1, http_requests=(30, 100, 200),
)
MODES = {"full": FULL, "quick": QUICK, "smoke": SMOKE}


class BenchmarkError(AssertionError):
    """An implementation gave a wrong answer: nothing is timed."""


# --- vtoken as an implementation ----------------------------------------------------------------------


class _VtokenPrepared(Prepared):
    def __init__(self, key) -> None:
        self.key = key
        self.digits = key.digits
        #: The token's clock is exact: the drift model predicts the true step.
        self.model = ClockState(anchor_ns=0, offset_ns=0)
        self.floor = 0

    def generate(self, counter0: int, count: int) -> list[int]:
        return self.key.generate(counter0, count).tolist()

    def find(self, counter0: int, count: int, code: str) -> tuple[int, ...]:
        return self.key.find(counter0, count, code)

    def find_pair(self, counter0: int, count: int, code1: str, code2: str) -> tuple[int, ...]:
        return self.key.find_pair(counter0, count, code1, code2)

    def verify(self, step: int, code: str) -> bool:
        """The decision ``Validator.check`` makes for a TOTP code typed mid-step (see :func:`decide`)."""
        return bool(decide(self.key, self.model, (step * PERIOD + PERIOD // 2) * NS, self.floor, code))


def decide(key, model: ClockState, at_ns: int, floor: int, code: str, window: int = 1) -> tuple[int, ...]:
    """The verification decision of ``Validator._check_totp``, without storage and bookkeeping.

    Predict the step the token shows at ``at_ns`` from its drift model, then scan
    ±``window`` steps around it, never below the replay floor; the code is
    accepted when exactly one step matches.
    """
    centre = predicted_step(model, at_ns, PERIOD, 0)
    lo = max(floor, centre - window)
    hi = centre + window
    return key.find(lo, hi - lo + 1, code) if hi >= lo else ()


class VtokenKernel(Implementation):
    """vtoken's check kernel: the C backend on one CPU path, or the Python twin."""

    family = VTOKEN

    def __init__(self, backend: Backend | None, path: str | None = None, status: str = "ok") -> None:
        self.backend = backend
        self.path = path
        self.status = status
        if backend is None:
            self.name = "vtoken C"
        elif path is None:
            self.name = "vtoken Python twin"
        else:
            self.name = f"vtoken C {path}"

    def activate(self) -> None:
        if self.path is not None:
            self.backend.set_path(self.path)

    def deactivate(self) -> None:
        if self.path is not None:
            self.backend.set_path("auto")

    def prepare(self, key: bytes, algorithm: str = "sha1", digits: int = 6) -> Prepared:
        return _VtokenPrepared(self.backend.prepare(key, algorithm=algorithm, digits=digits))


def vtoken_implementations() -> list[VtokenKernel]:
    """One per CPU path of the C backend (whatever this machine and build offer), then the twin."""
    impls: list[VtokenKernel] = []
    try:
        cb = c_backend()
    except BackendError:
        impls.append(VtokenKernel(None, status="not built"))
    else:
        # Fastest first, as the kernel prefers them.
        order = {"avx512": 0, "sha-ni": 1, "portable": 2}
        for path in sorted(cb.available_paths(), key=lambda p: (order.get(p, 3), p)):
            impls.append(VtokenKernel(cb, path))
    impls.append(VtokenKernel(python_backend()))
    return impls


def default_backend_label() -> tuple[Backend, str]:
    """The backend ``Validator`` picks by default, and a label naming its CPU path."""
    try:
        backend = c_backend()
    except BackendError:
        return python_backend(), "vtoken Python twin (no C kernel)"
    return backend, f"vtoken C auto ({backend.cpu_path})"


# --- correctness ---------------------------------------------------------------------------------------


def _fail(impl: Implementation, what: str) -> BenchmarkError:
    return BenchmarkError(f"{impl.name} gives a wrong answer: {what}; not timed")


def check_vectors(impl: Implementation, algorithm: str) -> None:
    """The published vectors: RFC 4226 Appendix D (SHA-1) and RFC 6238 Appendix B."""
    if algorithm == "sha1":
        got = list(impl.prepare(RFC4226_KEY, "sha1", 6).generate(0, 10))
        if got != list(RFC4226_CODES):
            raise _fail(impl, f"RFC 4226 counters 0..9 gave {got}")
    prepared = impl.prepare(RFC6238_KEYS[algorithm], algorithm, 8)
    for unix_time, expected in RFC6238_VECTORS[algorithm]:
        got = list(prepared.generate(unix_time // PERIOD, 1))
        if got != [expected]:
            raise _fail(impl, f"RFC 6238 {algorithm} at t={unix_time} gave {got}, expected {expected}")


def _sample_positions(count: int, check: int) -> list[int]:
    """Which counters of a long run to spot-check: the first ``check``, the last, and random ones."""
    rng = random.Random(count)
    head = list(range(min(count, check)))
    return sorted(set(head) | {count - 1} | {rng.randrange(count) for _ in range(min(count, 200))})


# --- the work --------------------------------------------------------------------------------------------


class Runner:
    """Runs every operation for every implementation and collects the rows."""

    def __init__(self, config: Config, *, progress: bool = True, only: str | None = None) -> None:
        self.config = config
        self.only = only.lower() if only else None
        self.vtoken = vtoken_implementations()
        self.peers = peers.all_peers()
        self.twin = next(i for i in self.vtoken if i.path is None and i.backend is not None)
        self.rows: list[Row] = []
        self.progress = Progress(0, enabled=progress)
        self._vector_checked: set[tuple[str, str]] = set()
        #: The HTTP rows share one fleet and one running service (started by the first of them).
        self._http: HttpBench | None = None

    # -- plumbing --

    @property
    def implementations(self) -> list[Implementation]:
        return [*self.vtoken, *self.peers]

    def _tasks(self) -> list[tuple[str, str, Callable[[], Row]]]:
        tasks: list[tuple[str, str, Callable[[], Row]]] = []

        def add(operation: str, impl_name: str, fn: Callable[[], Row]) -> None:
            if self.only is None or self.only in operation.lower() or self.only in impl_name.lower():
                tasks.append((operation, impl_name, fn))

        for algorithm in ALGORITHMS:
            op = f"generate 1M codes {algorithm.upper().replace('SHA', 'SHA-')}"
            for impl in self.implementations:
                add(op, impl.name, lambda impl=impl, op=op, algorithm=algorithm: self.generate(op, impl, algorithm))
        for half in SCAN_HALF_WINDOWS:
            op = f"scan ±{half} ({2 * half + 1} counters), no match"
            for impl in self.implementations:
                add(op, impl.name, lambda impl=impl, op=op, half=half: self.scan(op, impl, half))
        op = f"resync ±1 day ({2 * RESYNC_HALF_WINDOW + 1} pairs)"
        for impl in self.implementations:
            add(op, impl.name, lambda impl=impl, op=op: self.resync(op, impl))
        op = "verify ±1 step, Python API (decision)"
        for impl in self.implementations:
            add(op, impl.name, lambda impl=impl, op=op: self.verify_decision(op, impl))
        backend, label = default_backend_label()
        op = "verify ±1 step, Validator.check, memory store"
        add(op, label, lambda op=op: self.verify_service(op, backend, label, durable=False))
        add(op, self.twin.name, lambda op=op: self.verify_service(op, python_backend(), self.twin.name, durable=False))
        op = DURABLE_OPERATION
        add(op, label, lambda op=op: self.verify_service(op, backend, label, durable=True))
        add(op, GROUP_COMMIT_IMPL, lambda op=op: self.group_commit(op, backend))
        for clients in HTTP_CONCURRENCY:
            add(HTTP_OPERATION, http_label(clients), lambda clients=clients: self.http_service(HTTP_OPERATION, clients))
        op = "PRESS round trip over a pty"
        add(op, "vtoken", lambda op=op: self.press(op))
        op = FLEET_OPERATION
        add(op, "vtoken", lambda op=op: self.fleet(op))
        return tasks

    def run(self) -> list[Row]:
        tasks = self._tasks()
        self.progress.total = len(tasks)
        try:
            for operation, impl_name, fn in tasks:
                self.progress.start(operation, impl_name)
                row = fn()
                self.rows.append(row)
                self.progress.finish(row)
        finally:
            if self._http is not None:
                self._http.close()
                self._http = None
        harness.add_ratios(self.rows)
        return self.rows

    def _row(self, operation: str, impl: Implementation, unit: str, work: int = 0, **kw) -> Row:
        return Row(operation, impl.name, impl.family, unit, work, **kw)

    def _with(self, impl: Implementation, fn: Callable[[], Row]) -> Row:
        impl.activate()
        try:
            return fn()
        finally:
            impl.deactivate()

    def _vectors(self, impl: Implementation, algorithm: str) -> None:
        if (impl.name, algorithm) not in self._vector_checked:
            check_vectors(impl, algorithm)
            self._vector_checked.add((impl.name, algorithm))

    # -- generate --

    def _generate_size(self, impl: Implementation) -> int:
        c = self.config
        if isinstance(impl, VtokenKernel):
            return c.generate_fast if impl.path is not None else c.generate_slow
        if isinstance(impl, peers.Pyotp):
            return c.generate_pyotp
        if isinstance(impl, peers.Oathtool):
            return c.generate_oathtool
        return c.generate_slow

    def generate(self, op: str, impl: Implementation, algorithm: str) -> Row:
        n = self._generate_size(impl)
        row = self._row(op, impl, "codes", n)
        if impl.status != "ok":
            row.status = impl.status
            return row

        def run() -> Row:
            self._vectors(impl, algorithm)
            key = RFC6238_KEYS[algorithm]
            prepared = impl.prepare(key, algorithm, DIGITS)
            reference = self.twin.prepare(key, algorithm, DIGITS)
            if isinstance(impl, VtokenKernel) and impl.path is not None:
                # The whole timed output, spot-checked against the twin.
                out = np.empty(n, dtype=np.uint32)
                prepared.key.generate(0, n, out)
                for pos in _sample_positions(n, self.config.check_codes):
                    if int(out[pos]) != reference.generate(pos, 1)[0]:
                        raise _fail(impl, f"{algorithm} counter {pos}")
                row.samples = harness.measure(
                    lambda: prepared.key.generate(0, n, out), n, repeats=self.config.repeats, min_time=self.config.min_time
                )
            elif impl.subprocess:
                codes = prepared.generate(0, n)
                check = min(n, self.config.check_codes)
                if len(codes) != n or codes[:check] != reference.generate(0, check) or codes[-1] != reference.generate(n - 1, 1)[0]:
                    raise _fail(impl, f"{algorithm} codes differ from the twin's")
                row.samples, startup = peers.process_samples(
                    prepared.generate_args(0, n), prepared.generate_args(0, 1), n, self.config.repeats
                )
                row.note = f"one process for {n:,} codes, less {startup * 1e3:.1f} ms start-up (a one-code run)"
                if not row.samples:
                    row.status = "below start-up noise"
            else:
                check = min(n, self.config.check_codes)
                if list(prepared.generate(0, check)) != reference.generate(0, check):
                    raise _fail(impl, f"{algorithm} codes differ from the twin's")
                row.samples = harness.measure(
                    lambda: prepared.generate(0, n), n, repeats=self.config.repeats, min_time=self.config.min_time
                )
                if n < 1_000_000:
                    row.note = f"times the first {n:,} of the 1M counters (rate per code)"
            return row

        return self._with(impl, run)

    # -- window scans --

    def _no_match_code(self, lo: int, count: int) -> str:
        """A code that occurs nowhere in the window (the window is generated first)."""
        present = set(self.twin.prepare(RFC4226_KEY, "sha1", DIGITS).generate(lo, count))
        value = next(v for v in itertools.count(123456) if v % 10**DIGITS not in present) % 10**DIGITS
        return peers.code_text(value, DIGITS)

    def scan(self, op: str, impl: Implementation, half: int) -> Row:
        count = 2 * half + 1
        lo = CENTRE_STEP - half
        row = self._row(op, impl, "windows", 1, extra={"window": count}, work_label=f"1 window ({count} codes)")
        if impl.status != "ok":
            row.status = impl.status
            return row
        if impl.subprocess and half < 1000:
            row.status = "n/a (start-up ≫ work)"
            return row

        def run() -> Row:
            self._vectors(impl, "sha1")
            prepared = impl.prepare(RFC4226_KEY, "sha1", DIGITS)
            reference = self.twin.prepare(RFC4226_KEY, "sha1", DIGITS)
            code = self._no_match_code(lo, count)
            if prepared.find(lo, count, code) != ():
                raise _fail(impl, f"found {code} in a window where it does not occur")
            # Positive control: a code that does occur, at a third of the window.
            present = peers.code_text(reference.generate(lo + count // 3, 1)[0], DIGITS)
            expected = reference.find(lo, count, present)
            got = prepared.find(lo, count, present)
            if impl.subprocess:
                expected = expected[:1]  # oathtool reports the first match only
            if got != expected:
                raise _fail(impl, f"window scan for {present} gave {got}, expected {expected}")
            if impl.subprocess:
                row.samples, startup = peers.process_samples(
                    prepared.find_args(lo, count, code), prepared.find_args(lo, 1, code), 1, self.config.repeats
                )
                row.note = f"one validating process per window, less {startup * 1e3:.1f} ms start-up"
                if not row.samples:
                    row.status = "below start-up noise"
            else:
                row.samples = harness.measure(
                    lambda: prepared.find(lo, count, code), 1, repeats=self.config.repeats, min_time=self.config.min_time
                )
            if row.ok:
                row.extra["codes_per_s"] = row.per_s * count
            return row

        return self._with(impl, run)

    # -- two-code resync --

    def resync(self, op: str, impl: Implementation) -> Row:
        half = RESYNC_HALF_WINDOW
        count = 2 * half + 1
        lo = CENTRE_STEP - half - 1
        row = self._row(op, impl, "resyncs", 1, extra={"window": count}, work_label=f"1 resync ({count + 1} codes)")
        if impl.status != "ok":
            row.status = impl.status
            return row
        if impl.subprocess:
            row.status = "n/a (no pair search)"
            return row

        def run() -> Row:
            self._vectors(impl, "sha1")
            prepared = impl.prepare(RFC4226_KEY, "sha1", DIGITS)
            reference = self.twin.prepare(RFC4226_KEY, "sha1", DIGITS)
            c1, c2 = (peers.code_text(v, DIGITS) for v in reference.generate(CENTRE_STEP - 1, 2))
            expected = reference.find_pair(lo, count, c1, c2)
            if CENTRE_STEP - 1 not in expected:
                raise BenchmarkError("the twin misses the genuine pair")
            got = prepared.find_pair(lo, count, c1, c2)
            if got != expected:
                raise _fail(impl, f"pair search gave {got}, expected {expected}")
            row.samples = harness.measure(
                lambda: prepared.find_pair(lo, count, c1, c2), 1, repeats=self.config.repeats,
                min_time=self.config.min_time,
            )
            return row

        return self._with(impl, run)

    # -- verification --

    def verify_decision(self, op: str, impl: Implementation) -> Row:
        row = self._row(op, impl, "verifications", 1, work_label="1 code, ±1 step")
        if impl.status != "ok":
            row.status = impl.status
            return row
        if impl.subprocess:
            row.status = "n/a (a process per code)"
            return row

        def run() -> Row:
            self._vectors(impl, "sha1")
            prepared = impl.prepare(RFC4226_KEY, "sha1", DIGITS)
            reference = self.twin.prepare(RFC4226_KEY, "sha1", DIGITS)
            first = CENTRE_STEP
            codes = [peers.code_text(v, DIGITS) for v in reference.generate(first, VERIFY_STEPS)]
            work = [(first + i, codes[i]) for i in range(VERIFY_STEPS)]
            wrong = self._no_match_code(first - 1, VERIFY_STEPS + 2)
            for step, code in work[:50]:
                if not prepared.verify(step, code):
                    raise _fail(impl, f"refused the genuine code of step {step}")
                if prepared.verify(step, wrong):
                    raise _fail(impl, f"accepted a wrong code at step {step}")
            cycle = itertools.cycle(work).__next__
            verify = prepared.verify

            def one() -> None:
                step, code = cycle()
                verify(step, code)

            row.samples = harness.measure(one, 1, repeats=self.config.repeats, min_time=self.config.min_time)
            if isinstance(impl, VtokenKernel):
                row.note = "drift-model prediction + ±1 scan above the replay floor (what Validator.check decides)"
            elif isinstance(impl, peers.Pyotp):
                row.note = "TOTP.verify(code, for_time, valid_window=1)"
            return row

        return self._with(impl, run)

    def verify_service(self, op: str, backend: Backend, label: str, *, durable: bool) -> Row:
        """``Validator.check`` of genuine codes, one 30 s step apart, after a warm-up that fills the history."""
        from validator.memstore import MemoryStore
        from validator.records import TokenParams
        from validator.sealing import Keyring, MasterKey, seal
        from validator.service import Reason, Validator
        from validator.store import SQLiteStore
        from vtoken.clock import SimulatedClock
        from vtoken.oath import TokenKind
        from vtoken.serialno import make_serial

        config = self.config
        batch = config.checks_durable if durable else config.checks_memory
        row = Row(op, label, VTOKEN, "verifications", batch)
        with tempfile.TemporaryDirectory(prefix="vtoken-bench-") as tmp:
            store = SQLiteStore(Path(tmp) / "validator.db") if durable else MemoryStore()
            try:
                keyring = Keyring(MasterKey(bytes(range(32))))
                serial = make_serial(1)
                params = TokenParams(serial=serial, kind=TokenKind.TOTP, has_check_digit=True)
                store.add_tokens([(params, seal(keyring, serial, RFC4226_KEY))], at_ns=START_S * NS)
                # Typed 15 s into each step; the token's clock is exact.
                clock = SimulatedClock((START_S + PERIOD // 2) * NS)
                validator = Validator(store, keyring, clock, backend=backend)
                total = 2 + config.warm_history + config.repeats * batch + 1
                step0 = START_S // PERIOD
                codes = [peers.code_text(v, DIGITS) for v in backend.prepare(RFC4226_KEY).generate(step0, total)]
                clock.advance(PERIOD * NS)
                result = validator.register(serial, codes[0], codes[1])
                if not result.accepted:
                    raise BenchmarkError(f"registration refused: {result}")
                step = 2
                check = validator.check
                advance = clock.advance
                for _ in range(config.warm_history):
                    advance(PERIOD * NS)
                    result = check(serial, codes[step])
                    step += 1
                    if result.reason is not Reason.ACCEPTED:
                        raise BenchmarkError(f"a genuine code was refused: {result}")
                for _ in range(config.repeats):
                    accepted = 0
                    start = time.perf_counter()
                    for code in codes[step : step + batch]:
                        advance(PERIOD * NS)
                        accepted += check(serial, code).accepted
                    elapsed = time.perf_counter() - start
                    step += batch
                    if accepted != batch:
                        raise BenchmarkError(f"{batch - accepted} genuine codes refused")
                    row.samples.append(batch / elapsed)
                # The last code again: refused as a replay.
                if check(serial, codes[step - 1]).reason is not Reason.REPLAY:
                    raise BenchmarkError("a replayed code was not refused as a replay")
                recent = store.history(serial, limit=200)
            finally:
                store.close()
            # Where the time goes: the drift-state update alone, and (durable) a bare fsynced commit on the same disk.
            fit_s = _time_update(recent)
            row.extra["drift_update_s"] = fit_s
            if durable:
                floor = _bare_commit_rate(Path(tmp) / "floor.db", max(20, batch // 2))
                row.extra["bare_commit_per_s"] = floor
        where = "SQLite in a temporary file, WAL, synchronous=FULL" if durable else "MemoryStore"
        row.note = (
            f"{where}; genuine codes one 30 s step apart after {config.warm_history} warm-up checks; "
            f"each accept updates the drift state in O(1) ({fit_s * 1e6:.1f} µs of pure Python here)"
        )
        if durable:
            row.note += f"; a bare BEGIN IMMEDIATE/UPDATE/COMMIT on the same disk manages {floor:,.0f}/s"
        return row

    # -- group commit, in-process --

    def group_commit(self, op: str, backend: Backend) -> Row:
        """64 threads, each checking its own HOTP token's next code through one GroupCommitter over SQLite."""
        from server.groupcommit import GroupCommitter
        from validator.records import TokenParams
        from validator.sealing import Keyring, MasterKey, seal
        from validator.service import Reason, Validator
        from validator.store import SQLiteStore
        from vtoken.clock import SimulatedClock
        from vtoken.oath import TokenKind
        from vtoken.serialno import make_serial

        config = self.config
        threads, per = GROUP_COMMIT_THREADS, config.group_commit_checks
        row = Row(op, GROUP_COMMIT_IMPL, VTOKEN, "verifications", threads * per)
        keyring = Keyring(MasterKey(bytes(range(32))))
        serials = [make_serial(1000 + i) for i in range(threads)]
        seeds = [bytes([i + 1]) * 20 for i in range(threads)]
        total = 2 + config.repeats * per
        codes = [[peers.code_text(v, DIGITS) for v in backend.prepare(seed).generate(0, total)] for seed in seeds]
        sizes: list[int] = []
        with tempfile.TemporaryDirectory(prefix="vtoken-bench-") as tmp:
            path = Path(tmp) / "validator.db"
            with SQLiteStore(path) as store:
                store.add_tokens(
                    [(TokenParams(serial=s, kind=TokenKind.HOTP, has_check_digit=True), seal(keyring, s, seed))
                     for s, seed in zip(serials, seeds)],
                    at_ns=START_S * NS,
                )
            clock = SimulatedClock(START_S * NS)
            committer = GroupCommitter(
                lambda: SQLiteStore(path),
                lambda store: Validator(store, keyring, clock, backend=backend),
                on_batch=lambda size, seconds, committed: sizes.append(size),
            )
            with committer:
                for serial, mine in zip(serials, codes):
                    result = committer.run(lambda v, s=serial, c=mine: v.register(s, c[0], c[1]))
                    if not result.accepted:
                        raise BenchmarkError(f"registration refused: {result}")
                for sample in range(config.repeats):
                    first = 2 + sample * per
                    refused: list[str] = []
                    barrier = threading.Barrier(threads + 1)

                    def client(serial: str, mine: list[str], first: int = first) -> None:
                        barrier.wait()
                        for code in mine[first : first + per]:
                            result = committer.run(lambda v, code=code: v.check(serial, code))
                            if result.reason is not Reason.ACCEPTED:
                                refused.append(f"{serial}: {result.reason.value}")

                    workers = [threading.Thread(target=client, args=(s, c)) for s, c in zip(serials, codes)]
                    for w in workers:
                        w.start()
                    sizes.clear()
                    barrier.wait()
                    start = time.perf_counter()
                    for w in workers:
                        w.join()
                    elapsed = time.perf_counter() - start
                    if refused:
                        raise BenchmarkError(f"{len(refused)} genuine codes refused, e.g. {refused[0]}")
                    row.samples.append(threads * per / elapsed)
                batches = list(sizes)
                replay = committer.run(lambda v: v.check(serials[0], codes[0][total - 1]))
                if replay.accepted or replay.reason is not Reason.REPLAY:
                    raise BenchmarkError(f"a replayed code was not refused as a replay: {replay.reason.value}")
        mean = statistics.mean(batches) if batches else 0.0
        row.extra["mean_batch"] = mean
        row.note = (
            f"{threads} threads, each checking its own HOTP token's next code through one GroupCommitter over "
            f"SQLite (WAL, synchronous=FULL), every answer checked: {mean:.1f} decisions per commit on average, "
            "one fsync each"
        )
        return row

    # -- HTTP service, durable --

    def http_service(self, op: str, clients: int) -> Row:
        """``vtoken loadgen`` against ``vtoken validator serve`` on 127.0.0.1, ``clients`` closed-loop clients."""
        config = self.config
        requests = config.http_requests[HTTP_CONCURRENCY.index(clients)]
        row = Row(op, http_label(clients), VTOKEN, "checks", requests)
        if self._http is None:
            self._http = HttpBench(config.http_tokens)
        http = self._http
        reports = [http.load(clients, requests) for _ in range(config.http_runs)]
        row.samples = [r.throughput for r in reports]
        latencies = np.concatenate([np.array(r.tally.latencies, dtype=np.float64) for r in reports])
        p50, p99 = (float(v) * 1e3 for v in np.percentile(latencies, (50, 99)))
        batch = http.mean_batch()
        genuine = statistics.median(r.genuine_accepted_per_s for r in reports)
        cpu = statistics.median(1e6 * r.client_cpu_s / r.requests for r in reports)
        row.extra.update(p50_ms=p50, p99_ms=p99, genuine_per_s=genuine, mean_batch=batch, client_cpu_us=cpu,
                         requests=sum(r.requests for r in reports))
        row.note = (
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms; {genuine:,.0f} genuine accepts/s; "
            f"{config.http_tokens:,} HOTP tokens, {HTTP_REPLAYS:.0%} replays, {HTTP_RANDOM:.0%} random codes, "
            f"every answer checked (0 wrong); SQLite WAL synchronous=FULL, {batch:.1f} decisions per commit; "
            f"client and server share this machine ({os.cpu_count()} CPUs), the client used {cpu:.0f} µs CPU/request"
        )
        return row

    # -- PRESS over a pty --

    def press(self, op: str) -> Row:
        from bench.press_roundtrip import measure as press_measure

        row = Row(op, "vtoken", VTOKEN, "round trips", 1, work_label="1 PRESS")
        latencies = sorted(press_measure(self.config.presses))  # every code checked against RFC 4226
        row.samples = [1.0 / s for s in latencies]
        pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
        row.spread = (1.0 / pct(0.9), 1.0 / pct(0.1))
        row.extra.update(
            median_ms=statistics.median(latencies) * 1e3, p90_ms=pct(0.9) * 1e3, p99_ms=pct(0.99) * 1e3,
            presses=len(latencies),
        )
        row.note = (
            f"{len(latencies)} presses (HOTP, each code checked): median {statistics.median(latencies) * 1e3:.3f} ms, "
            f"p90 {pct(0.9) * 1e3:.3f} ms, p99 {pct(0.99) * 1e3:.3f} ms; spread = 10th–90th percentile"
        )
        return row

    # -- fleet --

    def fleet(self, op: str) -> Row:
        from firmware_sim.fleet import FleetSpec, build_pskc, derive_seed
        from firmware_sim.models import get_model
        import pskc

        config = self.config
        n = config.fleet_tokens
        row = Row(op, "vtoken", VTOKEN, "tokens", n)
        spec = FleetSpec(batch_secret=bytes(range(16)), model=get_model("totp30"), count=n)
        with tempfile.TemporaryDirectory(prefix="vtoken-bench-") as tmp:
            path = os.path.join(tmp, "tokens.pskc")
            for _ in range(config.fleet_runs):
                start = time.perf_counter()
                build_pskc(spec, created_ns=START_S * NS, password="benchmark").write(path)
                row.samples.append(n / (time.perf_counter() - start))
            # The file holds every token, and the first seed decrypts to the fleet's derivation.
            parsed = pskc.PSKC(path)
            parsed.encryption.derive_key("benchmark")
            if len(parsed.keys) != n or parsed.keys[0].secret != derive_seed(spec.batch_secret, parsed.keys[0].serial):
                raise BenchmarkError("the PSKC file does not hold the fleet")
            size = os.path.getsize(path)
        scale = "" if n == 100_000 else f"; measured on {n:,} tokens (100k would take ≈{100_000 / statistics.median(row.samples):.0f} s)"
        row.note = (
            f"build_pskc + write, password-protected (PBKDF2, AES-128-CBC + HMAC-SHA1 per seed), "
            f"{size / n:.0f} bytes/token{scale}"
        )
        return row


def _time_update(history) -> float:
    """Seconds per drift-state update (what every accepted TOTP code costs), over ``history``'s steps."""
    from validator.drift import initial_state, update

    if not history:
        return 0.0
    period = PERIOD
    loops = 50
    start = time.perf_counter()
    for _ in range(loops):
        state = initial_state(history[0].at_ns, history[0].step, period, 0)
        for entry in history[1:]:
            state = update(state, entry.at_ns, entry.step, period, 0)
    return (time.perf_counter() - start) / (loops * max(1, len(history) - 1))


def _bare_commit_rate(path: Path, count: int) -> float:
    """Durable one-row transactions per second with the store's settings (WAL, synchronous=FULL)."""
    import sqlite3

    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
        conn.execute("INSERT INTO t VALUES (1, 0)")
        start = time.perf_counter()
        for i in range(count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE t SET n = ? WHERE id = 1", (i,))
            conn.execute("COMMIT")
        return count / (time.perf_counter() - start)
    finally:
        conn.close()


def http_label(clients: int) -> str:
    """The implementation column of an HTTP row."""
    return f"loadgen, concurrency {clients}"


class HttpBench:
    """An HOTP fleet, a validator database with the fleet imported, and ``vtoken validator serve`` on it."""

    def __init__(self, tokens: int) -> None:
        from firmware_sim.fleet import FleetSpec
        from firmware_sim.fleetdir import write_fleet
        from firmware_sim.models import get_model
        from vtoken.clock import SimulatedClock

        self._tmp = tempfile.TemporaryDirectory(prefix="vtoken-bench-http-")
        self.folder = Path(self._tmp.name)
        self.fleet = self.folder / "fleet"
        self.proc: subprocess.Popen[str] | None = None
        self._batches = (0.0, 0.0)
        try:
            spec = FleetSpec(batch_secret=bytes(range(16)), model=get_model("hotp"), count=tokens)
            write_fleet(spec, self.fleet, SimulatedClock(time.time_ns()))
            db = self.folder / "v.db"
            out = self._vtoken("validator", "--db", str(db), "init")
            found = re.search(r"vtk_admin_\S+", out)
            if found is None:
                raise BenchmarkError(f"'vtoken validator init' printed no administrator token: {out[:200]}")
            self.admin = found.group(0)
            self._vtoken("validator", "--db", str(db), "import", str(self.fleet / "tokens.pskc"))
            self.url = self._serve(db)
            self.registered = False
        except BaseException:
            self.close()
            raise

    def _vtoken(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "host.cli.main", *args], capture_output=True, text=True,
                              cwd=self.folder, timeout=600)
        if done.returncode != 0:
            raise BenchmarkError(f"vtoken {args[2] if len(args) > 2 else args[0]} failed: {done.stderr.strip()[:300]}")
        return done.stdout

    def _serve(self, db: Path) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host.cli.main", "validator", "--db", str(db), "serve", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.folder,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], SERVE_START_S)
        line = self.proc.stdout.readline() if ready else ""
        found = re.search(r"listening on (http://\S+)", line)
        if found is None:
            raise BenchmarkError(f"'vtoken validator serve' did not start: {line.strip()[:200]}")
        return found.group(1)

    def load(self, clients: int, requests: int):  # -> loadgen.Report
        """One loadgen run; every answer must be right."""
        from loadgen import LoadConfig, run_load

        config = LoadConfig(
            url=self.url, fleet=self.fleet, concurrency=clients, requests=requests, replays=HTTP_REPLAYS,
            random=HTTP_RANDOM, register=not self.registered, seed=clients,
        )
        report = run_load(config)
        self.registered = True
        if not report.ok:
            first = report.wrong[0]
            raise BenchmarkError(
                f"loadgen found {len(report.wrong)} wrong answers at concurrency {clients}, e.g. "
                f"{first.serial} {first.kind}: HTTP {first.status} {first.reason}"
            )
        return report

    def mean_batch(self) -> float:
        """Decisions per group commit since the last call (from the service's /metrics)."""
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
                text = resp.read().decode("utf-8")
        except OSError:
            return float("nan")
        values = {}
        for name in ("vtoken_batch_size_sum", "vtoken_batch_size_count"):
            found = re.search(rf"^{name} (\S+)$", text, re.M)
            values[name] = float(found.group(1)) if found else 0.0
        total, count = values["vtoken_batch_size_sum"], values["vtoken_batch_size_count"]
        before_total, before_count = self._batches
        self._batches = (total, count)
        return (total - before_total) / (count - before_count) if count > before_count else float("nan")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
            self.proc = None
        self._tmp.cleanup()


def machine_info() -> dict[str, object]:
    """What the JSON records about where it ran."""
    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cb = c_backend()
        info["c_paths"] = list(cb.available_paths())
        info["c_auto_path"] = cb.cpu_path
    except BackendError as exc:
        info["c_paths"] = []
        info["c_error"] = str(exc)
    oath = peers.Oathtool()
    info["oathtool"] = oath.version or oath.status
    return info


def run(config: Config, *, progress: bool = True, only: str | None = None) -> list[Row]:
    """Every measurement of ``config``, in one process."""
    return Runner(config, progress=progress, only=only).run()
