"""Micro-benchmark: HOTP-SHA1 codes per second, C kernel vs pure Python.

Run from the repository root after building the kernel in place::

    python validator/_fastcheck_build.py
    python bench/kernel_micro.py

Measures, on one core:
  * the cffi kernel, fc_generate over 1,000,000 counters into a numpy uint32
    array (median of 5 runs);
  * pyotp, HOTP(...).at(c) over 20,000 counters;
  * a stdlib loop that copies precomputed hashlib inner/outer HMAC states
    (over 100,000 counters).
All three must agree on the first 1000 codes before anything is timed.
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


def kernel_codes(key: bytes, counter0: int, n: int, digits: int = DIGITS) -> np.ndarray:
    k = ffi.new("fc_key *")
    rc = lib.fc_key_init(k, lib.FC_SHA1, key, len(key), digits)
    if rc != lib.FC_OK:
        raise RuntimeError(f"fc_key_init failed: {rc}")
    out = np.empty(n, dtype=np.uint32)
    rc = lib.fc_generate(k, counter0, n, ffi.from_buffer("uint32_t[]", out))
    if rc != lib.FC_OK:
        raise RuntimeError(f"fc_generate failed: {rc}")
    return out


def pyotp_codes(key: bytes, counter0: int, n: int, digits: int = DIGITS) -> list[int]:
    hotp = pyotp.HOTP(base64.b32encode(key).decode("ascii"), digits=digits, digest=hashlib.sha1)
    return [int(hotp.at(c)) for c in range(counter0, counter0 + n)]


def stdlib_codes(key: bytes, counter0: int, n: int, digits: int = DIGITS) -> list[int]:
    block = 64
    if len(key) > block:
        key = hashlib.sha1(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha1(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha1(bytes(b ^ 0x5C for b in key))
    pack = struct.Struct(">Q").pack
    mod = 10**digits
    out = []
    for c in range(counter0, counter0 + n):
        i = inner.copy()
        i.update(pack(c))
        o = outer.copy()
        o.update(i.digest())
        d = o.digest()
        off = d[19] & 15
        out.append((int.from_bytes(d[off : off + 4], "big") & 0x7FFFFFFF) % mod)
    return out


def time_kernel(n: int, repeats: int) -> float:
    k = ffi.new("fc_key *")
    assert lib.fc_key_init(k, lib.FC_SHA1, KEY, len(KEY), DIGITS) == lib.FC_OK
    out = np.empty(n, dtype=np.uint32)
    ptr = ffi.from_buffer("uint32_t[]", out)
    lib.fc_generate(k, 0, min(n, 10_000), ptr)  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rc = lib.fc_generate(k, 0, n, ptr)
        times.append(time.perf_counter() - t0)
        assert rc == lib.FC_OK
    return n / statistics.median(times)


def time_python(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn(KEY, 0, n)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernel-n", type=int, default=1_000_000)
    ap.add_argument("--pyotp-n", type=int, default=20_000)
    ap.add_argument("--stdlib-n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    check_n = 1000
    a = [int(x) for x in kernel_codes(KEY, 0, check_n)]
    b = pyotp_codes(KEY, 0, check_n)
    c = stdlib_codes(KEY, 0, check_n)
    if not (a == b == c):
        bad = next(i for i in range(check_n) if not (a[i] == b[i] == c[i]))
        print(f"MISMATCH at counter {bad}: kernel={a[bad]} pyotp={b[bad]} stdlib={c[bad]}")
        return 1
    print(f"first {check_n} codes agree (kernel, pyotp, stdlib)")

    path = ffi.string(lib.fc_path_name(lib.fc_current_path())).decode()
    rows = [
        (f"C kernel fc_generate [{path}]", args.kernel_n, time_kernel(args.kernel_n, args.repeats)),
        ("pyotp HOTP.at", args.pyotp_n, time_python(pyotp_codes, args.pyotp_n)),
        ("stdlib hashlib state copies", args.stdlib_n, time_python(stdlib_codes, args.stdlib_n)),
    ]
    base = rows[1][2]
    print(f"\nHOTP-SHA1, {DIGITS} digits, one core")
    print(f"{'implementation':<36} {'codes':>10} {'codes/s':>14} {'x pyotp':>9}")
    for name, n, rate in rows:
        print(f"{name:<36} {n:>10,} {rate:>14,.0f} {rate / base:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
