"""A client that sends without reading stalls only itself (issue 15 item 11).

Real ptys and real TCP sockets, one in-process device server. The
reproduction: a pty client floods INFO requests and never reads; before the
fix every reply the server could not write blocked the whole loop for up to
a second, so a TCP client's INFO took 1-2 s. Now replies wait in the port,
the port feeds no more requests until they move, every other port is
served, no reply is dropped, and a client gone for good is forgotten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from firmware_sim.device import DeviceController
from firmware_sim.factory import manufacture
from firmware_sim.models import get_model
from firmware_sim.token import Token
from host.client import TokenClient
from vserial import ports
from vserial.ports import MAX_PENDING_OUTPUT, OUTPUT_STALL_S, ClientLink, PtyPort, TcpPort
from vserial.server import BackgroundServer, DeviceServer
from vtoken import wire
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.wire import Command

SEED = b"12345678901234567890"
SERIAL = "1000000005"
WAIT_S = 10.0
#: INFO round trips timed while the flood goes on; before the fix each took 1-2 s.
ROUND_TRIPS = 20
#: The whole batch of round trips must take less than this (a tenth of what one blocked write cost
#: each before the fix; on this machine the batch takes a few milliseconds).
ROUND_TRIPS_BUDGET_S = 2.0


def _token() -> Token:
    return manufacture(model=get_model("hotp"), seed=SEED, serial=SERIAL, device_key=bytes(32),
                       clock=SimulatedClock(1_767_225_600 * NS_PER_SECOND))


#: A frame the device cannot decode (one byte of body): answered with a NAK of 58 bytes, 29 times its size.
GARBAGE_FRAME = b"\x02\x00"


class CountingController(DeviceController):
    """A device controller that counts the request bytes fed to it."""

    fed = 0

    def feed(self, data: bytes) -> bytes:
        self.fed += len(data)
        return super().feed(data)


def _open_pty_client(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


def _seq(index: int) -> int:
    return index % wire.MAX_SEQ + 1


def _info_request(index: int) -> bytes:
    return wire.encode_request(_seq(index), Command.INFO)


def _wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Flooder:
    """A pty client in a thread that writes INFO requests as fast as the port takes them and never reads."""

    def __init__(self, path: str) -> None:
        self.fd = _open_pty_client(path)
        self.stop = threading.Event()
        self.frames = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pending = b""
        while not self.stop.is_set():
            if not pending:
                pending = _info_request(self.frames)
                self.frames += 1
            try:
                pending = pending[os.write(self.fd, pending):]
            except BlockingIOError:
                select.select([], [self.fd], [], 0.05)

    def __enter__(self) -> Flooder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=WAIT_S)
        os.close(self.fd)


@pytest.fixture
def pty_and_tcp() -> Iterator[tuple[PtyPort, TcpPort]]:
    """One token on a pty and on TCP, served by one background loop (as ``vtoken serve`` does)."""
    token = _token()
    pty = PtyPort(DeviceController(token, sim_control=True))
    tcp = TcpPort(DeviceController(token, sim_control=True), "127.0.0.1", 0)
    with BackgroundServer(DeviceServer([pty, tcp])):
        yield pty, tcp


def test_a_pty_client_that_never_reads_does_not_slow_the_tcp_client(pty_and_tcp: tuple[PtyPort, TcpPort]) -> None:
    pty, tcp = pty_and_tcp
    with Flooder(pty.path) as flooder, TokenClient.open(tcp.url, timeout=WAIT_S) as client:
        _wait_until(lambda: pty.channel.pending > 0, "the pty's replies to back up")
        started = time.monotonic()
        for _ in range(ROUND_TRIPS):
            assert client.info().serial == SERIAL
        elapsed = time.monotonic() - started
        assert flooder.thread.is_alive() and pty.channel.pending > 0  # still flooding, still unread
    assert elapsed < ROUND_TRIPS_BUDGET_S, f"{ROUND_TRIPS} INFO round trips took {elapsed:.2f} s during the flood"
    assert 0 < pty.channel.most_pending <= MAX_PENDING_OUTPUT


@pytest.mark.parametrize("kind", ["info", "garbage"])
def test_a_pty_client_that_reads_late_gets_every_reply_in_order(pty_and_tcp: tuple[PtyPort, TcpPort], kind: str) -> None:
    """INFO replies are 6 times their request; NAKs to undecodable frames 29 times. None is dropped."""
    pty, _ = pty_and_tcp
    fd = _open_pty_client(pty.path)
    try:
        sent: list[int] = []
        rest = b""
        deadline = time.monotonic() + WAIT_S
        while not rest:  # send whole requests until the port stops taking them
            assert time.monotonic() < deadline, "the pty never stopped taking requests"
            frame = _info_request(len(sent)) if kind == "info" else GARBAGE_FRAME
            try:
                written = os.write(fd, frame)
            except BlockingIOError:
                if pty.channel.pending:
                    break
                select.select([], [fd], [], 0.05)
                continue
            sent.append(_seq(len(sent)) if kind == "info" else wire.UNSEQUENCED)
            rest = frame[written:]
        _wait_until(lambda: pty.channel.pending > 0, "the pty's replies to back up")
        assert len(sent) > 100  # far more than one reply's worth was left unread

        reader = wire.FrameReader()
        replies: list[int] = []
        deadline = time.monotonic() + WAIT_S
        while len(replies) < len(sent) and time.monotonic() < deadline:
            readable, writable, _ = select.select([fd], [fd] if rest else [], [], 0.5)
            if writable:
                rest = rest[os.write(fd, rest):]
            if readable:
                for item in reader.feed(os.read(fd, 65536)):
                    response = wire.decode_response(item)  # a FrameDecodeError item fails here, loudly
                    if kind == "info":
                        assert response.ok and response.payload.serial == SERIAL
                    else:
                        assert response.status is wire.Status.BAD_FRAME
                    replies.append(response.seq)
    finally:
        os.close(fd)
    assert replies == sent  # every reply, once, in order: nothing dropped for being slow
    assert pty.channel.most_pending <= MAX_PENDING_OUTPUT  # and never more held than the bound


def _serve_until(server: DeviceServer, condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        server.serve_once(0.01)


def _clog(pty: PtyPort, server: DeviceServer, client: int) -> None:
    """Send INFO requests from ``client`` without reading until the port holds replies and reads no more."""
    index, deadline = 0, time.monotonic() + WAIT_S
    while not pty.channel.pending or pty.channel.wants_input:
        assert time.monotonic() < deadline, "the pty never held replies back"
        with contextlib.suppress(BlockingIOError):
            os.write(client, _info_request(index))
            index += 1
        server.serve_once(0)
    with contextlib.suppress(BlockingIOError):  # and requests wait in the kernel, unread
        for _ in range(50):
            os.write(client, _info_request(index))
            index += 1


def _only_its_own_reply(pty: PtyPort, server: DeviceServer, controller: CountingController) -> None:
    """A new client sends one INFO: it gets exactly its reply, and only its request is fed to the device."""
    fed_before = controller.fed
    fresh = _open_pty_client(pty.path)
    try:
        request = wire.encode_request(4242, Command.INFO)
        os.write(fresh, request)
        reader, replies = wire.FrameReader(), []
        deadline = time.monotonic() + WAIT_S
        while not replies:
            assert time.monotonic() < deadline, "no reply to the next client"
            server.serve_once(0.01)
            with contextlib.suppress(BlockingIOError):
                replies += reader.feed(os.read(fresh, 65536))
        for _ in range(20):  # nothing else arrives: no stale reply, no stale request run
            server.serve_once(0.01)
            with contextlib.suppress(BlockingIOError):
                replies += reader.feed(os.read(fresh, 65536))
    finally:
        os.close(fresh)
    assert [wire.decode_response(r).seq for r in replies] == [4242]  # type: ignore[arg-type]
    assert controller.fed - fed_before == len(request)


def test_a_pty_client_that_leaves_replies_unread_is_forgotten_when_it_closes() -> None:
    """Its queued requests are not run for the next program that opens the port, nor its replies shown to it."""
    now = [100.0]
    controller = CountingController(_token(), sim_control=True)
    pty = PtyPort(controller, monotonic=lambda: now[0])
    server = DeviceServer([pty])
    try:
        gone = _open_pty_client(pty.path)
        _clog(pty, server, gone)
        os.close(gone)  # the client goes away without reading a thing
        _serve_until(server, lambda: pty.clients_left_unread == 1, "the port to notice the client left")
        assert pty.channel.pending == 0 and pty.clients_stalled == 0
        now[0] += 1  # the next program opens the port a second later, long before the stall time
        _only_its_own_reply(pty, server, controller)
        assert pty.clients_left_unread == 1  # a client that read its replies leaves without being "forgotten"
    finally:
        server.close()


def test_a_pty_client_that_stops_reading_is_forgotten_after_the_stall_time() -> None:
    """A hung program that keeps the port open: after OUTPUT_STALL_S its leftovers go, and the next client is clean."""
    now = [100.0]
    controller = CountingController(_token(), sim_control=True)
    pty = PtyPort(controller, monotonic=lambda: now[0])
    server = DeviceServer([pty])
    hung = _open_pty_client(pty.path)
    try:
        _clog(pty, server, hung)
        now[0] += OUTPUT_STALL_S - 0.5
        server.serve_once(0.01)
        assert pty.clients_stalled == 0 and pty.channel.pending  # slow is not yet gone
        now[0] += 0.5
        server.serve_once(0.01)
        assert pty.clients_stalled == 1 and pty.channel.pending == 0
        _only_its_own_reply(pty, server, controller)
    finally:
        os.close(hung)
        server.close()


def test_a_tcp_client_that_never_reads_is_disconnected_after_the_stall_time() -> None:
    now = [100.0]
    controller = CountingController(_token(), sim_control=True)
    port = TcpPort(controller, "127.0.0.1", 0, monotonic=lambda: now[0])
    server = DeviceServer([port])
    flooder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    flooder.connect((port.host, port.port))
    flooder.setblocking(False)
    try:
        _serve_until(server, lambda: port.clients_served == 1, "the connection")
        # A small send buffer on the server's side too, so the backlog builds in kilobytes, not megabytes.
        port._client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # type: ignore[union-attr]  # noqa: SLF001
        burst = b"".join(_info_request(seq) for seq in range(1000))
        deadline = time.monotonic() + WAIT_S
        link = port._channel  # noqa: SLF001 - the state under test
        assert link is not None
        while not link.pending or link.wants_input:
            assert time.monotonic() < deadline, "the server never held a reply back"
            with contextlib.suppress(BlockingIOError):
                flooder.send(burst)
            server.serve_once(0.01)
        fed = controller.fed
        for _ in range(10):  # replies held: no request is read, and the loop does not block
            server.serve_once(0.01)
            assert link.fd not in port.fds()
        assert controller.fed == fed
        now[0] += OUTPUT_STALL_S - 0.5
        server.serve_once(0.01)
        assert port.clients_stalled == 0  # slow is not yet stalled
        now[0] += 0.5
        server.serve_once(0.01)
        assert port.clients_stalled == 1 and port._channel is None  # noqa: SLF001
        flooder.settimeout(WAIT_S)
        with pytest.raises(ConnectionResetError):  # the server closed with replies unread: a reset
            while flooder.recv(65536):
                pass
    finally:
        flooder.close()
    with BackgroundServer(server), TokenClient.open(port.url, timeout=WAIT_S) as client:
        assert client.info().serial == SERIAL  # the next client is served
    assert port.clients_served >= 2


@pytest.mark.parametrize("error", [errno.EPIPE, errno.ECONNRESET, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.EIO])
def test_a_failed_write_marks_the_client_gone_and_never_escapes(monkeypatch: pytest.MonkeyPatch, error: int) -> None:
    """Any write error means the peer is gone: the server loop must not die of it."""
    controller = CountingController(_token(), sim_control=True)
    read_end, write_end = os.pipe()
    try:
        link = ClientLink(write_end, controller, time.monotonic)

        def failing(fd: int, data: object) -> int:
            raise OSError(error, os.strerror(error))

        monkeypatch.setattr(ports.os, "write", failing)
        link.receive(_info_request(0) + _info_request(1))
        monkeypatch.undo()
        assert link.closed and not link.wants_input and not link.wants_output and link.pending == 0
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_failed_write_on_either_port_ends_only_that_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Driven through the server loop: the pty forgets the client and serves the next; TCP drops it."""
    controller = CountingController(_token(), sim_control=True)
    pty = PtyPort(controller)
    tcp = TcpPort(DeviceController(_token(), sim_control=True), "127.0.0.1", 0)
    server = DeviceServer([pty, tcp])
    real_write = os.write
    target: list[int] = []  # the descriptor whose next write fails, once

    def fail_once(fd: int, data: object) -> int:
        if target and fd == target[0]:
            target.clear()
            raise OSError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
        return real_write(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(ports.os, "write", fail_once)
    client = _open_pty_client(pty.path)
    try:
        target.append(pty.channel.fd)
        real_write(client, _info_request(0))
        _serve_until(server, lambda: pty.write_failures == 1, "the failed write to be noticed")
        _only_its_own_reply(pty, server, controller)  # the next client is served
        tcp_client = socket.create_connection((tcp.host, tcp.port), timeout=WAIT_S)
        try:
            _serve_until(server, lambda: tcp._channel is not None, "the TCP connection")  # noqa: SLF001
            target.append(tcp._channel.fd)  # type: ignore[union-attr]  # noqa: SLF001
            tcp_client.sendall(_info_request(1))
            _serve_until(server, lambda: tcp._channel is None, "the TCP client to be dropped")  # noqa: SLF001
        finally:
            tcp_client.close()
    finally:
        os.close(client)
        server.close()


def test_accept_failing_for_want_of_descriptors_pauses_the_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    """EMFILE from accept() leaves the connection waiting: without a pause the loop would spin on it."""
    now = [100.0]
    port = TcpPort(DeviceController(_token(), sim_control=True), "127.0.0.1", 0, monotonic=lambda: now[0])
    server = DeviceServer([port])
    listener = port.fds()[0]

    def no_descriptors(self: socket.socket) -> object:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    client = socket.create_connection((port.host, port.port), timeout=WAIT_S)
    try:
        monkeypatch.setattr(socket.socket, "accept", no_descriptors)
        server.serve_once(WAIT_S)  # the listener is readable; accept fails; the server lives on
        assert listener not in port.fds()  # paused: not watched, so select does not spin on it
        monkeypatch.undo()
        now[0] += 1.0
        assert listener in port.fds()
        _serve_until(server, lambda: port.clients_served == 1, "the connection, accepted after the pause")
    finally:
        client.close()
        server.close()
