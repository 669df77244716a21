"""Device-side ports: a pseudo-terminal and a TCP listener, each feeding a device controller.

A port owns file descriptors that a :class:`~vserial.server.DeviceServer`
watches with ``select``; when one is readable the server calls
:meth:`Port.on_readable`, which reads the bytes, hands them to the port's
:class:`~firmware_sim.device.DeviceController`, and queues the replies.

No write ever blocks the server: replies go out as far as the descriptor
takes them, the rest waits in the port's :class:`Outbox` and is written when
the descriptor is writable (:meth:`Port.on_writable`). While a port has
replies waiting it reads no further requests, as a UART with flow control
stops taking bytes it cannot answer; so a client that sends without reading
fills only its own kernel buffers and stalls only itself, and the other
ports are served as before. Nothing is dropped for being slow: the client
gets every reply once it reads (a TCP client that reads nothing for
:data:`OUTPUT_STALL_S` is disconnected, so the next client can be served).
"""

from __future__ import annotations

import contextlib
import errno
import os
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
#: Replies one port may hold for a client that is not reading. A port reads
#: nothing while any are held, so it holds at most the replies to one
#: READ_CHUNK of requests (a few KiB); this bound is the guard behind that.
MAX_PENDING_OUTPUT = 64 * 1024
#: A TCP client whose replies have not moved for this long is disconnected
#: (it is not reading, and only one client is served at a time).
OUTPUT_STALL_S = 5.0
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

    def write_fds(self) -> list[int]:
        """The descriptors with replies waiting, to watch for writing."""
        ...

    def on_readable(self, fd: int) -> None:
        """Handle readable ``fd``: read, feed the device, queue the replies."""
        ...

    def on_writable(self, fd: int) -> None:
        """Write as much of ``fd``'s waiting replies as it takes now."""
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


class Outbox:
    """Replies waiting to be written to one non-blocking descriptor.

    :meth:`send` writes what the descriptor takes now and keeps the rest;
    :meth:`flush` continues when it is writable. ``monotonic`` stamps the
    last progress, for :meth:`stalled_since`. ``dropped`` counts bytes
    refused by the :data:`MAX_PENDING_OUTPUT` guard.
    """

    def __init__(self, fd: int, monotonic: Callable[[], float]) -> None:
        self.fd = fd
        self._monotonic = monotonic
        self._pending = bytearray()
        self._progress_at = monotonic()
        self.closed = False
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Bytes waiting."""
        return len(self._pending)

    def send(self, data: bytes) -> None:
        """Queue ``data`` (or drop it whole if the guard is reached) and write what the descriptor takes."""
        if not data or self.closed:
            return
        if len(self._pending) + len(data) > MAX_PENDING_OUTPUT:
            self.dropped += len(data)
            return
        if not self._pending:
            self._progress_at = self._monotonic()
        self._pending += data
        self.flush()

    def flush(self) -> None:
        """Write what the descriptor takes now; a peer that is gone marks the outbox closed."""
        while self._pending and not self.closed:
            try:
                written = os.write(self.fd, self._pending)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EPIPE, errno.ECONNRESET):
                    self.closed = True
                    self._pending.clear()
                    return
                raise
            del self._pending[:written]
            self._progress_at = self._monotonic()

    def stalled_for(self) -> float:
        """Seconds since replies last moved while some are waiting (0 when none are)."""
        return self._monotonic() - self._progress_at if self._pending else 0.0


class PtyPort:
    """The token on a pseudo-terminal: clients open ``path`` (``/dev/pts/N``) or ``link``.

    The master side is put in raw mode (so 0x0a, 0x03, 0x11, 0x13 pass through
    untouched), and the port keeps its own descriptor of the slave side open
    for its whole life, so a client that disconnects never makes reads fail
    with EIO. Replies nobody reads wait in the kernel's buffer and then in
    the port's :class:`Outbox` (see the module doc); a client that opens
    the port later discards them, as pyserial does on open.
    """

    def __init__(
        self, controller: DeviceController, *, link: str | os.PathLike[str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controller = controller
        self._master, self._slave = os.openpty()
        for fd in (self._master, self._slave):
            tty.setraw(fd, termios.TCSANOW)
        os.set_blocking(self._master, False)
        self.outbox = Outbox(self._master, monotonic)
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
        """The master side, unless replies are waiting for the client to read."""
        return [] if self.outbox.pending else [self._master]

    def write_fds(self) -> list[int]:
        return [self._master] if self.outbox.pending else []

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
            self.outbox.send(self.controller.feed(data))

    def on_writable(self, fd: int) -> None:
        self.outbox.flush()

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
    discards its half frame. Replies the client does not read wait in an
    :class:`Outbox` and the port reads no more of its requests meanwhile; a
    client whose replies do not move for :data:`OUTPUT_STALL_S` is
    disconnected. ``monotonic`` is the clock for both deadlines.
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
        self._outbox: Outbox | None = None
        self.clients_served = 0
        self.clients_stalled = 0
        shown = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        self.url = f"socket://{shown}:{self.port}"
        self.description = self.url

    def fds(self) -> list[int]:
        """The listener, the client unless replies wait for it, and the refused connections still kept.

        Expired refused connections, and a client stalled for :data:`OUTPUT_STALL_S`, are closed here.
        """
        self._expire_refused()
        if self._outbox is not None and self._outbox.stalled_for() >= OUTPUT_STALL_S:
            self.clients_stalled += 1
            self._drop_client()
        fds = [self._listener.fileno()]
        if self._client is not None and self._outbox is not None and not self._outbox.pending:
            fds.append(self._client.fileno())
        fds.extend(self._refused)
        return fds

    def write_fds(self) -> list[int]:
        return [self._outbox.fd] if self._outbox is not None and self._outbox.pending else []

    def on_writable(self, fd: int) -> None:
        if self._outbox is not None and fd == self._outbox.fd:
            self._outbox.flush()
            if self._outbox.closed:
                self._drop_client()

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
        self._outbox = Outbox(conn.fileno(), self._monotonic)
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
        outbox = self._outbox
        if outbox is None:
            return
        outbox.send(self.controller.feed(data))
        if outbox.closed:
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
        try:  # a few bytes into a fresh socket's empty buffer: taken whole, or the client is gone
            refused.conn.send(busy_nak(items[0]))
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
        self._outbox = None
        self.controller.reset_link()

    def close(self) -> None:
        self._drop_client()
        for fd in list(self._refused):
            self._close_refused(fd)
        with contextlib.suppress(OSError):
            self._listener.close()
