"""``vtoken loadgen`` against real processes on real ports, and against a validator that accepts everything.

Fleets are made with ``vtoken fleet create`` and the service is ``vtoken
validator serve --listen 127.0.0.1:0`` in a subprocess (always terminated).
The checker must pass a correct validator with zero wrong answers and must
fail a broken one: a server that accepts every code, and answers some checks
with 503, gives wrong answers and exit code 1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner

from firmware_sim.statefile import load_token
from host.cli.main import main
from loadgen.fleet import read_fleet
from loadgen.schedule import GENUINE, RANDOM, REPLAY, Scheduler
from loadgen.tokens import RANDOM_CODE_WINDOW, VToken
from validator.kernel import get_backend
from vtoken.clock import NS_PER_SECOND, SimulatedClock

BATCH = "000102030405060708090a0b0c0d0e0f"
PASSWORD = "hunter2"
#: The TOTP fleet is made this long ago, so its crystals have drifted apart (±20 ppm: up to ±10 min)
#: and the tokens' steps begin at scattered moments: some token has a new step every fraction of a second.
TOTP_FACTORY = "2025-06-01T00:00:00Z"
SERVE_TIMEOUT_S = 15.0
URL_LINE = re.compile(r"listening on (http://\S+)")


def vtoken(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``vtoken`` command in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "host.cli.main", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=True
    )


@contextmanager
def served(db: Path) -> Iterator[str]:
    """``vtoken validator serve`` on a free port; yields its URL; always stops it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli.main", "validator", "--db", str(db), "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                line = proc.stdout.readline()  # type: ignore[union-attr]
                break
        match = URL_LINE.search(line)
        if match is None:
            proc.kill()
            raise AssertionError(f"the service did not start: {line!r} {proc.stderr.read()!r}")  # type: ignore[union-attr]
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


class Setup:
    """Two fleets, one validator database, its admin token, and the running service."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.hotp = folder / "hotp"
        self.totp = folder / "totp"
        vtoken("fleet", "create", "--count", "120", "--batch-secret", BATCH, "--model", "hotp",
               "--out", str(self.hotp), "--password", PASSWORD, "--first-serial", "100000000", cwd=folder)
        vtoken("fleet", "create", "--count", "200", "--batch-secret", BATCH, "--model", "totp30",
               "--out", str(self.totp), "--first-serial", "200000000", "--at", TOTP_FACTORY, cwd=folder)
        self.db = folder / "v.db"
        out = vtoken("validator", "--db", str(self.db), "init", cwd=folder).stdout
        found = re.search(r"vtk_admin_\S+", out)
        assert found, out
        self.admin = found.group(0)
        self.url = ""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    s = Setup(tmp_path_factory.mktemp("loadgen"))
    with served(s.db) as url:
        s.url = url
        yield s


def loadgen(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["loadgen", *args, "--quiet"], catch_exceptions=False)
    return result.exit_code, result.output


def run_json(*args: str) -> tuple[int, dict]:
    code, output = loadgen(*args, "--json")
    return code, json.loads(output)


def assert_all_right(report: dict, requests: int | None = None) -> None:
    assert report["wrong"] == 0, report["wrong_answers"][:10]
    assert report["wrong_answers"] == [] and report["ok"] is True
    if requests is not None:
        assert report["requests"] == requests
    kinds = report["kinds"]
    assert sum(k["sent"] for k in kinds.values()) == report["requests"]
    for kind in kinds.values():
        assert kind["right"] == kind["sent"]


# --- against the real service ------------------------------------------------------------------------


def test_hotp_fleet_imported_registered_and_checked(setup: Setup) -> None:
    code, report = run_json(
        setup.url, "--fleet", str(setup.hotp), "--password", PASSWORD, "--import", "--admin-token", setup.admin,
        "--concurrency", "16", "--requests", "3000", "--replays", "0.10", "--random", "0.05",
    )
    assert code == 0
    assert_all_right(report, 3000)
    assert report["registered"] == 120 and report["tokens"] == 120 and report["decoys"] == 6
    assert report["mode"] == "concurrency" and report["concurrency"] == 16 and report["api"] == "vtoken"
    kinds = report["kinds"]
    # The mix is kept to within a request or two.
    assert abs(kinds[REPLAY]["sent"] - 300) <= 2 and abs(kinds[RANDOM]["sent"] - 150) <= 2
    assert kinds[GENUINE]["reasons"] == {"accepted": kinds[GENUINE]["sent"]}
    assert set(kinds[REPLAY]["reasons"]) == {"replay"}
    assert set(kinds[RANDOM]["reasons"]) <= {"wrong-code", "throttled", "locked"}
    latency = report["latency_ms"]
    assert set(latency) == {"p50", "p90", "p99", "p99.9", "mean", "max"}
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]
    assert report["throughput_per_s"] > 0 and report["seconds"] > 0

    # Again, registered already: the run state beside the fleet says where each counter stands.
    assert (setup.hotp / "loadgen-state.json").exists()
    code, report = run_json(setup.url, "--fleet", str(setup.hotp), "--password", PASSWORD, "--no-register",
                            "--concurrency", "8", "--requests", "1500")
    assert code == 0
    assert_all_right(report, 1500)
    assert report["registered"] == 0

    # The same validator through its privacyIDEA API, re-registered through /token/resync.
    code, report = run_json(setup.url, "--fleet", str(setup.hotp), "--password", PASSWORD, "--api", "privacyidea",
                            "--admin-token", setup.admin, "--rate", "400", "--requests", "1200")
    assert code == 0
    assert_all_right(report, 1200)
    assert report["api"] == "privacyidea" and report["mode"] == "rate"
    assert report["kinds"][GENUINE]["reasons"] == {"ACCEPT": report["kinds"][GENUINE]["sent"]}
    assert set(report["kinds"][REPLAY]["reasons"]) == {"REJECT"}


def test_totp_fleet_follows_each_tokens_drifting_clock(setup: Setup) -> None:
    code, output = loadgen(setup.url, "--fleet", str(setup.totp), "--import", "--admin-token", setup.admin,
                           "--concurrency", "4", "--duration", "6", "--seed", "7")
    assert code == 0, output
    assert "wrong      0" in output
    assert "200 TOTP 30 s" in output and "at most 6.3 genuine codes/s" in output
    genuine = re.search(r"genuine    accepted (\d+) of (\d+)", output)
    assert genuine and genuine.group(1) == genuine.group(2) and int(genuine.group(1)) >= 10, output


# --- the checker fails a broken validator ----------------------------------------------------------------


@contextmanager
def broken_validator(*, every_nth_fails: int = 0) -> Iterator[str]:
    """An HTTP server that accepts every registration and every code (and answers some checks with 503)."""
    loop = asyncio.new_event_loop()
    counter = itertools.count(1)

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        if every_nth_fails and request.path.endswith("/check") and next(counter) % every_nth_fails == 0:
            return web.json_response({"error": {"status": 503, "message": "store unavailable"}}, status=503)
        return web.json_response({"accepted": True, "reason": "accepted"})

    app = web.Application()
    app.router.add_post("/v1/tokens/{serial}/check", accept)
    app.router.add_post("/v1/tokens/{serial}/register", accept)
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def test_a_validator_that_accepts_everything_is_caught(setup: Setup, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with broken_validator(every_nth_fails=50) as url:
        code, report = run_json(url, "--fleet", str(setup.hotp), "--password", PASSWORD, "--state", str(state),
                                "--concurrency", "8", "--requests", "2000")
    assert code == 1
    assert report["ok"] is False and report["wrong"] == len(report["wrong_answers"]) > 0
    wrong = report["wrong_answers"]
    assert {w["kind"] for w in wrong if w["status"] == 200} == {REPLAY, RANDOM}
    assert all(w["reason"] == "accepted" for w in wrong if w["status"] == 200)
    failed = [w for w in wrong if w["status"] == 503]
    assert failed and all("store unavailable" in w["reason"] for w in failed)
    assert set(wrong[0]) == {"serial", "kind", "status", "reason"}
    kinds = report["kinds"]
    assert kinds[REPLAY]["right"] == 0 and kinds[RANDOM]["right"] == 0
    assert report["wrong"] == kinds[REPLAY]["sent"] + kinds[RANDOM]["sent"] + len(
        [w for w in failed if w["kind"] == GENUINE])

    # The text report lists them one by one.
    with broken_validator() as url:
        code, output = loadgen(url, "--fleet", str(setup.hotp), "--password", PASSWORD, "--state", str(state),
                               "--concurrency", "4", "--requests", "200")
    assert code == 1
    assert re.search(r"^wrong      \d+", output, re.M)
    assert re.search(r"^  \d{10}  replay   HTTP 200  accepted$", output, re.M)
    assert re.search(r"^  \d{10}  random   HTTP 200  accepted$", output, re.M)


# --- refusals before anything is sent ------------------------------------------------------------------


def test_a_fleet_too_small_for_the_load_is_refused(setup: Setup) -> None:
    nowhere = "http://127.0.0.1:9"
    code, output = loadgen(nowhere, "--fleet", str(setup.hotp), "--password", PASSWORD, "--concurrency", "500")
    assert code == 2
    assert "the fleet is too small for --concurrency 500" in output and "114 genuine" not in output
    assert "leaving 114" in output
    code, output = loadgen(nowhere, "--fleet", str(setup.totp), "--rate", "1000")
    assert code == 2
    assert "the fleet is too small for --rate 1000" in output
    assert "HOTP fleet" in output and "Traceback" not in output


def test_bad_options_and_unreachable_validators_give_clean_errors(setup: Setup, tmp_path: Path) -> None:
    code, output = loadgen("http://127.0.0.1:9", "--fleet", str(setup.hotp), "--password", PASSWORD,
                           "--state", str(tmp_path / "s.json"))
    assert code == 1 and "cannot reach the validator at http://127.0.0.1:9" in output
    code, output = loadgen("http://127.0.0.1:9", "--fleet", str(setup.hotp))
    assert code == 1 and "give --password or --psk" in output
    code, output = loadgen("http://127.0.0.1:9", "--fleet", str(setup.hotp), "--concurrency", "4", "--rate", "9")
    assert code == 2 and "not both" in output
    code, output = loadgen("ftp://x", "--fleet", str(setup.hotp))
    assert code == 2 and "http://HOST:PORT" in output
    code, output = loadgen("http://127.0.0.1:9", "--fleet", str(setup.hotp), "--replays", "0.6", "--random", "0.2")
    assert code == 2 and "exceeds the genuine share" in output
    code, output = loadgen("http://127.0.0.1:9", "--fleet", str(tmp_path / "none"))
    assert code == 1 and "no fleet folder" in output
    assert "Traceback" not in output


# --- the pieces -----------------------------------------------------------------------------------------


def test_token_clocks_are_extrapolated_to_the_step_the_token_shows(setup: Setup) -> None:
    now = time.time_ns()
    fleet = read_fleet(setup.totp, now_ns=now)
    backend = get_backend()
    rng = random.Random(3)
    for token in rng.sample(fleet.tokens, 20):
        virtual = VToken(token, backend)
        clock = SimulatedClock(now)
        device = load_token(setup.totp / f"{token.serial}.token", clock)
        for ahead_s in (0, 7, 3600, 86_400):
            at = clock.set(now + ahead_s * NS_PER_SECOND)
            step = virtual.device_step(at)
            assert step == (device.device_time_ns() // (30 * NS_PER_SECOND))
            assert virtual.code(step) == device.current_code()
            assert virtual.step_start_ns(step) <= at < virtual.step_start_ns(step + 1) + 2_000_000


def test_random_codes_match_nothing_near_the_decoys_counter(setup: Setup) -> None:
    fleet = read_fleet(setup.hotp, now_ns=time.time_ns(), password=PASSWORD)
    token = VToken(fleet.tokens[0], get_backend())
    token.next_counter = 5000
    rng = random.Random(1)
    window = set(token.key.generate(5000 - RANDOM_CODE_WINDOW, 2 * RANDOM_CODE_WINDOW + 1).tolist())
    codes = {token.random_code(rng, 0) for _ in range(3000)}
    assert not {int(c) for c in codes} & window
    assert all(len(c) == 6 for c in codes)


def test_the_scheduler_keeps_the_mix_and_each_tokens_order(setup: Setup) -> None:
    fleet = read_fleet(setup.hotp, now_ns=time.time_ns(), password=PASSWORD)
    backend = get_backend()
    tokens = [VToken(t, backend) for t in fleet.tokens]
    for t in tokens:
        t.registered = True
    sched = Scheduler(tokens[:-4], tokens[-4:], replays=0.1, random_share=0.05, rng=random.Random(2))
    now = time.time_ns()
    sched.start(now)
    seen: dict[str, int] = {}
    counts = dict.fromkeys((GENUINE, REPLAY, RANDOM), 0)
    for _ in range(4000):
        action = sched.take(now)
        assert action is not None
        counts[action.kind] += 1
        if action.kind == GENUINE:
            assert action.unit == seen.get(action.token.serial, -1) + 1  # counters in order, none skipped
            seen[action.token.serial] = action.unit
            assert action.code == "%06d" % action.token.key.generate(action.unit, 1)[0]
        if action.kind == REPLAY:
            assert action.token.last_code == action.code
        sched.done(action, True, now)
        now += 10_000_000  # 10 ms per request: replays set ~15 tokens aside for 1.5 s each; 116 are enough
    assert abs(counts[REPLAY] - 400) <= 1 and abs(counts[RANDOM] - 200) <= 1


def test_nothing_here_imports_the_server_or_the_cli() -> None:
    root = Path(__file__).resolve().parents[1] / "loadgen"
    for path in root.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+(server|host)\b", text, re.M), path.name
