"""Several validator nodes on one PostgreSQL database (issue 12), with real processes and the real server.

Every node is a ``vtoken validator serve`` process on its own free port; the database is
this run's throwaway one (``pg_url``). Tokens are HOTP so codes can be spent as fast as
the nodes answer; their seed is RFC 4226's.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import truncate_pg
from tests.service_procs import nodes, run_cli, serving
from validator.pgstore import PostgresStore
from vtoken.oath import hotp
from vtoken.serialno import make_serial

SEED = b"12345678901234567890"
TRIALS = 2000
RACE_NODES = 4
RACE_TOKENS = 40


@pytest.fixture
def fleet(tmp_path: Path, pg_url: str) -> tuple[Path, list[str]]:
    """An empty database with the schema, a master key file, and HOTP tokens imported: (folder, db args)."""
    PostgresStore(pg_url).close()
    truncate_pg(pg_url)
    db_args = ["--db", pg_url, "--key-file", str(tmp_path / "pg.key")]
    run_cli("validator", *db_args, "init", cwd=tmp_path)
    return tmp_path, db_args


def import_tokens(folder: Path, db_args: list[str], count: int, first: int = 100) -> list[str]:
    serials = [make_serial(first + i) for i in range(count)]
    (folder / "tokens.csv").write_text(
        "serial,seed,type,counter\n" + "".join(f"{s},{SEED.hex()},hotp,0\n" for s in serials)
    )
    run_cli("validator", *db_args, "import", "tokens.csv", cwd=folder)
    return serials


def register_all(url: str, serials: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        for serial in serials:
            answer = http.post(f"/v1/tokens/{serial}/register", json={"code1": hotp(SEED, 0), "code2": hotp(SEED, 1)})
            assert answer.json()["accepted"], answer.text


def test_one_code_sent_to_four_nodes_at_once_is_accepted_exactly_once(fleet: tuple[Path, list[str]]) -> None:
    folder, db_args = fleet
    serials = import_tokens(folder, db_args, RACE_TOKENS)
    with nodes(folder, db_args, RACE_NODES) as running:
        urls = [url for _, url in running]
        register_all(urls[0], serials)
        clients = [httpx.Client(base_url=url, timeout=10) for url in urls]
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=RACE_NODES * 8)
        try:
            counters = dict.fromkeys(serials, 2)
            wrong: list[str] = []
            trial = 0
            while trial < TRIALS:
                # Eight tokens at a time, each code sent to every node at once.
                group = [serials[(trial + i) % RACE_TOKENS] for i in range(min(8, TRIALS - trial))]
                futures = {
                    serial: [pool.submit(c.post, f"/v1/tokens/{serial}/check", json={"code": hotp(SEED, counters[serial])})
                             for c in clients]
                    for serial in group
                }
                for serial, answers in futures.items():
                    bodies = [f.result().json() for f in answers]
                    accepted = [b for b in bodies if b.get("accepted")]
                    others = {b.get("reason") for b in bodies if not b.get("accepted")}
                    if len(accepted) != 1 or not others <= {"replay"}:
                        wrong.append(f"trial {trial} {serial}: {bodies}")
                    counters[serial] += 1
                trial += len(group)
            assert not wrong, wrong[:5]
            assert sum(counters.values()) - 2 * RACE_TOKENS == TRIALS
        finally:
            pool.shutdown()
            for c in clients:
                c.close()


def test_failures_on_every_node_count_towards_one_lockout(fleet: tuple[Path, list[str]]) -> None:
    folder, db_args = fleet
    (serial,) = import_tokens(folder, db_args, 1)
    with nodes(folder, db_args, 4, "--throttle-ms", "1") as running:
        urls = [url for _, url in running]
        register_all(urls[0], [serial])
        wrong = next(f"{v:06d}" for v in range(10**6) if f"{v:06d}" not in {hotp(SEED, c) for c in range(0, 40)})
        answers = []
        for n in range(10):
            time.sleep(0.02 * (n + 1))  # past the 1 ms × n throttle
            with httpx.Client(base_url=urls[n % 4], timeout=10) as http:
                answers.append(http.post(f"/v1/tokens/{serial}/check", json={"code": wrong}).json())
        assert [a["failures"] for a in answers] == list(range(1, 11)), answers
        assert "locked" in answers[-1]["message"]
        for url in urls:  # every node sees the lock, even for the right code
            with httpx.Client(base_url=url, timeout=10) as http:
                assert http.post(f"/v1/tokens/{serial}/check", json={"code": hotp(SEED, 2)}).json()["reason"] == "locked"


def _load(url: str, serials: list[str], stop: threading.Event, accepted: dict[str, list[int]],
          answers: list[tuple[float, int, bool]]) -> None:
    """Genuine HOTP codes as fast as the node answers; record every answer (time, status, accepted)."""
    counters = dict.fromkeys(serials, 2)
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            for serial in serials:
                try:
                    response = http.post(f"/v1/tokens/{serial}/check", json={"code": hotp(SEED, counters[serial])})
                except httpx.HTTPError:
                    answers.append((time.monotonic(), 0, False))
                    time.sleep(0.05)
                    continue
                ok = response.status_code == 200 and response.json().get("accepted") is True
                answers.append((time.monotonic(), response.status_code, ok))
                if ok:
                    accepted[serial].append(counters[serial])
                    counters[serial] += 1
                elif response.status_code == 200:  # refused: the counter was spent by an unanswered try
                    counters[serial] += 1


def test_a_node_killed_mid_load_leaves_the_others_answering(fleet: tuple[Path, list[str]]) -> None:
    folder, db_args = fleet
    serials = import_tokens(folder, db_args, 12)
    with nodes(folder, db_args, 3) as running:
        register_all(running[0][1], serials)
        stop = threading.Event()
        accepted: dict[str, list[int]] = {s: [] for s in serials}
        answers = [[], [], []]  # type: list[list[tuple[float, int, bool]]]
        threads = [threading.Thread(target=_load, args=(url, serials[i::3], stop, accepted, answers[i]))
                   for i, (_, url) in enumerate(running)]
        [t.start() for t in threads]
        time.sleep(1.0)
        victim = running[2][0]
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(10)
        time.sleep(1.0)
        stop.set()
        [t.join(10) for t in threads]
    for survivor in answers[:2]:
        after = [a for a in survivor if a[0] > killed_at]
        assert after and all(ok for _, _, ok in after), after[:5]  # kept answering, every genuine code accepted
    assert sum(len(v) for v in accepted.values()) > 100


@pytest.mark.skipif(shutil.which("pg_ctlcluster") is None, reason="needs the local PostgreSQL cluster (pg_ctlcluster)")
def test_postgresql_restarted_mid_load_fails_closed_and_recovers(fleet: tuple[Path, list[str]], pg_url: str) -> None:
    folder, db_args = fleet
    serials = import_tokens(folder, db_args, 8)
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    with serving(folder, db_args) as (_, url):
        register_all(url, serials)
        stop = threading.Event()
        accepted: dict[str, list[int]] = {s: [] for s in serials}
        answers: list[tuple[float, int, bool]] = []
        loader = threading.Thread(target=_load, args=(url, serials, stop, accepted, answers))
        loader.start()
        time.sleep(0.5)
        down_at = time.monotonic()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "stop", "-m", "fast"],
                       check=True, timeout=60)
        try:
            time.sleep(1.5)
            with httpx.Client(base_url=url, timeout=10) as http:
                ready = http.get("/readyz")
            up_at = time.monotonic()
        finally:
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                           check=True, timeout=60)
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the node reconnects by itself
            if any(ok for t, _, ok in answers if t > up_at + 0.2):
                break
            time.sleep(0.2)
        stop.set()
        loader.join(20)
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.get("/readyz").status_code == 200
    during = [a for a in answers if down_at + 0.2 < a[0] < up_at]
    assert during and not any(ok for _, _, ok in during)  # no accept while the database was down
    assert {status for _, status, _ in during} <= {503}, {status for _, status, _ in during}
    assert any(ok for t, _, ok in answers if t > up_at), "service did not resume"
    # Every accept it answered is durable.
    with PostgresStore(pg_url) as store:
        for serial, counters in accepted.items():
            if counters:
                rec = store.get(serial)
                assert rec is not None and rec.last_step is not None and rec.last_step >= max(counters)
