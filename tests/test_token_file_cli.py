"""Damaged token files through the CLI (issue 15 #3): one clear line naming the file, exit 1, never a traceback.

``vtoken serve`` used to read ``saved_at_ns`` before the checksum was verified,
so a renamed field, a file holding ``[]`` or a string where a number belongs
ended in a Python traceback. Each form goes through ``serve``, ``token show``
and ``codes --state``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from firmware_sim import statefile
from host.cli.main import main

REPO = Path(__file__).resolve().parent.parent
SECRET = "c0ffee00" + "5ec12e70" * 3 + "feedface"
MADE = "2026-01-01T00:00:00Z"
LATER = "2026-06-01T00:00:00Z"


def _edit(change: Callable[[dict], object], *, fix_checksum: bool = False) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = change(json.loads(path.read_text()))
        if fix_checksum and isinstance(data, dict):
            data = {k: v for k, v in data.items() if k != "checksum"}
            data["checksum"] = statefile._checksum(data)
        path.write_text(json.dumps(data, indent=1))

    return damage


def _rename_saved_at(data: dict) -> dict:
    data["saved"] = data.pop("saved_at_ns")
    return data


DAMAGES = {
    "saved_at_ns renamed": _edit(_rename_saved_at),
    "saved_at_ns renamed, checksum recomputed": _edit(_rename_saved_at, fix_checksum=True),
    "the file is []": _edit(lambda d: []),
    "the file is {}": _edit(lambda d: {}),
    "a string where a number belongs": _edit(lambda d: {**d, "saved_at_ns": "soon"}),
    "a string where a number belongs, checksum recomputed": _edit(lambda d: {**d, "saved_at_ns": "soon"}, fix_checksum=True),
    "a nested string where a number belongs, checksum recomputed": _edit(
        lambda d: {**d, "battery": {**d["battery"], "presses": "many"}}, fix_checksum=True
    ),
    "not JSON": lambda p: p.write_bytes(b"\x00garbage"),
    "empty": lambda p: p.write_bytes(b""),
}
COMMANDS = {
    "serve": ["serve", "--sim", "--no-pty", "--tcp", "127.0.0.1:0", "--state"],
    "token show": ["token", "show", "--at", LATER, "--state"],
    "codes --state": ["codes", "--at", LATER, "--state"],
}


@pytest.fixture
def fob(tmp_path: Path) -> Path:
    path = tmp_path / "fob.token"
    made = CliRunner().invoke(main, ["token", "new", "--state", str(path), "--secret", SECRET, "--at", MADE])
    assert made.exit_code == 0, made.output
    return path


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_corrupt_token_file_gives_one_clear_line(fob: Path, damage: str, command: str) -> None:
    DAMAGES[damage](fob)
    result = CliRunner().invoke(main, [*COMMANDS[command], str(fob)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.output.startswith("Error: token file ")
    assert str(fob) in result.output
    assert "corrupt" in result.output or "not a vtoken token file" in result.output
    assert SECRET[:16] not in result.output


@pytest.mark.parametrize("damage", ["saved_at_ns renamed", "the file is []", "a string where a number belongs"])
def test_vtoken_serve_process_on_a_corrupt_file(fob: Path, damage: str) -> None:
    """The reproductions of issue 15 #3, as a user runs them: a real process, stderr as printed."""
    DAMAGES[damage](fob)
    done = subprocess.run(
        [sys.executable, "-m", "host.cli.main", "serve", "--state", str(fob)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"Error: token file {fob} ")
    assert done.stdout == ""
