"""The serial protocol between a token and its host: the one definition both sides import.

Everything on the wire is defined here, in construct, and nowhere else:
framing (COBS, 0x00 delimiter), the frame body with its CRC, every command's
request and response payload, the NAK codes, and a streaming :class:`FrameReader`.
``docs/protocol.md`` describes the same bytes for people; a test parses every
example in that document with this module, so the two cannot drift apart.

Frame body (before COBS), all integers big-endian::

    request:   version u8 | seq u16 | command u8 |             length u16 | payload | crc u16
    response:  version u8 | seq u16 | command u8 | status u8 | length u16 | payload | crc u16

``length`` counts the payload bytes only; the payload must parse to exactly
that many bytes. ``crc`` is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
reflection, xorout 0; check value 0x29B1 for ``b"123456789"``) over every byte
before it. On the wire each body is COBS-encoded and followed by one 0x00.

Decoding is strict: unknown commands, unknown enum values, bad flag bytes,
non-ASCII text, short or long payloads are all errors
(:class:`FrameDecodeError`, a :class:`~vtoken.errors.FrameError`, whose
``reason`` is the NAK code a device answers with). This module does no I/O.
"""

from __future__ import annotations

import binascii
import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, ClassVar

from construct import (
    Adapter,
    Bytes,
    Checksum,
    ChecksumError,
    Const,
    ConstError,
    Construct,
    ConstructError,
    Error,
    ExplicitError,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32sb,
    Int32ub,
    Int64ub,
    MappingError,
    Prefixed,
    RawCopy,
    StreamError,
    Struct,
    Subconstruct,
    Switch,
    Terminated,
    TerminatedError,
    ValidationError,
    this,
)

from vtoken.errors import FrameError, InvalidInputError, NakError
from vtoken.oath import Algorithm, TokenKind

__all__ = [
    "CRC_SIZE",
    "DELIMITER",
    "MAX_ENCODED_FRAME_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_MESSAGE_LENGTH",
    "MAX_REQUEST_PAYLOAD",
    "MAX_RESPONSE_PAYLOAD",
    "MAX_SEGMENT_MASK",
    "MAX_SEQ",
    "MAX_TEXT_LENGTH",
    "PER_MILLE_FULL",
    "PROTOCOL_VERSION",
    "REQUEST_CONTENT",
    "REQUEST_FRAME",
    "REQUEST_HEADER_SIZE",
    "RESPONSE_CONTENT",
    "RESPONSE_FRAME",
    "RESPONSE_HEADER_SIZE",
    "SIM_COMMANDS",
    "UNSEQUENCED",
    "AdvanceTimeRequest",
    "BUSY_MESSAGE",
    "BatteryRequest",
    "ClockResponse",
    "Command",
    "CrystalRequest",
    "DisplayResponse",
    "Empty",
    "FrameDecodeError",
    "FrameReader",
    "HelloResponse",
    "InfoResponse",
    "Payload",
    "ProvisionRequest",
    "Request",
    "Response",
    "Screen",
    "Status",
    "TemperatureRequest",
    "TextResponse",
    "TimeResponse",
    "TimeSetRequest",
    "cobs_decode",
    "cobs_encode",
    "cobs_max_encoded_size",
    "crc16",
    "decode_request",
    "decode_response",
    "encode_ack",
    "encode_nak",
    "encode_request",
    "encode_request_body",
    "encode_response",
    "encode_response_body",
    "frame",
    "request_type",
    "response_type",
    "sanitize_message",
    "unframe",
]

# --- constants ---------------------------------------------------------------------------

#: The protocol version carried in byte 0 of every frame body.
PROTOCOL_VERSION = 1
#: The frame delimiter on the wire (COBS guarantees it never occurs inside a frame).
DELIMITER = 0x00
_DELIMITER_BYTE = bytes([DELIMITER])
#: Largest frame body (header + payload + CRC, before COBS) either side sends or accepts.
MAX_FRAME_SIZE = 512
#: Size of the CRC trailer.
CRC_SIZE = 2
#: version + seq + command + length.
REQUEST_HEADER_SIZE = 6
#: version + seq + command + status + length.
RESPONSE_HEADER_SIZE = 7
MAX_REQUEST_PAYLOAD = MAX_FRAME_SIZE - REQUEST_HEADER_SIZE - CRC_SIZE
MAX_RESPONSE_PAYLOAD = MAX_FRAME_SIZE - RESPONSE_HEADER_SIZE - CRC_SIZE
#: Sequence numbers are uint16; 0 means "no retry protection" (see docs/protocol.md).
MAX_SEQ = 0xFFFF
UNSEQUENCED = 0
#: Longest NAK message (ASCII characters); longer messages are cut by :func:`encode_nak`.
MAX_MESSAGE_LENGTH = 120
#: Longest text field (serial, model, firmware version, display text).
MAX_TEXT_LENGTH = 64
#: Largest value of a segment mask (segments a..g = bits 0..6).
MAX_SEGMENT_MASK = 0x7F
#: Battery levels on the wire are per mille: 0 (empty) .. 1000 (full).
PER_MILLE_FULL = 1000
#: The message of the NAK BUSY a TCP server sends a client it cannot serve (see docs/protocol.md).
BUSY_MESSAGE = "device busy: another client is connected"

_CRC_INIT = 0xFFFF
_COBS_MAX_BLOCK = 0xFF  # a code byte announcing 254 data bytes and no zero
_COBS_BLOCK_DATA = _COBS_MAX_BLOCK - 1


# --- CRC and COBS ------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0 (check 0x29B1)."""
    return binascii.crc_hqx(bytes(data), _CRC_INIT)


def cobs_max_encoded_size(size: int) -> int:
    """An upper bound on the COBS encoding of ``size`` bytes (one code byte per 254 bytes, plus one)."""
    return size + size // _COBS_BLOCK_DATA + 1


#: Largest COBS-encoded frame (without its delimiter) a :class:`FrameReader` accepts.
MAX_ENCODED_FRAME_SIZE = cobs_max_encoded_size(MAX_FRAME_SIZE)


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``: the result contains no 0x00 byte (the delimiter is not added).

    Produces the minimal encoding: no final empty block after a full 254-byte block.
    """
    data = bytes(data)
    out = bytearray()
    block = bytearray()
    ended_full = False
    for byte in data:
        ended_full = False
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            continue
        block.append(byte)
        if len(block) == _COBS_BLOCK_DATA:
            out.append(_COBS_MAX_BLOCK)
            out += block
            block.clear()
            ended_full = True
    if not ended_full:
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Decode one COBS-encoded frame (without its delimiter); FrameDecodeError(BAD_FRAME) if invalid.

    Accepts both the minimal encoding and the variant with a trailing 0x01
    after a final full block, as standard decoders do.
    """
    data = bytes(data)
    if not data:
        raise FrameDecodeError(Status.BAD_FRAME, "empty COBS frame")
    out = bytearray()
    i = 0
    size = len(data)
    while i < size:
        code = data[i]
        if code == 0:
            raise FrameDecodeError(Status.BAD_FRAME, "a 0x00 byte inside a COBS frame")
        end = i + code
        if end > size:
            raise FrameDecodeError(Status.BAD_FRAME, "COBS code byte points past the end of the frame")
        block = data[i + 1 : end]
        if 0 in block:
            raise FrameDecodeError(Status.BAD_FRAME, "a 0x00 byte inside a COBS frame")
        out += block
        i = end
        if code != _COBS_MAX_BLOCK and i < size:
            out.append(0)
    return bytes(out)


def frame(body: bytes) -> bytes:
    """Wire bytes of one frame: COBS(body) followed by the 0x00 delimiter."""
    return cobs_encode(body) + _DELIMITER_BYTE


def unframe(wire: bytes) -> bytes:
    """The body of exactly one wire frame (COBS bytes + one trailing 0x00); FrameDecodeError if not."""
    wire = bytes(wire)
    if not wire.endswith(_DELIMITER_BYTE):
        raise FrameDecodeError(Status.BAD_FRAME, "a wire frame must end with the 0x00 delimiter")
    return cobs_decode(wire[:-1])


# --- enums -------------------------------------------------------------------------------


class Command(enum.IntEnum):
    """Request commands. 0x4x are simulation controls (see :data:`SIM_COMMANDS`)."""

    INFO = 0x01
    PRESS = 0x02
    LONG_PRESS = 0x03
    DISPLAY = 0x04
    TIME_GET = 0x05
    TIME_SET = 0x06
    HELLO = 0x07
    PROVISION = 0x20
    LOCK = 0x21
    ADVANCE_TIME = 0x40
    SET_TEMPERATURE = 0x41
    SET_CRYSTAL_PPM = 0x42
    SET_BATTERY = 0x43
    POWER_CYCLE = 0x44

    @property
    def is_simulation(self) -> bool:
        """True for simulation controls, which production tokens refuse with NOT_ALLOWED."""
        return self in SIM_COMMANDS


#: Simulation controls: accepted only by a device running in simulation-control mode.
SIM_COMMANDS: frozenset[Command] = frozenset(
    {Command.ADVANCE_TIME, Command.SET_TEMPERATURE, Command.SET_CRYSTAL_PPM, Command.SET_BATTERY, Command.POWER_CYCLE}
)


class Status(enum.IntEnum):
    """A response's status byte: OK (an ACK) or a NAK code."""

    OK = 0x00
    #: The bytes between two delimiters are not valid COBS, or too short to be a frame.
    BAD_FRAME = 0x01
    #: The CRC does not match.
    BAD_CRC = 0x02
    #: The frame is too large, or the length field does not match the payload.
    BAD_LENGTH = 0x03
    #: Unsupported protocol version.
    BAD_VERSION = 0x04
    #: The command byte is not a known command.
    UNKNOWN_COMMAND = 0x05
    #: A field has a value the device refuses (unknown enum value, out of range, ...).
    BAD_VALUE = 0x06
    #: Not possible in the device's current state (unprovisioned, no simulated clock, ...).
    WRONG_STATE = 0x07
    #: The token is factory-locked.
    LOCKED = 0x08
    #: A simulation control sent to a production token.
    NOT_ALLOWED = 0x09
    #: The battery is dead.
    BATTERY_DEAD = 0x0A
    #: An unexpected error inside the device.
    INTERNAL = 0x0B
    #: Another client holds the device's only link: a TCP server's answer to a second client's first frame, then it hangs up.
    BUSY = 0x0C
    #: The token's flash is damaged: it refuses to operate rather than fall back to an older record.
    DEVICE_FAULT = 0x0D

    @property
    def is_transmission_error(self) -> bool:
        """True for NAKs meaning "the request was damaged in transit": retry the same bytes."""
        return self in (Status.BAD_FRAME, Status.BAD_CRC)

    @property
    def is_frame_error(self) -> bool:
        """True for the frame-level NAK codes: BAD_FRAME, BAD_CRC, BAD_LENGTH.

        With command 0 they mean "I could not read that frame" (nothing was
        executed); see :attr:`Response.frame_not_read`.
        """
        return self in (Status.BAD_FRAME, Status.BAD_CRC, Status.BAD_LENGTH)


class Screen(str, enum.Enum):
    """What the display shows (same values as ``firmware_sim.display.DisplayState``)."""

    OFF = "off"
    CODE = "code"
    MENU = "menu"
    LOW_BATTERY = "low_battery"
    ERROR = "error"


_KIND_CODES: dict[Any, int] = {TokenKind.TOTP: 1, TokenKind.HOTP: 2}
_ALGORITHM_CODES: dict[Any, int] = {Algorithm.SHA1: 1, Algorithm.SHA256: 2, Algorithm.SHA512: 3}
_SCREEN_CODES: dict[Any, int] = {
    Screen.OFF: 0,
    Screen.CODE: 1,
    Screen.MENU: 2,
    Screen.LOW_BATTERY: 3,
    Screen.ERROR: 4,
}


# --- errors ------------------------------------------------------------------------------


class FrameDecodeError(FrameError):
    """A frame body could not be decoded.

    ``reason`` is the NAK code a device answers with; ``seq`` is the request's
    sequence number when the CRC was good (else 0, :data:`UNSEQUENCED`);
    ``command`` the command when it was known. ``detail`` is the message
    without the code. Messages never contain payload bytes.
    """

    def __init__(
        self, reason: Status, detail: str, *, seq: int = UNSEQUENCED, command: Command | None = None
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.seq = seq
        self.command = command
        super().__init__(f"{reason.name}: {detail}")


class _BadValue(ValidationError):
    """Raised by this module's adapters; ``detail`` is safe to show (no payload bytes)."""

    def __init__(self, detail: str, path: str | None = None) -> None:
        self.detail = detail
        super().__init__(detail, path=path)


# --- construct building blocks -----------------------------------------------------------


class _Mapped(Adapter):  # type: ignore[misc]
    """A byte mapped to Python values by an explicit table; unknown values are errors both ways.

    (construct's own ``Enum`` passes unknown integers through silently.)
    """

    def __init__(self, subcon: Construct, mapping: Mapping[Any, int], what: str) -> None:
        super().__init__(subcon)
        self.encmapping = dict(mapping)
        self.decmapping = {code: value for value, code in mapping.items()}
        self.what = what

    def _decode(self, obj: int, context: Any, path: str) -> Any:
        try:
            return self.decmapping[obj]
        except KeyError:
            raise _BadValue(f"unknown {self.what} code {obj}", path) from None

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        try:
            return self.encmapping[obj]
        except (KeyError, TypeError):
            raise _BadValue(f"{obj!r} is not a {self.what}", path) from None


class _Flag(Adapter):  # type: ignore[misc]
    """A boolean byte that must be exactly 0 or 1."""

    def _decode(self, obj: int, context: Any, path: str) -> bool:
        if obj not in (0, 1):
            raise _BadValue(f"flag byte must be 0 or 1, not {obj}", path)
        return obj == 1

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        if not isinstance(obj, bool):
            raise _BadValue("a flag must be a bool", path)
        return int(obj)


def _is_printable_ascii(data: bytes) -> bool:
    return all(0x20 <= byte <= 0x7E for byte in data)


class _Ascii(Adapter):  # type: ignore[misc]
    """Printable ASCII text (0x20..0x7E) of at most ``max_length`` characters."""

    def __init__(self, subcon: Construct, max_length: int) -> None:
        super().__init__(subcon)
        self.max_length = max_length

    def _decode(self, obj: bytes, context: Any, path: str) -> str:
        if len(obj) > self.max_length:
            raise _BadValue(f"text longer than {self.max_length} characters", path)
        if not _is_printable_ascii(obj):
            raise _BadValue("text must be printable ASCII", path)
        return obj.decode("ascii")

    def _encode(self, obj: Any, context: Any, path: str) -> bytes:
        if not isinstance(obj, str):
            raise _BadValue("text must be a str", path)
        if len(obj) > self.max_length:
            raise _BadValue(f"text longer than {self.max_length} characters", path)
        data = obj.encode("ascii", errors="replace")
        if not obj.isascii() or not _is_printable_ascii(data):
            raise _BadValue("text must be printable ASCII", path)
        return data


class _Masks(Adapter):  # type: ignore[misc]
    """Seven-segment masks, one byte per digit, each 0..0x7F."""

    def _decode(self, obj: bytes, context: Any, path: str) -> tuple[int, ...]:
        if any(mask > MAX_SEGMENT_MASK for mask in obj):
            raise _BadValue(f"a segment mask is above 0x{MAX_SEGMENT_MASK:02X}", path)
        return tuple(obj)

    def _encode(self, obj: Any, context: Any, path: str) -> bytes:
        try:
            masks = tuple(obj)
        except TypeError:
            raise _BadValue("masks must be a sequence of ints", path) from None
        if not all(isinstance(m, int) and not isinstance(m, bool) and 0 <= m <= MAX_SEGMENT_MASK for m in masks):
            raise _BadValue(f"each segment mask must be an int in 0..0x{MAX_SEGMENT_MASK:02X}", path)
        return bytes(masks)


class _Secret(Adapter):  # type: ignore[misc]
    """Bytes whose content never appears in an error message."""

    def _decode(self, obj: bytes, context: Any, path: str) -> bytes:
        return bytes(obj)

    def _encode(self, obj: Any, context: Any, path: str) -> bytes:
        if not isinstance(obj, (bytes, bytearray, memoryview)):
            raise _BadValue("the seed must be bytes", path)
        data = bytes(obj)
        if len(data) > 0xFF:
            raise _BadValue("the seed is longer than 255 bytes", path)
        return data


class _Exact(Subconstruct):  # type: ignore[misc]
    """Parse the subcon, then require the (length-limited) stream to be used up."""

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        obj = self.subcon._parsereport(stream, context, path)
        if stream.read(1):
            raise TerminatedError("the payload is longer than its fields", path=path)
        return obj

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        return self.subcon._build(obj, stream, context, path)


def _text() -> Construct:
    return _Ascii(Prefixed(Int8ub, GreedyBytes), MAX_TEXT_LENGTH)


def _kind() -> Construct:
    return _Mapped(Int8ub, _KIND_CODES, "token kind")


def _algorithm() -> Construct:
    return _Mapped(Int8ub, _ALGORITHM_CODES, "algorithm")


# --- payloads ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Payload:
    """Base of every request and response payload. ``SCHEMA`` is its construct layout."""

    SCHEMA: ClassVar[Construct]


@dataclasses.dataclass(frozen=True)
class Empty(Payload):
    """No payload (length 0)."""


@dataclasses.dataclass(frozen=True)
class TimeSetRequest(Payload):
    """TIME_SET: set the token's RTC to read ``device_time_ns`` (ns since the Unix epoch) now."""

    device_time_ns: int


@dataclasses.dataclass(frozen=True)
class ProvisionRequest(Payload):
    """PROVISION: store a seed and the token parameters (refused with LOCKED once locked)."""

    serial: str
    model: str
    kind: TokenKind
    algorithm: Algorithm
    digits: int
    period: int
    t0: int
    counter: int
    seed: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class AdvanceTimeRequest(Payload):
    """ADVANCE_TIME: move the simulated true time forward by ``ns`` nanoseconds."""

    ns: int


@dataclasses.dataclass(frozen=True)
class TemperatureRequest(Payload):
    """SET_TEMPERATURE: from now on the token sits at ``centi_celsius`` / 100 °C."""

    centi_celsius: int


@dataclasses.dataclass(frozen=True)
class CrystalRequest(Payload):
    """SET_CRYSTAL_PPM: the crystal's error at 25 °C, in parts per billion (1 ppm = 1000 ppb)."""

    ppb: int


@dataclasses.dataclass(frozen=True)
class BatteryRequest(Payload):
    """SET_BATTERY: the battery level in per mille (0 = empty, 1000 = full)."""

    per_mille: int


@dataclasses.dataclass(frozen=True)
class InfoResponse(Payload):
    """INFO: identity, parameters, battery and lock state. Never the seed.

    ``counter`` is the next HOTP counter (0 for TOTP tokens). An unprovisioned
    token reports an empty serial and ``provisioned=False``.
    """

    serial: str
    model: str
    firmware_version: str
    kind: TokenKind
    algorithm: Algorithm
    digits: int
    period: int
    t0: int
    counter: int
    battery_per_mille: int
    battery_low: bool
    provisioned: bool
    locked: bool
    sim_control: bool


@dataclasses.dataclass(frozen=True)
class HelloResponse(Payload):
    """HELLO: a session starts; the device forgot its remembered reply. What it speaks and what it is."""

    protocol_version: int
    max_frame_size: int
    firmware_version: str
    sim_control: bool


@dataclasses.dataclass(frozen=True)
class TextResponse(Payload):
    """PRESS and LONG_PRESS: the characters displayed after the press ('' when blank)."""

    text: str


@dataclasses.dataclass(frozen=True)
class DisplayResponse(Payload):
    """DISPLAY: what the LCD shows now.

    ``masks`` has one seven-segment mask per digit, leftmost first (bit 0 =
    segment a ... bit 6 = g). ``countdown_total`` is 0 when no countdown runs.
    """

    screen: Screen
    text: str
    masks: tuple[int, ...]
    low_battery: bool
    countdown_bars: int
    countdown_total: int

    @property
    def on(self) -> bool:
        """Whether anything is shown."""
        return self.screen is not Screen.OFF


@dataclasses.dataclass(frozen=True)
class TimeResponse(Payload):
    """TIME_GET and TIME_SET: what the token's RTC reads now (ns since the Unix epoch)."""

    device_time_ns: int


@dataclasses.dataclass(frozen=True)
class ClockResponse(Payload):
    """ADVANCE_TIME: the true time the token is at after the step, and its RTC reading then.

    The token's true time is the simulated clock's, or the end of the last
    button press if that is later (a press takes time).
    """

    true_time_ns: int
    device_time_ns: int


Empty.SCHEMA = Struct()
TimeSetRequest.SCHEMA = Struct("device_time_ns" / Int64ub)
ProvisionRequest.SCHEMA = Struct(
    "serial" / _text(),
    "model" / _text(),
    "kind" / _kind(),
    "algorithm" / _algorithm(),
    "digits" / Int8ub,
    "period" / Int32ub,
    "t0" / Int64ub,
    "counter" / Int64ub,
    "seed" / _Secret(Prefixed(Int8ub, GreedyBytes)),
)
AdvanceTimeRequest.SCHEMA = Struct("ns" / Int64ub)
TemperatureRequest.SCHEMA = Struct("centi_celsius" / Int32sb)
CrystalRequest.SCHEMA = Struct("ppb" / Int32sb)
BatteryRequest.SCHEMA = Struct("per_mille" / Int16ub)
InfoResponse.SCHEMA = Struct(
    "serial" / _text(),
    "model" / _text(),
    "firmware_version" / _text(),
    "kind" / _kind(),
    "algorithm" / _algorithm(),
    "digits" / Int8ub,
    "period" / Int32ub,
    "t0" / Int64ub,
    "counter" / Int64ub,
    "battery_per_mille" / Int16ub,
    "battery_low" / _Flag(Int8ub),
    "provisioned" / _Flag(Int8ub),
    "locked" / _Flag(Int8ub),
    "sim_control" / _Flag(Int8ub),
)
HelloResponse.SCHEMA = Struct(
    "protocol_version" / Int8ub,
    "max_frame_size" / Int16ub,
    "firmware_version" / _text(),
    "sim_control" / _Flag(Int8ub),
)
TextResponse.SCHEMA = Struct("text" / _text())
DisplayResponse.SCHEMA = Struct(
    "screen" / _Mapped(Int8ub, _SCREEN_CODES, "screen state"),
    "text" / _text(),
    "masks" / _Masks(Prefixed(Int8ub, GreedyBytes)),
    "low_battery" / _Flag(Int8ub),
    "countdown_bars" / Int8ub,
    "countdown_total" / Int8ub,
)
TimeResponse.SCHEMA = Struct("device_time_ns" / Int64ub)
ClockResponse.SCHEMA = Struct("true_time_ns" / Int64ub, "device_time_ns" / Int64ub)


class _PayloadAdapter(Adapter):  # type: ignore[misc]
    """A payload dataclass <-> its Struct."""

    def __init__(self, cls: type[Payload]) -> None:
        super().__init__(cls.SCHEMA)
        self.cls = cls
        self.names = tuple(field.name for field in dataclasses.fields(cls))

    def _decode(self, obj: Any, context: Any, path: str) -> Payload:
        return self.cls(**{name: obj[name] for name in self.names})

    def _encode(self, obj: Any, context: Any, path: str) -> dict[str, Any]:
        if type(obj) is not self.cls:
            raise _BadValue(f"expected a {self.cls.__name__} payload, not {type(obj).__name__}", path)
        return {name: getattr(obj, name) for name in self.names}


#: Each command's request and response payload types.
_PAYLOAD_TYPES: dict[Command, tuple[type[Payload], type[Payload]]] = {
    Command.INFO: (Empty, InfoResponse),
    Command.PRESS: (Empty, TextResponse),
    Command.LONG_PRESS: (Empty, TextResponse),
    Command.DISPLAY: (Empty, DisplayResponse),
    Command.TIME_GET: (Empty, TimeResponse),
    Command.TIME_SET: (TimeSetRequest, TimeResponse),
    Command.HELLO: (Empty, HelloResponse),
    Command.PROVISION: (ProvisionRequest, Empty),
    Command.LOCK: (Empty, Empty),
    Command.ADVANCE_TIME: (AdvanceTimeRequest, ClockResponse),
    Command.SET_TEMPERATURE: (TemperatureRequest, Empty),
    Command.SET_CRYSTAL_PPM: (CrystalRequest, Empty),
    Command.SET_BATTERY: (BatteryRequest, Empty),
    Command.POWER_CYCLE: (Empty, Empty),
}


def request_type(command: Command) -> type[Payload]:
    """The payload class of ``command``'s request."""
    return _PAYLOAD_TYPES[command][0]


def response_type(command: Command) -> type[Payload]:
    """The payload class of ``command``'s ACK."""
    return _PAYLOAD_TYPES[command][1]


# --- frames ------------------------------------------------------------------------------

_NAK_KEY = "nak"

_REQUEST_CASES = {command: _PayloadAdapter(types[0]) for command, types in _PAYLOAD_TYPES.items()}
_RESPONSE_CASES: dict[Any, Construct] = {command: _PayloadAdapter(types[1]) for command, types in _PAYLOAD_TYPES.items()}
_RESPONSE_CASES[_NAK_KEY] = _Ascii(GreedyBytes, MAX_MESSAGE_LENGTH)


def _response_key(context: Any) -> Any:
    """ACKs carry the command's payload, NAKs a message."""
    return context.command if context.status is Status.OK else _NAK_KEY


_COMMAND = _Mapped(Int8ub, {command: int(command) for command in Command}, "command")
#: A response's command byte: the request's command, or 0 when the device could not tell it.
_REPLY_COMMAND = _Mapped(Int8ub, {None: 0, **{command: int(command) for command in Command}}, "command")
_STATUS = _Mapped(Int8ub, {status: int(status) for status in Status}, "status")

#: Request body without its CRC. Switch has no default: an unknown command is an error.
REQUEST_CONTENT = Struct(
    "version" / Const(PROTOCOL_VERSION, Int8ub),
    "seq" / Int16ub,
    "command" / _COMMAND,
    "payload" / Prefixed(Int16ub, _Exact(Switch(this.command, _REQUEST_CASES, default=Error))),
)
#: Response body without its CRC.
RESPONSE_CONTENT = Struct(
    "version" / Const(PROTOCOL_VERSION, Int8ub),
    "seq" / Int16ub,
    "command" / _REPLY_COMMAND,
    "status" / _STATUS,
    "payload" / Prefixed(Int16ub, _Exact(Switch(_response_key, _RESPONSE_CASES, default=Error))),
)
#: A whole request body: content, then CRC-16/CCITT-FALSE over it.
REQUEST_FRAME = Struct(
    "content" / RawCopy(REQUEST_CONTENT),
    "crc" / Checksum(Int16ub, crc16, this.content.data),
    Terminated,
)
#: A whole response body.
RESPONSE_FRAME = Struct(
    "content" / RawCopy(RESPONSE_CONTENT),
    "crc" / Checksum(Int16ub, crc16, this.content.data),
    Terminated,
)

# Checked first, so that any damaged frame is BAD_CRC (never a misleading "bad version").
_ENVELOPE = Struct(
    "content" / RawCopy(Bytes(this._params.content_size)),
    "crc" / Checksum(Int16ub, crc16, this.content.data),
    Terminated,
)
_REQUEST_HEADER = Struct("version" / Int8ub, "seq" / Int16ub, "command" / Int8ub, "length" / Int16ub)
_RESPONSE_HEADER = Struct(
    "version" / Int8ub, "seq" / Int16ub, "command" / Int8ub, "status" / Int8ub, "length" / Int16ub
)


@dataclasses.dataclass(frozen=True)
class Request:
    """A decoded request: sequence number, command and its payload (see :func:`request_type`)."""

    seq: int
    command: Command
    payload: Payload


@dataclasses.dataclass(frozen=True)
class Response:
    """A decoded response: an ACK (``status`` OK, with ``payload``) or a NAK (with ``message``).

    ``command`` is None when the device could not tell which command it answers.
    """

    seq: int
    command: Command | None
    status: Status
    payload: Payload | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        """True for an ACK."""
        return self.status is Status.OK

    @property
    def frame_not_read(self) -> bool:
        """True for a NAK saying the device could not read the request's frame, so executed nothing.

        That is BAD_FRAME or BAD_CRC, or BAD_LENGTH with command 0 (an oversized
        frame; a wrong length field echoes the command and is the client's bug).
        Only these NAKs call for resending the same bytes; every other NAK is
        the answer, whatever its seq.
        """
        return self.status.is_frame_error and (self.status is not Status.BAD_LENGTH or self.command is None)

    def raise_for_status(self) -> None:
        """Raise :class:`~vtoken.errors.NakError` (``code`` = the :class:`Status`) for a NAK."""
        if not self.ok:
            raise NakError(self.status, f"device answered NAK {self.status.name}: {self.message}")


# --- encoding ----------------------------------------------------------------------------


def _check_seq(seq: int) -> int:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise InvalidInputError(f"sequence number must be an int in 0..{MAX_SEQ}")
    return seq


def _coerce_command(command: Command | int) -> Command:
    try:
        return Command(command)
    except ValueError:
        raise InvalidInputError(f"unknown command {command!r}") from None


def _field_name(path: str | None) -> str:
    if not path:
        return "?"
    return path.rsplit(" -> ", 1)[-1]


def _build(struct: Construct, content: dict[str, Any], what: str) -> bytes:
    """Build a frame body; errors name the field, never its value."""
    try:
        body = bytes(struct.build({"content": {"value": content}}))
    except _BadValue as exc:
        raise InvalidInputError(f"cannot encode {what}: {_field_name(exc.path)}: {exc.detail}") from None
    except (ConstructError, ValueError, TypeError, OverflowError) as exc:
        path = getattr(exc, "path", None)
        raise InvalidInputError(f"cannot encode {what}: bad value for field {_field_name(path)}") from None
    if len(body) > MAX_FRAME_SIZE:
        raise InvalidInputError(f"cannot encode {what}: {len(body)} bytes exceed the {MAX_FRAME_SIZE}-byte frame limit")
    return body


def _make_payload(cls: type[Payload], fields: Mapping[str, Any], what: str) -> Payload:
    try:
        return cls(**fields)
    except TypeError:
        names = ", ".join(field.name for field in dataclasses.fields(cls)) or "none"
        raise InvalidInputError(f"{what} takes the fields: {names}") from None


def encode_request_body(seq: int, command: Command | int, **fields: Any) -> bytes:
    """The body (before COBS) of a request; ``fields`` are the command's payload fields."""
    seq = _check_seq(seq)
    command = _coerce_command(command)
    payload = _make_payload(request_type(command), fields, f"a {command.name} request")
    return _build(REQUEST_FRAME, {"seq": seq, "command": command, "payload": payload}, f"{command.name} request")


def encode_request(seq: int, command: Command | int, **fields: Any) -> bytes:
    """Wire bytes (COBS + delimiter) of a request. Example: ``encode_request(1, Command.PRESS)``."""
    return frame(encode_request_body(seq, command, **fields))


def encode_response_body(response: Response) -> bytes:
    """The body (before COBS) of a response."""
    seq = _check_seq(response.seq)
    status = response.status
    if not isinstance(status, Status):
        raise InvalidInputError("status must be a Status")
    command = None if response.command is None else _coerce_command(response.command)
    if status is Status.OK:
        if command is None:
            raise InvalidInputError("an ACK must name its command")
        payload: Any = response.payload
    else:
        if response.payload is not None:
            raise InvalidInputError("a NAK carries a message, not a payload")
        payload = response.message
    what = f"{'ACK' if status is Status.OK else 'NAK ' + status.name} response"
    return _build(RESPONSE_FRAME, {"seq": seq, "command": command, "status": status, "payload": payload}, what)


def encode_response(response: Response) -> bytes:
    """Wire bytes (COBS + delimiter) of a response."""
    return frame(encode_response_body(response))


def encode_ack(seq: int, command: Command | int, payload: Payload | None = None, **fields: Any) -> bytes:
    """Wire bytes of an ACK: give the payload object, or its fields as keywords."""
    command = _coerce_command(command)
    if payload is None:
        payload = _make_payload(response_type(command), fields, f"a {command.name} response")
    elif fields:
        raise InvalidInputError("give either a payload or its fields, not both")
    return encode_response(Response(seq=seq, command=command, status=Status.OK, payload=payload))


def sanitize_message(message: str) -> str:
    """A NAK message as it goes on the wire: printable ASCII ('?' for others), cut to the limit."""
    text = "".join(char if " " <= char <= "~" else "?" for char in str(message))
    return text[:MAX_MESSAGE_LENGTH]


def encode_nak(seq: int, command: Command | int | None, status: Status, message: str = "") -> bytes:
    """Wire bytes of a NAK; the message is sanitised by :func:`sanitize_message`."""
    if not isinstance(status, Status) or status is Status.OK:
        raise InvalidInputError("a NAK needs a NAK code, not OK")
    return encode_response(
        Response(seq=seq, command=None if command is None else _coerce_command(command), status=status,
                 message=sanitize_message(message))
    )


# --- decoding ----------------------------------------------------------------------------


def _as_bytes(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidInputError(f"expected bytes, not {type(data).__name__}")
    return bytes(data)


def _check_envelope(body: bytes, header_size: int) -> bytes:
    """Size and CRC checks, before anything else is trusted; returns the content (body without CRC)."""
    if len(body) > MAX_FRAME_SIZE:
        raise FrameDecodeError(Status.BAD_LENGTH, f"frame of {len(body)} bytes exceeds {MAX_FRAME_SIZE} bytes")
    if len(body) < header_size + CRC_SIZE:
        raise FrameDecodeError(Status.BAD_FRAME, f"frame of {len(body)} bytes is too short")
    try:
        envelope = _ENVELOPE.parse(body, content_size=len(body) - CRC_SIZE)
    except ChecksumError:
        raise FrameDecodeError(Status.BAD_CRC, "CRC-16 mismatch") from None
    except ConstructError:  # pragma: no cover - sizes were checked above
        raise FrameDecodeError(Status.BAD_FRAME, "malformed frame") from None
    return bytes(envelope.content.data)


def _classify(exc: ConstructError, seq: int, command: Command | None) -> FrameDecodeError:
    """Map a construct error from a CRC-valid frame to a NAK reason."""
    field = _field_name(getattr(exc, "path", None))
    if isinstance(exc, _BadValue):
        return FrameDecodeError(Status.BAD_VALUE, f"{field}: {exc.detail}", seq=seq, command=command)
    if isinstance(exc, (MappingError, ValidationError)):
        return FrameDecodeError(Status.BAD_VALUE, f"bad value in {field}", seq=seq, command=command)
    if isinstance(exc, (StreamError, TerminatedError)):
        return FrameDecodeError(Status.BAD_LENGTH, f"payload does not match its length ({field})", seq=seq,
                                command=command)
    if isinstance(exc, ExplicitError):
        return FrameDecodeError(Status.UNKNOWN_COMMAND, "no payload layout for this command", seq=seq, command=command)
    if isinstance(exc, ConstError):
        return FrameDecodeError(Status.BAD_VERSION, "unsupported protocol version", seq=seq, command=command)
    if isinstance(exc, ChecksumError):
        return FrameDecodeError(Status.BAD_CRC, "CRC-16 mismatch")
    return FrameDecodeError(Status.BAD_FRAME, f"malformed frame ({type(exc).__name__})", seq=seq, command=command)


def decode_request(body: bytes) -> Request:
    """Decode one de-COBSed request body; raises :class:`FrameDecodeError` only (for bytes input).

    Checks, in order: size (BAD_LENGTH / BAD_FRAME), CRC (BAD_CRC), version
    (BAD_VERSION), command (UNKNOWN_COMMAND), length field (BAD_LENGTH), payload
    (BAD_LENGTH, BAD_VALUE). Errors after the CRC check carry the request's seq.
    """
    body = _as_bytes(body)
    content = _check_envelope(body, REQUEST_HEADER_SIZE)
    header = _REQUEST_HEADER.parse(content)
    seq = header.seq
    if header.version != PROTOCOL_VERSION:
        raise FrameDecodeError(Status.BAD_VERSION, f"protocol version {header.version} is not {PROTOCOL_VERSION}",
                               seq=seq)
    try:
        command = Command(header.command)
    except ValueError:
        raise FrameDecodeError(Status.UNKNOWN_COMMAND, f"unknown command 0x{header.command:02X}", seq=seq) from None
    if header.length != len(content) - REQUEST_HEADER_SIZE:
        raise FrameDecodeError(
            Status.BAD_LENGTH,
            f"length field says {header.length} but {len(content) - REQUEST_HEADER_SIZE} payload bytes follow",
            seq=seq, command=command,
        )
    try:
        parsed = REQUEST_FRAME.parse(body)
    except ConstructError as exc:
        raise _classify(exc, seq, command) from None
    value = parsed.content.value
    return Request(seq=value.seq, command=value.command, payload=value.payload)


def decode_response(body: bytes) -> Response:
    """Decode one de-COBSed response body; raises :class:`FrameDecodeError` only (for bytes input)."""
    body = _as_bytes(body)
    content = _check_envelope(body, RESPONSE_HEADER_SIZE)
    header = _RESPONSE_HEADER.parse(content)
    seq = header.seq
    if header.version != PROTOCOL_VERSION:
        raise FrameDecodeError(Status.BAD_VERSION, f"protocol version {header.version} is not {PROTOCOL_VERSION}",
                               seq=seq)
    command: Command | None = None
    if header.command != 0:
        try:
            command = Command(header.command)
        except ValueError:
            raise FrameDecodeError(Status.UNKNOWN_COMMAND, f"unknown command 0x{header.command:02X}",
                                   seq=seq) from None
    if header.length != len(content) - RESPONSE_HEADER_SIZE:
        raise FrameDecodeError(
            Status.BAD_LENGTH,
            f"length field says {header.length} but {len(content) - RESPONSE_HEADER_SIZE} payload bytes follow",
            seq=seq, command=command,
        )
    try:
        parsed = RESPONSE_FRAME.parse(body)
    except ConstructError as exc:
        raise _classify(exc, seq, command) from None
    value = parsed.content.value
    if value.status is Status.OK:
        return Response(seq=value.seq, command=value.command, status=Status.OK, payload=value.payload)
    return Response(seq=value.seq, command=value.command, status=value.status, message=value.payload)


# --- streaming ---------------------------------------------------------------------------


class FrameReader:
    """Splits a byte stream into de-COBSed frame bodies; never raises.

    :meth:`feed` returns, in stream order, each complete frame body (``bytes``)
    and a :class:`FrameDecodeError` for each rejected frame: bad COBS
    (BAD_FRAME) or oversized (BAD_LENGTH). Empty frames (two delimiters in a
    row) are ignored, so a sender may put a 0x00 before every frame to flush
    line noise. A frame that grows beyond ``max_frame_size`` is reported as
    soon as it does, and everything up to the next delimiter is dropped, so
    memory stays bounded. Bodies are not checked further: pass them to
    :func:`decode_request` or :func:`decode_response`. ``errors`` counts the
    frames rejected so far.
    """

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int) or max_frame_size < 1:
            raise InvalidInputError("max_frame_size must be a positive int")
        self._max_frame = max_frame_size
        self._max_encoded = cobs_max_encoded_size(max_frame_size)
        self._buffer = bytearray()
        self._discarding = False
        self.errors = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held so far."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any partial frame (for example when the peer reconnects)."""
        self._buffer.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | FrameDecodeError]:
        """Add received bytes; return the frames (and frame errors) they complete.

        Never raises for bytes-like input (anything else is InvalidInputError).
        """
        data = _as_bytes(data)
        out: list[bytes | FrameDecodeError] = []
        start = 0
        while True:
            end = data.find(_DELIMITER_BYTE, start)
            if end < 0:
                self._append(data[start:], out)
                return out
            self._append(data[start:end], out)
            self._finish(out)
            start = end + 1

    def _append(self, chunk: bytes, out: list[bytes | FrameDecodeError]) -> None:
        if self._discarding or not chunk:
            return
        self._buffer += chunk
        if len(self._buffer) > self._max_encoded:
            self._buffer.clear()
            self._discarding = True
            self._report(out, FrameDecodeError(Status.BAD_LENGTH, f"frame exceeds {self._max_frame} bytes"))

    def _finish(self, out: list[bytes | FrameDecodeError]) -> None:
        if self._discarding:
            self._discarding = False
            return
        if not self._buffer:
            return
        encoded = bytes(self._buffer)
        self._buffer.clear()
        try:
            body = cobs_decode(encoded)
        except FrameDecodeError as exc:
            self._report(out, exc)
            return
        if len(body) > self._max_frame:
            self._report(out, FrameDecodeError(Status.BAD_LENGTH, f"frame exceeds {self._max_frame} bytes"))
            return
        if not body:  # "01 00": a well-formed COBS frame around nothing, which no message can be
            self._report(out, FrameDecodeError(Status.BAD_FRAME, "empty frame"))
            return
        out.append(body)

    def _report(self, out: list[bytes | FrameDecodeError], error: FrameDecodeError) -> None:
        self.errors += 1
        out.append(error)
