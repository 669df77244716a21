"""``vtoken codes`` against oathtool (liboath), an independent implementation, where installed."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from host.cli.main import main

OATHTOOL = shutil.which("oathtool")
#: CI (``.ci/run``) installs oathtool and sets this: there a missing oathtool fails the run.
REQUIRED = os.environ.get("VTOKEN_REQUIRE_OATHTOOL") == "1"
if OATHTOOL is None and REQUIRED:
    raise RuntimeError("VTOKEN_REQUIRE_OATHTOOL=1 but oathtool is not installed (apt-get install oathtool)")
pytestmark = pytest.mark.skipif(OATHTOOL is None, reason="oathtool is not installed (apt-get install oathtool)")

#: A 68-byte key: longer than the SHA-1 and SHA-256 block, so it is hashed first.
LONG_KEY = (b"1234567890" * 7)[:68].hex()
SHORT_KEY = b"12345678901234567890".hex()


@pytest.mark.parametrize("key", [SHORT_KEY, LONG_KEY])
@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("digits", [6, 8])
def test_totp_matches_oathtool(key: str, algorithm: str, digits: int) -> None:
    at = 2_000_000_000
    theirs = subprocess.run(
        [OATHTOOL, f"--totp={algorithm}", "-d", str(digits), "-N", f"@{at}", "-w", "4", key],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    ours = CliRunner().invoke(
        main, ["codes", "--key", key, "--algorithm", algorithm, "--digits", str(digits), "--at", str(at), "--count", "5"]
    ).output.split()
    assert ours == theirs


def test_hotp_matches_oathtool() -> None:
    theirs = subprocess.run([OATHTOOL, "-c", "1000", "-w", "9", LONG_KEY], capture_output=True, text=True, check=True)
    ours = CliRunner().invoke(main, ["codes", "--key", LONG_KEY, "--hotp", "--counter", "1000", "--count", "10"])
    assert ours.output.split() == theirs.stdout.split()
