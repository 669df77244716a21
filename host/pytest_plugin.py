"""pytest plugin: a virtual token on a real pty, in simulated time, for hardware teams' own suites.

Installed with vtoken (entry point ``pytest11``), it gives every test suite the
fixture ``vtoken_device``: a token served on a pseudo-terminal by a background
thread, with simulation controls enabled, a :class:`~host.client.TokenClient`
already connected, and cleanup afterwards. Point your own host software at
``vtoken_device.path`` (or the stable symlink ``vtoken_device.link``)::

    def test_my_reader(vtoken_device):
        code = my_host_tool.read_code(vtoken_device.path)
        assert code == vtoken_device.expected_code()

Configure the token with a marker::

    @pytest.mark.vtoken(model="hotp", seed=bytes.fromhex("3132..."), ppm=20)
    def test_event_token(vtoken_device): ...
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim.device import DeviceController
from firmware_sim.factory import Physics, manufacture
from firmware_sim.models import get_model
from firmware_sim.token import Token
from host.client import TokenClient
from vserial.ports import PtyPort
from vserial.server import BackgroundServer, DeviceServer
from vtoken.clock import NS_PER_SECOND, SimulatedClock

#: Where a token made by the fixture starts: 2026-01-01T00:00:00Z.
DEFAULT_START_NS = 1_767_225_600 * NS_PER_SECOND
DEFAULT_SEED = b"12345678901234567890"
DEFAULT_SERIAL = "1000000005"
DEFAULT_DEVICE_KEY = bytes(32)
MARKER = "vtoken"


@dataclasses.dataclass
class VirtualToken:
    """A served token: where it is, how to talk to it, and what it is."""

    path: str
    link: Path
    client: TokenClient
    token: Token
    clock: SimulatedClock
    seed: bytes = dataclasses.field(repr=False)

    def expected_code(self) -> str:
        """The code a press would show now (TOTP; computed from the token's own clock)."""
        return self.token.current_code()

    def advance(self, seconds: int) -> None:
        """Move simulated time forward, through the protocol as a host would."""
        self.client.advance_time(seconds * NS_PER_SECOND)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(model='totp30', seed=bytes, serial=str, ppm=0, start_ns=int, locked=True): "
        "configure the token served by the vtoken_device fixture",
    )


@pytest.fixture
def vtoken_device(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VirtualToken]:
    """A virtual token on a pty in simulated time, with a connected client; cleaned up afterwards."""
    marker = request.node.get_closest_marker(MARKER)
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    clock = SimulatedClock(options.get("start_ns", DEFAULT_START_NS))
    seed = options.get("seed", DEFAULT_SEED)
    token = manufacture(
        model=get_model(options.get("model", "totp30")),
        seed=seed,
        serial=options.get("serial", DEFAULT_SERIAL),
        device_key=DEFAULT_DEVICE_KEY,
        clock=clock,
        physics=Physics(ppm=options.get("ppm", 0)),
        lock=options.get("locked", True),
    )
    link = tmp_path / "vtoken-device"
    port = PtyPort(DeviceController(token, sim_control=True), link=link)
    with BackgroundServer(DeviceServer([port])):
        client = TokenClient.open(port.path)
        try:
            yield VirtualToken(path=port.path, link=link, client=client, token=token, clock=clock, seed=seed)
        finally:
            client.close()
    assert not os.path.lexists(link), "the device's symlink outlived the fixture"


__all__ = ["VirtualToken", "vtoken_device"]
