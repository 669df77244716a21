"""pytest-benchmark: generate codes, scan windows without a match, two-code resync over ±1 day.

Run with ``pytest bench --benchmark-only`` (not part of the default test run).
Pure-Python implementations generate a prefix of the million counters; the
``codes`` extra info says how many, so compare per-code rates.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from bench import operations, peers
from bench.operations import CENTRE_STEP, DIGITS, RESYNC_HALF_WINDOW, SCAN_HALF_WINDOWS, VtokenKernel
from bench.peers import RFC4226_KEY, RFC6238_KEYS, Implementation, code_text

#: Codes per generate benchmark, by implementation.
SIZES = {"c": 1_000_000, "python": 100_000, "pyotp": 20_000, "oathtool": 1_000_000}


def _size(impl: Implementation) -> int:
    if isinstance(impl, VtokenKernel):
        return SIZES["c"] if impl.path is not None else SIZES["python"]
    if isinstance(impl, peers.Pyotp):
        return SIZES["pyotp"]
    if isinstance(impl, peers.Oathtool):
        return SIZES["oathtool"]
    return SIZES["python"]


@pytest.mark.parametrize("algorithm", operations.ALGORITHMS)
def test_generate(benchmark, impl: Implementation, twin: Implementation, algorithm: str) -> None:
    operations.check_vectors(impl, algorithm)
    n = _size(impl)
    key = RFC6238_KEYS[algorithm]
    prepared = impl.prepare(key, algorithm, DIGITS)
    reference = twin.prepare(key, algorithm, DIGITS)
    check = min(n, 2000)
    assert list(prepared.generate(0, check)) == reference.generate(0, check)
    benchmark.group = f"generate {algorithm}"
    benchmark.extra_info["codes"] = n
    if isinstance(impl, VtokenKernel) and impl.path is not None:
        out = np.empty(n, dtype=np.uint32)
        benchmark(prepared.key.generate, 0, n, out)
        assert int(out[n - 1]) == reference.generate(n - 1, 1)[0]
    elif impl.subprocess:
        argv = prepared.generate_args(0, n)  # includes the process start-up (about 1-2 ms)
        benchmark.pedantic(subprocess.run, args=(argv,), kwargs={"stdout": subprocess.DEVNULL, "check": True},
                           rounds=5, iterations=1)
    else:
        benchmark.pedantic(prepared.generate, args=(0, n), rounds=5, iterations=1)
    benchmark.extra_info["codes_per_s"] = n / benchmark.stats.stats.median


def _absent_code(reference, lo: int, count: int) -> str:
    present = set(reference.generate(lo, count))
    return code_text(next(v for v in range(123456, 10**DIGITS) if v not in present), DIGITS)


@pytest.mark.parametrize("half", SCAN_HALF_WINDOWS, ids=lambda h: f"pm{h}")
def test_scan_without_match(benchmark, impl: Implementation, twin: Implementation, half: int) -> None:
    if impl.subprocess and half < 1000:
        pytest.skip("oathtool: process start-up dwarfs a small window")
    count = 2 * half + 1
    lo = CENTRE_STEP - half
    prepared = impl.prepare(RFC4226_KEY, "sha1", DIGITS)
    reference = twin.prepare(RFC4226_KEY, "sha1", DIGITS)
    code = _absent_code(reference, lo, count)
    assert prepared.find(lo, count, code) == ()
    present = code_text(reference.generate(lo + count // 3, 1)[0], DIGITS)
    assert prepared.find(lo, count, present)[:1] == reference.find(lo, count, present)[:1]
    benchmark.group = f"scan ±{half}"
    benchmark.extra_info["window"] = count
    if impl.subprocess:
        argv = prepared.find_args(lo, count, code)
        benchmark.pedantic(subprocess.run, args=(argv,), kwargs={"stdout": subprocess.DEVNULL,
                           "stderr": subprocess.DEVNULL}, rounds=20, iterations=1)
    else:
        benchmark(prepared.find, lo, count, code)
    benchmark.extra_info["codes_per_s"] = count / benchmark.stats.stats.median


def test_resync_one_day(benchmark, impl: Implementation, twin: Implementation) -> None:
    if impl.subprocess:
        pytest.skip("oathtool has no pair search")
    count = 2 * RESYNC_HALF_WINDOW + 1
    lo = CENTRE_STEP - RESYNC_HALF_WINDOW - 1
    prepared = impl.prepare(RFC4226_KEY, "sha1", DIGITS)
    reference = twin.prepare(RFC4226_KEY, "sha1", DIGITS)
    c1, c2 = (code_text(v, DIGITS) for v in reference.generate(CENTRE_STEP - 1, 2))
    expected = reference.find_pair(lo, count, c1, c2)
    assert CENTRE_STEP - 1 in expected
    assert prepared.find_pair(lo, count, c1, c2) == expected
    benchmark.group = "resync ±1 day"
    result = benchmark(prepared.find_pair, lo, count, c1, c2)
    assert result == expected
