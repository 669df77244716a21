"""Device-side ports: a pseudo-terminal and a TCP listener, each feeding a device controller.

A port owns file descriptors that a :class:`~vserial.server.DeviceServer`
watches with ``select``; when one is readable the server calls
:meth:`Port.on_readable`, which reads the bytes, hands them to the port's
:class:`~firmware_sim.device.DeviceController`, and writes the replies back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from firmware_sim.device import DeviceController
from vtoken import wire
from vtoken.errors import TransportError

READ_CHUNK = 4096
#: A reply that cannot be written within this time (nobody reads the port) is dropped.
WRITE_TIMEOUT_S = 1.0
#: How long a refused TCP client is kept: time to send its first frame, get NAK BUSY, and hang up.
BUSY_LINGER_S = 2.0
#: At most this many refused connections are kept at once; more are closed at once, unanswered.
MAX_LINGERING = 8


class Port(Protocol):
    """What the server needs of a port."""

    description: str

    def fds(self) -> list[int]:
        """The descriptors to watch for reading."""
        ...

    def on_readable(self, fd: int) -> None:
        """Handle readable ``fd``: read, feed the device, write the replies."""
        ...

    def close(self) -> None:
        """Release every resource (and remove any symlink)."""
        ...


def busy_nak(item: bytes | wire.FrameDecodeError) -> bytes:
    """The NAK BUSY answering one frame from a TCP client the device cannot serve now.

    It echoes the request's seq and command when the frame's CRC is good (as any
    NAK does), else carries seq 0 and command 0.
    """
    if isinstance(item, wire.FrameDecodeError):
        seq, command = item.seq, item.command
    else:
        try:
            request = wire.decode_request(item)
            seq, command = request.seq, request.command
        except wire.FrameDecodeError as exc:
            seq, command = exc.seq, exc.command
    return wire.encode_nak(seq, command, wire.Status.BUSY, wire.BUSY_MESSAGE)


class _Refused:
    """A TCP client refused because another one is connected: answer its first frame with BUSY, then drain it."""

    def __init__(self, conn: socket.socket, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline
        self.reader = wire.FrameReader()
        self.answered = False


def _write_all(fd: int, data: bytes) -> bool:
    """Write ``data`` to a non-blocking descriptor; False if the peer stopped reading."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            _, ready, _ = select.select([], [fd], [], WRITE_TIMEOUT_S)
            if not ready:
                return False
            continue
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EPIPE, errno.ECONNRESET):
                return False
            raise
        view = view[written:]
    return True


class PtyPort:
    """The token on a pseudo-terminal: clients open ``path`` (``/dev/pts/N``) or ``link``.

    The master side is put in raw mode (so 0x0a, 0x03, 0x11, 0x13 pass through
    untouched), and the port keeps its own descriptor of the slave side open
    for its whole life, so a client that disconnects never makes reads fail
    with EIO.
    """

    def __init__(self, controller: DeviceController, *, link: str | os.PathLike[str] | None = None) -> None:
        self.controller = controller
        self._master, self._slave = os.openpty()
        for fd in (self._master, self._slave):
            tty.setraw(fd, termios.TCSANOW)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.link = Path(link) if link is not None else None
        if self.link is not None:
            self._make_link(self.link)
        self.description = f"{self.path}" + (f" (link {self.link})" if self.link else "")

    def _make_link(self, link: Path) -> None:
        if link.exists() and not link.is_symlink():
            self.close()
            raise TransportError(f"{link} exists and is not a symlink; refusing to replace it")
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(self.path, tmp)
        os.replace(tmp, link)

    def fds(self) -> list[int]:
        return [self._master]

    def on_readable(self, fd: int) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:
                return
            raise
        if data:
            reply = self.controller.feed(data)
            if reply:
                _write_all(self._master, reply)

    def close(self) -> None:
        if self.link is not None:
            with contextlib.suppress(OSError):
                if self.link.is_symlink() and os.readlink(self.link) == self.path:
                    self.link.unlink()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a tuple; :class:`TransportError` if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise TransportError(f"--tcp wants HOST:PORT, not {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class TcpPort:
    """The token over TCP for pyserial's ``socket://HOST:PORT`` URLs.

    One client at a time. A second client, while one is connected, is refused:
    its first frame is answered with NAK BUSY ("device busy: another client is
    connected", see :func:`busy_nak`), after which the server shuts down its
    side of that connection, reads and drops whatever else the client sends,
    and closes it when the client hangs up or :data:`BUSY_LINGER_S` after it
    connected. (Answering a frame, rather than writing on accept, means the
    client has finished opening its port, which discards early input, and the
    drain means the NAK is never lost to a TCP reset.) After a client
    disconnects, the next one is served. A client vanishing mid-frame only
    discards its half frame. ``monotonic`` is the clock for the deadline.
    """

    def __init__(
        self, controller: DeviceController, host: str, port: int, *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controller = controller
        self._monotonic = monotonic
        self._refused: dict[int, _Refused] = {}
        self.clients_refused = 0
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except OSError as exc:
            self._listener.close()
            raise TransportError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self._listener.listen(4)
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._client: socket.socket | None = None
        self.clients_served = 0
        shown = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.url = f"socket://{shown}:{self.port}"
        self.description = self.url

    def fds(self) -> list[int]:
        """The listener, the client, and the refused connections still kept (expired ones are closed here)."""
        self._expire_refused()
        fds = [self._listener.fileno()]
        if self._client is not None:
            fds.append(self._client.fileno())
        fds.extend(self._refused)
        return fds

    def on_readable(self, fd: int) -> None:
        if fd == self._listener.fileno():
            self._accept()
        elif self._client is not None and fd == self._client.fileno():
            self._receive(self._client)
        elif fd in self._refused:
            self._drain_refused(fd)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        if self._client is not None:
            self._refuse(conn)  # one client at a time
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = conn
        self.clients_served += 1
        self.controller.reset_link()

    def _receive(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop_client()
            return
        reply = self.controller.feed(data)
        if reply and not _write_all(conn.fileno(), reply):
            self._drop_client()

    def _refuse(self, conn: socket.socket) -> None:
        """Keep ``conn`` until its first frame, which is answered with NAK BUSY (see the class doc)."""
        self.clients_refused += 1
        if len(self._refused) >= MAX_LINGERING:
            with contextlib.suppress(OSError):
                conn.close()
            return
        self._refused[conn.fileno()] = _Refused(conn, self._monotonic() + BUSY_LINGER_S)

    def _drain_refused(self, fd: int) -> None:
        refused = self._refused[fd]
        try:
            data = refused.conn.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the refused client hung up
            self._close_refused(fd)
            return
        if refused.answered:
            return
        items = refused.reader.feed(data)
        if not items:
            return
        refused.answered = True
        try:
            _write_all(fd, busy_nak(items[0]))
            refused.conn.shutdown(socket.SHUT_WR)
        except OSError:
            self._close_refused(fd)

    def _expire_refused(self) -> None:
        now = self._monotonic()
        for fd in [fd for fd, refused in self._refused.items() if now >= refused.deadline]:
            self._close_refused(fd)

    def _close_refused(self, fd: int) -> None:
        refused = self._refused.pop(fd)
        with contextlib.suppress(OSError):
            refused.conn.close()

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
            self._client = None
        self.controller.reset_link()

    def close(self) -> None:
        self._drop_client()
        for fd in list(self._refused):
            self._close_refused(fd)
        with contextlib.suppress(OSError):
            self._listener.close()
