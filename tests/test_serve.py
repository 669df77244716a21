"""``vtoken serve`` as a real process: a pty that pyserial opens, TCP, signals, and any byte stream.

The client side here uses only pyserial and :mod:`vtoken.wire`, as a host
developer working from docs/protocol.md would.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from vtoken import wire
from vtoken.oath import hotp
from vtoken.wire import Command, Status

SEED_HEX = b"12345678901234567890".hex()
STARTUP_TIMEOUT_S = 10
READ_TIMEOUT_S = 2.0


class Served:
    """A ``vtoken serve`` subprocess and what it printed."""

    def __init__(self, proc: subprocess.Popen[str], lines: dict[str, str]) -> None:
        self.proc = proc
        self.lines = lines

    def stop(self, sig: int = signal.SIGTERM) -> str:
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=10)
        return out


def start_serve(state: Path, *args: str) -> Served:
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli.main", "serve", "--state", str(state), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: dict[str, str] = {}
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"vtoken serve exited early with {proc.wait()}")
        key, _, value = line.strip().partition(": ")
        lines[key] = value
        if line.startswith("stop with"):
            return Served(proc, lines)
    proc.kill()
    raise AssertionError("vtoken serve did not start")


@pytest.fixture
def hotp_state(tmp_path: Path) -> Path:
    state = tmp_path / "fob.token"
    subprocess.run(
        [sys.executable, "-m", "host.cli.main", "token", "new", "--state", str(state), "--model", "hotp",
         "--secret", SEED_HEX, "--serial", "1000000005", "--at", "2026-01-01T00:00:00Z"],
        check=True, capture_output=True,
    )
    return state


def exchange(port: serial.Serial, request: bytes, reader: wire.FrameReader | None = None) -> wire.Response:
    reader = reader or wire.FrameReader()
    port.write(b"\x00" + request)
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        chunk = port.read(1)
        chunk += port.read(port.in_waiting) if chunk and port.in_waiting else b""
        for item in reader.feed(chunk):
            assert not isinstance(item, wire.FrameDecodeError), item
            return wire.decode_response(item)
    raise AssertionError("no reply")


def test_pty_end_to_end_with_link_and_clean_shutdown(hotp_state: Path, tmp_path: Path) -> None:
    link = tmp_path / "vtoken0"
    served = start_serve(hotp_state, "--sim", "--link", str(link))
    try:
        assert served.lines["pty"].startswith("/dev/pts/")
        assert os.readlink(link) == served.lines["pty"]
        with serial.serial_for_url(str(link), timeout=0.2, exclusive=True) as port:
            info = exchange(port, wire.encode_request(1, Command.INFO))
            assert info.ok and info.payload.serial == "1000000005" and info.payload.sim_control
            codes = [exchange(port, wire.encode_request(seq, Command.PRESS)).payload.text for seq in (2, 3)]
            assert codes == [hotp(b"12345678901234567890", 0), hotp(b"12345678901234567890", 1)]
            # A retried request (same seq, same bytes) is answered from the cache: no second press.
            again = exchange(port, wire.encode_request(3, Command.PRESS))
            assert again.payload.text == codes[1]
    finally:
        out = served.stop(signal.SIGTERM)
    assert served.proc.returncode == 0, out
    assert "token state saved" in out
    assert not os.path.lexists(link)
    # The counter was persisted: a restart continues at counter 2.
    served = start_serve(hotp_state, "--sim")
    try:
        with serial.serial_for_url(served.lines["pty"], timeout=0.2) as port:
            assert exchange(port, wire.encode_request(1, Command.PRESS)).payload.text == hotp(b"12345678901234567890", 2)
    finally:
        served.stop(signal.SIGINT)
    assert served.proc.returncode == 0


def test_a_second_server_on_the_same_token_is_refused(hotp_state: Path) -> None:
    served = start_serve(hotp_state, "--sim")
    try:
        second = subprocess.run(
            [sys.executable, "-m", "host.cli.main", "serve", "--state", str(hotp_state), "--sim"],
            capture_output=True, text=True, timeout=20,
        )
        assert second.returncode == 1
        assert "in use by another process" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        served.stop()


def test_production_token_refuses_simulation_controls(hotp_state: Path) -> None:
    served = start_serve(hotp_state)  # no --sim: a production token in real time
    try:
        with serial.serial_for_url(served.lines["pty"], timeout=0.2) as port:
            reply = exchange(port, wire.encode_request(1, Command.ADVANCE_TIME, ns=10**9))
            assert reply.status is Status.NOT_ALLOWED
            assert exchange(port, wire.encode_request(2, Command.INFO)).ok
    finally:
        served.stop()


def test_tcp_one_client_at_a_time_and_reconnects(hotp_state: Path) -> None:
    served = start_serve(hotp_state, "--sim", "--no-pty", "--tcp", "127.0.0.1:0")
    url = served.lines["tcp"]
    try:
        first = serial.serial_for_url(url, timeout=0.2)
        assert exchange(first, wire.encode_request(1, Command.PRESS)).payload.text == hotp(b"12345678901234567890", 0)
        second = serial.serial_for_url(url, timeout=0.2)
        second.write(b"\x00" + wire.encode_request(1, Command.INFO))
        # Refused while the first client is connected: the server closes the second connection.
        with pytest.raises(serial.SerialException, match="disconnected|reset by peer"):
            second.read(100)
        second.close()
        first.close()
        for round_ in range(10):  # many clients in turn, some vanishing mid-frame
            client = serial.serial_for_url(url, timeout=0.2)
            frame = wire.encode_request(round_ + 1, Command.INFO)
            if round_ % 3 == 0:
                client.write(frame[: len(frame) // 2])  # then disappear
            else:
                assert exchange(client, frame).ok
            client.close()
        last = serial.serial_for_url(url, timeout=0.2)
        assert exchange(last, wire.encode_request(7, Command.PRESS)).payload.text == hotp(b"12345678901234567890", 1)
        last.close()
    finally:
        served.stop()


def test_pty_survives_any_byte_stream(hotp_state: Path) -> None:
    served = start_serve(hotp_state, "--sim")
    rng = random.Random(4)
    try:
        with serial.serial_for_url(served.lines["pty"], timeout=0.2) as port:
            noise = [
                bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(30)
            ] + [b"\xff" * 2000, b"\x00" * 50, wire.encode_request(5, Command.INFO)[:-3]]
            for blob in noise:
                port.write(blob)
            port.write(b"\x00" * 2)
            time.sleep(0.3)
            port.reset_input_buffer()
            # Oversized frame, bad CRC: each answered with a NAK, and the device keeps serving.
            reader = wire.FrameReader()
            big = wire.cobs_encode(bytes(range(1, 256)) * 3) + b"\x00"
            port.write(b"\x00" + big)
            body = bytearray(wire.encode_request_body(9, Command.INFO))
            body[-1] ^= 0x55
            port.write(b"\x00" + wire.frame(bytes(body)))
            replies: list[wire.Response] = []
            deadline = time.monotonic() + READ_TIMEOUT_S
            while len(replies) < 2 and time.monotonic() < deadline:
                for item in reader.feed(port.read(64)):
                    replies.append(wire.decode_response(item))
            assert [r.status for r in replies] == [Status.BAD_LENGTH, Status.BAD_CRC]
            press = exchange(port, wire.encode_request(11, Command.PRESS))
            assert press.payload.text == hotp(b"12345678901234567890", 0)  # garbage pressed nothing
    finally:
        served.stop()
    assert served.proc.returncode == 0
