"""The token's serial-protocol handler: frames in, frames out, no I/O.

:class:`DeviceController` wraps a :class:`~firmware_sim.token.Token` and answers
the requests of :mod:`vtoken.wire`. Transports (pty, TCP, in-process) feed it
the bytes they receive and write back what it returns; it never blocks, never
reads a clock of its own and never raises.

Rules (also in ``docs/protocol.md``):

* Every frame between two delimiters gets exactly one reply, in order; empty
  frames (two delimiters in a row) get none.
* A frame whose CRC is bad, or that is too short, too long or not valid COBS,
  is answered with a NAK carrying seq 0 and command 0: its bytes cannot be
  trusted. A CRC-valid frame that is otherwise wrong (version, command,
  length, values) is answered with a NAK echoing its seq.
* Retries: the controller remembers the last request it decoded and its reply.
  A request whose seq equals that request's seq *and* whose body is
  byte-identical is answered with the remembered reply, without executing it
  again, so a retried PRESS never presses twice. Seq 0 opts out: such a
  request is always executed and clears the memory. Frames that fail to decode
  leave the memory untouched; POWER_CYCLE clears it (RAM is lost).
* Sessions: HELLO starts one. It is always executed (never answered from the
  memory) and leaves nothing remembered, so a new session's first request
  runs even if it repeats the previous session's last seq and bytes.
* Out-of-range values are refused (BAD_VALUE) with a message in the field's
  own wire units (per mille, centi-degrees, ppb).
* Simulation controls are refused with NOT_ALLOWED unless ``sim_control``.
* No reply ever contains the seed.

Not thread-safe: a transport serialises calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction

from firmware_sim.display import DisplayState
from firmware_sim.flash import FlashFaultError
from firmware_sim.models import MODELS
from firmware_sim.rtc import MAX_ABS_PPM_25, MAX_CELSIUS, MIN_CELSIUS
from firmware_sim.token import FIRMWARE_VERSION, Token
from vtoken import wire
from vtoken.clock import SimulatedClock
from vtoken.errors import (
    BatteryDeadError,
    DeviceError,
    DeviceLockedError,
    DeviceStateError,
    InvalidConfigError,
    InvalidInputError,
    InvalidTimeError,
    VTokenError,
)
from vtoken.oath import Algorithm, TokenKind
from vtoken.wire import Command, FrameDecodeError, Payload, Request, Status

__all__ = ["MUTATING_COMMANDS", "DeviceController", "status_for"]

_LOG = logging.getLogger(__name__)

#: Commands that may change the token's state; ``on_change`` runs after each.
MUTATING_COMMANDS: frozenset[Command] = frozenset(
    {
        Command.PRESS,
        Command.LONG_PRESS,
        Command.TIME_SET,
        Command.PROVISION,
        Command.LOCK,
        Command.ADVANCE_TIME,
        Command.SET_TEMPERATURE,
        Command.SET_CRYSTAL_PPM,
        Command.SET_BATTERY,
        Command.POWER_CYCLE,
    }
)

#: Exception type -> NAK code; the first match in this order wins (subclasses first).
_ERROR_STATUS: tuple[tuple[type[Exception], Status], ...] = (
    (FlashFaultError, Status.DEVICE_FAULT),
    (DeviceLockedError, Status.LOCKED),
    (BatteryDeadError, Status.BATTERY_DEAD),
    (DeviceStateError, Status.WRONG_STATE),
    (DeviceError, Status.WRONG_STATE),
    (InvalidInputError, Status.BAD_VALUE),
)

_SCREENS = {state: wire.Screen(state.value) for state in DisplayState}
_CENTI = 100
_PPB_PER_PPM = 1000
_PERCENT = 100
_MAX_TIME_NS = 2**64 - 1
#: The latest time, true or on the token's clock, the device accepts (2500-01-01T00:00:00Z): every reply
#: carries times as u64 nanoseconds (to 2554), and this leaves decades of headroom for a drifting clock.
MAX_DEVICE_TIME_NS = 16_725_225_600 * 1_000_000_000
#: ADVANCE_TIME assumes the token's clock runs at most this many times as fast as true time.
_MAX_CLOCK_RATE = 2
#: SET_TEMPERATURE's range in centi-degrees Celsius (the RTC model's -100 .. 200 °C).
MIN_CENTI_CELSIUS = MIN_CELSIUS * _CENTI
MAX_CENTI_CELSIUS = MAX_CELSIUS * _CENTI
#: SET_CRYSTAL_PPM's range in ppb (the RTC model's ±1000 ppm).
MAX_ABS_PPB = MAX_ABS_PPM_25 * _PPB_PER_PPM


def status_for(error: Exception) -> Status:
    """The NAK code for an exception raised while executing a command."""
    for error_type, status in _ERROR_STATUS:
        if isinstance(error, error_type):
            return status
    return Status.INTERNAL


class DeviceController:
    """Answers protocol frames for one token.

    ``sim_control``: accept simulation controls (a device started as a
    production token refuses them with NOT_ALLOWED). ``on_change``: called
    after every command that may have changed the token (see
    :data:`MUTATING_COMMANDS`), for example to save the token file; if it
    raises, the reply becomes NAK INTERNAL.
    """

    def __init__(
        self,
        token: Token,
        *,
        sim_control: bool = False,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not isinstance(token, Token):
            raise InvalidConfigError(f"token must be a Token, not {type(token).__name__}")
        self._token = token
        self._sim_control = bool(sim_control)
        self._on_change = on_change
        self._reader = wire.FrameReader()
        self._last: tuple[bytes, bytes] | None = None
        self._handlers: dict[Command, Callable[[Payload], Payload]] = {
            Command.INFO: self._info,
            Command.PRESS: self._press,
            Command.LONG_PRESS: self._long_press,
            Command.DISPLAY: self._display,
            Command.TIME_GET: self._time_get,
            Command.TIME_SET: self._time_set,
            Command.HELLO: self._hello,
            Command.PROVISION: self._provision,
            Command.LOCK: self._lock,
            Command.ADVANCE_TIME: self._advance_time,
            Command.SET_TEMPERATURE: self._set_temperature,
            Command.SET_CRYSTAL_PPM: self._set_crystal_ppm,
            Command.SET_BATTERY: self._set_battery,
            Command.POWER_CYCLE: self._power_cycle,
        }

    # --- public -----------------------------------------------------------------------

    @property
    def token(self) -> Token:
        """The token this controller answers for."""
        return self._token

    @property
    def sim_control(self) -> bool:
        """Whether simulation controls are accepted."""
        return self._sim_control

    def feed(self, data: bytes) -> bytes:
        """Raw received bytes in; the framed replies to every frame they complete out (maybe b'').

        Never raises for bytes-like input (anything else is a caller bug: InvalidInputError).
        """
        _check_bytes(data)
        replies = bytearray()
        try:
            items = self._reader.feed(data)
        except Exception as exc:  # pragma: no cover - FrameReader never raises on bytes
            _LOG.error("frame reader failed: %s", type(exc).__name__)
            self._reader.reset()
            return wire.encode_nak(wire.UNSEQUENCED, None, Status.INTERNAL, "internal error")
        for item in items:
            if isinstance(item, FrameDecodeError):
                replies += self.nak_for(item)
            else:
                replies += self.handle_body(item)
        return bytes(replies)

    def handle_body(self, body: bytes) -> bytes:
        """One de-COBSed frame body in; one framed reply (COBS + delimiter) out.

        Never raises for bytes-like input (anything else is a caller bug: InvalidInputError).
        """
        _check_bytes(body)
        try:
            return self._handle_body(bytes(body))
        except Exception as exc:  # last resort: never let anything escape to the transport
            _LOG.error("internal error while handling a frame: %s", type(exc).__name__)
            return _internal_nak(wire.UNSEQUENCED, None)

    def nak_for(self, error: FrameDecodeError) -> bytes:
        """The framed NAK answering a frame that failed to decode."""
        try:
            return wire.encode_nak(error.seq, error.command, error.reason, error.detail)
        except Exception:  # pragma: no cover - defensive
            return _internal_nak(wire.UNSEQUENCED, None)

    def reset_link(self) -> None:
        """Drop a partially received frame (for example when a client disconnects); the retry memory stays."""
        self._reader.reset()

    # --- dispatch ---------------------------------------------------------------------

    def _handle_body(self, body: bytes) -> bytes:
        try:
            request = wire.decode_request(body)
        except FrameDecodeError as exc:
            return self.nak_for(exc)
        last = self._last
        hello = request.command is Command.HELLO
        if request.seq != wire.UNSEQUENCED and not hello and last is not None and last[0] == body:
            return last[1]
        reply = self._execute(request)
        power_cycled = request.command is Command.POWER_CYCLE and self._sim_control
        if request.seq == wire.UNSEQUENCED or power_cycled or hello:
            self._last = None
        else:
            self._last = (body, reply)
        return reply

    def _execute(self, request: Request) -> bytes:
        seq, command = request.seq, request.command
        if command in wire.SIM_COMMANDS and not self._sim_control:
            return wire.encode_nak(seq, command, Status.NOT_ALLOWED,
                                   f"{command.name} is a simulation control; this is a production token")
        payload: Payload | None = None
        status, message = Status.OK, ""
        try:
            payload = self._handlers[command](request.payload)
        except VTokenError as exc:
            status, message = status_for(exc), str(exc)  # vtoken messages never carry secrets
        except Exception as exc:
            _LOG.error("internal error while handling %s: %s", command.name, type(exc).__name__)
            status, message = Status.INTERNAL, f"internal error ({type(exc).__name__})"
        if command in MUTATING_COMMANDS and self._on_change is not None:
            try:
                self._on_change()
            except Exception as exc:
                _LOG.error("on_change failed after %s: %s", command.name, type(exc).__name__)
                status, message, payload = Status.INTERNAL, f"state not saved ({type(exc).__name__})", None
        if status is not Status.OK:
            return wire.encode_nak(seq, command, status, message)
        try:
            return wire.encode_ack(seq, command, payload)
        except Exception as exc:
            _LOG.error("could not encode the %s reply: %s", command.name, type(exc).__name__)
            return _internal_nak(seq, command)

    # --- helpers ----------------------------------------------------------------------

    def _settled_now(self) -> int:
        """The token's true time, after applying anything that happened while it slept (a dead battery)."""
        self._token.device_time_ns()  # reading the RTC settles the battery first
        return self._token.now_ns()

    def _battery_per_mille(self, now: int) -> int:
        level = self._token.battery.level(now)
        return int(level * wire.PER_MILLE_FULL + Fraction(1, 2))

    # --- commands ---------------------------------------------------------------------

    def _info(self, _: Payload) -> wire.InfoResponse:
        token = self._token
        flash = token.flash
        now = self._settled_now()
        if flash.provisioned:
            info = token.info()
            return wire.InfoResponse(
                serial=info.serial,
                model=info.model,
                firmware_version=info.firmware_version,
                kind=TokenKind(info.kind),
                algorithm=Algorithm(info.algorithm),
                digits=info.digits,
                period=info.period,
                t0=info.t0,
                counter=info.counter or 0,
                battery_per_mille=self._battery_per_mille(token.now_ns()),
                battery_low=info.battery_low,
                provisioned=True,
                locked=info.locked,
                sim_control=self._sim_control,
            )
        record = flash.record
        return wire.InfoResponse(
            serial="",
            model=token.model.name,
            firmware_version=FIRMWARE_VERSION,
            kind=TokenKind(record.kind.value),
            algorithm=Algorithm(record.algorithm),
            digits=record.digits,
            period=record.period,
            t0=record.t0,
            counter=0,
            battery_per_mille=self._battery_per_mille(now),
            battery_low=token.battery.is_low(now),
            provisioned=False,
            locked=record.locked,
            sim_control=self._sim_control,
        )

    def _press(self, _: Payload) -> wire.TextResponse:
        return wire.TextResponse(text=self._token.press())

    def _long_press(self, _: Payload) -> wire.TextResponse:
        return wire.TextResponse(text=self._token.long_press())

    def _display(self, _: Payload) -> wire.DisplayResponse:
        token = self._token
        now = token.now_ns()
        display = token.display
        indicators = display.indicators(now)
        return wire.DisplayResponse(
            screen=_SCREENS[display.state(now)],
            text=display.text(now),
            masks=display.masks(now),
            low_battery=indicators.low_battery,
            countdown_bars=indicators.countdown_bars,
            countdown_total=indicators.countdown_total,
        )

    def _time_get(self, _: Payload) -> wire.TimeResponse:
        return wire.TimeResponse(device_time_ns=self._token.device_time_ns())

    def _time_set(self, payload: Payload) -> wire.TimeResponse:
        assert isinstance(payload, wire.TimeSetRequest)
        if payload.device_time_ns > MAX_DEVICE_TIME_NS:
            raise InvalidTimeError(
                f"device time must be at most {MAX_DEVICE_TIME_NS} ns (2500-01-01T00:00:00Z), "
                f"not {payload.device_time_ns}"
            )
        self._token.set_device_time(payload.device_time_ns)
        return wire.TimeResponse(device_time_ns=self._token.device_time_ns())

    def _hello(self, _: Payload) -> wire.HelloResponse:
        """A session starts (the caller forgets the remembered reply): say what this device speaks."""
        return wire.HelloResponse(
            protocol_version=wire.PROTOCOL_VERSION,
            max_frame_size=wire.MAX_FRAME_SIZE,
            firmware_version=FIRMWARE_VERSION,
            sim_control=self._sim_control,
        )

    def _provision(self, payload: Payload) -> wire.Empty:
        """Store seed and parameters. The model must be a known preset that fits this hardware.

        The model's display width must be the token's, its kind the requested
        kind, and the digits must fit the display; the token then takes on the
        preset (display timing) and its display blanks.
        """
        assert isinstance(payload, wire.ProvisionRequest)
        token = self._token
        if token.flash.locked:
            raise DeviceLockedError("the token is factory-locked: it cannot be provisioned again")
        model = MODELS.get(payload.model)
        if model is None:
            raise InvalidConfigError(f"unknown model {payload.model!r}; known: {', '.join(MODELS)}")
        width = token.display.width
        if model.display_width != width:
            raise InvalidConfigError(f"model {model.name} has a {model.display_width}-digit display, this token {width}")
        if model.kind.value != TokenKind(payload.kind).value:
            raise InvalidConfigError(f"model {model.name} is a {model.kind.value} token, not {TokenKind(payload.kind).value}")
        if payload.digits > width:
            raise InvalidConfigError(f"{payload.digits} digits do not fit a {width}-digit display")
        token.flash.provision(
            seed=payload.seed,
            serial=payload.serial,
            model=model.name,
            kind=model.kind.value,
            algorithm=Algorithm(payload.algorithm).value,
            digits=payload.digits,
            period=payload.period,
            t0=payload.t0,
            counter=payload.counter,
        )
        token.model = model
        token.display.blank()
        token.menu_item = None
        return wire.Empty()

    def _lock(self, _: Payload) -> wire.Empty:
        flash = self._token.flash
        if flash.locked:
            raise DeviceLockedError("the token is already factory-locked")
        flash.lock()
        return wire.Empty()

    def _advance_time(self, payload: Payload) -> wire.ClockResponse:
        assert isinstance(payload, wire.AdvanceTimeRequest)
        clock = self._token.clock
        if not isinstance(clock, SimulatedClock):
            raise DeviceStateError("ADVANCE_TIME needs a simulated clock; this token runs on real time")
        if (clock.now_ns() + payload.ns > MAX_DEVICE_TIME_NS
                or self._token.device_time_ns() + _MAX_CLOCK_RATE * payload.ns > _MAX_TIME_NS):
            raise InvalidTimeError(
                "advancing that far would take the token past 2500-01-01T00:00:00Z, the latest time it keeps"
            )
        clock.advance(payload.ns)
        token = self._token
        device_ns = token.device_time_ns()
        return wire.ClockResponse(true_time_ns=token.now_ns(), device_time_ns=device_ns)

    def _set_temperature(self, payload: Payload) -> wire.Empty:
        assert isinstance(payload, wire.TemperatureRequest)
        centi = payload.centi_celsius
        if not MIN_CENTI_CELSIUS <= centi <= MAX_CENTI_CELSIUS:
            raise InvalidConfigError(
                f"temperature must be between {MIN_CENTI_CELSIUS} and {MAX_CENTI_CELSIUS} centi-degrees C "
                f"({MIN_CELSIUS} to {MAX_CELSIUS} C), not {centi}"
            )
        now = self._settled_now()
        self._token.rtc.set_temperature(now, Fraction(payload.centi_celsius, _CENTI))
        return wire.Empty()

    def _set_crystal_ppm(self, payload: Payload) -> wire.Empty:
        assert isinstance(payload, wire.CrystalRequest)
        if abs(payload.ppb) > MAX_ABS_PPB:
            raise InvalidConfigError(
                f"crystal error must be between -{MAX_ABS_PPB} and {MAX_ABS_PPB} ppb (+-{MAX_ABS_PPM_25} ppm), "
                f"not {payload.ppb}"
            )
        now = self._settled_now()
        self._token.rtc.set_crystal_ppm(now, Fraction(payload.ppb, _PPB_PER_PPM))
        return wire.Empty()

    def _set_battery(self, payload: Payload) -> wire.Empty:
        """Set the level; a token revived from a dead battery restarts like one with a new cell.

        As with :meth:`Token.replace_battery`, a stopped RTC resumes from the
        time it froze at, and the token powers up with a blank display.
        """
        assert isinstance(payload, wire.BatteryRequest)
        if payload.per_mille > wire.PER_MILLE_FULL:
            raise InvalidConfigError(
                f"battery level must be between 0 and {wire.PER_MILLE_FULL} per mille (0-{_PERCENT} %), "
                f"not {payload.per_mille}"
            )
        token = self._token
        now = self._settled_now()
        level = Fraction(payload.per_mille, wire.PER_MILLE_FULL)
        was_stopped = not token.rtc.running
        token.battery.set_level(now, level)
        if was_stopped and level > 0:
            token.rtc.set_time(now, token.rtc.device_time_ns(now))
            token.power_cycle()
        return wire.Empty()

    def _power_cycle(self, _: Payload) -> wire.Empty:
        self._token.power_cycle()
        return wire.Empty()


def _check_bytes(data: object) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"expected bytes, not {type(data).__name__}")


def _internal_nak(seq: int, command: Command | None) -> bytes:
    return wire.encode_nak(seq, command, Status.INTERNAL, "internal error")
