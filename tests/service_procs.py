"""Real ``vtoken validator serve`` processes for tests: started on free ports, always stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

VTOKEN = [sys.executable, "-m", "host.cli.main"]
START_TIMEOUT_S = 20.0


def run_cli(*args: str, cwd: Path) -> str:
    """Run ``vtoken ARGS`` in ``cwd``; its stdout (fails the test on a non-zero exit)."""
    done = subprocess.run([*VTOKEN, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def serving(folder: Path, db_args: Sequence[str], *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``vtoken validator DB_ARGS serve --listen 127.0.0.1:0 EXTRA``: yield (process, url) once it answers."""
    proc = subprocess.Popen(
        [*VTOKEN, "validator", *db_args, "serve", "--listen", "127.0.0.1:0", *extra],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + START_TIMEOUT_S
        assert proc.stdout is not None
        while url is None:
            line = proc.stdout.readline()
            if "listening on" in line:
                url = line.split("listening on ")[1].split()[0]
            elif not line and proc.poll() is not None:
                raise AssertionError(f"serve exited: {proc.stderr.read() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                raise AssertionError("serve did not start in time")
        with httpx.Client(base_url=url, timeout=5) as http:
            while http.get("/healthz").status_code != 200:
                time.sleep(0.05)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def nodes(folder: Path, db_args: Sequence[str], count: int, *extra: str) -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    """``count`` service processes on one database."""
    with ExitStack() as stack:
        yield [stack.enter_context(serving(folder, db_args, *extra)) for _ in range(count)]
