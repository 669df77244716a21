"""Device-side ports: a pseudo-terminal and a TCP listener, each feeding a device controller.

A port owns file descriptors that a :class:`~vserial.server.DeviceServer`
watches with ``select``; when one is readable the server calls
:meth:`Port.on_readable`, which reads the bytes and hands them to the
port's :class:`ClientLink`, which feeds them to the
:class:`~firmware_sim.device.DeviceController` and writes the replies.

No write ever blocks the server: replies go out as far as the descriptor
takes them, the rest waits in the link and is written when the descriptor
is writable (:meth:`Port.on_writable`). Requests are fed to the device a
frame at a time, and only while at most :data:`OUTPUT_HIGH_WATER` reply
bytes wait; then the port reads nothing more, as a UART with flow control
stops taking bytes it cannot answer. So a client that sends without
reading fills only its own kernel buffers and stalls only itself, the
other ports are served as before, a port never holds more than
:data:`MAX_PENDING_OUTPUT` reply bytes, and no reply is dropped for being
slow. A client whose replies do not move for :data:`OUTPUT_STALL_S`, or
that closes a pty with replies unread, is taken to be gone: a TCP client
is disconnected (so the next one can be served); on a pty its queued
requests and unread replies are discarded, so the next program to open the
port starts clean. No write, read or accept error ends the server loop.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import socket
import struct
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
#: A port feeds the device no further request while more reply bytes than this wait for its client.
OUTPUT_HIGH_WATER = 4096
#: The most reply bytes a port ever holds: the high-water mark plus the largest reply to one frame.
MAX_PENDING_OUTPUT = OUTPUT_HIGH_WATER + wire.cobs_max_encoded_size(wire.MAX_FRAME_SIZE) + 1
#: A client whose replies have not moved for this long is taken to be gone (see the module doc).
OUTPUT_STALL_S = 5.0
#: How long a refused TCP client is kept: time to send its first frame, get NAK BUSY, and hang up.
BUSY_LINGER_S = 2.0
#: At most this many refused connections are kept at once; more are closed at once, unanswered.
MAX_LINGERING = 8
#: After accept() fails for want of descriptors, the listener is not watched for this long (no busy loop).
ACCEPT_PAUSE_S = 1.0

_LOG = logging.getLogger(__name__)


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


class ClientLink:
    """One client's two byte streams: requests fed to the device a frame at a time, replies written unblocked.

    :meth:`receive` takes what one read returned (at most :data:`READ_CHUNK`
    bytes) and feeds it to ``controller`` one 0x00-delimited piece at a
    time, so one piece yields at most one reply; feeding pauses while more
    than :data:`OUTPUT_HIGH_WATER` reply bytes wait, and the rest of the read
    waits here. The port reads again only when :attr:`wants_input`.
    ``monotonic`` stamps the last progress, for :meth:`stalled_for`.
    ``closed`` is set when a write fails: the peer is gone.
    """

    def __init__(self, fd: int, controller: DeviceController, monotonic: Callable[[], float]) -> None:
        self.fd = fd
        self.controller = controller
        self._monotonic = monotonic
        self._out = bytearray()
        self._in = b""
        self._in_at = 0
        self._progress_at = monotonic()
        self.closed = False
        #: The most reply bytes held at once so far.
        self.most_pending = 0

    @property
    def pending(self) -> int:
        """Reply bytes waiting for the client."""
        return len(self._out)

    @property
    def wants_input(self) -> bool:
        """True when every request read so far was answered and written: the port may read more."""
        return not self.closed and not self._out and self._in_at >= len(self._in)

    @property
    def wants_output(self) -> bool:
        """True when replies wait for the descriptor to become writable."""
        return not self.closed and bool(self._out)

    def receive(self, data: bytes) -> None:
        """Take the bytes of one read (only when :attr:`wants_input`), feed them and write the replies."""
        self._in, self._in_at = bytes(data), 0
        self._pump()

    def on_writable(self) -> None:
        """Write what the descriptor takes, then feed more of the waiting requests."""
        self._pump()

    def discard(self) -> None:
        """Forget the waiting requests and replies (the client is gone)."""
        self._out.clear()
        self._in, self._in_at = b"", 0

    def stalled_for(self) -> float:
        """Seconds since replies last moved while some are waiting (0 when none are)."""
        return self._monotonic() - self._progress_at if self._out else 0.0

    def _pump(self) -> None:
        while not self.closed and self._in_at < len(self._in):
            if len(self._out) > OUTPUT_HIGH_WATER:
                self._flush()
                if len(self._out) > OUTPUT_HIGH_WATER:
                    return  # the client is not reading: wait until the descriptor is writable
                continue
            end = self._in.find(wire.DELIMITER, self._in_at)
            stop = len(self._in) if end < 0 else end + 1
            piece = self._in[self._in_at : stop]
            self._in_at = stop
            reply = self.controller.feed(piece)
            if reply:
                if not self._out:
                    self._progress_at = self._monotonic()
                self._out += reply
                self.most_pending = max(self.most_pending, len(self._out))
        self._flush()

    def _flush(self) -> None:
        while self._out and not self.closed:
            try:
                written = os.write(self.fd, self._out)
            except BlockingIOError:
                return
            except OSError:  # EIO, EPIPE, ECONNRESET, ETIMEDOUT...: the peer is gone
                self.closed = True
                self.discard()
                return
            del self._out[:written]
            self._progress_at = self._monotonic()


class _CloseWatch:
    """Tells when a program that opened a pty for writing closes it (Linux inotify; absent elsewhere).

    A pty client that leaves with replies unread is gone for good: the port
    forgets it at once rather than after :data:`OUTPUT_STALL_S`, so the next
    program to open the port does not get its leftovers.
    """

    _IN_CLOSE_WRITE = 0x00000008
    _IN_NONBLOCK = os.O_NONBLOCK
    _IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
    _EVENT = struct.Struct("iIII")

    def __init__(self, path: str) -> None:
        self.fd: int | None = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(self._IN_NONBLOCK | self._IN_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        if libc.inotify_add_watch(fd, os.fsencode(path), self._IN_CLOSE_WRITE) < 0:
            os.close(fd)
            return
        self.fd = fd

    def closes(self) -> int:
        """How many writers closed the pty since the last call."""
        if self.fd is None:
            return 0
        count = 0
        while True:
            try:
                data = os.read(self.fd, 4096)
            except (BlockingIOError, InterruptedError):
                return count
            except OSError:
                return count
            offset = 0
            while offset + self._EVENT.size <= len(data):
                _, mask, _, name_length = self._EVENT.unpack_from(data, offset)
                count += bool(mask & self._IN_CLOSE_WRITE)
                offset += self._EVENT.size + name_length

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


class PtyPort:
    """The token on a pseudo-terminal: clients open ``path`` (``/dev/pts/N``) or ``link``.

    The master side is put in raw mode (so 0x0a, 0x03, 0x11, 0x13 pass through
    untouched), and the port keeps its own descriptor of the slave side open
    for its whole life, so a client that disconnects never makes reads fail
    with EIO. Replies nobody reads wait in the kernel's buffer and then in
    the port's :class:`ClientLink`. When a client that left them closes the
    port, or after :data:`OUTPUT_STALL_S` without progress, they and the
    requests still queued are discarded (see the module doc).
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
        self.channel = ClientLink(self._master, controller, monotonic)
        #: Clients forgotten: stalled for OUTPUT_STALL_S, gone with replies unread, or gone at a failed write.
        self.clients_stalled = 0
        self.clients_left_unread = 0
        self.write_failures = 0
        self.path = os.ttyname(self._slave)
        self._close_watch = _CloseWatch(self.path)
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
        """The master side unless requests or replies wait, and the close watch (stalled clients forgotten here)."""
        if self.channel.closed:
            self.write_failures += 1
            self._forget_client()
        elif self.channel.stalled_for() >= OUTPUT_STALL_S:
            self.clients_stalled += 1
            self._forget_client()
        fds = [self._master] if self.channel.wants_input else []
        if self._close_watch.fd is not None:
            fds.append(self._close_watch.fd)
        return fds

    def write_fds(self) -> list[int]:
        return [self._master] if self.channel.wants_output else []

    def on_readable(self, fd: int) -> None:
        if fd == self._close_watch.fd:
            if self._close_watch.closes() and not self.channel.wants_input:
                self.clients_left_unread += 1  # a writer closed the port with the line clogged: it is gone
                self._forget_client()
            return
        try:
            data = os.read(self._master, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                _LOG.warning("reading %s failed: %s", self.path, exc.strerror)
            return
        if data:
            self.channel.receive(data)

    def on_writable(self, fd: int) -> None:
        self.channel.on_writable()

    def _forget_client(self) -> None:
        """Discard the gone client's unread replies and unanswered requests, in the link and in the kernel."""
        _LOG.info("%s: a client left replies unread; its queued requests and replies were discarded", self.path)
        self.channel.discard()
        self.channel.closed = False
        for fd in (self._master, self._slave):  # requests queued for us; replies queued for the client
            with contextlib.suppress(termios.error, OSError):
                termios.tcflush(fd, termios.TCIFLUSH)
        self.controller.reset_link()

    def close(self) -> None:
        if self.link is not None:
            with contextlib.suppress(OSError):
                if self.link.is_symlink() and os.readlink(self.link) == self.path:
                    self.link.unlink()
        self._close_watch.close()
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
    discards its half frame. Replies the client does not read wait in its
    :class:`ClientLink` and the port reads no more of its requests
    meanwhile; a client whose replies do not move for :data:`OUTPUT_STALL_S`
    is disconnected. ``monotonic`` is the clock for both deadlines.
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
        self._channel: ClientLink | None = None
        self._accept_paused_until = 0.0
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
        if self._channel is not None and self._channel.stalled_for() >= OUTPUT_STALL_S:
            self.clients_stalled += 1
            self._drop_client()
        fds = [self._listener.fileno()] if self._monotonic() >= self._accept_paused_until else []
        if self._channel is not None and self._channel.wants_input:
            fds.append(self._channel.fd)
        fds.extend(self._refused)
        return fds

    def write_fds(self) -> list[int]:
        return [self._channel.fd] if self._channel is not None and self._channel.wants_output else []

    def on_writable(self, fd: int) -> None:
        if self._channel is not None and fd == self._channel.fd:
            self._channel.on_writable()
            if self._channel.closed:
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
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS: the connection waits; so does the listener, briefly
            _LOG.warning("accepting a connection on %s failed: %s", self.url, exc.strerror)
            self._accept_paused_until = self._monotonic() + ACCEPT_PAUSE_S
            return
        conn.setblocking(False)
        if self._client is not None:
            self._refuse(conn)  # one client at a time
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client = conn
        self._channel = ClientLink(conn.fileno(), self.controller, self._monotonic)
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
        link = self._channel
        if link is None:
            return
        link.receive(data)
        if link.closed:
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
        self._channel = None
        self.controller.reset_link()

    def close(self) -> None:
        self._drop_client()
        for fd in list(self._refused):
            self._close_refused(fd)
        with contextlib.suppress(OSError):
            self._listener.close()
