"""Fixtures for the pytest-benchmark suites: ``pytest bench --benchmark-only`` from the repository root.

These files are not collected by the default ``pytest`` run (``testpaths = ["tests"]``
in pyproject.toml), so CI stays fast. Every benchmark checks its implementation's
answers on the benchmark's own work before timing it, like ``python -m bench``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench import operations, peers
from bench.peers import Implementation

#: Fleet size of the fleet benchmark (``VTOKEN_BENCH_FLEET`` to change it).
FLEET_TOKENS = int(os.environ.get("VTOKEN_BENCH_FLEET", "100000"))

_IMPLEMENTATIONS: list[Implementation] = [*operations.vtoken_implementations(), *peers.all_peers()]


def _ident(impl: Implementation) -> str:
    return impl.name.replace(" ", "-").replace(",", "")


@pytest.fixture(params=_IMPLEMENTATIONS, ids=_ident)
def impl(request: pytest.FixtureRequest) -> Iterator[Implementation]:
    """Each implementation in turn (vtoken on every CPU path, the twin, pyotp, stdlib hmac, oathtool)."""
    chosen: Implementation = request.param
    if chosen.status != "ok":
        pytest.skip(f"{chosen.name}: {chosen.status}")
    chosen.activate()
    try:
        yield chosen
    finally:
        chosen.deactivate()


@pytest.fixture(params=[i for i in _IMPLEMENTATIONS if i.family == "vtoken"], ids=_ident)
def vtoken_impl(request: pytest.FixtureRequest) -> Iterator[Implementation]:
    """vtoken only: each CPU path of the C kernel, and the Python twin."""
    chosen: Implementation = request.param
    if chosen.status != "ok":
        pytest.skip(f"{chosen.name}: {chosen.status}")
    chosen.activate()
    try:
        yield chosen
    finally:
        chosen.deactivate()


@pytest.fixture(scope="session")
def twin() -> Implementation:
    """The Python twin: the reference every implementation is checked against."""
    return next(i for i in _IMPLEMENTATIONS if i.name == "vtoken Python twin")
