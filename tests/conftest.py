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


# --- PostgreSQL -----------------------------------------------------------------------------------

REQUIRE_PG = os.environ.get("VTOKEN_REQUIRE_PG") == "1"
#: The server tests use (a maintenance database on it; each run makes and drops its own database).
PG_DSN = os.environ.get("VTOKEN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_url() -> object:
    """A throwaway PostgreSQL database for this test run: its URL; dropped at the end.

    Skipped with the reason where no server is reachable, except under
    ``VTOKEN_REQUIRE_PG=1`` (``.ci/run`` sets it), where that fails.
    """
    import secrets

    try:
        import psycopg
        from psycopg import sql

        admin = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except Exception as exc:  # no driver or no server
        if REQUIRE_PG:
            pytest.fail(f"VTOKEN_REQUIRE_PG=1 but PostgreSQL is not reachable at {PG_DSN}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_DSN} (set VTOKEN_TEST_PG_DSN): {exc}")
    name = f"vtoken_test_{os.getpid()}_{secrets.token_hex(4)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_dbname(PG_DSN, name)
    finally:  # a new connection: a test may have restarted the server meanwhile
        with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=10) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _with_dbname(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def truncate_pg(url: str) -> None:
    """Empty every vtoken table of the test database (a fresh store for the next test)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
