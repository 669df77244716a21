"""Shared fixtures: both kernel backends, and the rule for when C may be missing.

The compiled kernel may be absent on a machine without a C compiler. Tests
that need it are skipped there, but never when ``VTOKEN_REQUIRE_C=1`` (CI sets
it), so CI always runs every check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from validator.kernel import Backend, c_backend, python_backend
from validator.memstore import MemoryStore
from validator.store import SQLiteStore, TokenStore
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


# --- every store, for the store contract suites ---------------------------------------------------

#: The stores every contract test runs on.
STORES = ("sqlite", "memory", "postgres")


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], TokenStore]]:
    """Open the store under test; calling it again opens the same data again (memory: the same object)."""
    opened: list[TokenStore] = []
    memory: list[TokenStore] = []
    url = ""
    if request.param == "postgres":
        from validator.pgstore import PostgresStore

        url = request.getfixturevalue("pg_url")
        PostgresStore(url).close()  # the schema exists before the tables are emptied
        truncate_pg(url)

    def make() -> TokenStore:
        if request.param == "memory":
            if not memory:
                memory.append(MemoryStore())
            return memory[0]
        if request.param == "sqlite":
            store: TokenStore = SQLiteStore(tmp_path / "v.db")
        else:
            from validator.pgstore import PostgresStore

            store = PostgresStore(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


