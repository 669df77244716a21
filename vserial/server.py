"""The device server: one ``select`` loop over every port, until told to stop.

Single-threaded: frames from all ports are handled one at a time, so the token
never sees two requests at once, and no write blocks (replies a client does
not read wait in its port; see :mod:`vserial.ports`), so one slow client
never stalls the others. Stopping is cooperative (a
:class:`threading.Event`, set by a signal handler or a test), and closing
removes every symlink.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable, Sequence

from vserial.ports import Port

#: How often the loop checks whether it was asked to stop.
POLL_INTERVAL_S = 0.1


class DeviceServer:
    """Serves ``ports`` until :meth:`stop` (or ``stop_event``) says otherwise."""

    def __init__(self, ports: Sequence[Port], *, on_tick: Callable[[], None] | None = None) -> None:
        self.ports = list(ports)
        self.stop_event = threading.Event()
        self._on_tick = on_tick
        self._lock = threading.Lock()

    def serve_forever(self) -> None:
        """Answer frames until stopped; then return (ports stay open until :meth:`close`)."""
        while not self.stop_event.is_set():
            self.serve_once(POLL_INTERVAL_S)

    def serve_once(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for input or room to write, handle it; return how many fds were ready."""
        readers = {fd: port for port in self.ports for fd in port.fds()}
        writers = {fd: port for port in self.ports for fd in port.write_fds()}
        try:
            readable, writable, _ = select.select(list(readers), list(writers), [], timeout)
        except InterruptedError:  # a signal arrived; the loop re-checks its stop flag
            return 0
        with self._lock:
            for fd in writable:
                writers[fd].on_writable(fd)
            for fd in readable:
                readers[fd].on_readable(fd)
            if self._on_tick is not None:
                self._on_tick()
        return len(readable) + len(writable)

    def stop(self) -> None:
        """Ask :meth:`serve_forever` to return (safe from signal handlers and other threads)."""
        self.stop_event.set()

    def close(self) -> None:
        """Close every port (removing symlinks)."""
        for port in self.ports:
            port.close()

    def __enter__(self) -> DeviceServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close()


class BackgroundServer:
    """A :class:`DeviceServer` running in a daemon thread (for tests and the pytest plugin)."""

    def __init__(self, server: DeviceServer) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, name="vtoken-device", daemon=True)

    def __enter__(self) -> DeviceServer:
        self._thread.start()
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._thread.join(timeout=5)
        self.server.close()
