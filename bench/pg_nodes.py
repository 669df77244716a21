"""1, 2 and 4 validator nodes on one PostgreSQL, beside pgbench's one-row update rate (docs/scaling.md).

    python -m bench.pg_nodes [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--requests 6000]

Each run makes a throwaway database, starts N ``vtoken validator serve`` nodes on free
ports, and drives each with its own ``vtoken loadgen`` (its own 1,000 HOTP tokens, 16
clients, 10 % replays, 5 % random codes), all at once. It prints the summed durable
checks/s, latencies, wrong answers, and where the CPU went (from /proc), then pgbench's
single-row UPDATE rate on the same server at 1, 8 and 32 clients as the ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

VTOKEN = [sys.executable, "-m", "host.cli.main"]
TOKENS_PER_NODE = 1000
CLIENTS_PER_NODE = 16
BATCH_SECRET = "000102030405060708090a0b0c0d0e0f"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _with_db(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def _psql(dsn: str, *sql: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in sql:
            conn.execute(statement)


def _cpu() -> dict[str, float]:
    """CPU seconds so far of the validator nodes and of PostgreSQL (load generators report their own)."""
    groups = {"nodes": 0.0, "postgresql": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if "serve --listen" in cmd:
            groups["nodes"] += seconds
        elif cmd.startswith("postgres"):
            groups["postgresql"] += seconds
    return groups


def run_nodes(dsn: str, nodes: int, requests: int, work: Path) -> dict[str, object]:
    name = f"vtoken_bench_{os.getpid()}"
    _psql(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    url = _with_db(dsn, name)
    folder = work / f"n{nodes}"
    folder.mkdir()
    db = ["--db", url, "--key-file", str(folder / "site.key")]
    init = subprocess.run([*VTOKEN, "validator", *db, "init"], cwd=folder, capture_output=True, text=True, check=True)
    admin = re.search(r"vtk_admin_\S+", init.stdout).group(0)  # type: ignore[union-attr]
    procs, urls = [], []
    try:
        for i in range(nodes):
            subprocess.run([*VTOKEN, "fleet", "create", "--count", str(TOKENS_PER_NODE), "--model", "hotp",
                            "--batch-secret", BATCH_SECRET, "--first-serial", str(100_000_000 + (i + 1) * 10_000),
                            "--out", f"f{i}"], cwd=folder, capture_output=True, check=True)
            proc = subprocess.Popen([*VTOKEN, "validator", *db, "serve", "--listen", "127.0.0.1:0"], cwd=folder,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            procs.append(proc)
            line = proc.stdout.readline()  # type: ignore[union-attr]
            urls.append(line.split("listening on ")[1].split()[0])
        before, start = _cpu(), time.perf_counter()
        loads = [subprocess.Popen([*VTOKEN, "loadgen", u, "--fleet", f"f{i}", "--import", "--admin-token", admin,
                                   "--concurrency", str(CLIENTS_PER_NODE), "--requests", str(requests), "--quiet",
                                   "--json"], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for i, u in enumerate(urls)]
        results = [json.loads(p.communicate()[0]) for p in loads]
        wall, after = time.perf_counter() - start, _cpu()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        _psql(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return {
        "nodes": nodes,
        "checks_per_s": sum(r["throughput_per_s"] for r in results),
        "p50_ms": [r["latency_ms"]["p50"] for r in results],
        "p99_ms": [r["latency_ms"]["p99"] for r in results],
        "wrong": sum(len(r["wrong_answers"]) for r in results),
        "wall_s": wall,
        "cpu_s": {"nodes": after["nodes"] - before["nodes"], "postgresql": after["postgresql"] - before["postgresql"],
                  "loadgen": sum(r["client_cpu_s"] for r in results)},
    }


def pgbench(dsn: str, clients: int, work: Path) -> float:
    """pgbench's one-row UPDATE rate (tps) on the server of ``dsn``."""
    name = f"vtoken_pgbench_{os.getpid()}"
    _psql(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    parts = urlsplit(dsn)
    common = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
    script = work / "one_update.sql"
    script.write_text("\\set aid random(1, 100000)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n")
    try:
        subprocess.run(["pgbench", *common, "-i", "-s", "1", "-q", name], capture_output=True, check=True)
        out = subprocess.run(["pgbench", *common, "-n", "-c", str(clients), "-j", "2", "-T", "8", "-f", str(script),
                              name], capture_output=True, text=True, check=True).stdout
        return float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    finally:
        _psql(dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("VTOKEN_TEST_PG_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--requests", type=int, default=6000, help="requests per node")
    parser.add_argument("--nodes", default="1,2,4")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vtoken-pg-nodes-") as tmp:
        work = Path(tmp)
        rows = [run_nodes(args.dsn, int(n), args.requests, work) for n in args.nodes.split(",")]
        ceiling = {c: pgbench(args.dsn, c, work) for c in (1, 8, 32)} if shutil.which("pgbench") else {}
    base = rows[0]["checks_per_s"]
    print("| nodes | durable checks/s | × 1 node | p50 ms | p99 ms | CPU s: nodes / postgresql / loadgen | wall s | wrong |")
    print("|---|---:|---:|---|---|---|---:|---:|")
    for r in rows:
        cpu = r["cpu_s"]
        print(f"| {r['nodes']} | {r['checks_per_s']:,.0f} | {r['checks_per_s'] / base:.2f}× | "  # type: ignore[operator]
              f"{', '.join(f'{v:.0f}' for v in r['p50_ms'])} | {', '.join(f'{v:.0f}' for v in r['p99_ms'])} | "  # type: ignore[attr-defined]
              f"{cpu['nodes']:.1f} / {cpu['postgresql']:.1f} / {cpu['loadgen']:.1f} | {r['wall_s']:.1f} | {r['wrong']} |")  # type: ignore[index]
    for clients, tps in ceiling.items():
        print(f"pgbench one-row UPDATE, {clients} client(s): {tps:,.0f} tps")


if __name__ == "__main__":
    main()
