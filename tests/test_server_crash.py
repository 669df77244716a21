"""Crash test (issue 11): kill -9 the service under load, restart it, and every accept it answered holds.

A real ``vtoken validator serve`` process on a free port, 16 client threads checking
HOTP codes as fast as it answers; SIGKILL in the middle. After a restart on the same
database: every code that was answered "accepted" is refused as a replay (its counter
is at or below the stored one), the database passes SQLite's integrity check, and every
token row reads and unseals.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx

from tests.service_procs import run_cli, serving
from validator.sealing import Keyring, load_key_file, unseal
from validator.store import SQLiteStore
from vtoken.oath import hotp
from vtoken.serialno import make_serial

SEED = b"12345678901234567890"
TOKENS = 48
THREADS = 16
LOAD_S = 1.5
def test_kill_9_under_load_loses_no_accept(tmp_path: Path) -> None:
    run_cli("validator", "--db", "v.db", "init", cwd=tmp_path)
    serials = [make_serial(100 + i) for i in range(TOKENS)]
    csv = "serial,seed,type,counter\n" + "".join(f"{s},{SEED.hex()},hotp,0\n" for s in serials)
    (tmp_path / "fleet.csv").write_text(csv)
    run_cli("validator", "--db", "v.db", "import", "fleet.csv", cwd=tmp_path)

    accepted: dict[str, list[int]] = {s: [] for s in serials}
    errors: list[str] = []
    with serving(tmp_path, ["--db", "v.db"]) as (proc, url):
        with httpx.Client(base_url=url, timeout=5) as http:
            for serial in serials:
                answer = http.post(f"/v1/tokens/{serial}/register", json={"code1": hotp(SEED, 0), "code2": hotp(SEED, 1)})
                assert answer.json()["accepted"], answer.text
        stop = threading.Event()

        def client(mine: list[str]) -> None:
            counters = dict.fromkeys(mine, 2)
            with httpx.Client(base_url=url, timeout=5) as http:
                while not stop.is_set():
                    for serial in mine:
                        counter = counters[serial]
                        try:
                            answer = http.post(f"/v1/tokens/{serial}/check", json={"code": hotp(SEED, counter)})
                        except httpx.HTTPError:
                            return  # the server is gone
                        body = answer.json()
                        if body.get("accepted"):
                            accepted[serial].append(counter)
                            counters[serial] = counter + 1
                        else:
                            errors.append(f"{serial} {counter}: {answer.status_code} {body}")

        threads = [threading.Thread(target=client, args=(serials[i::THREADS],)) for i in range(THREADS)]
        [t.start() for t in threads]
        time.sleep(LOAD_S)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: requests in flight, batches half-decided
        proc.wait(10)
        stop.set()
        [t.join(10) for t in threads]
    total = sum(len(v) for v in accepted.values())
    print(f"{total} accepts answered before the kill")
    assert total > 200, total  # the load was real
    assert not errors, errors[:5]

    # After the crash: the store is whole and remembers every accept it answered.
    keyring = Keyring(load_key_file(tmp_path / "v.db.key"))
    with SQLiteStore(tmp_path / "v.db") as store:
        assert store._c().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        records = {r.serial: r for r in store.list_tokens()}
        for serial in serials:
            rec = records[serial]
            assert len(unseal(keyring, serial, rec.sealed)) == len(SEED)
            if accepted[serial]:
                assert rec.last_step is not None and rec.last_step >= max(accepted[serial]), serial
    with serving(tmp_path, ["--db", "v.db"]) as (_, url), httpx.Client(base_url=url, timeout=5) as http:
        for serial, counters in accepted.items():
            if counters:
                again = http.post(f"/v1/tokens/{serial}/check", json={"code": hotp(SEED, counters[-1])}).json()
                assert again["reason"] == "replay" and not again["accepted"], (serial, again)
