"""``python -m bench`` in its tiny smoke mode: every row, the JSON, and correctness before speed.

The real benchmarks are not part of this run (``python -m bench``, ``pytest bench --benchmark-only``);
this only checks that the harness works and checks the implementations it times.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import harness, operations, peers
from bench.harness import Row
from bench.operations import BenchmarkError, Runner
from bench.peers import RFC4226_CODES, RFC4226_KEY, Implementation, Prepared


def implementations() -> list[Implementation]:
    return [*operations.vtoken_implementations(), *peers.all_peers()]


def expected_pairs() -> set[tuple[str, str]]:
    """Every (operation, implementation) the table must show."""
    names = [i.name for i in implementations()]
    ops = [f"generate 1M codes {a.upper().replace('SHA', 'SHA-')}" for a in operations.ALGORITHMS]
    ops += [f"scan ±{h} ({2 * h + 1} counters), no match" for h in operations.SCAN_HALF_WINDOWS]
    ops += [f"resync ±1 day ({2 * operations.RESYNC_HALF_WINDOW + 1} pairs)", "verify ±1 step, Python API (decision)"]
    pairs = {(op, name) for op in ops for name in names}
    _, label = operations.default_backend_label()
    pairs |= {
        ("verify ±1 step, Validator.check, memory store", label),
        ("verify ±1 step, Validator.check, memory store", "vtoken Python twin"),
        ("verify, durable end-to-end (SQLite, fsync)", label),
        (operations.DURABLE_OPERATION, operations.GROUP_COMMIT_IMPL),
        *((operations.HTTP_OPERATION, operations.http_label(c)) for c in operations.HTTP_CONCURRENCY),
        ("PRESS round trip over a pty", "vtoken"),
        (operations.FLEET_OPERATION, "vtoken"),
    }
    return pairs


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list]:
    path = tmp_path_factory.mktemp("bench") / "results.json"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench_main.main(["--smoke", "--quiet", "--json", str(path)]) == 0
    return out.getvalue(), json.loads(Path(path).read_text(encoding="utf-8"))


def test_table_has_every_row(smoke: tuple[str, list]) -> None:
    table, _ = smoke
    lines = [line for line in table.splitlines() if line.startswith("| ") and "implementation" not in line]
    shown = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]) for line in lines}
    assert shown == expected_pairs()
    for column in harness.COLUMNS:
        assert column in table.splitlines()[0]


def test_json_rows(smoke: tuple[str, list]) -> None:
    _, rows = smoke
    assert isinstance(rows, list)  # the format: a list of rows
    assert {(r["operation"], r["implementation"]) for r in rows} == expected_pairs()
    for row in rows:
        assert {"operation", "implementation", "per_s"} <= row.keys()
        if row["status"] == "ok":
            assert row["per_s"] > 0 and row["per_s_min"] <= row["per_s"] <= row["per_s_max"]
        else:
            assert row["per_s"] is None
    # Every vtoken kernel row of a comparison has its ratios.
    generate = [r for r in rows if r["operation"] == "generate 1M codes SHA-1" and r["status"] == "ok"]
    assert all(r["ratio_pyotp"] and r["ratio_best_peer"] for r in generate)
    assert next(r for r in generate if r["implementation"] == "pyotp")["ratio_pyotp"] == pytest.approx(1.0)
    assert all(r["run"]["mode"] == "smoke" for r in rows)


def test_every_implementation_agrees_on_the_same_work() -> None:
    reference = None
    for impl in implementations():
        if impl.status != "ok":
            continue
        impl.activate()
        try:
            assert list(impl.prepare(RFC4226_KEY, "sha1", 6).generate(0, 10)) == list(RFC4226_CODES), impl.name
            for algorithm in operations.ALGORITHMS:
                operations.check_vectors(impl, algorithm)
            sample = list(impl.prepare(RFC4226_KEY, "sha256", 6).generate(operations.CENTRE_STEP, 40))
        finally:
            impl.deactivate()
        reference = reference or sample
        assert sample == reference, impl.name


class _Wrong(Implementation):
    """An implementation off by one counter: the harness must refuse to time it."""

    name = "wrong"

    def prepare(self, key: bytes, algorithm: str = "sha1", digits: int = 6) -> Prepared:
        real = peers.StdlibHmac().prepare(key, algorithm, digits)

        class Shifted(Prepared):
            def generate(self, counter0: int, count: int) -> list[int]:
                return real.generate(counter0 + 1, count)

        return Shifted()


def test_a_wrong_implementation_is_not_timed() -> None:
    runner = Runner(operations.SMOKE, progress=False)
    with pytest.raises(BenchmarkError, match="wrong answer"):
        runner.generate("generate", _Wrong(), "sha1")


def test_ratios_and_formatting() -> None:
    rows = [
        Row("op", "vtoken C x", "vtoken", "codes", 10, samples=[100.0, 120.0, 110.0]),
        Row("op", "pyotp", "peer", "codes", 10, samples=[10.0]),
        Row("op", "stdlib hmac, state copies", "peer", "codes", 10, samples=[20.0]),
        Row("op", "oathtool", "peer", "codes", status="not installed"),
    ]
    harness.add_ratios(rows)
    assert rows[0].per_s == 110.0 and rows[0].ratio_pyotp == 11.0 and rows[0].ratio_best_peer == 5.5
    text = harness.format_table(rows)
    assert "not installed" in text and "11.0×" in text and "5.50×" in text
    assert harness.si(12_345_678) == "12.3 M" and harness.duration(2.5e-6) == "2.50 µs"


def test_oathtool_missing_is_marked_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VTOKEN_BENCH_OATHTOOL", raising=False)
    monkeypatch.setattr(peers.shutil, "which", lambda name: None)
    rows = Runner(operations.SMOKE, progress=False, only="generate 1M codes SHA-1").run()
    (oath,) = [r for r in rows if r.implementation == "oathtool"]
    assert oath.status == "not installed" and oath.per_s is None
    assert "| oathtool" in harness.format_table(rows) and "not installed" in harness.format_table(rows)
    assert {r.implementation for r in rows if r.ok} >= {"pyotp", "stdlib hmac, state copies", "vtoken Python twin"}
