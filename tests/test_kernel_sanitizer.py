"""Build the C check kernel with AddressSanitizer/UBSan and run its driver.

tests/kernel_sanitizer_driver.c checks the RFC 4226/6238 vectors, keys of
1..200 bytes, window edge cases, counters near 2**64 and bad arguments, with
every buffer heap-allocated at its exact size. The driver prints "OK" and
exits 0 when all checks pass.

Without gcc (or without its sanitizer runtimes) the test is skipped, unless
VTOKEN_REQUIRE_C=1 (as in CI), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "kernel_sanitizer_driver.c"
KERNEL = ROOT / "validator" / "_fastcheck.c"

SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g", "-O1"]
C_FLAGS = ["-std=gnu99", "-Wall", "-Wextra"]

pytestmark = pytest.mark.requires_c


def _require_c() -> bool:
    return os.environ.get("VTOKEN_REQUIRE_C") == "1"


def _unavailable(reason: str) -> None:
    if _require_c():
        pytest.fail(f"{reason} (VTOKEN_REQUIRE_C=1)")
    pytest.skip(reason)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def test_kernel_under_sanitizers(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        _unavailable("gcc not found")

    # Tell "this toolchain has no sanitizer runtime" apart from a kernel bug.
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    res = _run([gcc, *SAN_FLAGS, str(probe), "-o", str(tmp_path / "probe")])
    if res.returncode != 0:
        _unavailable(f"gcc cannot build with sanitizers:\n{res.stderr}")

    exe = tmp_path / "kernel_sanitizer_driver"
    res = _run([gcc, *SAN_FLAGS, *C_FLAGS, str(DRIVER), str(KERNEL), "-o", str(exe)])
    assert res.returncode == 0, f"compile failed:\n{res.stdout}\n{res.stderr}"

    env = dict(os.environ)
    # Leak checking needs ptrace, which many containers forbid; memory errors
    # and undefined behaviour are what this test is about.
    env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    res = _run([str(exe)], env=env, cwd=tmp_path)
    assert res.returncode == 0, f"driver failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    assert res.stdout.strip().splitlines()[-1:] == ["OK"], res.stdout
