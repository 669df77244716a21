"""The pure-Python twin of the C check kernel.

Same interface, same answers, same refusals as :mod:`validator._ckernel`; used
when the compiled module is missing (no C compiler at install time) or when
``VTOKEN_BACKEND=python`` asks for it. Like the C kernel, it computes the HMAC
inner and outer states once per key and scans whole windows without an early
exit.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from validator._kernel_api import Backend, PreparedKey
from vtoken.oath import Algorithm, truncate

_IPAD = 0x36
_OPAD = 0x5C
_COUNTER = struct.Struct(">Q")


class PyPreparedKey(PreparedKey):
    """HMAC midstates held as hashlib objects, copied per code."""

    def __init__(self, key: bytes, algorithm: Algorithm, digits: int) -> None:
        self.algorithm = algorithm
        self.digits = digits
        block = algorithm.block_size
        if len(key) > block:
            key = hashlib.new(algorithm.value, key).digest()
        key = key.ljust(block, b"\0")
        self._inner = hashlib.new(algorithm.value, bytes(b ^ _IPAD for b in key))
        self._outer = hashlib.new(algorithm.value, bytes(b ^ _OPAD for b in key))

    def code(self, counter: int) -> int:
        """The code for one counter (no argument checks; internal use)."""
        inner = self._inner.copy()
        inner.update(_COUNTER.pack(counter))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return truncate(outer.digest(), self.digits)

    def _generate(self, counter0: int, count: int, out: np.ndarray) -> None:
        code = self.code
        out[:count] = [code(counter0 + i) for i in range(count)]

    def _find(self, counter0: int, count: int, code: int) -> tuple[int, ...]:
        matches = []
        for c in range(counter0, counter0 + count):
            if self.code(c) == code:
                matches.append(c)
        return tuple(matches)

    def _find_pair(self, counter0: int, count: int, code1: int, code2: int) -> tuple[int, ...]:
        matches = []
        previous = self.code(counter0)
        for c in range(counter0, counter0 + count):
            following = self.code(c + 1)
            if previous == code1 and following == code2:
                matches.append(c)
            previous = following
        return tuple(matches)


class PythonBackend(Backend):
    """The pure-Python backend."""

    name = "python"
    _key_type = PyPreparedKey

    def _prepare(self, key: bytes, algorithm: Algorithm, digits: int) -> PreparedKey:
        return PyPreparedKey(key, algorithm, digits)

    @property
    def cpu_path(self) -> str:
        return "python"
