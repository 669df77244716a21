"""Micro-benchmark: HOTP codes per second for each CPU path of the C kernel, vs pure Python.

Run from the repository root after building the kernel in place::

    python validator/_fastcheck_build.py
    python bench/kernel_micro.py

Measures, on one core:
  * the cffi kernel, fc_generate over --kernel-n counters into a numpy uint32
    array, for every CPU path this machine has (forced with fc_set_path) and
    for SHA-1, SHA-256 and SHA-512 (median and best of --repeats runs);
  * a two-code resync: find_pair over 5761 counters (±1 day of 30 s steps,
    SHA-1, 6 digits) through the Python wrapper (validator._ckernel), per path,
    median of --pair-runs calls;
  * pyotp, HOTP(...).at(c) over 20,000 counters;
  * a stdlib loop that copies precomputed hashlib inner/outer HMAC states
    (over 100,000 counters).
Before anything is timed, every path must agree with the stdlib on the first
1000 codes of each algorithm, and with pyotp for SHA-1.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pyotp  # noqa: E402

from validator._fastcheck_cffi import ffi, lib  # noqa: E402

KEY = b"12345678901234567890"  # RFC 4226 Appendix D
DIGITS = 6
ALGS = {"sha1": lib.FC_SHA1, "sha256": lib.FC_SHA256, "sha512": lib.FC_SHA512}
PATHS = {"portable": lib.FC_PATH_PORTABLE, "sha-ni": lib.FC_PATH_SHANI, "avx512": lib.FC_PATH_AVX512}
RESYNC_WINDOW = 5761


def available_paths() -> list[str]:
    mask = lib.fc_available_paths()
    return [name for name, ident in PATHS.items() if mask & (1 << ident)]


def set_path(name: str) -> None:
    ident = lib.FC_PATH_AUTO if name == "auto" else PATHS[name]
    if lib.fc_set_path(ident) != lib.FC_OK:
        raise RuntimeError(f"CPU path {name} not available")


def path_name() -> str:
    return ffi.string(lib.fc_path_name(lib.fc_current_path())).decode()


def new_key(alg: str, key: bytes = KEY, digits: int = DIGITS):
    k = ffi.new("fc_key *")
    rc = lib.fc_key_init(k, ALGS[alg], key, len(key), digits)
    if rc != lib.FC_OK:
        raise RuntimeError(f"fc_key_init failed: {rc}")
    return k


def kernel_codes(key: bytes, counter0: int, n: int, digits: int = DIGITS, alg: str = "sha1") -> np.ndarray:
    k = new_key(alg, key, digits)
    out = np.empty(n, dtype=np.uint32)
    rc = lib.fc_generate(k, counter0, n, ffi.from_buffer("uint32_t[]", out))
    if rc != lib.FC_OK:
        raise RuntimeError(f"fc_generate failed: {rc}")
    return out


def pyotp_codes(key: bytes, counter0: int, n: int, digits: int = DIGITS) -> list[int]:
    hotp = pyotp.HOTP(base64.b32encode(key).decode("ascii"), digits=digits, digest=hashlib.sha1)
    return [int(hotp.at(c)) for c in range(counter0, counter0 + n)]


def stdlib_codes(key: bytes, counter0: int, n: int, digits: int = DIGITS, alg: str = "sha1") -> list[int]:
    block = hashlib.new(alg).block_size
    if len(key) > block:
        key = hashlib.new(alg, key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.new(alg, bytes(b ^ 0x36 for b in key))
    outer = hashlib.new(alg, bytes(b ^ 0x5C for b in key))
    pack = struct.Struct(">Q").pack
    mod = 10**digits
    out = []
    for c in range(counter0, counter0 + n):
        i = inner.copy()
        i.update(pack(c))
        o = outer.copy()
        o.update(i.digest())
        d = o.digest()
        off = d[-1] & 15
        out.append((int.from_bytes(d[off : off + 4], "big") & 0x7FFFFFFF) % mod)
    return out


def time_kernel(alg: str, n: int, repeats: int) -> tuple[float, float]:
    """(median, best) codes/s of fc_generate over n counters on the current path."""
    k = new_key(alg)
    out = np.empty(n, dtype=np.uint32)
    ptr = ffi.from_buffer("uint32_t[]", out)
    lib.fc_generate(k, 0, min(n, 10_000), ptr)  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rc = lib.fc_generate(k, 0, n, ptr)
        times.append(time.perf_counter() - t0)
        assert rc == lib.FC_OK
    return n / statistics.median(times), n / min(times)


def time_resync(runs: int) -> tuple[float, float]:
    """(median, best) seconds of one find_pair over 5761 counters through the Python wrapper."""
    from validator._ckernel import CBackend

    key = CBackend().prepare(KEY, algorithm="sha1", digits=DIGITS)
    counter0 = 55_555_000
    codes = key.generate(counter0, RESYNC_WINDOW + 1)
    c1, c2 = int(codes[RESYNC_WINDOW // 2]), int(codes[RESYNC_WINDOW // 2 + 1])
    assert counter0 + RESYNC_WINDOW // 2 in key.find_pair(counter0, RESYNC_WINDOW, c1, c2)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        key.find_pair(counter0, RESYNC_WINDOW, c1, c2)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def time_python(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(KEY, 0, n)
    return n / (time.perf_counter() - t0)


def check_agreement(check_n: int) -> bool:
    reference = {alg: stdlib_codes(KEY, 0, check_n, alg=alg) for alg in ALGS}
    if pyotp_codes(KEY, 0, check_n) != reference["sha1"]:
        print("MISMATCH between pyotp and stdlib")
        return False
    for path in available_paths():
        set_path(path)
        for alg in ALGS:
            got = [int(x) for x in kernel_codes(KEY, 0, check_n, alg=alg)]
            if got != reference[alg]:
                bad = next(i for i in range(check_n) if got[i] != reference[alg][i])
                print(f"MISMATCH [{path} {alg}] at counter {bad}: kernel={got[bad]} stdlib={reference[alg][bad]}")
                return False
    set_path("auto")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel-n", type=int, default=1_000_000)
    ap.add_argument("--pyotp-n", type=int, default=20_000)
    ap.add_argument("--stdlib-n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--pair-runs", type=int, default=301)
    args = ap.parse_args(argv)

    check_n = 1000
    if not check_agreement(check_n):
        return 1
    paths = available_paths()
    print(f"first {check_n} codes agree: every path ({', '.join(paths)}) x SHA-1/256/512 vs stdlib; pyotp for SHA-1")
    set_path("auto")
    print(f"automatic choice: {path_name()}")

    rows = []
    try:
        for alg in ALGS:
            for path in paths:
                set_path(path)
                # the portable SHA-256/512 loops are slow; fewer counters keep the run short
                n = args.kernel_n if path != "portable" or alg == "sha1" else max(1, args.kernel_n // 4)
                median, best = time_kernel(alg, n, args.repeats)
                rows.append((f"C fc_generate {alg} [{path}]", n, median, best))
        resync = []
        for path in paths:
            set_path(path)
            resync.append((path, *time_resync(args.pair_runs)))
    finally:
        set_path("auto")
    rows.append(("pyotp HOTP.at sha1", args.pyotp_n, time_python(pyotp_codes, args.pyotp_n), None))
    rows.append(("stdlib hashlib state copies sha1", args.stdlib_n, time_python(stdlib_codes, args.stdlib_n), None))

    base = rows[-2][2]
    print(f"\nHOTP, {DIGITS} digits, one core (median and best of {args.repeats} runs)")
    print(f"{'implementation':<36} {'codes':>10} {'codes/s':>14} {'best':>14} {'x pyotp':>9}")
    for name, n, rate, best in rows:
        best_text = f"{best:>14,.0f}" if best is not None else f"{'':>14}"
        print(f"{name:<36} {n:>10,} {rate:>14,.0f} {best_text} {rate / base:>9.1f}")

    print(f"\nresync: find_pair over {RESYNC_WINDOW} counters, SHA-1, via Python wrapper ({args.pair_runs} calls)")
    print(f"{'path':<12} {'median ms':>10} {'best ms':>10}")
    for path, median, best in resync:
        print(f"{path:<12} {median * 1e3:>10.3f} {best * 1e3:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
