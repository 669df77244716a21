"""Choose the check-kernel backend: compiled C, or its pure-Python twin.

``VTOKEN_BACKEND`` selects it: ``auto`` (default; C when the compiled module is
installed, else Python), ``c`` (fail if the compiled module is missing) or
``python``. Both backends give identical answers.

>>> key = get_backend().prepare(b"12345678901234567890")
>>> key.find(0, 10, "287082")
(1,)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from validator._kernel_api import Backend, PreparedKey
from validator._pykernel import PythonBackend
from vtoken.errors import BackendError

BACKEND_ENV = "VTOKEN_BACKEND"
BACKEND_CHOICES = ("auto", "c", "python")
#: Force the compiled kernel's CPU path: auto (default), portable, sha-ni or avx512.
CPU_PATH_ENV = "VTOKEN_CPU_PATH"

__all__ = ["BACKEND_ENV", "CPU_PATH_ENV", "Backend", "PreparedKey", "c_backend", "get_backend", "python_backend"]

_python = PythonBackend()


def python_backend() -> Backend:
    """The pure-Python twin (always available)."""
    return _python


def c_backend(environ: Mapping[str, str] | None = None) -> Backend:
    """The compiled backend; raises :class:`BackendError` when it is not built.

    ``$VTOKEN_CPU_PATH`` forces its CPU path (``portable``, ``sha-ni``, ``avx512``).
    """
    try:
        from validator._ckernel import CBackend
    except ImportError as exc:
        raise BackendError(
            "the compiled check kernel (validator._fastcheck_cffi) is not installed; "
            "reinstall with a C compiler available, or set VTOKEN_BACKEND=python"
        ) from exc
    backend = CBackend()
    path = (environ if environ is not None else os.environ).get(CPU_PATH_ENV)
    if path:
        backend.set_path(path.strip().lower())
    return backend


def get_backend(name: str | None = None, environ: Mapping[str, str] | None = None) -> Backend:
    """The backend named by ``name``, else by ``$VTOKEN_BACKEND``, else ``auto``."""
    if name is None:
        name = (environ if environ is not None else os.environ).get(BACKEND_ENV, "auto")
    name = name.strip().lower()
    if name == "python":
        return python_backend()
    if name == "c":
        return c_backend(environ)
    if name == "auto":
        try:
            from validator import _ckernel  # noqa: F401  (is the compiled module there at all?)
        except ImportError:
            return python_backend()
        return c_backend(environ)
    raise BackendError(f"unknown backend {name!r} in {BACKEND_ENV}; choose one of {', '.join(BACKEND_CHOICES)}")
