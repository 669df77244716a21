"""PRESS round trip over a real pty: host client -> pty -> device server -> token -> back.

Run from the repository root:  python bench/press_roundtrip.py [--count N]

The device server runs in a background thread of this process (as the pytest
plugin runs it); the client opens the pty's path with pyserial exactly as a
host tool would. Reports median, 90th and 99th percentile latency.
"""

from __future__ import annotations

import argparse
import statistics
import time

from firmware_sim.device import DeviceController
from firmware_sim.factory import manufacture
from firmware_sim.models import get_model
from host.client import TokenClient
from vserial.ports import PtyPort
from vserial.server import BackgroundServer, DeviceServer
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.oath import hotp

SEED = b"12345678901234567890"
START_NS = 1_767_225_600 * NS_PER_SECOND


def measure(count: int) -> list[float]:
    """Seconds per PRESS round trip, ``count`` of them (HOTP, so every press is real work)."""
    clock = SimulatedClock(START_NS)
    token = manufacture(model=get_model("hotp"), seed=SEED, serial="1000000005", device_key=bytes(32), clock=clock)
    port = PtyPort(DeviceController(token, sim_control=True))
    samples = []
    with BackgroundServer(DeviceServer([port])), TokenClient.open(port.path) as client:
        for i in range(count):
            start = time.perf_counter()
            code = client.press()
            samples.append(time.perf_counter() - start)
            if code != hotp(SEED, i):
                raise AssertionError(f"press {i} gave {code}, expected {hotp(SEED, i)}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    samples = sorted(measure(args.count))
    pct = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1e3  # noqa: E731
    print(f"PRESS round trip over a pty, {len(samples)} presses (all codes checked against RFC 4226)")
    print(f"median {statistics.median(samples) * 1e3:.3f} ms   p90 {pct(0.90):.3f} ms   p99 {pct(0.99):.3f} ms   "
          f"max {samples[-1] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
