"""The implementations ``python -m bench`` compares vtoken with: pyotp, stdlib hmac, oathtool.

Every implementation offers the same small interface on a prepared key
(:class:`Prepared`): ``generate`` codes for a counter range, ``find`` every
counter of a window whose code equals a given one (whole window, no early
exit), ``find_pair`` two consecutive codes, and ``verify`` a code within ±1
step. Codes are integers (the value of the digits) in ``generate``, strings as
typed everywhere else.

* **pyotp**: ``HOTP.at`` / ``HOTP.verify`` / ``TOTP.verify`` as an application
  would call them (a full ``hmac.new`` per code).
* **stdlib hmac, state copies**: the fastest pure-Python way, hashlib inner and
  outer HMAC states prepared once and ``.copy()``-ed per code (two
  compressions per code, like vtoken's kernel).
* **oathtool** (OATH Toolkit, liboath), when installed: one process computes or
  validates a whole counter range (``-w``); its start-up time, measured with a
  one-code run, is subtracted.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Sequence

import pyotp

PERIOD = 30

#: RFC 4226 Appendix D: the key and the 6-digit HOTP codes for counters 0..9.
RFC4226_KEY = b"12345678901234567890"
RFC4226_CODES = (755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489)
#: RFC 6238 Appendix B: keys per algorithm, and (Unix time, 8-digit TOTP) with T0 = 0, X = 30.
RFC6238_KEYS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890" * 6 + b"1234",
}
RFC6238_VECTORS = {
    "sha1": ((59, 94287082), (1111111109, 7081804), (1234567890, 89005924), (2000000000, 69279037)),
    "sha256": ((59, 46119246), (1111111109, 68084774), (1234567890, 91819424), (2000000000, 90698825)),
    "sha512": ((59, 90693936), (1111111109, 25091201), (1234567890, 93441116), (2000000000, 38618901)),
}

_COUNTER = struct.Struct(">Q")


def code_text(value: int, digits: int) -> str:
    return str(value).zfill(digits)


class Prepared:
    """A key ready for one implementation (see the module docstring for the methods)."""

    digits: int

    def generate(self, counter0: int, count: int) -> Sequence[int]:
        raise NotImplementedError

    def find(self, counter0: int, count: int, code: str) -> tuple[int, ...]:
        raise NotImplementedError

    def find_pair(self, counter0: int, count: int, code1: str, code2: str) -> tuple[int, ...]:
        raise NotImplementedError

    def verify(self, step: int, code: str) -> bool:
        """Is ``code`` the code of ``step - 1``, ``step`` or ``step + 1``?"""
        raise NotImplementedError


class Implementation:
    """One implementation under test. ``status`` is ``ok`` or why it cannot run here."""

    name: str
    family: str = "peer"
    status: str = "ok"
    #: Timed as a separate process (start-up subtracted) rather than by calling it in this one.
    subprocess: bool = False

    def prepare(self, key: bytes, algorithm: str = "sha1", digits: int = 6) -> Prepared:
        raise NotImplementedError

    def activate(self) -> None:
        """Called before this implementation is checked or timed (vtoken: select its CPU path)."""

    def deactivate(self) -> None:
        """Undo :meth:`activate`."""


# --- pyotp -------------------------------------------------------------------------------------------


class _PyotpPrepared(Prepared):
    def __init__(self, key: bytes, algorithm: str, digits: int) -> None:
        secret = base64.b32encode(key).decode("ascii")
        digest = getattr(hashlib, algorithm)
        self.digits = digits
        self.hotp = pyotp.HOTP(secret, digits=digits, digest=digest)
        self.totp = pyotp.TOTP(secret, digits=digits, digest=digest, interval=PERIOD)

    def generate(self, counter0: int, count: int) -> list[int]:
        at = self.hotp.at
        return [int(at(c)) for c in range(counter0, counter0 + count)]

    def find(self, counter0: int, count: int, code: str) -> tuple[int, ...]:
        verify = self.hotp.verify
        return tuple(c for c in range(counter0, counter0 + count) if verify(code, c))

    def find_pair(self, counter0: int, count: int, code1: str, code2: str) -> tuple[int, ...]:
        at = self.hotp.at
        codes = [at(c) for c in range(counter0, counter0 + count + 1)]
        return tuple(counter0 + i for i in range(count) if codes[i] == code1 and codes[i + 1] == code2)

    def verify(self, step: int, code: str) -> bool:
        return self.totp.verify(code, for_time=step * PERIOD, valid_window=1)


class Pyotp(Implementation):
    name = "pyotp"

    def prepare(self, key: bytes, algorithm: str = "sha1", digits: int = 6) -> Prepared:
        return _PyotpPrepared(key, algorithm, digits)


# --- stdlib hmac with state copies --------------------------------------------------------------------


class _StdlibPrepared(Prepared):
    def __init__(self, key: bytes, algorithm: str, digits: int) -> None:
        proto = hashlib.new(algorithm)
        block = proto.block_size
        if len(key) > block:
            key = hashlib.new(algorithm, key).digest()
        key = key.ljust(block, b"\0")
        self.inner = hashlib.new(algorithm, bytes(b ^ 0x36 for b in key))
        self.outer = hashlib.new(algorithm, bytes(b ^ 0x5C for b in key))
        self.digits = digits
        self.modulus = 10**digits

    def code(self, counter: int) -> int:
        inner = self.inner.copy()
        inner.update(_COUNTER.pack(counter))
        outer = self.outer.copy()
        outer.update(inner.digest())
        mac = outer.digest()
        offset = mac[-1] & 15
        return (int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF) % self.modulus

    def generate(self, counter0: int, count: int) -> list[int]:
        # The loop body is inlined: this is the fastest pure-Python formulation.
        inner0, outer0, pack, modulus = self.inner, self.outer, _COUNTER.pack, self.modulus
        out = []
        append = out.append
        for c in range(counter0, counter0 + count):
            inner = inner0.copy()
            inner.update(pack(c))
            outer = outer0.copy()
            outer.update(inner.digest())
            mac = outer.digest()
            offset = mac[-1] & 15
            append((int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF) % modulus)
        return out

    def find(self, counter0: int, count: int, code: str) -> tuple[int, ...]:
        value = int(code)
        codes = self.generate(counter0, count)
        return tuple(counter0 + i for i, v in enumerate(codes) if v == value)

    def find_pair(self, counter0: int, count: int, code1: str, code2: str) -> tuple[int, ...]:
        value1, value2 = int(code1), int(code2)
        codes = self.generate(counter0, count + 1)
        return tuple(counter0 + i for i in range(count) if codes[i] == value1 and codes[i + 1] == value2)

    def verify(self, step: int, code: str) -> bool:
        value = int(code)
        code_of = self.code
        return value in (code_of(step - 1), code_of(step), code_of(step + 1))


class StdlibHmac(Implementation):
    name = "stdlib hmac, state copies"

    def prepare(self, key: bytes, algorithm: str = "sha1", digits: int = 6) -> Prepared:
        return _StdlibPrepared(key, algorithm, digits)


# --- oathtool -------------------------------------------------------------------------------------------


class _OathtoolPrepared(Prepared):
    """Each call runs one oathtool process over the whole counter range."""

    def __init__(self, exe: str, key: bytes, algorithm: str, digits: int) -> None:
        self.exe = exe
        self.key_hex = key.hex()
        self.algorithm = algorithm
        self.digits = digits

    def _range_args(self, counter0: int, count: int) -> list[str]:
        """Arguments selecting counters ``counter0 .. counter0 + count - 1``."""
        window = ["-w", str(count - 1)]
        if self.algorithm == "sha1":
            return [self.exe, "--hotp", "-c", str(counter0), "-d", str(self.digits), *window, self.key_hex]
        # oathtool's HOTP mode is SHA-1 only; TOTP at time counter·30 s (T0 = 0) is HOTP(counter).
        return [self.exe, f"--totp={self.algorithm}", "-s", f"{PERIOD}s", "-N", f"@{counter0 * PERIOD}",
                "-d", str(self.digits), *window, self.key_hex]

    def generate_args(self, counter0: int, count: int) -> list[str]:
        return self._range_args(counter0, count)

    def find_args(self, counter0: int, count: int, code: str) -> list[str]:
        if self.algorithm != "sha1":
            raise NotImplementedError("oathtool validation benchmarks use HOTP (SHA-1)")
        return [*self._range_args(counter0, count), code]

    def generate(self, counter0: int, count: int) -> list[int]:
        result = subprocess.run(self.generate_args(counter0, count), capture_output=True, check=True)
        return [int(line) for line in result.stdout.split()]

    def find(self, counter0: int, count: int, code: str) -> tuple[int, ...]:
        # oathtool reports the first match only; the benchmark scans windows without one.
        result = subprocess.run(self.find_args(counter0, count, code), capture_output=True)
        if result.returncode == 0:  # it prints the match's position in the window
            return (counter0 + int(result.stdout.split()[0]),)
        if result.returncode == 2 and b"not found" in result.stderr:
            return ()
        raise RuntimeError(f"oathtool failed ({result.returncode}): {result.stderr.decode(errors='replace')}")


class Oathtool(Implementation):
    name = "oathtool"
    subprocess = True

    def __init__(self, exe: str | None = None) -> None:
        self.exe = exe or os.environ.get("VTOKEN_BENCH_OATHTOOL") or shutil.which("oathtool")
        self.status = "ok" if self.exe else "not installed"
        self.version = ""
        if self.exe:
            try:
                out = subprocess.run([self.exe, "--version"], capture_output=True, text=True, timeout=10).stdout
                self.version = out.splitlines()[0] if out else ""
            except (OSError, subprocess.SubprocessError) as exc:
                self.status = f"not usable ({exc})"

    def prepare(self, key: bytes, algorithm: str = "sha1", digits: int = 6) -> Prepared:
        assert self.exe is not None
        return _OathtoolPrepared(self.exe, key, algorithm, digits)


def run_seconds(argv: Sequence[str]) -> float:
    """Wall time of one process run to completion (output discarded)."""
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def process_samples(work_argv: Sequence[str], base_argv: Sequence[str], units: int, repeats: int) -> tuple[list[float], float]:
    """Throughputs of ``repeats`` runs of ``work_argv``, less the start-up time of ``base_argv``.

    The start-up time is the median of as many one-code runs, interleaved with
    the work runs. Returns the samples and that start-up time. A run that is
    not measurably longer than start-up gives no sample.
    """
    base = []
    work = []
    run_seconds(work_argv)  # warm the page cache
    for _ in range(repeats):
        base.append(run_seconds(base_argv))
        work.append(run_seconds(work_argv))
        base.append(run_seconds(base_argv))
    startup = sorted(base)[len(base) // 2]
    samples = [units / (w - startup) for w in work if w - startup > 0.05 * startup]
    return samples, startup


def all_peers() -> list[Implementation]:
    """pyotp, stdlib hmac, oathtool (``status`` says when oathtool is missing)."""
    return [Pyotp(), StdlibHmac(), Oathtool()]
