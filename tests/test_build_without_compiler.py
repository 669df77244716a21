"""A machine without a working C compiler still gets a working install (the Python twin)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_build_ext_without_a_compiler_warns_and_succeeds(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    copy.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "validator", copy / "validator", ignore=shutil.ignore_patterns("*.so", "*.o", "__pycache__"))
    shutil.copytree(ROOT / "vtoken", copy / "vtoken", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"), "--build-temp", str(tmp_path / "t")],
        cwd=copy, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "could not be built" in proc.stderr and "pure-Python twin" in proc.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))


def test_auto_falls_back_to_the_twin_when_the_module_is_missing() -> None:
    code = (
        "import sys; sys.modules['validator._fastcheck_cffi'] = None\n"
        "from validator.kernel import get_backend\n"
        "b = get_backend('auto'); print(b.name, b.prepare(b'12345678901234567890').generate(1, 1)[0])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["python", "287082"]
