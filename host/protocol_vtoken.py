"""pyserial URL handler for ``vtoken://NAME``: a device registered in this process.

pyserial looks for the module ``<package>.protocol_<scheme>`` in every package
of ``serial.protocol_handler_packages``; :mod:`host.connection` appends
``"host"`` there at import, after which
``serial.serial_for_url("vtoken://NAME")`` opens the
:class:`~firmware_sim.device.DeviceController` registered with
:func:`vserial.inproc.register`. There is no thread, pty or socket: a write
feeds the controller under :func:`vserial.inproc.device_lock` and buffers its
replies, and a read returns what is buffered. The device answers
synchronously, so a read never waits: an empty buffer means no answer is
coming, and it returns b'' at once whatever the timeout.

Modelled on pyserial's own ``serial/urlhandler/protocol_loop.py``. One port
object is meant for one thread, like a real port.
"""

from __future__ import annotations

from typing import Any

from serial.serialutil import PortNotOpenError, SerialBase, SerialException, to_bytes

from firmware_sim.device import DeviceController
from vserial import inproc
from vtoken.errors import TransportError

__all__ = ["Serial"]

_PREFIX = f"{inproc.URL_SCHEME}://"


def _device_name(url: str) -> str:
    """``NAME`` from ``vtoken://NAME`` (the scheme is matched case-insensitively)."""
    if not isinstance(url, str) or not url.lower().startswith(_PREFIX):
        raise SerialException(f"expected a URL of the form {_PREFIX}NAME, not {url!r}")
    name = url[len(_PREFIX):]
    if not name or "/" in name:
        raise SerialException(f"expected a URL of the form {_PREFIX}NAME, not {url!r}")
    return name


def _lookup(name: str) -> DeviceController:
    try:
        return inproc.lookup(name)  # takes the registry lock itself: never call it under device_lock()
    except TransportError as exc:
        raise SerialException(str(exc)) from None


class Serial(SerialBase):  # type: ignore[misc]
    """A pyserial port whose other end is an in-process device."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._name: str | None = None
        self._rx = bytearray()
        super().__init__(*args, **kwargs)

    # --- open / close -------------------------------------------------------------------

    def open(self) -> None:
        """Find the registered device; SerialException if there is none."""
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        name = _device_name(self._port)
        _lookup(name)
        self._name = name
        self._rx.clear()
        self.is_open = True

    def close(self) -> None:
        """Disconnect; buffered replies are dropped."""
        self.is_open = False
        self._rx.clear()

    def _reconfigure_port(self) -> None:
        """Baud rate, parity and timeouts mean nothing in process."""

    # --- data ---------------------------------------------------------------------------

    @property
    def in_waiting(self) -> int:
        """Reply bytes buffered (exact here, unlike on a pty or socket)."""
        self._check_open()
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` buffered bytes; b'' at once if none (nothing more can arrive)."""
        self._check_open()
        chunk = bytes(self._rx[:size])
        del self._rx[:size]
        return chunk

    def write(self, data: Any) -> int:
        """Feed ``data`` to the device and buffer its replies; return ``len(data)``."""
        self._check_open()
        data = to_bytes(data)
        assert self._name is not None
        controller = _lookup(self._name)  # the device may have been unregistered since open()
        with inproc.device_lock():
            replies = controller.feed(data)
        self._rx += replies
        return len(data)

    def flush(self) -> None:
        """Writes complete synchronously: nothing to wait for."""
        self._check_open()

    def reset_input_buffer(self) -> None:
        """Drop buffered replies."""
        self._check_open()
        self._rx.clear()

    def reset_output_buffer(self) -> None:
        """Nothing is ever queued for output."""
        self._check_open()

    @property
    def out_waiting(self) -> int:
        """Always 0: writes are delivered at once."""
        self._check_open()
        return 0

    def cancel_read(self) -> None:
        """Reads never block: nothing to cancel."""

    def cancel_write(self) -> None:
        """Writes never block: nothing to cancel."""

    # --- modem lines (none) -------------------------------------------------------------

    def _update_break_state(self) -> None:
        """No line to break."""

    def _update_rts_state(self) -> None:
        """No modem lines."""

    def _update_dtr_state(self) -> None:
        """No modem lines."""

    @property
    def cts(self) -> bool:
        self._check_open()
        return True

    @property
    def dsr(self) -> bool:
        self._check_open()
        return True

    @property
    def ri(self) -> bool:
        self._check_open()
        return False

    @property
    def cd(self) -> bool:
        self._check_open()
        return True

    def _check_open(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
