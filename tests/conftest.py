"""Shared fixtures: both kernel backends, and the rule for when C may be missing.

The compiled kernel may be absent on a machine without a C compiler. Tests
that need it are skipped there, but never when ``VTOKEN_REQUIRE_C=1`` (CI sets
it), so CI always runs every check.
"""

from __future__ import annotations

import os

import pytest

from validator.kernel import Backend, c_backend, python_backend
from vtoken.errors import BackendError

REQUIRE_C = os.environ.get("VTOKEN_REQUIRE_C") == "1"


def load_c_backend() -> Backend:
    """The C backend, or a skip (a failure when VTOKEN_REQUIRE_C=1)."""
    try:
        return c_backend()
    except BackendError as exc:
        if REQUIRE_C:
            pytest.fail(f"VTOKEN_REQUIRE_C=1 but the C kernel is missing: {exc}")
        pytest.skip(f"C kernel not built: {exc}")


@pytest.fixture(params=["python", "c"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each kernel backend in turn."""
    if request.param == "python":
        return python_backend()
    return load_c_backend()


@pytest.fixture(scope="session")
def cbackend() -> Backend:
    """The compiled backend."""
    return load_c_backend()


@pytest.fixture
def pybackend() -> Backend:
    """The pure-Python twin."""
    return python_backend()
