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

__all__ = ["BACKEND_ENV", "Backend", "PreparedKey", "c_backend", "get_backend", "python_backend"]

_python = PythonBackend()


def python_backend() -> Backend:
    """The pure-Python twin (always available)."""
    return _python


def c_backend() -> Backend:
    """The compiled backend; raises :class:`BackendError` when it is not built."""
    try:
        from validator._ckernel import CBackend
    except ImportError as exc:
        raise BackendError(
            "the compiled check kernel (validator._fastcheck_cffi) is not installed; "
            "reinstall with a C compiler available, or set VTOKEN_BACKEND=python"
        ) from exc
    return CBackend()


def get_backend(name: str | None = None, environ: Mapping[str, str] | None = None) -> Backend:
    """The backend named by ``name``, else by ``$VTOKEN_BACKEND``, else ``auto``."""
    if name is None:
        name = (environ if environ is not None else os.environ).get(BACKEND_ENV, "auto")
    name = name.strip().lower()
    if name == "python":
        return python_backend()
    if name == "c":
        return c_backend()
    if name == "auto":
        try:
            return c_backend()
        except BackendError:
            return python_backend()
    raise BackendError(f"unknown backend {name!r} in {BACKEND_ENV}; choose one of {', '.join(BACKEND_CHOICES)}")
