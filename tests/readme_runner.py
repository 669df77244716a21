"""Run README.md's shell and Python blocks as a reader would, in a temporary folder.

Every fenced block tagged ``sh`` or ``python`` runs, in README order, in one
session folder (later blocks use what earlier ones made, as a reader's would).
A directive in an HTML comment on the line just above a fence says how:

``<!-- readme-test: background wait-for=KIND:TARGET -->``
    a server ("in another terminal"): started in the background, the session
    waits until ``path:P`` exists, ``tcp:HOST:PORT`` accepts, or
    ``http:URL`` answers; it is stopped with Ctrl-C (SIGINT) at the end of
    the README section, as the text says, and must exit by itself.
``<!-- main-command -->`` (also ``<!-- readme-test: installed -->``)
    the quick start: its ``python3 -m venv … && …/pip install …`` prefix is
    dropped (the test already runs inside that install) and the rest runs.
``<!-- readme-test: pytest -->``
    a Python block that is a test module: saved as ``test_readme_<line>.py``
    and run with ``python -m pytest`` (the vtoken plugin loads as installed).
``<!-- readme-test: in-checkout -->``
    a block the text says to run in the project's checkout (``python -m
    bench``): it runs there, still with the session's environment.
``<!-- test-command -->`` (also ``<!-- readme-test: ci-command -->``)
    the test command: CI itself runs it (``.ci/run`` reads it from here), so
    it is not run again from inside the suite.

Shell blocks run under ``bash -euo pipefail``: every line must succeed. So
that several runs never collide, ``127.0.0.1``/``localhost`` ports are mapped
to free ports, ``/tmp/`` paths into the session folder, and the PostgreSQL
database name ``vtoken`` to a throwaway one; nothing else is rewritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Longest a block may run.
BLOCK_TIMEOUT_S = 180
#: Longest a background server may take to become ready, and to exit after Ctrl-C.
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15

_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
#: The quick-start markers .ci/readme-command reads are directives too.
_MARKERS = {"<!-- main-command -->": ("installed",), "<!-- test-command -->": ("ci-command",)}
_PORT = re.compile(r"\b(127\.0\.0\.1|localhost):(\d{4,5})\b")
_INSTALL_PREFIX = re.compile(r"^python3 -m venv \.venv && \.venv/bin/pip install [^&]+&& \.venv/bin/")
_RUN_LANGS = {"sh": "sh", "python": "python"}
#: Ports of services the machine runs (PostgreSQL): named as they are, never remapped.
_SERVICE_PORTS = frozenset({"5432"})


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block: language, text, the line its fence is on, its section and directive words."""

    lang: str
    text: str
    line: int
    section: str
    directive: tuple[str, ...] = ()

    @property
    def runs(self) -> bool:
        return self.lang in _RUN_LANGS and "ci-command" not in self.directive

    @property
    def background(self) -> bool:
        return "background" in self.directive

    def option(self, name: str) -> str | None:
        for word in self.directive:
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
        return None

    @property
    def ident(self) -> str:
        return f"line{self.line}-{self.lang}"


def blocks(path: Path = README) -> list[Block]:
    """Every fenced block of the README, with its section and directive."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    section, directive, i = "", (), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        match = _DIRECTIVE.match(line)
        if match or line.strip() in _MARKERS:
            directive = tuple(shlex.split(match.group(1))) if match else _MARKERS[line.strip()]
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            found.append(Block(fence.group(1), "\n".join(body) + "\n", start, section, directive))
            directive = ()
        elif line.strip():
            directive = ()
        i += 1
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Session:
    """A reader's terminal: one folder, one environment, servers started and stopped as the text says."""

    def __init__(self, folder: Path, pg_database: str | None = None) -> None:
        self.folder = folder
        self.ports: dict[str, int] = {}
        self.pg_database = pg_database
        self.servers: list[tuple[Block, subprocess.Popen[bytes], Path]] = []
        bin_dir = str(Path(sys.executable).parent)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VTOKEN_") and k != "PYTHONPATH"}
        self.env.update(PATH=bin_dir + os.pathsep + self.env.get("PATH", ""), HOME=str(folder),
                        PYTHONDONTWRITEBYTECODE="1", COLUMNS="100")

    # -- rewriting ------------------------------------------------------------------------------------

    def _port(self, match: re.Match[str]) -> str:
        if match.group(2) in _SERVICE_PORTS:
            return match.group(0)
        port = self.ports.setdefault(match.group(2), free_port())
        return f"{match.group(1)}:{port}"

    def rewrite(self, text: str) -> str:
        """Ports to free ones, /tmp/ into the session folder, the PostgreSQL database to a throwaway one."""
        text = _PORT.sub(self._port, text)
        text = re.sub(r"(?<![\w.])/tmp/", str(self.folder) + "/", text)
        if self.pg_database:
            text = re.sub(r"(5432/|-U postgres )vtoken\b", rf"\g<1>{self.pg_database}", text)
        return text

    # -- running --------------------------------------------------------------------------------------

    def script(self, block: Block) -> tuple[list[str], Path]:
        text = self.rewrite(block.text)
        if "installed" in block.directive:
            text = "\n".join(_INSTALL_PREFIX.sub("", line) for line in text.splitlines()) + "\n"
        if block.lang == "python" and "pytest" in block.directive:
            path = self.folder / f"test_readme_{block.line}.py"
            path.write_text(text)
            return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)], path
        if block.lang == "python":
            path = self.folder / f"readme_{block.line}.py"
            path.write_text(text)
            return [sys.executable, str(path)], path
        path = self.folder / f"readme_{block.line}.sh"
        path.write_text("set -euo pipefail\n" + text)
        return ["bash", str(path)], path

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        """Run a foreground block to completion; the caller checks its exit code and output."""
        command, _ = self.script(block)
        cwd = ROOT if "in-checkout" in block.directive else self.folder
        proc = subprocess.Popen(command, cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the block and anything it started
            stdout, stderr = proc.communicate()
            stderr += f"\n[the block did not finish within {BLOCK_TIMEOUT_S} s and was killed]"
            return subprocess.CompletedProcess(command, -9, stdout, stderr)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # nothing a block starts outlives it
        return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)

    def start(self, block: Block) -> None:
        """Start a background block and wait until what it serves is ready."""
        command, _ = self.script(block)
        log = self.folder / f"readme_{block.line}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.servers.append((block, proc, log))
        target = self.rewrite(block.option("wait-for") or "")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready(target):
            if proc.poll() is not None:
                raise AssertionError(f"README line {block.line}: the server exited ({proc.returncode}):\n"
                                     + log.read_text(errors="replace"))
            if time.monotonic() > deadline:
                raise AssertionError(f"README line {block.line}: not ready within {READY_TIMEOUT_S} s: {target}")
            time.sleep(0.05)

    @staticmethod
    def _ready(target: str) -> bool:
        kind, _, rest = target.partition(":")
        if kind == "path":
            return Path(rest).exists()
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            try:
                with socket.create_connection((host, int(port)), timeout=0.5):
                    return True
            except OSError:
                return False
        if kind == "http":
            try:
                with urllib.request.urlopen(rest, timeout=0.5):  # noqa: S310 - a local test server
                    return True
            except OSError:
                return False
        raise AssertionError(f"background block without a usable wait-for= ({target!r})")

    def stop_servers(self) -> list[str]:
        """Ctrl-C every background block, as the reader would; return problems (a server that hung)."""
        problems = []
        for block, proc, log in reversed(self.servers):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    problems.append(f"README line {block.line}: did not stop on Ctrl-C:\n"
                                    + log.read_text(errors="replace"))
        self.servers.clear()
        return problems


def sections(all_blocks: list[Block]) -> Iterator[tuple[str, list[Block]]]:
    """Blocks grouped by README section, in order."""
    current, group = None, []
    for block in all_blocks:
        if block.section != current and group:
            yield current or "", group
            group = []
        current = block.section
        group.append(block)
    if group:
        yield current or "", group
