"""The ``vtoken_device`` fixture, used the way a hardware team's own suite would use it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE = '''
import os
import pytest
import serial

from vtoken import wire
from vtoken.oath import hotp


def test_default_token_on_a_real_pty(vtoken_device):
    assert vtoken_device.path.startswith("/dev/pts/")
    assert os.readlink(vtoken_device.link) == vtoken_device.path
    info = vtoken_device.client.info()
    assert info.model == "totp30" and info.sim_control
    assert vtoken_device.client.press() == vtoken_device.expected_code()


def test_simulated_time_moves_without_sleeping(vtoken_device):
    before = vtoken_device.expected_code()
    vtoken_device.advance(30)
    assert vtoken_device.client.press() == vtoken_device.expected_code() != before


@pytest.mark.vtoken(model="hotp", seed=b"12345678901234567890")
def test_marker_configures_the_token_and_raw_pyserial_works(vtoken_device):
    vtoken_device.client.close()  # our own tool takes the port, as a team's software would
    with serial.serial_for_url(vtoken_device.path, timeout=0.5, exclusive=True) as port:
        port.write(b"\\x00" + wire.encode_request(1, wire.Command.PRESS))
        reader = wire.FrameReader()
        frames = []
        while not frames:
            frames = reader.feed(port.read(1) or b"")
        assert wire.decode_response(frames[0]).payload.text == hotp(b"12345678901234567890", 0)
'''


def test_fixture_in_a_separate_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_team_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "vtoken", "-q")
    result.assert_outcomes(passed=3)


def test_symlink_is_removed_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_link="""
import os
seen = []

def test_one(vtoken_device):
    seen.append(str(vtoken_device.link))

def test_link_gone():
    assert seen and not os.path.lexists(seen[0])
"""
    )
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=2)
