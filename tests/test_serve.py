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


def make_hotp_token(folder: Path) -> Path:
    """``folder/fob.token``: HOTP, the RFC 4226 seed, serial 1000000005, made by the CLI as a user would."""
    state = folder / "fob.token"
    subprocess.run(
        [sys.executable, "-m", "host.cli.main", "token", "new", "--state", str(state), "--model", "hotp",
         "--secret", SEED_HEX, "--serial", "1000000005", "--at", "2026-01-01T00:00:00Z"],
        check=True, capture_output=True,
    )
    return state


@pytest.fixture
def hotp_state(tmp_path: Path) -> Path:
    return make_hotp_token(tmp_path)


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
        reset = second._socket  # pyserial's close() skips socket.close() when shutdown() fails on a reset peer
        second.close()
        reset.close()
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


# --- issue 14, item 2: a second TCP client is told "device busy", not "lost the connection" -----------------


def _tcp_device(**port_kwargs: object) -> tuple[object, object]:
    """An in-process token behind a TcpPort on a free 127.0.0.1 port (no subprocess)."""
    from firmware_sim.device import DeviceController
    from firmware_sim.factory import manufacture
    from firmware_sim.models import get_model
    from vserial.ports import TcpPort
    from vtoken.clock import NS_PER_SECOND, SimulatedClock

    token = manufacture(model=get_model("hotp"), seed=b"12345678901234567890", serial="1000000005",
                        device_key=bytes(32), clock=SimulatedClock(1_767_225_600 * NS_PER_SECOND))
    return token, TcpPort(DeviceController(token, sim_control=True), "127.0.0.1", 0, **port_kwargs)


def test_a_second_tcp_client_is_told_the_device_is_busy() -> None:
    from host.client import TokenClient
    from host.connection import DeviceBusyError
    from vserial.server import BackgroundServer, DeviceServer

    token, port = _tcp_device()
    with BackgroundServer(DeviceServer([port])):
        with TokenClient.open(port.url, timeout=READ_TIMEOUT_S) as first:
            assert first.press() == hotp(b"12345678901234567890", 0)
            for _ in range(3):  # every attempt is refused the same clear way, and harms nothing
                with pytest.raises(DeviceBusyError) as busy:
                    TokenClient.open(port.url, timeout=READ_TIMEOUT_S)
                assert str(busy.value) == f"device busy: another client is connected ({port.url})"
            assert first.press() == hotp(b"12345678901234567890", 1)  # the first client is unaffected
        with TokenClient.open(port.url, timeout=READ_TIMEOUT_S) as next_client:  # served once the first left
            assert next_client.press() == hotp(b"12345678901234567890", 2)
    assert port.clients_refused == 3 and token.flash.counter == 3


def test_a_raw_second_client_gets_one_busy_nak_for_its_first_frame_then_eof() -> None:
    import socket

    from vserial.server import BackgroundServer, DeviceServer

    _, port = _tcp_device()
    with BackgroundServer(DeviceServer([port])):
        with socket.create_connection((port.host, port.port)) as first, \
                socket.create_connection((port.host, port.port)) as second:
            first.sendall(b"\x00" + wire.encode_request(1, Command.INFO))
            assert wire.decode_response(wire.unframe(_recv_frame(first))).ok
            second.settimeout(READ_TIMEOUT_S)
            second.sendall(b"\x00" + wire.encode_request(0x0C01, Command.HELLO) + wire.encode_request(2, Command.PRESS))
            data = b""
            while chunk := second.recv(4096):  # the server closes its side after the one NAK
                data += chunk
            items = wire.FrameReader().feed(data)
            assert len(items) == 1
            nak = wire.decode_response(items[0])
            assert (nak.seq, nak.command, nak.status, nak.message) == (
                0x0C01, Command.HELLO, Status.BUSY, "device busy: another client is connected")


def _recv_frame(sock: object) -> bytes:
    data = b""
    sock.settimeout(READ_TIMEOUT_S)  # type: ignore[attr-defined]
    while not data.endswith(b"\x00"):
        data += sock.recv(4096)  # type: ignore[attr-defined]
    return data


def test_refused_connections_are_closed_after_the_linger_time_and_are_bounded() -> None:
    import socket

    from vserial.ports import BUSY_LINGER_S, MAX_LINGERING
    from vserial.server import DeviceServer

    now = [100.0]
    _, port = _tcp_device(monotonic=lambda: now[0])
    server = DeviceServer([port])
    clients: list[socket.socket] = []
    try:
        for count in range(1, MAX_LINGERING + 3):
            clients.append(socket.create_connection((port.host, port.port), timeout=READ_TIMEOUT_S))
            while port.clients_served + port.clients_refused < count:  # accept it before the next connects
                server.serve_once(READ_TIMEOUT_S)
        assert port.clients_refused == len(clients) - 1
        assert len(port.fds()) == 2 + MAX_LINGERING  # listener, the client, the refused ones kept
        now[0] += BUSY_LINGER_S  # a silent refused client is not kept for ever
        assert len(port.fds()) == 2
        clients[-1].settimeout(READ_TIMEOUT_S)
        assert clients[-1].recv(10) == b""  # closed at once: beyond MAX_LINGERING
    finally:
        for client in clients:
            client.close()
        server.close()


def test_cli_on_a_busy_tcp_token_says_device_busy(hotp_state: Path) -> None:
    served = start_serve(hotp_state, "--sim", "--no-pty", "--tcp", "127.0.0.1:0")
    url = served.lines["tcp"]
    try:
        with serial.serial_for_url(url, timeout=0.2) as first:
            assert exchange(first, wire.encode_request(1, Command.INFO)).ok
            for command in (["info"], ["sim", "advance", "1s"]):
                second = subprocess.run([sys.executable, "-m", "host.cli.main", *command, "--port", url],
                                        capture_output=True, text=True, timeout=30)
                assert second.returncode == 1, second
                assert second.stderr == f"Error: device busy: another client is connected ({url})\n"
        done = subprocess.run([sys.executable, "-m", "host.cli.main", "press", "--port", url],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.strip() == hotp(b"12345678901234567890", 0)
    finally:
        served.stop()


# --- token files: the lock, bad --link, real time (issue 14 #3, #6, #8) ----------------------------------------


def _vtoken(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host.cli.main", *args], capture_output=True, text=True, timeout=60)


def test_token_new_force_while_served_is_refused_and_nothing_is_lost(hotp_state: Path) -> None:
    served = start_serve(hotp_state, "--sim")
    try:
        with serial.serial_for_url(served.lines["pty"], timeout=0.2) as port:
            assert exchange(port, wire.encode_request(1, Command.PRESS)).payload.text == hotp(b"12345678901234567890", 0)
        replaced = _vtoken("token", "new", "--state", str(hotp_state), "--force", "--at", "2026-01-01T00:00:00Z")
        assert replaced.returncode == 1, replaced.stderr
        assert "Traceback" not in replaced.stderr
        assert f"device busy: {hotp_state} is in use by another process" in replaced.stderr
        assert f"(vtoken serve, pid {served.proc.pid})" in replaced.stderr
    finally:
        served.stop()
    assert served.proc.returncode == 0
    # The served token, with its press, is what the file holds: nothing was written under the server.
    served = start_serve(hotp_state, "--sim")
    try:
        with serial.serial_for_url(served.lines["pty"], timeout=0.2) as port:
            assert exchange(port, wire.encode_request(1, Command.PRESS)).payload.text == hotp(b"12345678901234567890", 1)
    finally:
        served.stop()


@pytest.mark.parametrize("where", ["/nonexistent/dir/link", "{state}/link"], ids=["missing-folder", "file-as-folder"])
def test_link_in_a_folder_that_is_not_there_is_a_clear_error(hotp_state: Path, where: str) -> None:
    link = where.format(state=hotp_state)
    done = _vtoken("serve", "--state", str(hotp_state), "--link", link)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"Error: --link {link}: the folder ")
    assert done.stdout == ""


def test_link_that_cannot_be_made_is_a_clear_error(hotp_state: Path) -> None:
    done = _vtoken("serve", "--state", str(hotp_state), "--link", "/proc/vtoken-link")  # /proc takes no symlinks
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("Error: cannot open a pty with the link /proc/vtoken-link")


def test_real_time_long_press_never_puts_the_token_ahead_of_the_wall_clock(tmp_path: Path) -> None:
    """Issue 14 #8: after a long press the token's clock is the wall clock's, and `codes --state` works at once."""
    state = tmp_path / "fob.token"
    made = _vtoken("token", "new", "--state", str(state), "--secret", SEED_HEX, "--serial", "1000000005")
    assert made.returncode == 0, made.stderr
    served = start_serve(state)  # real time
    try:
        with serial.serial_for_url(served.lines["pty"], timeout=0.2) as port:
            menu = exchange(port, wire.encode_request(1, Command.LONG_PRESS))
            assert menu.ok, menu
            before = time.time_ns()
            device = exchange(port, wire.encode_request(2, Command.TIME_GET)).payload.device_time_ns
            after = time.time_ns()
            assert device <= after  # was 6.1 s ahead
            assert device >= before - 10**9
            again = exchange(port, wire.encode_request(3, Command.LONG_PRESS))  # the button is still "held"
            assert again.status is Status.WRONG_STATE
            assert "button busy" in again.message and "try again in" in again.message
    finally:
        served.stop()
    assert served.proc.returncode == 0
    shown = _vtoken("codes", "--state", str(state))  # no --at: now, right after the server saved the file
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().isdigit()


def test_real_time_serve_of_a_file_saved_ahead_of_the_wall_clock_says_so(tmp_path: Path) -> None:
    state = tmp_path / "fob.token"
    made = _vtoken("token", "new", "--state", str(state), "--at", "2099-01-01T00:00:00Z")
    assert made.returncode == 0, made.stderr
    served = start_serve(state)
    try:
        assert served.lines["note"].startswith(f"{state} was saved at 2099-01-01T00:00:00Z, ")
        assert "ahead of this computer's clock; the token's clock continues from there" in served.lines["note"]
    finally:
        served.stop()
    assert served.proc.returncode == 0
