"""pytest-benchmark: PRESS round trip over a pty, fleet creation to PSKC.

Run with ``pytest bench --benchmark-only`` (not part of the default test run).
``VTOKEN_BENCH_FLEET`` sets the fleet size (default 100,000: about half a minute).
"""

from __future__ import annotations

from pathlib import Path

import pskc

from bench.conftest import FLEET_TOKENS
from firmware_sim.device import DeviceController
from firmware_sim.factory import manufacture
from firmware_sim.fleet import FleetSpec, build_pskc, derive_seed
from firmware_sim.models import get_model
from host.client import TokenClient
from vserial.ports import PtyPort
from vserial.server import BackgroundServer, DeviceServer
from vtoken.clock import SimulatedClock
from vtoken.oath import hotp

SEED = b"12345678901234567890"
START_NS = 1_767_225_600 * 1_000_000_000


def test_press_round_trip(benchmark) -> None:
    """HOST -> pty -> device server -> token -> back; every code checked against RFC 4226."""
    clock = SimulatedClock(START_NS)
    token = manufacture(model=get_model("hotp"), seed=SEED, serial="1000000005", device_key=bytes(32), clock=clock)
    port = PtyPort(DeviceController(token, sim_control=True))
    presses = iter(range(10**9))
    with BackgroundServer(DeviceServer([port])), TokenClient.open(port.path) as client:

        def press() -> None:
            counter = next(presses)
            code = client.press()
            assert code == hotp(SEED, counter)

        benchmark.group = "PRESS"
        benchmark.pedantic(press, rounds=1000, iterations=1, warmup_rounds=10)


def test_fleet_to_pskc(benchmark, tmp_path: Path) -> None:
    """build_pskc + write of a password-protected PSKC file."""
    spec = FleetSpec(batch_secret=bytes(range(16)), model=get_model("totp30"), count=FLEET_TOKENS)
    path = tmp_path / "tokens.pskc"

    def create() -> None:
        build_pskc(spec, created_ns=START_NS, password="benchmark").write(str(path))

    benchmark.group = "fleet"
    benchmark.extra_info["tokens"] = FLEET_TOKENS
    benchmark.pedantic(create, rounds=1, iterations=1)
    benchmark.extra_info["tokens_per_s"] = FLEET_TOKENS / benchmark.stats.stats.median
    parsed = pskc.PSKC(str(path))
    parsed.encryption.derive_key("benchmark")
    assert len(parsed.keys) == FLEET_TOKENS
    assert parsed.keys[0].secret == derive_seed(spec.batch_secret, parsed.keys[0].serial)
