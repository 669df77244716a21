"""README.md cannot rot: every shell and Python block runs, in order, as a reader would run it.

See :mod:`tests.readme_runner` for how blocks run (one session folder, servers
started in the background and stopped with Ctrl-C at the end of their section,
ports and /tmp paths made private to the run). The whole README is one
session, so a block may use what an earlier one made; a failing block is
reported with its line, its output, and the blocks after it still run.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from tests.readme_runner import ROOT, Block, Session, blocks, sections

KNOWN_DIRECTIVES = {"background", "wait-for", "installed", "ci-command", "pytest", "in-checkout"}


def _pg_database() -> str | None:
    """A throwaway PostgreSQL database name for the README's ``createdb … vtoken`` (dropped afterwards)."""
    return f"vtoken_readme_{uuid.uuid4().hex[:10]}"


def _drop(database: str) -> None:
    subprocess.run(["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", database],
                   capture_output=True, check=False)


def test_readme_directives_are_known_and_only_the_ci_command_is_not_run() -> None:
    all_blocks = blocks()
    for block in all_blocks:
        words = {word.split("=", 1)[0] for word in block.directive}
        assert words <= KNOWN_DIRECTIVES, f"README line {block.line}: unknown directive {block.directive}"
        if block.background:
            assert block.option("wait-for"), f"README line {block.line}: a background block needs wait-for="
    not_run = [b for b in all_blocks if b.lang in ("sh", "python") and not b.runs]
    assert [b.directive for b in not_run] == [("ci-command",)]
    command = subprocess.run(["bash", str(ROOT / ".ci" / "readme-command"), "test"], capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout.strip()
    assert not_run[0].text.strip() == command  # the block CI runs is the one marked


def _describe(block: Block, result: subprocess.CompletedProcess[str]) -> str:
    return (f"README line {block.line} ({block.section}) exited {result.returncode}\n"
            f"--- block ---\n{block.text}--- stdout ---\n{result.stdout[-3000:]}--- stderr ---\n{result.stderr[-3000:]}")


@pytest.mark.slow
def test_every_readme_block_runs(tmp_path: Path) -> None:
    database = _pg_database()
    session = Session(tmp_path, pg_database=database)
    failures: list[str] = []
    try:
        for _, group in sections(blocks()):
            for block in group:
                if not block.runs:
                    continue
                try:
                    if block.background:
                        session.start(block)
                        continue
                    result = session.run(block)
                except (AssertionError, subprocess.TimeoutExpired) as exc:
                    failures.append(f"README line {block.line}: {exc}")
                    continue
                if result.returncode != 0 or "Traceback (most recent call last)" in result.stderr:
                    failures.append(_describe(block, result))
            failures.extend(session.stop_servers())
    finally:
        failures.extend(session.stop_servers())
        _drop(database)
    assert not failures, "\n\n".join(failures)
