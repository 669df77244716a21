"""In-process devices, reachable by the URL ``vtoken://NAME`` (for tests).

A test registers a :class:`~firmware_sim.device.DeviceController` under a name;
the pyserial protocol handler :mod:`host.protocol_vtoken` finds it here and
feeds it bytes directly, with no thread, pty or socket in between.
"""

from __future__ import annotations

import threading

from firmware_sim.device import DeviceController
from vtoken.errors import TransportError

URL_SCHEME = "vtoken"

_devices: dict[str, DeviceController] = {}
_lock = threading.Lock()


def register(name: str, controller: DeviceController) -> str:
    """Make ``controller`` reachable as ``vtoken://name``; return that URL."""
    if not name or "/" in name:
        raise TransportError(f"in-process device name must be non-empty and contain no '/': {name!r}")
    with _lock:
        if name in _devices:
            raise TransportError(f"an in-process device called {name!r} is already registered")
        _devices[name] = controller
    return f"{URL_SCHEME}://{name}"


def unregister(name: str) -> None:
    """Remove the device called ``name`` (no error if it is not there)."""
    with _lock:
        _devices.pop(name, None)


def lookup(name: str) -> DeviceController:
    """The device called ``name``; :class:`TransportError` if none is registered."""
    with _lock:
        try:
            return _devices[name]
        except KeyError:
            raise TransportError(f"no in-process device called {name!r} (vtoken://{name})") from None


def device_lock() -> threading.Lock:
    """The lock that serialises access to every in-process device."""
    return _lock
