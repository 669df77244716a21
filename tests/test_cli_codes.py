"""``vtoken codes`` and ``vtoken backend`` through click's runner and as a real process."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from host.cli.main import main
from tests.vectors import RFC4226_VECTORS, RFC6238_KEYS, RFC6238_VECTORS

RFC_KEY_HEX = b"12345678901234567890".hex()


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def test_hotp_count() -> None:
    result = run("codes", "--key", RFC_KEY_HEX, "--hotp", "--counter", "0", "--count", "10")
    assert result.exit_code == 0, result.output
    assert result.output.split() == [code for _, _, code in RFC4226_VECTORS]


@pytest.mark.parametrize(("at", "algorithm", "code"), RFC6238_VECTORS)
def test_totp_rfc6238(at: int, algorithm: str, code: str) -> None:
    key = RFC6238_KEYS[algorithm].hex()
    result = run("codes", "--key", key, "--totp", "--at", str(at), "--digits", "8", "--algorithm", algorithm)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == code


def test_iso_time_with_zone_equals_unix() -> None:
    iso = run("codes", "--key", RFC_KEY_HEX, "--at", "2009-02-13T23:31:30Z", "--digits", "8")
    offset = run("codes", "--key", RFC_KEY_HEX, "--at", "2009-02-14T00:31:30+01:00", "--digits", "8")
    assert iso.output.strip() == offset.output.strip() == "89005924"


def test_base32_key_and_count() -> None:
    result = run("codes", "--key-b32", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "--at", "59", "--count", "3", "--digits", "8")
    assert result.exit_code == 0
    lines = result.output.split()
    assert len(lines) == 3 and lines[0] == "94287082"


def test_period_and_t0() -> None:
    a = run("codes", "--key", RFC_KEY_HEX, "--at", "1060", "--period", "60", "--t0", "1000")
    b = run("codes", "--key", RFC_KEY_HEX, "--hotp", "--counter", "1")
    assert a.output == b.output == "287082\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--key", RFC_KEY_HEX, "--at", "2026-01-01T00:00:00"], "no time zone"),
        (["--key", RFC_KEY_HEX, "--at", "yesterday"], "cannot read time"),
        (["--key", "abc"], "odd number"),
        (["--key", "zz"], "0-9 and a-f"),
        (["--at", "59"], "exactly one of --key"),
        (["--key", "00", "--key-b32", "AA"], "exactly one of --key"),
        (["--key", RFC_KEY_HEX, "--hotp", "--at", "59"], "--at applies to --totp"),
        (["--key", RFC_KEY_HEX, "--digits", "5"], "5 is not in the range"),
        (["--key", RFC_KEY_HEX, "--algorithm", "md5"], "md5"),
    ],
)
def test_errors_are_clean(args: list[str], words: str) -> None:
    result = run("codes", *args)
    assert result.exit_code != 0
    assert words in result.output
    assert "Traceback" not in result.output


def test_error_in_a_real_process_has_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "host.cli.main", "codes", "--key", "xyz", "--at", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Error:" in proc.stderr and "Traceback" not in proc.stderr


def test_backend_command_python() -> None:
    result = run("backend", env={"VTOKEN_BACKEND": "python"})
    assert result.exit_code == 0
    assert "backend: python" in result.output


def test_backend_command_c(cbackend) -> None:
    result = run("backend", env={"VTOKEN_BACKEND": "c"})
    assert result.exit_code == 0
    assert "backend: c" in result.output
    assert f"cpu path: {cbackend.cpu_path}" in result.output


def test_backend_command_unknown() -> None:
    result = run("backend", env={"VTOKEN_BACKEND": "gpu"})
    assert result.exit_code == 1
    assert "unknown backend" in result.output


def test_codes_same_on_both_backends(cbackend) -> None:
    args = ["codes", "--key", RFC_KEY_HEX, "--at", "1234567890", "--count", "50", "--algorithm", "sha512"]
    assert run(*args, env={"VTOKEN_BACKEND": "c"}).output == run(*args, env={"VTOKEN_BACKEND": "python"}).output
