"""The wire protocol: CRC variant, COBS, frame layout, strict decoding, streaming, fuzzing."""

from __future__ import annotations

import binascii
import dataclasses
from typing import Any

import pytest
from construct import ConstructError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mutation import mutate, mutations
from vtoken import wire
from vtoken.errors import FrameError, InvalidInputError, NakError, ProtocolError
from vtoken.oath import Algorithm, TokenKind
from vtoken.wire import Command, FrameDecodeError, FrameReader, Request, Response, Status

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- helpers -------------------------------------------------------------------------------


def with_crc(content: bytes) -> bytes:
    """Append a correct CRC, so a test can build frames that are wrong only where it wants."""
    return content + wire.crc16(content).to_bytes(2, "big")


def reason_of(body: bytes, decode: Any = wire.decode_request) -> FrameDecodeError:
    with pytest.raises(FrameDecodeError) as info:
        decode(body)
    return info.value


SAMPLE_REQUESTS: dict[Command, dict[str, Any]] = {
    Command.INFO: {},
    Command.PRESS: {},
    Command.LONG_PRESS: {},
    Command.DISPLAY: {},
    Command.TIME_GET: {},
    Command.TIME_SET: {"device_time_ns": 1_767_225_600_000_000_000},
    Command.HELLO: {},
    Command.PROVISION: {
        "serial": "1000000005", "model": "totp30", "kind": TokenKind.TOTP, "algorithm": Algorithm.SHA256,
        "digits": 8, "period": 60, "t0": 0, "counter": 7, "seed": b"\x00\x01\x02seed\x00",
    },
    Command.LOCK: {},
    Command.ADVANCE_TIME: {"ns": 30_000_000_000},
    Command.SET_TEMPERATURE: {"centi_celsius": -550},
    Command.SET_CRYSTAL_PPM: {"ppb": -20_000},
    Command.SET_BATTERY: {"per_mille": 1000},
    Command.POWER_CYCLE: {},
}

# Strategies for payload fields, by field name (names are unique in meaning across payloads).
_ASCII = st.text(alphabet=[chr(c) for c in range(0x20, 0x7F)], max_size=wire.MAX_TEXT_LENGTH)
_U8, _U16 = st.integers(0, 0xFF), st.integers(0, 0xFFFF)
_U32, _U64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
_I32 = st.integers(-(2**31), 2**31 - 1)
FIELD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "serial": _ASCII, "model": _ASCII, "firmware_version": _ASCII, "text": _ASCII,
    "kind": st.sampled_from(TokenKind), "algorithm": st.sampled_from(Algorithm), "screen": st.sampled_from(wire.Screen),
    "digits": _U8, "countdown_bars": _U8, "countdown_total": _U8,
    "period": _U32,
    "t0": _U64, "counter": _U64, "device_time_ns": _U64, "true_time_ns": _U64, "ns": _U64,
    "battery_per_mille": _U16, "per_mille": _U16,
    "battery_low": st.booleans(), "provisioned": st.booleans(), "locked": st.booleans(),
    "sim_control": st.booleans(), "low_battery": st.booleans(),
    "centi_celsius": _I32, "ppb": _I32,
    "protocol_version": _U8, "max_frame_size": _U16,
    "masks": st.lists(st.integers(0, wire.MAX_SEGMENT_MASK), max_size=8).map(tuple),
    "seed": st.binary(max_size=255),
}


def payloads(cls: type[wire.Payload]) -> st.SearchStrategy[wire.Payload]:
    return st.builds(cls, **{f.name: FIELD_STRATEGIES[f.name] for f in dataclasses.fields(cls)})


def valid_request_bodies() -> st.SearchStrategy[bytes]:
    """Bodies of valid requests: any command, any seq, any field values."""
    return st.sampled_from(Command).flatmap(
        lambda command: st.builds(
            lambda seq, payload: wire.encode_request_body(seq, command, **_fields(payload)),
            st.integers(0, wire.MAX_SEQ),
            payloads(wire.request_type(command)),
        )
    )


def _fields(payload: wire.Payload) -> dict[str, Any]:
    return {f.name: getattr(payload, f.name) for f in dataclasses.fields(payload)}


# --- CRC -----------------------------------------------------------------------------------


def test_crc_is_ccitt_false_with_its_check_value() -> None:
    assert wire.crc16(b"123456789") == 0x29B1
    assert wire.crc16(b"") == 0xFFFF  # init 0xFFFF, no final XOR


def test_crc_is_not_xmodem() -> None:
    assert binascii.crc_hqx(b"123456789", 0) == 0x31C3  # CRC-16/XMODEM: init 0
    assert wire.crc16(b"123456789") != 0x31C3


def test_crc_matches_a_bitwise_reference() -> None:
    def reference(data: bytes) -> int:
        crc = 0xFFFF
        for byte in data:
            crc ^= byte << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        return crc

    for data in (b"", b"\x00", b"\xff" * 7, bytes(range(256))):
        assert wire.crc16(data) == reference(data)


def test_crc_is_big_endian_over_everything_before_it() -> None:
    body = wire.encode_request_body(0x1234, Command.INFO)
    assert body[-2:] == wire.crc16(body[:-2]).to_bytes(2, "big")


# --- COBS ----------------------------------------------------------------------------------

_RUN = bytes(range(1, 256))  # 01..FF
COBS_VECTORS = [  # Cheshire & Baker / Wikipedia examples
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (_RUN[:254], b"\xff" + _RUN[:254]),
    (b"\x00" + _RUN[:254], b"\x01\xff" + _RUN[:254]),
    (_RUN, b"\xff" + _RUN[:254] + b"\x02\xff"),
    (_RUN[1:] + b"\x00", b"\xff" + _RUN[1:] + b"\x01\x01"),
    (_RUN[2:] + b"\x00\x01", b"\xfe" + _RUN[2:] + b"\x02\x01"),
]


@pytest.mark.parametrize(("data", "encoded"), COBS_VECTORS)
def test_cobs_known_vectors(data: bytes, encoded: bytes) -> None:
    assert wire.cobs_encode(data) == encoded
    assert wire.cobs_decode(encoded) == data


def test_cobs_decoder_accepts_a_final_empty_block_after_a_full_one() -> None:
    assert wire.cobs_decode(b"\xff" + _RUN[:254] + b"\x01") == _RUN[:254]


@pytest.mark.parametrize("bad", [b"", b"\x00", b"\x05\x01", b"\x03\x11\x00", b"\x02\x11\x05\x01"])
def test_cobs_rejects_invalid_input(bad: bytes) -> None:
    assert reason_of(bad, wire.cobs_decode).reason is Status.BAD_FRAME


_ZERO_HEAVY = st.lists(
    st.one_of(
        st.binary(max_size=8),
        st.just(b"\x00"),
        st.integers(250, 260).map(lambda n: b"\x5a" * n),  # runs around the 254-byte block size
        st.integers(250, 260).map(lambda n: bytes([1 + i % 255 for i in range(n)])),
    ),
    max_size=8,
).map(b"".join)


@FUZZ
@given(st.one_of(st.binary(max_size=1200), _ZERO_HEAVY))
def test_cobs_round_trip(data: bytes) -> None:
    encoded = wire.cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= wire.cobs_max_encoded_size(len(data))
    assert wire.cobs_decode(encoded) == data
    assert wire.unframe(wire.frame(data)) == data


def test_unframe_needs_exactly_one_delimited_frame() -> None:
    assert reason_of(b"\x02\x11", wire.unframe).reason is Status.BAD_FRAME
    assert reason_of(b"\x02\x11\x00\x00", wire.unframe).reason is Status.BAD_FRAME


# --- layout and round trips ----------------------------------------------------------------


def test_request_layout() -> None:
    body = wire.encode_request_body(0x0102, Command.TIME_SET, device_time_ns=0x0A0B0C0D0E0F1011)
    assert body[:6] == bytes([wire.PROTOCOL_VERSION, 0x01, 0x02, Command.TIME_SET, 0x00, 0x08])
    assert body[6:14] == bytes.fromhex("0a0b0c0d0e0f1011")
    assert len(body) == wire.REQUEST_HEADER_SIZE + 8 + wire.CRC_SIZE


def test_response_layout() -> None:
    body = wire.unframe(wire.encode_ack(0xBEEF, Command.PRESS, text="123456"))
    assert body[:7] == bytes([1, 0xBE, 0xEF, Command.PRESS, Status.OK, 0x00, 0x07])
    assert body[7:14] == b"\x06123456"
    nak = wire.unframe(wire.encode_nak(0, None, Status.BAD_CRC, "x"))
    assert nak[:8] == bytes([1, 0, 0, 0, Status.BAD_CRC, 0, 1]) + b"x"


def test_sample_requests_cover_every_command() -> None:
    assert set(SAMPLE_REQUESTS) == set(Command)


@pytest.mark.parametrize("command", list(Command))
def test_every_request_round_trips(command: Command) -> None:
    fields = SAMPLE_REQUESTS[command]
    framed = wire.encode_request(0x4242, command, **fields)
    assert framed.endswith(b"\x00") and 0 not in framed[:-1]
    request = wire.decode_request(wire.unframe(framed))
    assert request == Request(0x4242, command, wire.request_type(command)(**fields))


@FUZZ
@given(st.data())
def test_every_command_round_trips_with_random_fields(data: st.DataObject) -> None:
    command = data.draw(st.sampled_from(Command))
    seq = data.draw(st.integers(0, wire.MAX_SEQ))
    request = data.draw(payloads(wire.request_type(command)))
    body = wire.encode_request_body(seq, command, **_fields(request))
    assert wire.decode_request(body) == Request(seq, command, request)
    ack = data.draw(payloads(wire.response_type(command)))
    response = Response(seq, command, Status.OK, ack)
    assert wire.decode_response(wire.encode_response_body(response)) == response
    status = data.draw(st.sampled_from([s for s in Status if s is not Status.OK]))
    message = data.draw(_ASCII.map(lambda s: s[: wire.MAX_MESSAGE_LENGTH]))
    nak = Response(seq, data.draw(st.sampled_from([None, command])), status, message=message)
    assert wire.decode_response(wire.encode_response_body(nak)) == nak


def test_enum_fields_decode_to_python_enums() -> None:
    body = wire.encode_request_body(1, Command.PROVISION, **SAMPLE_REQUESTS[Command.PROVISION])
    payload = wire.decode_request(body).payload
    assert isinstance(payload, wire.ProvisionRequest)
    assert payload.kind is TokenKind.TOTP and payload.algorithm is Algorithm.SHA256


def test_the_seed_is_not_in_the_payload_repr() -> None:
    payload = wire.ProvisionRequest("1", "m", TokenKind.TOTP, Algorithm.SHA1, 6, 30, 0, 0, seed=b"TOPSECRET")
    assert "TOPSECRET" not in repr(payload)


def test_every_command_has_a_payload_layout_both_ways() -> None:
    for command in Command:
        assert issubclass(wire.request_type(command), wire.Payload)
        assert issubclass(wire.response_type(command), wire.Payload)


def test_sim_commands() -> None:
    assert {c for c in Command if c.is_simulation} == wire.SIM_COMMANDS
    assert not Command.PRESS.is_simulation and Command.POWER_CYCLE.is_simulation


def test_display_response_on() -> None:
    off = wire.DisplayResponse(wire.Screen.OFF, "", (0,) * 6, False, 0, 0)
    assert not off.on and dataclasses.replace(off, screen=wire.Screen.CODE).on


def test_raise_for_status() -> None:
    Response(1, Command.INFO, Status.OK, wire.Empty()).raise_for_status()
    with pytest.raises(NakError) as info:
        Response(1, Command.LOCK, Status.LOCKED, message="locked").raise_for_status()
    assert info.value.code is Status.LOCKED


# Item 4 of issue 14: "any NAK with seq 0: resend" also resent genuine NAKs to seq-0 requests.
@pytest.mark.parametrize(("response", "resend"), [
    (Response(0, None, Status.BAD_FRAME, message="bad COBS"), True),
    (Response(0, None, Status.BAD_CRC, message="CRC-16 mismatch"), True),
    (Response(0, None, Status.BAD_LENGTH, message="frame exceeds 512 bytes"), True),  # oversized: unread
    (Response(5, Command.TIME_SET, Status.BAD_LENGTH, message="length field says 4"), False),  # client bug
    (Response(0, Command.PRESS, Status.BAD_LENGTH, message="length field says 4"), False),
    (Response(0, Command.SET_BATTERY, Status.BAD_VALUE, message="battery level ..."), False),
    (Response(0, Command.PRESS, Status.INTERNAL, message="state not saved"), False),  # it did press
    (Response(0, None, Status.INTERNAL, message="internal error"), False),
    (Response(0, Command.HELLO, Status.BUSY, message=wire.BUSY_MESSAGE), False),
    (Response(0, Command.PRESS, Status.OK, wire.TextResponse("123456")), False),
])
def test_only_frame_level_naks_mean_the_frame_was_not_read(response: Response, resend: bool) -> None:
    assert response.frame_not_read is resend
    assert Status.BAD_FRAME.is_frame_error and Status.BAD_LENGTH.is_frame_error
    assert not Status.BAD_VALUE.is_frame_error and not Status.BUSY.is_frame_error


def test_hello_and_busy_are_on_the_wire() -> None:
    assert (Command.HELLO.value, Status.BUSY.value) == (0x07, 0x0C) and not Command.HELLO.is_simulation
    hello = wire.HelloResponse(protocol_version=wire.PROTOCOL_VERSION, max_frame_size=wire.MAX_FRAME_SIZE,
                               firmware_version="1.2.0", sim_control=True)
    ack = wire.decode_response(wire.unframe(wire.encode_ack(3, Command.HELLO, hello)))
    assert ack.payload == hello
    busy = wire.decode_response(wire.unframe(wire.encode_nak(3, Command.HELLO, Status.BUSY, wire.BUSY_MESSAGE)))
    assert (busy.status, busy.message) == (Status.BUSY, "device busy: another client is connected")


# --- strict decoding -----------------------------------------------------------------------


def test_errors_are_frame_errors() -> None:
    assert issubclass(FrameDecodeError, FrameError) and issubclass(FrameError, ProtocolError)


def test_bad_crc_is_reported_with_seq_zero() -> None:
    body = bytearray(wire.encode_request_body(77, Command.PRESS))
    body[-1] ^= 0x01
    error = reason_of(bytes(body))
    assert (error.reason, error.seq, error.command) == (Status.BAD_CRC, 0, None)


def test_damage_anywhere_is_a_crc_error_first() -> None:
    body = wire.encode_request_body(77, Command.TIME_SET, device_time_ns=5)
    for index in range(len(body)):
        damaged = bytearray(body)
        damaged[index] ^= 0x80
        assert reason_of(bytes(damaged)).reason is Status.BAD_CRC


def test_bad_version() -> None:
    content = bytes([2]) + wire.encode_request_body(77, Command.INFO)[1:-2]
    error = reason_of(with_crc(content))
    assert (error.reason, error.seq) == (Status.BAD_VERSION, 77)


def test_unknown_command() -> None:
    error = reason_of(with_crc(bytes([1, 0, 77, 0x7E, 0, 0])))
    assert (error.reason, error.seq, error.command) == (Status.UNKNOWN_COMMAND, 77, None)
    assert reason_of(with_crc(bytes([1, 0, 77, 0x00, 0, 0]))).reason is Status.UNKNOWN_COMMAND


def test_unknown_enum_value_is_an_error() -> None:
    body = wire.encode_request_body(9, Command.PROVISION, **SAMPLE_REQUESTS[Command.PROVISION])
    kind_at = wire.REQUEST_HEADER_SIZE + 1 + len("1000000005") + 1 + len("totp30")
    assert body[kind_at] == 1  # TOTP
    for field_at, bad in ((kind_at, 3), (kind_at + 1, 0), (kind_at + 1, 4)):
        damaged = bytearray(body[:-2])
        damaged[field_at] = bad
        error = reason_of(with_crc(bytes(damaged)))
        assert (error.reason, error.seq, error.command) == (Status.BAD_VALUE, 9, Command.PROVISION)


def test_construct_layer_refuses_unknown_values_itself() -> None:
    content = bytes([1, 0, 1, 0x7E, 0, 0])
    with pytest.raises(ConstructError):
        wire.REQUEST_CONTENT.parse(content)
    with pytest.raises(ConstructError):
        wire.REQUEST_FRAME.parse(with_crc(content))


def test_bad_flag_byte_is_an_error() -> None:
    info = wire.InfoResponse("1", "m", "1", TokenKind.TOTP, Algorithm.SHA1, 6, 30, 0, 0, 1000, False, True, True, False)
    body = wire.encode_response_body(Response(3, Command.INFO, Status.OK, info))
    damaged = bytearray(body[:-2])
    damaged[-1] = 2  # sim_control flag
    assert reason_of(with_crc(bytes(damaged)), wire.decode_response).reason is Status.BAD_VALUE


def test_non_ascii_text_is_an_error() -> None:
    body = wire.unframe(wire.encode_ack(3, Command.PRESS, text="123456"))
    damaged = bytearray(body[:-2])
    damaged[-1] = 0xB0
    assert reason_of(with_crc(bytes(damaged)), wire.decode_response).reason is Status.BAD_VALUE


def test_segment_mask_above_seven_bits_is_an_error() -> None:
    display = wire.DisplayResponse(wire.Screen.CODE, "1", (0, 6), False, 0, 0)
    body = wire.encode_response_body(Response(3, Command.DISPLAY, Status.OK, display))
    damaged = bytearray(body[:-2])
    damaged[-5] = 0x86  # the second mask
    assert reason_of(with_crc(bytes(damaged)), wire.decode_response).reason is Status.BAD_VALUE


def test_length_field_must_match_the_frame() -> None:
    content = wire.encode_request_body(5, Command.TIME_SET, device_time_ns=1)[:-2]
    for length in (0, 7, 9, 0xFFFF):
        damaged = content[:4] + length.to_bytes(2, "big") + content[6:]
        error = reason_of(with_crc(damaged))
        assert (error.reason, error.seq, error.command) == (Status.BAD_LENGTH, 5, Command.TIME_SET)


def test_payload_must_parse_to_exactly_its_length() -> None:
    short = bytes([1, 0, 5, Command.TIME_SET, 0, 4, 1, 2, 3, 4])
    assert reason_of(with_crc(short)).reason is Status.BAD_LENGTH
    trailing = bytes([1, 0, 5, Command.PRESS, 0, 1, 0xAA])  # PRESS takes no payload
    assert reason_of(with_crc(trailing)).reason is Status.BAD_LENGTH
    text_too_long = wire.unframe(wire.encode_ack(3, Command.PRESS, text="12"))[:-2]
    damaged = text_too_long[:7] + bytes([5]) + text_too_long[8:]  # says 5 characters, 2 follow
    assert reason_of(with_crc(damaged), wire.decode_response).reason is Status.BAD_LENGTH


def test_trailing_bytes_after_the_crc_are_an_error() -> None:
    body = wire.encode_request_body(5, Command.INFO)
    # CRC-16/CCITT-FALSE has no final XOR, so a valid body with 0x00 appended is CRC-valid again
    # (the register after the CRC's high byte is exactly "low byte, 0x00"). The length field catches it.
    assert wire.crc16(body[:-1]) == body[-1] << 8
    error = reason_of(body + b"\x00")
    assert (error.reason, error.seq) == (Status.BAD_LENGTH, 5)
    assert reason_of(body + wire.crc16(body).to_bytes(2, "big")).reason in (Status.BAD_LENGTH, Status.BAD_CRC)


def test_size_limits() -> None:
    assert reason_of(b"\x01\x00\x05").reason is Status.BAD_FRAME
    assert reason_of(b"").reason is Status.BAD_FRAME
    big = with_crc(bytes([1, 0, 5, Command.PRESS]) + (wire.MAX_FRAME_SIZE).to_bytes(2, "big") + bytes(wire.MAX_FRAME_SIZE))
    error = reason_of(big)
    assert (error.reason, error.seq) == (Status.BAD_LENGTH, 0)


def test_response_specific_errors() -> None:
    ack = wire.unframe(wire.encode_ack(3, Command.LOCK))
    unknown_status = with_crc(ack[:4] + b"\x42" + ack[5:-2])
    assert reason_of(unknown_status, wire.decode_response).reason is Status.BAD_VALUE
    ack_without_command = with_crc(ack[:3] + b"\x00" + ack[4:-2])
    assert isinstance(reason_of(ack_without_command, wire.decode_response), FrameDecodeError)


# --- encoding errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "command", "fields"),
    [
        (-1, Command.INFO, {}),
        (0x10000, Command.INFO, {}),
        (True, Command.INFO, {}),
        (1, 0x7E, {}),
        (1, Command.INFO, {"extra": 1}),
        (1, Command.TIME_SET, {}),
        (1, Command.TIME_SET, {"device_time_ns": -1}),
        (1, Command.TIME_SET, {"device_time_ns": 2**64}),
        (1, Command.SET_TEMPERATURE, {"centi_celsius": 2**31}),
        (1, Command.PROVISION, {**SAMPLE_REQUESTS[Command.PROVISION], "serial": "é"}),
        (1, Command.PROVISION, {**SAMPLE_REQUESTS[Command.PROVISION], "model": "x" * 65}),
        (1, Command.PROVISION, {**SAMPLE_REQUESTS[Command.PROVISION], "kind": "motp"}),
        (1, Command.PROVISION, {**SAMPLE_REQUESTS[Command.PROVISION], "seed": b"s" * 256}),
    ],
)
def test_encoding_refuses_bad_input(seq: Any, command: Any, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        wire.encode_request(seq, command, **fields)


def test_encoding_errors_never_show_the_seed() -> None:
    for seed in ("SECRET-SEED-TEXT", b"SECRET-SEED-TEXT" * 20):
        with pytest.raises(InvalidInputError) as info:
            wire.encode_request(1, Command.PROVISION, **{**SAMPLE_REQUESTS[Command.PROVISION], "seed": seed})
        assert "SECRET" not in str(info.value)


def test_encode_nak_sanitises_its_message() -> None:
    response = wire.decode_response(wire.unframe(wire.encode_nak(1, Command.SET_TEMPERATURE, Status.BAD_VALUE,
                                                                 "300 °C\n" + "x" * 500)))
    assert response.message.startswith("300 ?C?") and len(response.message) == wire.MAX_MESSAGE_LENGTH
    with pytest.raises(InvalidInputError):
        wire.encode_nak(1, None, Status.OK)


def test_ack_and_nak_consistency_is_enforced() -> None:
    with pytest.raises(InvalidInputError):
        wire.encode_response(Response(1, None, Status.OK, wire.Empty()))
    with pytest.raises(InvalidInputError):
        wire.encode_response(Response(1, Command.PRESS, Status.OK, wire.Empty()))  # wrong payload type
    with pytest.raises(InvalidInputError):
        wire.encode_response(Response(1, Command.PRESS, Status.LOCKED, wire.TextResponse("1")))


# --- FrameReader ---------------------------------------------------------------------------


def bodies(items: list[bytes | FrameDecodeError]) -> list[bytes]:
    return [item for item in items if isinstance(item, bytes)]


def errors(items: list[bytes | FrameDecodeError]) -> list[Status]:
    return [item.reason for item in items if isinstance(item, FrameDecodeError)]


def test_reader_splits_frames() -> None:
    a = wire.encode_request_body(1, Command.INFO)
    b = wire.encode_request_body(2, Command.PRESS)
    assert FrameReader().feed(wire.frame(a) + wire.frame(b)) == [a, b]


def test_reader_ignores_empty_frames() -> None:
    a = wire.encode_request_body(1, Command.INFO)
    assert FrameReader().feed(b"\x00\x00" + wire.frame(a) + b"\x00") == [a]


def test_reader_resynchronises_after_garbage() -> None:
    a = wire.encode_request_body(1, Command.INFO)
    items = FrameReader().feed(b"garbage" + b"\x00" + wire.frame(a))
    assert errors(items) == [Status.BAD_FRAME] and bodies(items) == [a]
    # Garbage glued to the front of a frame costs that frame; the next one is fine.
    items = FrameReader().feed(b"\x07\x07" + wire.frame(a) + wire.frame(a))
    assert len(items) == 2 and items[-1] == a


def test_reader_assembles_frames_split_anywhere() -> None:
    stream = wire.frame(wire.encode_request_body(1, Command.TIME_SET, device_time_ns=0)) + wire.frame(
        wire.encode_request_body(2, Command.INFO)
    )
    expected = FrameReader().feed(stream)
    for cut in range(len(stream) + 1):
        reader = FrameReader()
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == expected
    reader = FrameReader()
    assert [item for i in range(len(stream)) for item in reader.feed(stream[i : i + 1])] == expected


def test_reader_drops_oversized_frames_and_recovers() -> None:
    a = wire.encode_request_body(1, Command.INFO)
    reader = FrameReader()
    items = reader.feed(b"\x55" * (wire.MAX_ENCODED_FRAME_SIZE + 1))
    assert errors(items) == [Status.BAD_LENGTH]  # reported at once
    assert reader.pending == 0
    assert reader.feed(b"\x55" * 5000) == []  # still discarding, reported once, memory bounded
    assert reader.pending == 0
    assert reader.feed(b"\x00" + wire.frame(a)) == [a]
    assert reader.errors == 1


def test_reader_refuses_a_body_over_the_limit_even_if_its_encoding_fits() -> None:
    encoded = wire.cobs_encode(bytes(wire.MAX_FRAME_SIZE + 2))  # all zeros: 515 code bytes
    assert len(encoded) <= wire.MAX_ENCODED_FRAME_SIZE
    assert errors(FrameReader().feed(encoded + b"\x00")) == [Status.BAD_LENGTH]


def test_reader_accepts_a_frame_of_exactly_the_maximum_size() -> None:
    body = bytes([0x11]) * wire.MAX_FRAME_SIZE
    assert FrameReader().feed(wire.frame(body)) == [body]


def test_reader_reset_drops_a_partial_frame() -> None:
    a = wire.encode_request_body(1, Command.INFO)
    reader = FrameReader()
    reader.feed(wire.frame(a)[:4])
    assert reader.pending == 4
    reader.reset()
    assert reader.feed(wire.frame(a)) == [a]


# --- fuzzing -------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=600))
def test_decoding_random_bytes_raises_only_frame_errors(data: bytes) -> None:
    for decode in (wire.decode_request, wire.decode_response):
        try:
            decode(data)
        except FrameDecodeError as exc:
            assert isinstance(exc.reason, Status) and exc.reason is not Status.OK


_MUTATIONS = mutations(10_000)


@FUZZ
@given(valid_request_bodies(), _MUTATIONS)
def test_mutated_frames_decode_or_raise_frame_errors(body: bytes, mutations: list[tuple[str, int, int]]) -> None:
    damaged = mutate(body, mutations)
    try:
        request = wire.decode_request(damaged)
    except FrameDecodeError:
        return
    assert isinstance(request, Request)


@FUZZ
@given(valid_request_bodies(), st.integers(0, 10_000))
def test_every_single_bit_error_is_caught_by_the_crc(body: bytes, bit: int) -> None:
    damaged = bytearray(body)
    damaged[(bit // 8) % len(body)] ^= 1 << (bit % 8)
    assert reason_of(bytes(damaged)).reason is Status.BAD_CRC


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=700), valid_request_bodies().map(wire.frame)), max_size=8),
       _MUTATIONS, st.lists(st.integers(0, 4000), max_size=6))
def test_reader_never_raises_and_stays_bounded(chunks: list[bytes], mutations: list[tuple[str, int, int]],
                                               cuts: list[int]) -> None:
    stream = mutate(b"".join(chunks), mutations)
    reader = FrameReader()
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    for start, end in zip(points, points[1:]):
        for item in reader.feed(stream[start:end]):
            if isinstance(item, bytes):
                assert 0 < len(item) <= wire.MAX_FRAME_SIZE
            else:
                assert item.reason in (Status.BAD_FRAME, Status.BAD_LENGTH)
        assert reader.pending <= wire.MAX_ENCODED_FRAME_SIZE


@FUZZ
@given(st.lists(valid_request_bodies(), min_size=1, max_size=5), st.lists(st.binary(max_size=40), max_size=5))
def test_reader_delivers_every_delimited_frame_after_garbage(frames: list[bytes], garbage: list[bytes]) -> None:
    def normal(items: list[bytes | FrameDecodeError]) -> list[bytes | Status]:
        return [item if isinstance(item, bytes) else item.reason for item in items]

    stream = bytearray()
    expected: list[bytes | Status] = []
    for index, body in enumerate(frames):
        if index < len(garbage):
            stream += garbage[index] + b"\x00"  # garbage, then a delimiter: the next frame is clean
            expected += normal(FrameReader().feed(garbage[index] + b"\x00"))
        stream += wire.frame(body)
        expected.append(body)
    assert normal(FrameReader().feed(bytes(stream))) == expected


def test_an_empty_cobs_frame_is_a_bad_frame_not_a_body() -> None:
    """``01 00`` is valid COBS around nothing; no message is empty, so the reader reports BAD_FRAME."""
    items = FrameReader().feed(b"\x01\x00")
    assert len(items) == 1 and isinstance(items[0], FrameDecodeError)
    assert items[0].reason is Status.BAD_FRAME
    assert FrameReader().feed(b"\x00\x00") == []  # bare delimiters are just resynchronisation
