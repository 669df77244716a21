"""TokenClient over the in-process URL, and its retry rules with fakes at the transport seam."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import serial

from firmware_sim.device import DeviceController
from firmware_sim.factory import manufacture
from firmware_sim.models import get_model
from firmware_sim.token import Token
from host.client import TokenClient
from host.connection import Connection, DeviceBusyError, LoopbackConnection, SerialConnection, register_url_handler
from vserial import inproc
from vtoken import wire
from vtoken.clock import NS_PER_DAY, NS_PER_SECOND, SimulatedClock
from vtoken.errors import DeviceTimeoutError, InvalidInputError, NakError, TransportError
from vtoken.oath import Algorithm, TokenKind, hotp, totp
from vtoken.wire import Command, Screen, Status

SEED = bytes.fromhex("8f3ac1d27be4905a6c11fe2d93b7480c5de1a6f2")  # distinctive, to search error texts for
NEW_SEED = bytes.fromhex("c0ffee00deadbeef0badf00d1234567890abcdef")
DEVICE_KEY = bytes(range(32))
T_FACTORY = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z
SERIAL = "1000000005"
FAST = 0.05  # seconds: the timeout for cases where no answer comes
_names = itertools.count()


def make_token(model: str = "totp30", *, lock: bool = True, clock: SimulatedClock | None = None) -> Token:
    return manufacture(model=get_model(model), seed=SEED, serial=SERIAL, device_key=DEVICE_KEY,
                       clock=clock or SimulatedClock(T_FACTORY), lock=lock)


@pytest.fixture
def device() -> Iterator[Callable[..., tuple[str, Token]]]:
    """Register in-process devices; returns (url, token). Unregistered afterwards."""
    names: list[str] = []

    def make(model: str = "totp30", *, lock: bool = True, sim_control: bool = True) -> tuple[str, Token]:
        token = make_token(model, lock=lock)
        name = f"client-test-{next(_names)}"
        names.append(name)
        return inproc.register(name, DeviceController(token, sim_control=sim_control)), token

    yield make
    for name in names:
        inproc.unregister(name)


def secret_free(text: str) -> bool:
    return all(s.hex() not in text.lower() and repr(s) not in text and s.decode("latin-1") not in text
               for s in (SEED, NEW_SEED))


# --- fakes at the transport seam ----------------------------------------------------------------


class FlakyConnection:
    """A loopback to a real controller that loses or damages chosen exchanges, and records every write."""

    def __init__(self, controller: DeviceController, *, drop_replies: int = 0, corrupt_requests: int = 0,
                 silent: bool = False) -> None:
        self.inner = LoopbackConnection(controller, "fake://flaky")
        self.drop_replies = drop_replies
        self.corrupt_requests = corrupt_requests
        self.silent = silent
        self.writes: list[bytes] = []
        self.extra_replies = b""

    @property
    def url(self) -> str:
        return self.inner.url

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        if self.corrupt_requests:
            self.corrupt_requests -= 1
            self.inner.write(corrupt_crc(data))  # the device NAKs BAD_CRC
            return
        if self.silent:
            self.inner.controller.feed(data)
            return
        if self.drop_replies:
            self.drop_replies -= 1
            self.inner.controller.feed(data)  # the device executes, its reply is lost
            return
        if self.extra_replies:
            self.inner._buffer += self.extra_replies  # stale replies arrive before ours
            self.extra_replies = b""
        self.inner.write(data)

    def read(self, max_bytes: int, timeout: float) -> bytes:
        return self.inner.read(max_bytes, timeout)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> FlakyConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def corrupt_crc(data: bytes) -> bytes:
    """The same request with one bit of its CRC flipped (0x00 prefix kept)."""
    assert data[:1] == b"\x00"
    body = bytearray(wire.unframe(data[1:]))
    body[-1] ^= 0x01
    return b"\x00" + wire.frame(bytes(body))


class ScriptedConnection:
    """Answers each write with the next scripted bytes (b'' = silence)."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = list(replies)
        self.writes: list[bytes] = []
        self.buffer = b""
        self.url = "fake://scripted"

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.buffer += self.replies.pop(0) if self.replies else b""

    def read(self, max_bytes: int, timeout: float) -> bytes:
        chunk, self.buffer = self.buffer[:max_bytes], self.buffer[max_bytes:]
        return chunk

    def close(self) -> None:
        pass

    def __enter__(self) -> ScriptedConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# --- the in-process URL ---------------------------------------------------------------------------


def test_vtoken_url_opens_through_pyserial(device: Any) -> None:
    url, _ = device()
    register_url_handler()  # idempotent
    assert serial.protocol_handler_packages.count("host") == 1
    port = serial.serial_for_url(url, timeout=1)
    try:
        port.write(b"\x00" + wire.encode_request(7, Command.TIME_GET))
        assert port.in_waiting > 0
        reply = wire.decode_response(wire.unframe(port.read(port.in_waiting)))
        assert (reply.seq, reply.command, reply.ok) == (7, Command.TIME_GET, True)
        assert port.read(10) == b""  # nothing more is coming: no waiting
    finally:
        port.close()


def test_fake_connections_satisfy_the_protocol() -> None:
    controller = DeviceController(make_token())
    for conn in (LoopbackConnection(controller), FlakyConnection(controller), ScriptedConnection([])):
        assert isinstance(conn, Connection)


# --- every command ---------------------------------------------------------------------------------


def test_info(device: Any) -> None:
    url, _ = device()
    with TokenClient.open(url) as client:
        info = client.info()
    assert info == wire.InfoResponse(
        serial=SERIAL, model="totp30", firmware_version=info.firmware_version, kind=TokenKind.TOTP,
        algorithm=Algorithm.SHA1, digits=6, period=30, t0=0, counter=0, battery_per_mille=1000,
        battery_low=False, provisioned=True, locked=True, sim_control=True,
    )


def test_press_gives_the_totp_code_of_the_tokens_own_clock(device: Any) -> None:
    url, token = device()
    with TokenClient.open(url) as client:
        client.set_crystal_ppm(20)
        client.advance_time(365 * NS_PER_DAY)
        code = client.press()
    assert code == totp(SEED, token.device_time_ns() // NS_PER_SECOND)
    assert code != totp(SEED, token.clock.now_ns() // NS_PER_SECOND)  # 630.72 s fast: another step


def test_long_press_display_and_time(device: Any) -> None:
    url, token = device()
    with TokenClient.open(url) as client:
        assert client.display().screen is Screen.OFF
        code = client.press()
        shown = client.display()
        assert (shown.screen, shown.text, shown.on) == (Screen.CODE, code, True)
        assert len(shown.masks) == 6 and shown.countdown_total > 0
        assert client.long_press() == SERIAL[-6:]
        assert client.time_get() == token.device_time_ns()
        target = T_FACTORY + 3600 * NS_PER_SECOND
        assert client.time_set(target) == target
        assert client.time_get() == target


def test_simulation_controls(device: Any) -> None:
    url, token = device()
    with TokenClient.open(url) as client:
        clock = client.advance_time(30 * NS_PER_SECOND)
        assert clock.true_time_ns == token.clock.now_ns() >= T_FACTORY + 30 * NS_PER_SECOND
        assert clock.device_time_ns == token.device_time_ns()
        client.set_temperature(-5.5)
        client.set_crystal_ppm("20")
        client.set_battery(0.08)
        info = client.info()
        assert (info.battery_per_mille, info.battery_low) == (80, True)
        client.press()
        client.power_cycle()
        assert client.display().screen is Screen.OFF
        with pytest.raises(ValueError):
            client.set_battery(1.5)


def test_provision_then_lock_then_refused(device: Any) -> None:
    url, token = device("hotp", lock=False)
    with TokenClient.open(url) as client:
        client.provision(seed=NEW_SEED, serial="2000000008", model="hotp", kind="hotp", algorithm="sha1",
                         digits=6, period=30, counter=5)
        info = client.info()
        assert (info.serial, info.counter, info.locked) == ("2000000008", 5, False)
        assert client.press() == hotp(NEW_SEED, 5)
        client.lock()
        assert client.info().locked is True
        with pytest.raises(NakError) as refused:
            client.provision(seed=SEED, serial="2000000008", model="hotp", kind=TokenKind.HOTP,
                             algorithm=Algorithm.SHA1, digits=6, period=30)
        with pytest.raises(NakError) as relock:
            client.lock()
    assert refused.value.code is Status.LOCKED
    assert str(refused.value).startswith("device refused PROVISION: locked (")
    assert secret_free(str(refused.value)) and secret_free(repr(refused.value))
    assert relock.value.code is Status.LOCKED
    assert token.flash.counter == 6


def test_bad_provision_values_are_refused_by_the_device(device: Any) -> None:
    url, _ = device(lock=False)
    with TokenClient.open(url) as client:
        with pytest.raises(NakError) as bad:
            client.provision(seed=SEED, serial="2000000008", model="hotp", kind="totp", algorithm="sha1",
                             digits=6, period=30)  # a TOTP token cannot become a HOTP model
        with pytest.raises(InvalidInputError) as local:
            client.provision(seed=SEED, serial="2000000008", model="totp30", kind="nope", algorithm="sha1",
                             digits=6, period=30)
    assert bad.value.code is Status.BAD_VALUE
    assert secret_free(str(bad.value)) and secret_free(str(local.value))


def test_sim_control_on_a_production_token_is_not_allowed(device: Any) -> None:
    url, _ = device(sim_control=False)
    with TokenClient.open(url) as client:
        assert client.info().sim_control is False
        for call in (lambda: client.advance_time(1), lambda: client.set_temperature(30),
                     lambda: client.set_crystal_ppm(1), lambda: client.set_battery(1), client.power_cycle):
            with pytest.raises(NakError) as refused:
                call()
            assert refused.value.code is Status.NOT_ALLOWED
        assert client.press().isdigit()  # the session is still fine


# --- sequence numbers --------------------------------------------------------------------------------


def test_seq_cycles_1_to_65535_and_skips_0() -> None:
    client = TokenClient(LoopbackConnection(DeviceController(make_token())), first_seq=65534)
    client.time_get()
    assert client.next_seq == 65535
    client.time_get()
    assert client.next_seq == 1
    with pytest.raises(InvalidInputError):
        TokenClient(LoopbackConnection(DeviceController(make_token())), first_seq=0)


def test_sessions_start_at_random_seqs() -> None:
    controller = DeviceController(make_token())
    starts = {TokenClient(LoopbackConnection(controller)).next_seq for _ in range(20)}
    assert len(starts) > 1 and all(1 <= s <= 65535 for s in starts)


def test_consecutive_presses_in_new_sessions_each_press() -> None:
    token = make_token("hotp")
    controller = DeviceController(token)
    codes = [TokenClient(LoopbackConnection(controller), first_seq=s).press() for s in (10, 11, 12)]
    assert codes == [hotp(SEED, c) for c in range(3)]


# Item 3 of issue 14: a new session whose first request repeats the last one (seq and bytes) pressed nothing.
def test_a_new_session_executes_a_request_that_repeats_the_previous_sessions_last(device: Any) -> None:
    url, token = device("hotp")
    codes = []
    for _ in range(2):
        with TokenClient.open(url, first_seq=0x2A00) as client:  # HELLO at 0x2a00, PRESS at 0x2a01: same bytes
            assert client.session is not None and client.session.protocol_version == wire.PROTOCOL_VERSION
            codes.append(client.press())
    assert codes == [hotp(SEED, 0), hotp(SEED, 1)]
    assert token.flash.counter == 2


def test_open_starts_the_session_with_hello() -> None:
    controller = DeviceController(make_token())
    conn = FlakyConnection(controller)
    client = TokenClient(conn, first_seq=77)
    assert client.session is None
    hello = client.hello()
    assert conn.writes == [b"\x00" + wire.encode_request(77, Command.HELLO)]
    assert client.session == hello and hello.sim_control is False
    url = inproc.register("client-test-hello", controller)
    try:
        assert TokenClient.open(url, hello=False).session is None
    finally:
        inproc.unregister("client-test-hello")


# --- retries -----------------------------------------------------------------------------------------


def test_lost_reply_is_retried_with_identical_bytes_and_presses_once() -> None:
    token = make_token("hotp")
    conn = FlakyConnection(DeviceController(token), drop_replies=1)
    client = TokenClient(conn, timeout=FAST, first_seq=42)
    assert client.press() == hotp(SEED, 0)
    assert len(conn.writes) == 2 and conn.writes[0] == conn.writes[1]
    assert conn.writes[0] == b"\x00" + wire.encode_request(42, Command.PRESS)
    assert token.flash.counter == 1  # executed once, the retry was answered from the cache


def test_damaged_request_gets_bad_crc_and_is_resent_identically() -> None:
    token = make_token("hotp")
    conn = FlakyConnection(DeviceController(token), corrupt_requests=1)
    client = TokenClient(conn, timeout=FAST)
    assert client.press() == hotp(SEED, 0)
    assert len(conn.writes) == 2 and conn.writes[0] == conn.writes[1]
    assert token.flash.counter == 1


def test_retried_provision_writes_once() -> None:
    token = make_token("hotp", lock=False)
    sequence_before = token.flash.record.sequence
    conn = FlakyConnection(DeviceController(token), drop_replies=1, corrupt_requests=1)
    client = TokenClient(conn, timeout=FAST)
    client.provision(seed=NEW_SEED, serial="2000000008", model="hotp", kind="hotp", algorithm="sha1",
                     digits=6, period=30)
    assert len(conn.writes) == 3 and len(set(conn.writes)) == 1  # damaged, then reply lost, then answered
    assert token.flash.record.sequence == sequence_before + 1  # one flash write
    assert client.press() == hotp(NEW_SEED, 0)


def test_exhausted_retries_raise_device_timeout() -> None:
    token = make_token("hotp")
    conn = FlakyConnection(DeviceController(token), silent=True)
    client = TokenClient(conn, timeout=FAST, retries=2)
    with pytest.raises(DeviceTimeoutError) as timeout:
        client.press()
    assert str(timeout.value).startswith("no answer from fake://flaky after 3 tries")
    assert len(conn.writes) == 3 and len(set(conn.writes)) == 1
    assert token.flash.counter == 1  # three deliveries, one press
    assert isinstance(timeout.value, TransportError)


def test_persistent_damage_raises_device_timeout_naming_the_nak() -> None:
    conn = FlakyConnection(DeviceController(make_token()), corrupt_requests=10)
    client = TokenClient(conn, timeout=FAST, retries=1)
    with pytest.raises(DeviceTimeoutError, match=r"after 2 tries \(NAK BAD_CRC"):
        client.info()


def test_stale_replies_with_another_seq_are_skipped() -> None:
    token = make_token()
    conn = FlakyConnection(DeviceController(token))
    conn.extra_replies = (wire.encode_ack(99, Command.TIME_GET, device_time_ns=1)
                          + wire.encode_ack(100, Command.PRESS, text="000000"))
    client = TokenClient(conn, timeout=FAST, first_seq=100)
    assert client.time_get() == token.device_time_ns()
    assert len(conn.writes) == 1


def test_damaged_reply_and_seq0_nak_are_retried() -> None:
    ack = wire.encode_ack(5, Command.TIME_GET, device_time_ns=123)
    damaged = bytearray(ack)
    damaged[3] ^= 0x10
    seq0_nak = wire.encode_nak(0, None, Status.BAD_LENGTH, "frame exceeds 512 bytes")
    conn = ScriptedConnection([bytes(damaged), seq0_nak, ack])
    assert TokenClient(conn, timeout=FAST, first_seq=5).time_get() == 123
    assert len(conn.writes) == 3 and len(set(conn.writes)) == 1


# Item 4 of issue 14: only frame-level NAKs ("I could not read the frame") are resent, never command-level ones.
@pytest.mark.parametrize("nak", [
    wire.encode_nak(0, Command.PRESS, Status.INTERNAL, "state not saved (OSError)"),  # the press did happen
    wire.encode_nak(0, Command.PRESS, Status.BAD_VALUE, "refused"),
    wire.encode_nak(0, None, Status.INTERNAL, "internal error"),
    wire.encode_nak(9, Command.PRESS, Status.BAD_LENGTH, "length field says 4 but 0 payload bytes follow"),
])
def test_a_command_level_nak_is_final_even_with_seq_0(nak: bytes) -> None:
    conn = ScriptedConnection([nak, wire.encode_ack(9, Command.PRESS, text="123456")])
    with pytest.raises(NakError) as refused:
        TokenClient(conn, timeout=FAST, first_seq=9).press()
    assert refused.value.code is wire.decode_response(wire.unframe(nak)).status
    assert len(conn.writes) == 1  # not resent: a second PRESS could have pressed twice


def test_frame_level_naks_are_resent() -> None:
    naks = [wire.encode_nak(0, None, status, "x") for status in (Status.BAD_FRAME, Status.BAD_CRC, Status.BAD_LENGTH)]
    conn = ScriptedConnection([*naks, wire.encode_ack(9, Command.PRESS, text="123456")])
    assert TokenClient(conn, timeout=FAST, first_seq=9, retries=3).press() == "123456"
    assert len(conn.writes) == 4 and len(set(conn.writes)) == 1


def test_a_stale_seq0_nak_for_another_command_is_skipped() -> None:
    conn = ScriptedConnection([wire.encode_nak(0, Command.INFO, Status.BAD_VALUE, "old")
                               + wire.encode_ack(9, Command.PRESS, text="123456")])
    assert TokenClient(conn, timeout=FAST, first_seq=9).press() == "123456"


# Item 2 of issue 14: a busy TCP device is "device busy", not a lost connection.
@pytest.mark.parametrize("seq", [0, 9])
def test_a_busy_nak_raises_device_busy_and_is_not_resent(seq: int) -> None:
    conn = ScriptedConnection([wire.encode_nak(seq, Command.HELLO if seq else None, Status.BUSY, wire.BUSY_MESSAGE)])
    with pytest.raises(DeviceBusyError) as busy:
        TokenClient(conn, timeout=FAST, first_seq=9).hello()
    assert str(busy.value) == "device busy: another client is connected (fake://scripted)"
    assert isinstance(busy.value, TransportError) and len(conn.writes) == 1


def test_final_nak_is_not_retried() -> None:
    conn = ScriptedConnection([wire.encode_nak(5, Command.TIME_SET, Status.BATTERY_DEAD, "battery dead")])
    with pytest.raises(NakError) as refused:
        TokenClient(conn, timeout=FAST, first_seq=5).time_set(0)
    assert refused.value.code is Status.BATTERY_DEAD
    assert str(refused.value) == "device refused TIME_SET: battery dead (battery dead)"
    assert len(conn.writes) == 1


def test_a_reply_split_across_reads_is_reassembled() -> None:
    ack = wire.encode_ack(9, Command.PRESS, text="123456")

    class Trickle(ScriptedConnection):
        def read(self, max_bytes: int, timeout: float) -> bytes:
            return super().read(1, timeout)

    assert TokenClient(Trickle([ack]), timeout=FAST, first_seq=9).press() == "123456"


def test_zero_retries_sends_once() -> None:
    conn = ScriptedConnection([b""])
    with pytest.raises(DeviceTimeoutError, match="after 1 try "):
        TokenClient(conn, timeout=FAST, retries=0).info()
    assert len(conn.writes) == 1


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"timeout": -1}, {"timeout": float("nan")}, {"retries": -1},
                                    {"retries": True}])
def test_bad_client_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        TokenClient(ScriptedConnection([]), **kwargs)


# --- opening ports -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), [
    ("/dev/pts/9999", "no such port"),
    ("socket://127.0.0.1:1", "connection refused"),
    ("vtoken://no-such-device", "no in-process device"),
    ("nosuchscheme://x", "unknown URL scheme"),
    ("socket://localhost", "expected socket://HOST:PORT"),
])
def test_ports_that_cannot_be_opened(url: str, reason: str) -> None:
    with pytest.raises(TransportError) as failed:
        TokenClient.open(url, timeout=FAST)
    assert str(failed.value).startswith(f"cannot open {url}: ")
    assert reason in str(failed.value)


def test_a_pty_cannot_be_opened_twice() -> None:
    import os
    import tty

    master, slave = os.openpty()
    try:
        tty.setraw(master)
        path = os.ttyname(slave)
        with SerialConnection.open(path) as first:
            with pytest.raises(TransportError, match="in use by another program"):
                SerialConnection.open(path)
            with pytest.raises(DeviceTimeoutError, match=f"no answer from {path} after 2 tries"):
                TokenClient(first, timeout=FAST, retries=1).info()  # nobody serves the master side
    finally:
        os.close(master)
        os.close(slave)


def test_unregistered_device_fails_cleanly(device: Any) -> None:
    url, _ = device()
    client = TokenClient.open(url, timeout=FAST)
    inproc.unregister(url.split("://", 1)[1])
    with pytest.raises(TransportError, match="lost the connection"):
        client.info()
    client.close()
