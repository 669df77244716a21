"""The C check kernel (``validator/_fastcheck.c``) behind the backend interface.

Importing this module raises :class:`ImportError` when the compiled module
``validator._fastcheck_cffi`` is missing; :mod:`validator.kernel` then falls
back to the pure-Python twin.
"""

from __future__ import annotations

import numpy as np

from validator._fastcheck_cffi import ffi, lib  # type: ignore[import-not-found]
from validator._kernel_api import INITIAL_MATCH_CAPACITY, Backend, PreparedKey
from vtoken.errors import BackendError, InvalidInputError
from vtoken.oath import Algorithm

_ALG_IDS = {Algorithm.SHA1: lib.FC_SHA1, Algorithm.SHA256: lib.FC_SHA256, Algorithm.SHA512: lib.FC_SHA512}
_PATH_IDS = {"portable": lib.FC_PATH_PORTABLE, "sha-ni": lib.FC_PATH_SHANI, "avx512": lib.FC_PATH_AVX512}
_ALL_PATHS = ("portable", "sha-ni", "avx512")
#: The match buffer's C type, parsed once.
_MATCHES = ffi.typeof("uint64_t[]")


#: No code is ever >= 2^31 (truncation clears the top bit); a typed 10-digit value beyond
#: uint32 is passed as this value, which never matches, so the scan still runs in full.
_NEVER_MATCHES = 0xFFFFFFFF


def _as_c_code(code: int) -> int:
    return code if code <= _NEVER_MATCHES else _NEVER_MATCHES


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise InvalidInputError(f"check kernel refused {what} (error {rc})")
    return rc


class CPreparedKey(PreparedKey):
    """Midstates held in a C ``fc_key`` struct."""

    def __init__(self, key: bytes, algorithm: Algorithm, digits: int) -> None:
        self.algorithm = algorithm
        self.digits = digits
        self._key = ffi.new("fc_key *")
        _check(lib.fc_key_init(self._key, _ALG_IDS[algorithm], key, len(key), digits), "the key")

    def _generate(self, counter0: int, count: int, out: np.ndarray) -> None:
        buf = ffi.cast("uint32_t *", ffi.from_buffer(out))
        _check(lib.fc_generate(self._key, counter0, count, buf), "generate")

    def _scan(self, call, counter0: int, count: int, *codes: int) -> tuple[int, ...]:
        capacity = INITIAL_MATCH_CAPACITY
        while True:
            matches = ffi.new(_MATCHES, capacity)
            total = call(self._key, counter0, count, *codes, matches, capacity)
            if total <= 0:
                return () if total == 0 else _check(total, "the scan")  # _check raises
            if total <= capacity:
                return tuple(matches[0:total])
            capacity = total

    def _find(self, counter0: int, count: int, code: int) -> tuple[int, ...]:
        return self._scan(lib.fc_find, counter0, count, _as_c_code(code))

    def _find_pair(self, counter0: int, count: int, code1: int, code2: int) -> tuple[int, ...]:
        return self._scan(lib.fc_find_pair, counter0, count, _as_c_code(code1), _as_c_code(code2))


class CBackend(Backend):
    """The compiled backend, dispatching to the fastest CPU path."""

    name = "c"
    _key_type = CPreparedKey

    def _generate_multi(self, keys: list[PreparedKey], counters: list[int], out: np.ndarray) -> None:
        key_ptrs = ffi.new("fc_key *[]", [k._key for k in keys])  # type: ignore[attr-defined]
        counter_array = ffi.new("uint64_t[]", counters)
        buf = ffi.cast("uint32_t *", ffi.from_buffer(out))
        _check(lib.fc_generate_multi(key_ptrs, len(keys), counter_array, buf), "the keys")

    def _prepare(self, key: bytes, algorithm: Algorithm, digits: int) -> PreparedKey:
        return CPreparedKey(key, algorithm, digits)

    @property
    def cpu_path(self) -> str:
        return ffi.string(lib.fc_path_name(lib.fc_current_path())).decode("ascii")

    def available_paths(self) -> tuple[str, ...]:
        mask = lib.fc_available_paths()
        return tuple(name for name in _ALL_PATHS if mask & (1 << _PATH_IDS[name]))

    def set_path(self, path: str) -> None:
        """Force a CPU path by name, or ``auto`` to restore the automatic choice."""
        ident = lib.FC_PATH_AUTO if path == "auto" else _PATH_IDS.get(path)
        if ident is None:
            raise BackendError(f"unknown CPU path {path!r}; choose auto or one of {', '.join(_ALL_PATHS)}")
        if lib.fc_set_path(ident) != lib.FC_OK:
            raise BackendError(f"CPU path {path!r} is not available on this machine")
