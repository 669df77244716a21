"""What both check-kernel backends share: the interface and argument checks.

The C backend (:mod:`validator._ckernel`) and the pure-Python twin
(:mod:`validator._pykernel`) both implement :class:`PreparedKey`; every
argument is checked here, once, so both refuse the same inputs with the same
errors and give the same answers.
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Sequence

import numpy as np

from vtoken.errors import InvalidArrayError, InvalidCounterError, InvalidInputError
from vtoken.oath import MAX_COUNTER, Algorithm, check_counter, check_digits, check_key, parse_algorithm, parse_code

#: Matches reported by a window scan are returned in full up to this many
#: before the scan is repeated with room for all of them.
INITIAL_MATCH_CAPACITY = 16
#: Most counters one :meth:`PreparedKey.find` or :meth:`~PreparedKey.find_pair` call scans. The C
#: kernel cannot be interrupted while it scans, so a call must end soon: 2^22 codes take about 0.1 s
#: there (45 M codes/s, AVX-512) and 6 s in the Python twin. The validator's widest window, ±1 day of
#: 1 s steps, is 172,802 counters; a caller with a wider range scans it in pieces.
MAX_SCAN_COUNT = 1 << 22


def check_scan_count(count: int) -> None:
    """Refuse a window scan longer than :data:`MAX_SCAN_COUNT` counters (``count`` already validated)."""
    if count > MAX_SCAN_COUNT:
        raise InvalidCounterError(
            f"a scan covers at most {MAX_SCAN_COUNT} counters per call, not {count}; scan a wide range in pieces"
        )


def check_count(count: int) -> int:
    """Validate the length of a counter range."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise InvalidCounterError(f"count must be an integer, not {type(count).__name__}")
    if count < 0:
        raise InvalidCounterError(f"count must not be negative, got {count}")
    return int(count)


def check_range(counter0: int, count: int, extra: int = 0) -> tuple[int, int]:
    """Validate a counter range ``counter0 .. counter0 + count - 1 + extra``."""
    counter0 = check_counter(counter0)
    count = check_count(count)
    if count and counter0 + count - 1 + extra > MAX_COUNTER:
        raise InvalidCounterError(
            f"counter range starting at {counter0} with {count} counters runs past 2^64-1"
        )
    return counter0, count


def _plain_range(counter0: object, count: object, extra: int) -> bool:
    """True when ``check_range(counter0, count, extra)`` would accept the range unchanged (fast path).

    Plain ``int`` arguments only; anything else (numpy integers, bools, out of
    range values) goes through the full checks and their error messages.
    """
    return (
        type(counter0) is int
        and type(count) is int
        and 0 <= counter0 <= MAX_COUNTER
        and 0 <= count
        and (not count or counter0 + count - 1 + extra <= MAX_COUNTER)
    )


def _plain_code(code: object, digits: int) -> int | None:
    """The value of a well-formed code, as ``parse_code`` would give it; None: let parse_code decide."""
    if type(code) is str:
        if len(code) == digits and code.isascii() and code.isdigit():
            return int(code)
    elif type(code) is int and 0 <= code < 10**digits:
        return code
    return None


def check_out_array(out: np.ndarray | None, count: int) -> np.ndarray:
    """Return ``out`` if it can hold ``count`` codes, else raise; allocate if None.

    A wrong dtype is refused rather than reinterpreted, and so is an array that
    is not C-contiguous, not writeable, not one-dimensional, or too short.
    """
    if out is None:
        return np.empty(count, dtype=np.uint32)
    if not isinstance(out, np.ndarray):
        raise InvalidArrayError(f"out must be a numpy array, not {type(out).__name__}")
    if out.dtype != np.dtype(np.uint32):
        raise InvalidArrayError(f"out must have dtype uint32, not {out.dtype}")
    if out.ndim != 1:
        raise InvalidArrayError(f"out must be one-dimensional, not {out.ndim}-dimensional")
    if not out.flags.c_contiguous:
        raise InvalidArrayError("out must be C-contiguous (use np.ascontiguousarray)")
    if not out.flags.writeable:
        raise InvalidArrayError("out must be writeable")
    if out.shape[0] < count:
        raise InvalidArrayError(f"out holds {out.shape[0]} codes, {count} requested")
    return out


class PreparedKey(abc.ABC):
    """A key whose HMAC inner and outer states were computed once.

    Build one with :meth:`Backend.prepare`. All methods check their arguments
    and raise :class:`~vtoken.errors.InvalidInputError` subclasses.
    """

    algorithm: Algorithm
    digits: int

    def generate(self, counter0: int, count: int, out: np.ndarray | None = None) -> np.ndarray:
        """Codes for counters ``counter0 .. counter0+count-1`` as a ``uint32`` array."""
        if not _plain_range(counter0, count, 0):
            counter0, count = check_range(counter0, count)
        array = check_out_array(out, count)
        if count:
            self._generate(counter0, count, array)
        return array[:count] if out is None else array

    def find(self, counter0: int, count: int, code: str | int) -> tuple[int, ...]:
        """Every counter in the range whose code equals ``code`` (whole window scanned; at most
        :data:`MAX_SCAN_COUNT` counters)."""
        if not _plain_range(counter0, count, 0):
            counter0, count = check_range(counter0, count)
        if count > MAX_SCAN_COUNT:
            check_scan_count(count)
        value = _plain_code(code, self.digits)
        if value is None:
            value = parse_code(code, self.digits)
        if not count:
            return ()
        return self._find(counter0, count, value)

    def find_pair(self, counter0: int, count: int, code1: str | int, code2: str | int) -> tuple[int, ...]:
        """Every ``c`` in the range with code(c) == code1 and code(c+1) == code2 (at most :data:`MAX_SCAN_COUNT`)."""
        if not _plain_range(counter0, count, 1):
            counter0, count = check_range(counter0, count, extra=1)
        if count > MAX_SCAN_COUNT:
            check_scan_count(count)
        value1 = _plain_code(code1, self.digits)
        if value1 is None:
            value1 = parse_code(code1, self.digits)
        value2 = _plain_code(code2, self.digits)
        if value2 is None:
            value2 = parse_code(code2, self.digits)
        if not count:
            return ()
        return self._find_pair(counter0, count, value1, value2)

    @abc.abstractmethod
    def _generate(self, counter0: int, count: int, out: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _find(self, counter0: int, count: int, code: int) -> tuple[int, ...]: ...

    @abc.abstractmethod
    def _find_pair(self, counter0: int, count: int, code1: int, code2: int) -> tuple[int, ...]: ...

    def __repr__(self) -> str:
        # Never show key material.
        return f"<{type(self).__name__} {self.algorithm.value} {self.digits} digits>"


class Backend(abc.ABC):
    """A check-kernel implementation: ``c`` or ``python``."""

    name: str

    def prepare(self, key: bytes, *, algorithm: str | Algorithm = Algorithm.SHA1, digits: int = 6) -> PreparedKey:
        """Compute the HMAC midstates of ``key`` once, for many codes."""
        return self._prepare(check_key(key), parse_algorithm(algorithm), check_digits(digits))

    @abc.abstractmethod
    def _prepare(self, key: bytes, algorithm: Algorithm, digits: int) -> PreparedKey: ...

    def generate_multi(
        self, keys: Sequence[PreparedKey], counters: Sequence[int] | np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """One code per key, for a fleet: ``out[i]`` is the code of ``keys[i]`` at ``counters[i]``.

        Keys may mix algorithms and digit counts; they must come from this backend's ``prepare``.
        """
        keys = list(keys)
        values = [check_counter(int(c)) for c in counters]
        if len(values) != len(keys):
            raise InvalidInputError(f"{len(keys)} keys but {len(values)} counters")
        foreign = [k for k in keys if not isinstance(k, self._key_type)]
        if foreign:
            raise InvalidInputError(f"keys must be prepared by the {self.name} backend")
        array = check_out_array(out, len(keys))
        if keys:
            self._generate_multi(keys, values, array)
        return array[: len(keys)] if out is None else array

    _key_type: type[PreparedKey] = PreparedKey

    def _generate_multi(self, keys: list[PreparedKey], counters: list[int], out: np.ndarray) -> None:
        for i, (key, counter) in enumerate(zip(keys, counters)):
            key._generate(counter, 1, out[i : i + 1])

    @property
    @abc.abstractmethod
    def cpu_path(self) -> str:
        """The CPU code path in use (``portable``, ``sha-ni``, ``avx512``, or ``python``)."""

    def available_paths(self) -> tuple[str, ...]:
        """Every CPU path this backend can use on this machine."""
        return (self.cpu_path,)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.cpu_path})>"
