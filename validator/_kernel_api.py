"""What both check-kernel backends share: the interface and argument checks.

The C backend (:mod:`validator._ckernel`) and the pure-Python twin
(:mod:`validator._pykernel`) both implement :class:`PreparedKey`; every
argument is checked here, once, so both refuse the same inputs with the same
errors and give the same answers.
"""

from __future__ import annotations

import abc
import numbers

import numpy as np

from vtoken.errors import InvalidArrayError, InvalidCounterError
from vtoken.oath import MAX_COUNTER, Algorithm, check_counter, check_digits, check_key, parse_algorithm, parse_code

#: Matches reported by a window scan are returned in full up to this many
#: before the scan is repeated with room for all of them.
INITIAL_MATCH_CAPACITY = 16


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
        counter0, count = check_range(counter0, count)
        array = check_out_array(out, count)
        if count:
            self._generate(counter0, count, array)
        return array[:count] if out is None else array

    def find(self, counter0: int, count: int, code: str | int) -> tuple[int, ...]:
        """Every counter in the range whose code equals ``code`` (whole window scanned)."""
        counter0, count = check_range(counter0, count)
        value = parse_code(code, self.digits)
        if not count:
            return ()
        return self._find(counter0, count, value)

    def find_pair(self, counter0: int, count: int, code1: str | int, code2: str | int) -> tuple[int, ...]:
        """Every ``c`` in the range with code(c) == code1 and code(c+1) == code2."""
        counter0, count = check_range(counter0, count, extra=1)
        value1 = parse_code(code1, self.digits)
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

    @property
    @abc.abstractmethod
    def cpu_path(self) -> str:
        """The CPU code path in use (``portable``, ``sha-ni``, ``avx512``, or ``python``)."""

    def available_paths(self) -> tuple[str, ...]:
        """Every CPU path this backend can use on this machine."""
        return (self.cpu_path,)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.cpu_path})>"
