"""Byte pipes to a token: the :class:`Connection` interface and its implementations.

:class:`~host.client.TokenClient` takes a connection by injection (as
python-fido2's device classes do), so the client never knows whether the
token sits behind a pty, a TCP socket or in this very process:

* :class:`SerialConnection` opens any pyserial URL: a device path such as
  ``/dev/pts/3`` or a symlink to one, ``socket://host:port``, or
  ``vtoken://NAME`` for a device registered in process with
  :func:`vserial.inproc.register` (importing this module registers that URL
  scheme with pyserial, see :func:`register_url_handler`).
* :class:`LoopbackConnection` feeds a :class:`~firmware_sim.device.DeviceController`
  directly; tests wrap it to drop or damage bytes at the transport seam.

Every failure is a :class:`~vtoken.errors.TransportError` with a message that
names the port, never a pyserial or OS exception; a device that is serving
another client is a :class:`DeviceBusyError` (one).

Connections move bytes only. The protocol's session start (HELLO, which makes
the device forget its remembered reply) is sent by
:meth:`host.client.TokenClient.open` right after it opens a connection here.
"""

from __future__ import annotations

import errno
import logging
import urllib.parse
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import serial

from vtoken.errors import DeviceTimeoutError, InvalidInputError, TransportError

if TYPE_CHECKING:
    from firmware_sim.device import DeviceController

__all__ = [
    "DEFAULT_WRITE_TIMEOUT",
    "HANDLER_PACKAGE",
    "Connection",
    "DeviceBusyError",
    "LoopbackConnection",
    "SerialConnection",
    "register_url_handler",
]

_LOG = logging.getLogger(__name__)
_Self = TypeVar("_Self", bound="_ContextMixin")

#: The package pyserial searches for ``protocol_vtoken`` (see :mod:`host.protocol_vtoken`).
HANDLER_PACKAGE = "host"
#: Seconds a write may block (a device that stopped reading fills the pty or socket buffer).
DEFAULT_WRITE_TIMEOUT = 2.0
_URL_MARK = "://"
_SOCKET_PREFIX = "socket://"

#: errno -> what it means for someone opening a port.
_ERRNO_TEXT: dict[int, str] = {
    errno.ENOENT: "no such port",
    errno.ENXIO: "no such port (no device behind it)",
    errno.ENODEV: "no such port (no device behind it)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EBUSY: "the port is busy",
    errno.EWOULDBLOCK: "the port is in use by another program",
    errno.ENOTTY: "not a serial port",
    errno.EISDIR: "not a serial port (a directory)",
    errno.ECONNREFUSED: "connection refused (is the device server running?)",
    errno.ETIMEDOUT: "connection timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EIO: "input/output error (the device went away?)",
}


class DeviceBusyError(TransportError):
    """The device is serving another client (a TCP server answered NAK BUSY and hung up)."""


def register_url_handler() -> None:
    """Let ``serial.serial_for_url`` open ``vtoken://NAME`` (idempotent; done at import)."""
    if HANDLER_PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(HANDLER_PACKAGE)


register_url_handler()


@runtime_checkable
class Connection(Protocol):
    """A byte stream to one device. Implementations raise :class:`TransportError` only."""

    @property
    def url(self) -> str:
        """Where the device is, for messages (``/dev/pts/3``, ``socket://...``, ``vtoken://...``)."""
        ...

    def write(self, data: bytes) -> None:
        """Send all of ``data``."""
        ...

    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Wait up to ``timeout`` s for data; return at once what arrived (≤ ``max_bytes``), b'' if nothing.

        Never busy-loops: waiting happens inside the transport.
        """
        ...

    def close(self) -> None:
        """Release the port (idempotent)."""
        ...

    def __enter__(self) -> Connection: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class _ContextMixin:
    """``with connection:`` closes it."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _errno_of(exc: BaseException | None) -> int | None:
    """The first errno found on ``exc`` or the exceptions it was raised from."""
    seen = 0
    while exc is not None and seen < 5:
        number = getattr(exc, "errno", None)
        if isinstance(number, int):
            return number
        args = getattr(exc, "args", ())
        if len(args) >= 2 and isinstance(args[0], int):  # termios.error(errno, text)
            return args[0]
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _describe(exc: BaseException) -> str:
    """A short reason for a failed open, read or write."""
    number = _errno_of(exc)
    if number is not None and number in _ERRNO_TEXT:
        return _ERRNO_TEXT[number]
    text = str(exc.args[-1] if isinstance(exc, OSError) and exc.args else exc).strip()
    return text or type(exc).__name__


def _check_timeout(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise InvalidInputError(f"{what} must be a number of seconds >= 0")
    return float(value)


def _check_socket_url(url: str) -> None:
    """pyserial's own message for ``socket://HOST`` without a port is a TypeError text."""
    if not url.lower().startswith(_SOCKET_PREFIX):
        return
    try:
        port = urllib.parse.urlsplit(url).port
    except ValueError:
        port = None
    if port is None or not urllib.parse.urlsplit(url).hostname:
        raise TransportError(f"cannot open {url}: expected {_SOCKET_PREFIX}HOST:PORT")


class SerialConnection(_ContextMixin):
    """A :class:`Connection` over an open pyserial port (any URL pyserial knows, plus ``vtoken://``).

    Reads use the port's own timeout (``select`` inside pyserial), never
    ``in_waiting``, which is unreliable on ptys and is 0 or 1 on ``socket://``.
    """

    def __init__(self, port: serial.SerialBase, url: str | None = None) -> None:
        self._port = port
        self._url = url if url is not None else str(port.port)
        self._timeout: float | None = port.timeout

    @classmethod
    def open(
        cls, url: str, *, exclusive: bool | None = None, write_timeout: float = DEFAULT_WRITE_TIMEOUT
    ) -> SerialConnection:
        """Open ``url``; :class:`TransportError` ("cannot open URL: reason") if that fails.

        ``exclusive`` (default: True for device paths, None for ``scheme://``
        URLs, where pyserial cannot lock) takes an advisory lock, so a second
        program opening the same pty is refused instead of stealing replies.
        """
        if not isinstance(url, str) or not url.strip():
            raise InvalidInputError("a port must be a device path or a URL such as socket://HOST:PORT")
        url = url.strip()
        if exclusive is None and _URL_MARK not in url:
            exclusive = True
        _check_socket_url(url)
        write_timeout = _check_timeout(write_timeout, "write_timeout")
        try:
            port = serial.serial_for_url(url, timeout=0, write_timeout=write_timeout, exclusive=exclusive)
        except ValueError as exc:  # unknown scheme, bad settings
            scheme = url.split(_URL_MARK, 1)[0] if _URL_MARK in url else ""
            reason = f"unknown URL scheme {scheme!r}" if "not known" in str(exc) else str(exc)
            raise TransportError(f"cannot open {url}: {reason}") from None
        except (serial.SerialException, OSError, TransportError) as exc:
            raise TransportError(f"cannot open {url}: {_describe(exc)}") from None
        _LOG.debug("opened %s", url)
        return cls(port, url)

    @property
    def url(self) -> str:
        """The URL or path this connection was opened with."""
        return self._url

    @property
    def port(self) -> serial.SerialBase:
        """The underlying pyserial port."""
        return self._port

    def write(self, data: bytes) -> None:
        """Send all of ``data``."""
        try:
            self._port.write(bytes(data))
        except serial.SerialTimeoutException:
            raise DeviceTimeoutError(f"{self._url} is not accepting data (the device stopped reading)") from None
        except (serial.SerialException, OSError, TransportError) as exc:
            raise TransportError(f"lost the connection to {self._url}: {_describe(exc)}") from None

    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Wait up to ``timeout`` s for a first byte, then take what else is there (≤ ``max_bytes``)."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidInputError("max_bytes must be a positive int")
        timeout = _check_timeout(timeout, "timeout")
        try:
            self._set_timeout(timeout)
            first = self._port.read(1)
            if not first or max_bytes == 1:
                return bytes(first)
            self._set_timeout(0)
            return bytes(first) + bytes(self._port.read(max_bytes - 1))
        except (serial.SerialException, OSError, TransportError) as exc:
            raise TransportError(f"lost the connection to {self._url}: {_describe(exc)}") from None

    def _set_timeout(self, timeout: float) -> None:
        # Changing the timeout reconfigures the port; skip it when nothing changes.
        if self._timeout != timeout:
            self._port.timeout = timeout
            self._timeout = timeout

    def close(self) -> None:
        """Close the port (idempotent; errors while closing are ignored).

        pyserial's ``socket://`` close() calls shutdown() and close() in one
        ``try``: after a peer reset shutdown() raises and the socket is left
        open, so it is closed here too.
        """
        sock = getattr(self._port, "_socket", None)
        try:
            self._port.close()
        except (serial.SerialException, OSError):  # pragma: no cover - closing a vanished port
            pass
        finally:
            if sock is not None:
                sock.close()

    def __repr__(self) -> str:
        return f"SerialConnection({self._url!r})"


class LoopbackConnection(_ContextMixin):
    """A :class:`Connection` wired straight to a device controller, no pyserial (for tests).

    The controller answers synchronously, so :meth:`read` never waits: an
    empty buffer means no answer is coming.
    """

    def __init__(self, controller: DeviceController, url: str = "loopback://") -> None:
        self._controller = controller
        self._url = url
        self._buffer = bytearray()
        self._closed = False

    @property
    def url(self) -> str:
        """A name for messages."""
        return self._url

    @property
    def controller(self) -> DeviceController:
        """The device on the other end."""
        return self._controller

    def write(self, data: bytes) -> None:
        """Feed ``data`` to the device; buffer its replies."""
        self._check_open()
        self._buffer += self._controller.feed(bytes(data))

    def read(self, max_bytes: int, timeout: float) -> bytes:
        """Up to ``max_bytes`` buffered reply bytes (b'' if none; never waits)."""
        self._check_open()
        chunk = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return chunk

    def close(self) -> None:
        """Disconnect (idempotent)."""
        self._closed = True
        self._buffer.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"{self._url} is closed")
