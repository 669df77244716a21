"""The host-side client for a vtoken device: one method per protocol command.

:class:`TokenClient` takes a :class:`~host.connection.Connection` by injection
and speaks the protocol of ``docs/protocol.md`` stop-and-wait:

* a session starts with HELLO (:meth:`TokenClient.open` sends it), which
  makes the device forget its remembered reply: the new session's first
  request is executed even if it repeats the previous session's last seq and
  bytes. Seqs still start at random;
* each request gets a fresh sequence number in 1..65535 (65535 wraps to 1;
  never 0, which would opt out of the device's reply cache);
* the request is encoded once; every attempt sends ``0x00`` + exactly those
  bytes. On a timeout, an undecodable reply, or a NAK saying the device could
  not read the frame (BAD_FRAME, BAD_CRC, or BAD_LENGTH with command 0:
  :attr:`~vtoken.wire.Response.frame_not_read`), the client resends them, up
  to ``retries`` times, then raises :class:`~vtoken.errors.DeviceTimeoutError`.
  The device answers a repeated (seq, bytes) with its cached reply, so a
  retried PRESS never presses twice;
* replies with another seq (late answers to earlier attempts) are skipped;
  a seq-0 NAK of any other code answers the request in flight and is final;
* NAK BUSY (a TCP server serving another client) raises
  :class:`~host.connection.DeviceBusyError`; any other NAK raises
  :class:`~vtoken.errors.NakError` whose ``code`` is the :class:`~vtoken.wire.Status`.

Nothing here logs or puts in an exception a seed or any payload bytes.
"""

from __future__ import annotations

import logging
import math
import numbers
import secrets
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from types import TracebackType
from typing import Any, TypeVar

from host.connection import Connection, DeviceBusyError, SerialConnection
from vtoken import wire
from vtoken.clock import exact_fraction
from vtoken.errors import DeviceTimeoutError, InvalidConfigError, InvalidInputError, NakError, ProtocolError
from vtoken.oath import Algorithm, TokenKind, parse_algorithm
from vtoken.wire import (
    ClockResponse,
    Command,
    DisplayResponse,
    FrameDecodeError,
    HelloResponse,
    InfoResponse,
    Payload,
    Response,
    Status,
    TextResponse,
    TimeResponse,
)

__all__ = ["DEFAULT_RETRIES", "DEFAULT_TIMEOUT", "TokenClient"]

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T", bound=Payload)

#: Seconds to wait for each attempt's reply (docs/protocol.md: about 1 s is plenty).
DEFAULT_TIMEOUT = 1.0
#: Resends after the first attempt.
DEFAULT_RETRIES = 2
#: Upper bound on retries (a caller asking for more has a bug).
MAX_RETRIES = 100
#: Bytes asked for per read (any complete reply fits).
READ_CHUNK = wire.MAX_ENCODED_FRAME_SIZE + 1
_FLUSH = bytes([wire.DELIMITER])
_CENTI = 100
_PPB_PER_PPM = 1000


def _check_seq(seq: int) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= wire.MAX_SEQ:
        raise InvalidInputError(f"a sequence number must be an int in 1..{wire.MAX_SEQ}")
    return seq


def _to_units(value: Any, scale: int, what: str) -> int:
    """``value`` × ``scale`` as an int, rounded to the nearest unit (exact arithmetic)."""
    return round(exact_fraction(value, what, InvalidConfigError) * scale)


def _nak_text(response: Response) -> str:
    detail = f" ({response.message})" if response.message else ""
    return f"{response.status.name.lower().replace('_', ' ')}{detail}"


class TokenClient:
    """Talks to one token over ``connection``.

    ``timeout``: seconds to wait for each attempt's reply. ``retries``:
    resends after the first attempt. ``first_seq``: the first sequence number
    (default random, for tests that want fixed bytes).
    """

    def __init__(
        self,
        connection: Connection,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        first_seq: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
                or timeout <= 0:
            raise InvalidInputError("timeout must be a positive number of seconds")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise InvalidInputError(f"retries must be an int in 0..{MAX_RETRIES}")
        start = _check_seq(first_seq) if first_seq is not None else secrets.randbelow(wire.MAX_SEQ) + 1
        self._connection = connection
        self._timeout = float(timeout)
        self._retries = retries
        self._monotonic = monotonic
        self._next = start
        self._reader = wire.FrameReader()
        self._pending: deque[bytes | FrameDecodeError] = deque()
        self._hello: HelloResponse | None = None

    @classmethod
    def open(
        cls, url: str, *, timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
        exclusive: bool | None = None, first_seq: int | None = None, hello: bool = True,
    ) -> TokenClient:
        """Open ``url`` (a device path, ``socket://HOST:PORT`` or ``vtoken://NAME``) and start a session.

        The session starts with HELLO (see :meth:`hello`) unless ``hello=False``;
        a device serving another client raises :class:`DeviceBusyError` here.
        """
        connection = SerialConnection.open(url, exclusive=exclusive)
        try:
            client = cls(connection, timeout=timeout, retries=retries, first_seq=first_seq)
            if hello:
                client.hello()
            return client
        except BaseException:
            connection.close()
            raise

    # --- plumbing -------------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The connection this client talks over."""
        return self._connection

    @property
    def url(self) -> str:
        """Where the device is."""
        return str(getattr(self._connection, "url", "the device"))

    @property
    def session(self) -> HelloResponse | None:
        """The device's answer to this session's HELLO (None if none was sent)."""
        return self._hello

    @property
    def next_seq(self) -> int:
        """The sequence number the next request will carry."""
        return self._next

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def __enter__(self) -> TokenClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _take_seq(self) -> int:
        seq = self._next
        self._next = seq % wire.MAX_SEQ + 1  # 65535 -> 1, never 0
        return seq

    def request(self, command: Command | int, **fields: Any) -> Response:
        """Send one request, retrying as the protocol says; return the ACK.

        Raises :class:`NakError` (``code`` = :class:`Status`) for a final NAK,
        :class:`DeviceTimeoutError` when no usable answer came after all
        attempts, :class:`~vtoken.errors.TransportError` if the port fails,
        :class:`InvalidInputError` for fields that cannot be encoded.
        """
        try:
            command = Command(command)
        except ValueError:
            raise InvalidInputError(f"unknown command {command!r}") from None
        seq = self._take_seq()
        data = _FLUSH + wire.encode_request(seq, command, **fields)  # encoded once: a retry is these bytes
        attempts = self._retries + 1
        last_problem = ""
        for attempt in range(1, attempts + 1):
            _LOG.debug("-> %s seq=%d (attempt %d/%d)", command.name, seq, attempt, attempts)
            self._connection.write(data)
            outcome = self._await_reply(seq, command)
            if isinstance(outcome, Response):
                if outcome.ok:
                    return outcome
                raise NakError(outcome.status, f"device refused {command.name}: {_nak_text(outcome)}")
            last_problem = outcome
            _LOG.debug("<- %s seq=%d: %s", command.name, seq, outcome)
        tries = "try" if attempts == 1 else "tries"
        raise DeviceTimeoutError(f"no answer from {self.url} after {attempts} {tries} ({last_problem})")

    def _await_reply(self, seq: int, command: Command) -> Response | str:
        """Our reply (ACK or final NAK), or why this attempt should be retried."""
        deadline = self._monotonic() + self._timeout
        while True:
            while self._pending:
                item = self._pending.popleft()
                verdict = self._judge(item, seq, command)
                if verdict is not None:
                    return verdict
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                return f"no reply within {self._timeout:g} s"
            chunk = self._connection.read(READ_CHUNK, remaining)
            if not chunk:
                return f"no reply within {self._timeout:g} s"
            self._pending.extend(self._reader.feed(chunk))

    def _judge(self, item: bytes | FrameDecodeError, seq: int, command: Command) -> Response | str | None:
        """Classify one received frame: our answer, a reason to retry, or None to skip it."""
        if isinstance(item, FrameDecodeError):
            return f"damaged reply ({item.reason.name})"
        try:
            response = wire.decode_response(item)
        except FrameDecodeError as exc:
            return f"damaged reply ({exc.reason.name})"
        if response.frame_not_read:
            return f"NAK {response.status.name}: {response.message}"  # nothing was executed: resend
        if response.status is Status.BUSY:
            raise DeviceBusyError(f"{wire.BUSY_MESSAGE} ({self.url})")
        if response.command is not None and response.command is not command:
            _LOG.debug("skipping a stale reply (seq %d, %s)", response.seq, response.command.name)
            return None
        if response.seq == seq or (response.seq == wire.UNSEQUENCED and not response.ok):
            return response  # a seq-0 NAK answers the request in flight, and is final
        _LOG.debug("skipping a stale reply (seq %d)", response.seq)
        return None

    def _call(self, command: Command, expected: type[_T], **fields: Any) -> _T:
        payload = self.request(command, **fields).payload
        if not isinstance(payload, expected):  # pragma: no cover - wire.decode_response guarantees it
            raise ProtocolError(f"{command.name} reply carries a {type(payload).__name__}, not {expected.__name__}")
        return payload

    # --- commands -------------------------------------------------------------------------

    def hello(self) -> HelloResponse:
        """Start a session: the device forgets its remembered reply and says what it speaks.

        :meth:`open` sends it; call it yourself on a connection you built. Safe
        to repeat (HELLO is always executed, never answered from the cache).
        """
        self._hello = self._call(Command.HELLO, HelloResponse)
        return self._hello

    def info(self) -> InfoResponse:
        """Identity, parameters, battery and lock state (never the seed)."""
        return self._call(Command.INFO, InfoResponse)

    def press(self) -> str:
        """Press the button; the text then displayed (the code, 'Err' if unprovisioned, '' if blank)."""
        return self._call(Command.PRESS, TextResponse).text

    def long_press(self) -> str:
        """Hold the button ≥ 6 s: the info-menu item then displayed."""
        return self._call(Command.LONG_PRESS, TextResponse).text

    def display(self) -> DisplayResponse:
        """What the LCD shows now (segment masks, text, indicators)."""
        return self._call(Command.DISPLAY, DisplayResponse)

    def time_get(self) -> int:
        """The token's RTC reading, ns since the Unix epoch."""
        return self._call(Command.TIME_GET, TimeResponse).device_time_ns

    def time_set(self, device_ns: int) -> int:
        """Set the RTC to read ``device_ns`` now; return what it reads afterwards."""
        if isinstance(device_ns, bool) or not isinstance(device_ns, numbers.Integral):
            raise InvalidInputError("device time must be an integer number of nanoseconds")
        return self._call(Command.TIME_SET, TimeResponse, device_time_ns=int(device_ns)).device_time_ns

    def provision(
        self,
        *,
        seed: bytes,
        serial: str,
        model: str,
        kind: TokenKind | str,
        algorithm: Algorithm | str,
        digits: int,
        period: int,
        t0: int = 0,
        counter: int = 0,
    ) -> None:
        """Store a seed and the token's parameters (refused with LOCKED once the token is locked)."""
        try:
            token_kind = TokenKind(kind)
        except ValueError:
            raise InvalidInputError(f"kind must be one of {', '.join(k.value for k in TokenKind)}") from None
        if not isinstance(seed, (bytes, bytearray, memoryview)):
            raise InvalidInputError("the seed must be bytes")
        self._call(
            Command.PROVISION, wire.Empty,
            seed=bytes(seed), serial=serial, model=model, kind=token_kind, algorithm=parse_algorithm(algorithm),
            digits=digits, period=period, t0=t0, counter=counter,
        )

    def lock(self) -> None:
        """Factory-lock the token for good."""
        self._call(Command.LOCK, wire.Empty)

    # --- simulation controls (NAK NOT_ALLOWED on a production token) ------------------------

    def advance_time(self, ns: int) -> ClockResponse:
        """Move the simulated true time forward by ``ns`` ns (0 just reports both clocks)."""
        if isinstance(ns, bool) or not isinstance(ns, numbers.Integral):
            raise InvalidInputError("time to advance must be an integer number of nanoseconds")
        return self._call(Command.ADVANCE_TIME, ClockResponse, ns=int(ns))

    def set_temperature(self, celsius: float | int | Fraction | str) -> None:
        """From now on the token sits at ``celsius`` °C (sent in hundredths, rounded)."""
        self._call(Command.SET_TEMPERATURE, wire.Empty, centi_celsius=_to_units(celsius, _CENTI, "temperature"))

    def set_crystal_ppm(self, ppm: float | int | Fraction | str) -> None:
        """The crystal's error at 25 °C in ppm, + runs fast (sent in ppb, rounded)."""
        self._call(Command.SET_CRYSTAL_PPM, wire.Empty, ppb=_to_units(ppm, _PPB_PER_PPM, "crystal error"))

    def set_battery(self, level: float | int | Fraction | str) -> None:
        """Set the battery level, 0 (dead) .. 1 (full) (sent in per mille, rounded)."""
        fraction = exact_fraction(level, "battery level", InvalidConfigError)
        if not 0 <= fraction <= 1:
            raise InvalidConfigError("battery level must be between 0 and 1")
        self._call(Command.SET_BATTERY, wire.Empty, per_mille=round(fraction * wire.PER_MILLE_FULL))

    def power_cycle(self) -> None:
        """Remove and restore power (RAM state lost; flash and RTC kept)."""
        self._call(Command.POWER_CYCLE, wire.Empty)

    def __repr__(self) -> str:
        return f"TokenClient({self.url!r})"
