"""The device's protocol handler against real tokens: every command, retries, refusals, secrecy, fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.battery import Battery
from firmware_sim.button import LONG_PRESS_NS
from firmware_sim.device import MAX_DEVICE_TIME_NS, MUTATING_COMMANDS, DeviceController, status_for
from firmware_sim.display import encode_text
from firmware_sim.factory import manufacture
from firmware_sim.flash import Flash
from firmware_sim.models import get_model
from firmware_sim.rtc import RTC
from firmware_sim.token import FIRMWARE_VERSION, Token
from vtoken import wire
from vtoken.clock import NS_PER_DAY, NS_PER_SECOND, SimulatedClock
from vtoken.errors import BatteryDeadError, DeviceLockedError, DeviceStateError, InvalidTimeError, StorageError
from vtoken.oath import Algorithm, TokenKind, hotp, totp
from vtoken.wire import Command, Response, Status

SEED = bytes.fromhex("8f3ac1d27be4905a6c11fe2d93b7480c5de1a6f2")  # distinctive, to search replies for
NEW_SEED = bytes.fromhex("c0ffee00deadbeef0badf00d1234567890abcdef")
DEVICE_KEY = bytes(range(32))
T_FACTORY = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z
SERIAL = "1000000005"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PROVISION_FIELDS: dict[str, Any] = {
    "serial": "2000000008", "model": "totp30", "kind": TokenKind.TOTP, "algorithm": Algorithm.SHA1,
    "digits": 6, "period": 30, "t0": 0, "counter": 0, "seed": NEW_SEED,
}
SIM_REQUESTS: dict[Command, dict[str, Any]] = {
    Command.ADVANCE_TIME: {"ns": NS_PER_SECOND},
    Command.SET_TEMPERATURE: {"centi_celsius": 0},
    Command.SET_CRYSTAL_PPM: {"ppb": 20_000},
    Command.SET_BATTERY: {"per_mille": 500},
    Command.POWER_CYCLE: {},
}


class Session:
    """A controller and its token, with a client that checks every exchange."""

    def __init__(self, model: str = "totp30", *, lock: bool = True, sim_control: bool = True,
                 clock: Any = None, **controller: Any) -> None:
        self.clock = clock if clock is not None else SimulatedClock(T_FACTORY)
        self.token = manufacture(model=get_model(model), seed=SEED, serial=SERIAL, device_key=DEVICE_KEY,
                                 clock=self.clock, lock=lock)
        self.device = DeviceController(self.token, sim_control=sim_control, **controller)
        self.seq = 0
        self.wire_out = bytearray()

    def send(self, seq: int, command: Command, **fields: Any) -> Response:
        """One request in, exactly one decodable response out, with our seq."""
        out = self.device.feed(b"\x00" + wire.encode_request(seq, command, **fields))
        self.wire_out += out
        items = wire.FrameReader().feed(out)
        assert len(items) == 1 and isinstance(items[0], bytes), items
        response = wire.decode_response(items[0])
        assert response.seq == seq
        assert response.command is command
        return response

    def ask(self, command: Command, **fields: Any) -> Response:
        self.seq += 1
        return self.send(self.seq, command, **fields)

    def ok(self, command: Command, **fields: Any) -> Any:
        response = self.ask(command, **fields)
        assert response.ok, response
        assert isinstance(response.payload, wire.response_type(command))
        return response.payload

    def nak(self, command: Command, status: Status, **fields: Any) -> str:
        response = self.ask(command, **fields)
        assert response.status is status, response
        return response.message


def blank_token(clock: SimulatedClock) -> Token:
    """An unprovisioned token straight off the line."""
    return Token(
        model=get_model("totp30"), flash=Flash.blank(DEVICE_KEY), device_key=DEVICE_KEY,
        rtc=RTC(factory_ns=T_FACTORY, ref_true_ns=T_FACTORY, ref_device_ns=T_FACTORY),
        battery=Battery(installed_ns=T_FACTORY), clock=clock,
    )


def expected_totp(token: Token, seed: bytes = SEED, digits: int = 6) -> str:
    return totp(seed, token.device_time_ns() // NS_PER_SECOND, digits=digits)


def decode_all(stream: bytes) -> list[Response]:
    items = wire.FrameReader().feed(stream)
    assert all(isinstance(item, bytes) for item in items), items
    return [wire.decode_response(item) for item in items]  # type: ignore[arg-type]


# --- INFO, PRESS, LONG_PRESS, DISPLAY, TIME ---------------------------------------------------


def test_info() -> None:
    s = Session()
    info = s.ok(Command.INFO)
    assert info == wire.InfoResponse(
        serial=SERIAL, model="totp30", firmware_version=FIRMWARE_VERSION, kind=TokenKind.TOTP,
        algorithm=Algorithm.SHA1, digits=6, period=30, t0=0, counter=0, battery_per_mille=1000,
        battery_low=False, provisioned=True, locked=True, sim_control=True,
    )
    assert Session(sim_control=False).ok(Command.INFO).sim_control is False


def test_info_of_a_hotp_token_reports_its_counter() -> None:
    s = Session("hotp")
    s.ok(Command.PRESS)
    s.ok(Command.PRESS)
    info = s.ok(Command.INFO)
    assert (info.kind, info.counter) == (TokenKind.HOTP, 2)


def test_press_shows_the_totp_code_of_the_tokens_own_clock() -> None:
    s = Session()
    s.ok(Command.SET_CRYSTAL_PPM, ppb=20_000)
    s.ok(Command.ADVANCE_TIME, ns=365 * NS_PER_DAY)
    expected = expected_totp(s.token)
    assert s.ok(Command.PRESS).text == expected
    assert expected != totp(SEED, s.clock.now_ns() // NS_PER_SECOND)  # 630 s of drift: another step


def test_press_on_an_8_digit_sha256_token() -> None:
    s = Session("totp30-sha256")
    assert s.ok(Command.PRESS).text == totp(SEED, s.token.device_time_ns() // NS_PER_SECOND, algorithm="sha256")


def test_hotp_press_uses_and_advances_the_counter() -> None:
    s = Session("hotp")
    assert [s.ok(Command.PRESS).text for _ in range(3)] == [hotp(SEED, c) for c in range(3)]
    assert s.token.flash.counter == 3


def test_retried_press_is_answered_from_the_cache_and_never_presses_twice() -> None:
    s = Session("hotp")
    first = s.device.feed(wire.encode_request(7, Command.PRESS))
    again = s.device.feed(wire.encode_request(7, Command.PRESS))
    assert again == first
    assert s.token.flash.counter == 1 and s.token.button.press_count == 1
    s.send(8, Command.PRESS)  # a new seq is a new press
    assert s.token.flash.counter == 2


def test_a_damaged_retry_does_not_disturb_the_cache() -> None:
    s = Session("hotp")
    request = wire.encode_request(7, Command.PRESS)
    first = s.device.feed(request)
    damaged = bytearray(request)
    damaged[-2] ^= 0x10
    nak = decode_all(s.device.feed(bytes(damaged)))
    assert [(r.status, r.seq, r.command) for r in nak] == [(Status.BAD_CRC, 0, None)]
    assert s.device.feed(request) == first
    assert s.token.flash.counter == 1


def test_only_the_previous_request_is_remembered() -> None:
    s = Session("hotp")
    s.send(7, Command.PRESS)
    s.send(8, Command.INFO)
    s.send(7, Command.PRESS)  # not a retry any more: a host reusing seq 7 gets a new press
    assert s.token.flash.counter == 2


def test_same_seq_with_a_different_body_is_executed() -> None:
    s = Session("hotp")
    s.send(7, Command.PRESS)
    assert s.send(7, Command.INFO).ok
    assert s.token.flash.counter == 1


def test_seq_zero_is_never_answered_from_the_cache() -> None:
    s = Session("hotp")
    s.send(0, Command.PRESS)
    s.send(0, Command.PRESS)
    assert s.token.flash.counter == 2
    s.send(9, Command.PRESS)
    s.send(0, Command.INFO)  # seq 0 clears the memory
    s.send(9, Command.PRESS)
    assert s.token.flash.counter == 4


def test_power_cycle_forgets_the_cached_reply() -> None:
    s = Session("hotp")
    s.send(3, Command.PRESS)
    s.send(4, Command.POWER_CYCLE)
    s.send(4, Command.POWER_CYCLE)  # executed again: harmless
    s.send(3, Command.PRESS)
    assert s.token.flash.counter == 2


# Item 3 of issue 14: a new session starting at the previous session's last seq, with the same bytes, got the
# cached reply and the command was not executed. HELLO starts a session and clears that memory.
def test_after_hello_a_repeated_seq_and_body_is_executed() -> None:
    s = Session("hotp")
    press = wire.encode_request(0x2A00, Command.PRESS)
    first = decode_all(s.device.feed(press))[0]
    assert decode_all(s.device.feed(press))[0] == first  # a retry inside a session: answered from memory
    assert s.token.flash.counter == 1
    hello = s.send(0x29FF, Command.HELLO)  # the next session starts
    assert hello.payload == wire.HelloResponse(protocol_version=wire.PROTOCOL_VERSION,
                                               max_frame_size=wire.MAX_FRAME_SIZE,
                                               firmware_version=FIRMWARE_VERSION, sim_control=True)
    second = decode_all(s.device.feed(press))[0]  # byte for byte the previous session's last request
    assert (first.payload.text, second.payload.text) == (hotp(SEED, 0), hotp(SEED, 1))
    assert s.token.flash.counter == 2


def test_hello_is_always_executed_and_leaves_nothing_remembered() -> None:
    s = Session("hotp", sim_control=False)
    hello = wire.encode_request(5, Command.HELLO)
    s.device.feed(hello)
    assert decode_all(s.device.feed(hello))[0].payload.sim_control is False  # resent: executed again, harmless
    s.send(6, Command.PRESS)
    s.send(6, Command.HELLO)  # same seq, another body: a HELLO still
    s.send(6, Command.PRESS)
    assert s.token.flash.counter == 2
    s.token.battery.set_level(s.token.now_ns(), 0)
    assert s.ok(Command.HELLO).protocol_version == wire.PROTOCOL_VERSION  # a production token, battery dead
    assert Command.HELLO not in MUTATING_COMMANDS


# Item 6 of issue 14: "must be between 0 and 1, not 1001/1000" for a per-mille field.
@pytest.mark.parametrize(("command", "fields", "message"), [
    (Command.SET_BATTERY, {"per_mille": 1001},
     "battery level must be between 0 and 1000 per mille (0-100 %), not 1001"),
    (Command.SET_TEMPERATURE, {"centi_celsius": 20001},
     "temperature must be between -10000 and 20000 centi-degrees C (-100 to 200 C), not 20001"),
    (Command.SET_TEMPERATURE, {"centi_celsius": -10001},
     "temperature must be between -10000 and 20000 centi-degrees C (-100 to 200 C), not -10001"),
    (Command.SET_CRYSTAL_PPM, {"ppb": -1_000_001},
     "crystal error must be between -1000000 and 1000000 ppb (+-1000 ppm), not -1000001"),
])
def test_out_of_range_values_are_named_in_the_fields_wire_units(command: Command, fields: dict[str, int],
                                                                   message: str) -> None:
    s = Session()
    before = (s.token.battery.to_dict(), s.token.rtc.to_dict())
    assert s.nak(command, Status.BAD_VALUE, **fields) == message
    assert (s.token.battery.to_dict(), s.token.rtc.to_dict()) == before
    edge = {"per_mille": 1000} if command is Command.SET_BATTERY else (
        {"centi_celsius": 20000} if command is Command.SET_TEMPERATURE else {"ppb": -1_000_000})
    s.ok(command, **edge)


# Item 5 of issue 14: each PRESS moves the token's true time by 120 ms (documented in docs/protocol.md).
def test_a_press_takes_120_ms_and_a_long_press_6_12_s_of_true_time() -> None:
    s = Session()
    start = s.ok(Command.ADVANCE_TIME, ns=0).true_time_ns
    s.ok(Command.PRESS)
    assert s.ok(Command.ADVANCE_TIME, ns=0).true_time_ns == start + 120 * 10**6
    s.ok(Command.LONG_PRESS)
    assert s.ok(Command.ADVANCE_TIME, ns=0).true_time_ns == start + 6_240 * 10**6
    # ADVANCE_TIME counts from the simulated clock, which presses do not move: the token catches up.
    assert s.clock.now_ns() == start
    assert s.ok(Command.ADVANCE_TIME, ns=30 * NS_PER_SECOND).true_time_ns == start + 30 * NS_PER_SECOND


def test_long_press_steps_through_the_menu() -> None:
    s = Session()
    assert s.ok(Command.LONG_PRESS).text == SERIAL[-6:]
    assert s.ok(Command.LONG_PRESS).text == "b 100"
    shown_at = s.token.rtc.device_time_ns(s.token.now_ns() + LONG_PRESS_NS) // NS_PER_SECOND % 86_400
    hh, rest = divmod(shown_at, 3600)
    assert s.ok(Command.LONG_PRESS).text == f"{hh:02d}{rest // 60:02d}{rest % 60:02d}"
    assert s.ok(Command.LONG_PRESS).text == ""
    assert s.ok(Command.DISPLAY).screen is wire.Screen.OFF


def test_display_shows_the_code_with_its_masks_and_countdown() -> None:
    s = Session()
    blank = s.ok(Command.DISPLAY)
    assert blank == wire.DisplayResponse(wire.Screen.OFF, "", (0,) * 6, False, 0, 0)
    assert not blank.on
    code = s.ok(Command.PRESS).text
    shown = s.ok(Command.DISPLAY)
    assert shown.on and shown.screen is wire.Screen.CODE and shown.text == code
    assert shown.masks == encode_text(code, 6)
    assert (shown.countdown_bars, shown.countdown_total) == (6, 6)  # pressed at the start of a step
    s.ok(Command.ADVANCE_TIME, ns=29 * NS_PER_SECOND)
    assert s.ok(Command.DISPLAY).countdown_bars == 1
    s.ok(Command.ADVANCE_TIME, ns=NS_PER_SECOND)
    assert s.ok(Command.DISPLAY).screen is wire.Screen.OFF


def test_display_shows_faulty_segments_and_low_battery() -> None:
    s = Session()
    s.token.display.set_fault(0, dead_mask=0x7F)
    s.ok(Command.SET_BATTERY, per_mille=50)
    s.ok(Command.PRESS)
    shown = s.ok(Command.DISPLAY)
    assert shown.masks[0] == 0 and shown.low_battery and s.ok(Command.INFO).battery_low


def test_press_on_an_unprovisioned_token_shows_err() -> None:
    clock = SimulatedClock(T_FACTORY)
    device = DeviceController(blank_token(clock))
    out = decode_all(device.feed(wire.encode_request(1, Command.PRESS) + wire.encode_request(2, Command.INFO)))
    assert out[0].payload == wire.TextResponse("Err")
    info = out[1].payload
    assert isinstance(info, wire.InfoResponse)
    assert (info.provisioned, info.serial, info.locked, info.model) == (False, "", False, "totp30")


def test_time_get_and_set() -> None:
    s = Session()
    assert s.ok(Command.TIME_GET).device_time_ns == T_FACTORY
    target = T_FACTORY + 3600 * NS_PER_SECOND
    assert s.ok(Command.TIME_SET, device_time_ns=target).device_time_ns == target
    assert s.token.device_time_ns() == target
    s.ok(Command.ADVANCE_TIME, ns=NS_PER_SECOND)
    assert s.ok(Command.TIME_GET).device_time_ns == target + NS_PER_SECOND


# --- PROVISION and LOCK -------------------------------------------------------------------------


def test_provision_is_refused_once_locked() -> None:
    s = Session()
    before = s.token.flash.image
    assert "locked" in s.nak(Command.PROVISION, Status.LOCKED, **PROVISION_FIELDS)
    assert s.token.flash.image == before
    s.nak(Command.LOCK, Status.LOCKED)


def test_provision_then_lock_an_unlocked_token() -> None:
    s = Session(lock=False)
    s.ok(Command.PROVISION, **{**PROVISION_FIELDS, "model": "totp60", "period": 60})
    info = s.ok(Command.INFO)
    assert (info.serial, info.model, info.period, info.locked) == ("2000000008", "totp60", 60, False)
    assert s.token.model.name == "totp60"
    assert s.ok(Command.PRESS).text == totp(NEW_SEED, s.token.device_time_ns() // NS_PER_SECOND, period=60)
    s.ok(Command.PROVISION, **PROVISION_FIELDS)  # again, before the lock
    s.ok(Command.LOCK)
    assert s.ok(Command.INFO).locked and s.token.flash.locked
    s.nak(Command.PROVISION, Status.LOCKED, **PROVISION_FIELDS)
    s.nak(Command.LOCK, Status.LOCKED)


def test_provision_blanks_the_display() -> None:
    s = Session(lock=False)
    s.ok(Command.PRESS)
    s.ok(Command.PROVISION, **PROVISION_FIELDS)
    assert s.ok(Command.DISPLAY).screen is wire.Screen.OFF


@pytest.mark.parametrize(
    "change",
    [
        {"model": "no-such-model"},
        {"model": "totp30-8", "digits": 8},  # an 8-digit model on 6-digit hardware
        {"model": "hotp"},  # the model is HOTP, the request TOTP
        {"digits": 8},  # does not fit the display
        {"digits": 11},
        {"serial": "12#"},
        {"seed": b""},
        {"seed": b"s" * 129},
        {"period": 0},
    ],
)
def test_provision_refuses_bad_values_and_changes_nothing(change: dict[str, Any]) -> None:
    s = Session(lock=False)
    before = s.token.flash.image
    s.nak(Command.PROVISION, Status.BAD_VALUE, **{**PROVISION_FIELDS, **change})
    assert s.token.flash.image == before
    assert s.ok(Command.PRESS).text == expected_totp(s.token)


def test_provision_and_lock_a_blank_token() -> None:
    clock = SimulatedClock(T_FACTORY)
    token = blank_token(clock)
    device = DeviceController(token)
    out = decode_all(device.feed(
        wire.encode_request(1, Command.LOCK)
        + wire.encode_request(2, Command.PROVISION, **PROVISION_FIELDS)
        + wire.encode_request(3, Command.LOCK)
    ))
    assert [r.status for r in out] == [Status.WRONG_STATE, Status.OK, Status.OK]
    assert token.flash.locked and token.flash.serial == "2000000008"


# --- simulation controls ------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(SIM_REQUESTS))
def test_production_tokens_refuse_simulation_controls(command: Command) -> None:
    changes: list[int] = []
    s = Session(sim_control=False, on_change=lambda: changes.append(1))
    s.ok(Command.PRESS)
    before = (s.clock.now_ns(), s.token.rtc.to_dict(), s.token.battery.to_dict(), s.token.display.to_dict())
    changes.clear()
    assert "production" in s.nak(command, Status.NOT_ALLOWED, **SIM_REQUESTS[command])
    assert (s.clock.now_ns(), s.token.rtc.to_dict(), s.token.battery.to_dict(), s.token.display.to_dict()) == before
    assert changes == []


def test_simulation_controls_cover_every_sim_command() -> None:
    assert set(SIM_REQUESTS) == wire.SIM_COMMANDS


def test_advance_time() -> None:
    s = Session()
    times = s.ok(Command.ADVANCE_TIME, ns=NS_PER_DAY)
    assert s.clock.now_ns() == T_FACTORY + NS_PER_DAY
    assert times == wire.ClockResponse(true_time_ns=T_FACTORY + NS_PER_DAY, device_time_ns=T_FACTORY + NS_PER_DAY)
    assert s.ok(Command.ADVANCE_TIME, ns=0) == times


def test_advance_time_needs_a_simulated_clock() -> None:
    class FixedClock:
        def now_ns(self) -> int:
            return T_FACTORY

    s = Session(clock=FixedClock())
    assert "simulated clock" in s.nak(Command.ADVANCE_TIME, Status.WRONG_STATE, ns=1)


def test_advance_time_cannot_pass_the_largest_wire_time() -> None:
    s = Session()
    s.nak(Command.ADVANCE_TIME, Status.BAD_VALUE, ns=2**64 - 1)
    assert s.clock.now_ns() == T_FACTORY


@pytest.mark.parametrize("device_time_ns", [2**64 - 1, MAX_DEVICE_TIME_NS + 1])
def test_issue_15_a_device_time_every_reply_can_carry(device_time_ns: int) -> None:
    """TIME_SET to 2**64-1 was accepted, and a second later TIME_GET and ADVANCE_TIME answered NAK INTERNAL."""
    s = Session()
    assert "2500-01-01" in s.nak(Command.TIME_SET, Status.BAD_VALUE, device_time_ns=device_time_ns)
    assert s.ok(Command.TIME_SET, device_time_ns=MAX_DEVICE_TIME_NS).device_time_ns == MAX_DEVICE_TIME_NS
    for _ in range(3):  # time passes at the limit: every reply still encodes
        s.ok(Command.ADVANCE_TIME, ns=NS_PER_DAY)
        assert s.ok(Command.TIME_GET).device_time_ns > MAX_DEVICE_TIME_NS
        s.ok(Command.INFO)
    s.ok(Command.SET_CRYSTAL_PPM, ppb=1_000_000)  # the fastest crystal, for 20 years more
    s.ok(Command.ADVANCE_TIME, ns=20 * 365 * NS_PER_DAY)
    assert s.ok(Command.TIME_GET).device_time_ns < 2**64
    assert "2500-01-01" in s.nak(Command.ADVANCE_TIME, Status.BAD_VALUE, ns=2**63)


def test_set_crystal_ppm_makes_the_clock_drift() -> None:
    s = Session()
    s.ok(Command.SET_CRYSTAL_PPM, ppb=20_000)  # +20 ppm: 1.728 s per day
    s.ok(Command.ADVANCE_TIME, ns=NS_PER_DAY)
    assert s.token.offset_ns() == 1_728_000_000
    s.nak(Command.SET_CRYSTAL_PPM, Status.BAD_VALUE, ppb=1_000_001)


def test_set_temperature_slows_the_clock() -> None:
    s = Session()
    s.ok(Command.SET_TEMPERATURE, centi_celsius=-500)  # -5 °C: 30 °C from the turnover
    s.ok(Command.ADVANCE_TIME, ns=NS_PER_DAY)
    assert s.token.offset_ns() == -2_643_840_000  # -0.034 * 30² = -30.6 ppm over 86 400 s
    s.nak(Command.SET_TEMPERATURE, Status.BAD_VALUE, centi_celsius=30_000)


def test_set_battery_and_a_dead_battery() -> None:
    s = Session()
    s.ok(Command.SET_BATTERY, per_mille=80)
    info = s.ok(Command.INFO)
    assert (info.battery_per_mille, info.battery_low) == (80, True)
    s.ok(Command.SET_BATTERY, per_mille=0)
    assert s.ok(Command.PRESS).text == ""
    s.nak(Command.TIME_SET, Status.BATTERY_DEAD, device_time_ns=T_FACTORY)
    frozen = s.ok(Command.TIME_GET).device_time_ns
    s.ok(Command.ADVANCE_TIME, ns=NS_PER_DAY)
    assert s.ok(Command.TIME_GET).device_time_ns == frozen  # the RTC stopped
    s.ok(Command.SET_BATTERY, per_mille=1000)  # revived: the clock resumes from where it stopped
    assert s.token.rtc.running
    s.ok(Command.ADVANCE_TIME, ns=NS_PER_SECOND)
    assert s.ok(Command.TIME_GET).device_time_ns == frozen + NS_PER_SECOND
    assert s.ok(Command.PRESS).text == expected_totp(s.token)
    s.nak(Command.SET_BATTERY, Status.BAD_VALUE, per_mille=1001)


def test_power_cycle_blanks_the_display() -> None:
    s = Session()
    s.ok(Command.PRESS)
    s.ok(Command.POWER_CYCLE)
    assert s.ok(Command.DISPLAY).screen is wire.Screen.OFF


# --- errors, hooks, secrecy ---------------------------------------------------------------------


def test_exceptions_map_to_nak_codes() -> None:
    assert status_for(DeviceLockedError("x")) is Status.LOCKED
    assert status_for(BatteryDeadError("x")) is Status.BATTERY_DEAD
    assert status_for(DeviceStateError("x")) is Status.WRONG_STATE
    assert status_for(InvalidTimeError("x")) is Status.BAD_VALUE
    assert status_for(StorageError("x")) is Status.INTERNAL
    assert status_for(RuntimeError("x")) is Status.INTERNAL


def test_an_unexpected_error_becomes_a_nak_internal_without_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Session()

    def explode() -> str:
        raise RuntimeError("SECRET-DETAIL")

    monkeypatch.setattr(s.token, "press", explode)
    message = s.nak(Command.PRESS, Status.INTERNAL)
    assert "SECRET" not in message and "RuntimeError" in message
    assert s.ok(Command.INFO).serial == SERIAL  # still serving


def test_on_change_runs_after_commands_that_change_state() -> None:
    calls: list[int] = []
    s = Session(on_change=lambda: calls.append(1))
    for command in Command:
        calls.clear()
        fields = SIM_REQUESTS.get(command, {"device_time_ns": T_FACTORY} if command is Command.TIME_SET else {})
        if command is Command.PROVISION:
            fields = PROVISION_FIELDS
        s.ask(command, **fields)
        assert len(calls) == (1 if command in MUTATING_COMMANDS else 0), command
    calls.clear()
    request = wire.encode_request(500, Command.PRESS)
    s.device.feed(request)
    s.device.feed(request)  # the cached answer changes nothing
    assert len(calls) == 1


def test_a_failing_on_change_turns_the_reply_into_a_nak() -> None:
    def fail() -> None:
        raise OSError("disk full")

    s = Session(on_change=fail)
    assert "not saved" in s.nak(Command.PRESS, Status.INTERNAL)
    assert s.ok(Command.INFO).serial == SERIAL


def test_no_reply_ever_contains_the_seed() -> None:
    s = Session("hotp", lock=False)
    for command in Command:
        fields = SIM_REQUESTS.get(command, {})
        if command is Command.TIME_SET:
            fields = {"device_time_ns": T_FACTORY}
        if command is Command.PROVISION:
            fields = {**PROVISION_FIELDS, "model": "hotp", "kind": TokenKind.HOTP, "seed": SEED}
        s.ask(command, **fields)
    s.ask(Command.PROVISION, **{**PROVISION_FIELDS, "model": "hotp", "kind": TokenKind.HOTP, "seed": SEED})
    s.device.feed(b"\x00" + SEED + b"\x00")
    stream = bytes(s.wire_out)
    bodies = b"".join(item for item in wire.FrameReader().feed(stream) if isinstance(item, bytes))
    for secret in (SEED, SEED[:8], SEED.hex().encode(), SEED.hex().upper().encode(), DEVICE_KEY):
        assert secret not in stream and secret not in bodies


def test_frame_errors_get_naks() -> None:
    s = Session()
    bad_crc = bytearray(wire.encode_request_body(4, Command.INFO))
    bad_crc[-1] ^= 1
    unknown = bytes([1, 0, 5, 0x7E, 0, 0])
    unknown += wire.crc16(unknown).to_bytes(2, "big")
    stream = (b"\x00noise\x00" + wire.frame(bytes(bad_crc)) + wire.frame(unknown)
              + b"\x11" * 600 + b"\x00" + wire.encode_request(6, Command.INFO))
    out = decode_all(s.device.feed(stream))
    assert [(r.status, r.seq, r.command) for r in out] == [
        (Status.BAD_FRAME, 0, None),
        (Status.BAD_CRC, 0, None),
        (Status.UNKNOWN_COMMAND, 5, None),
        (Status.BAD_LENGTH, 0, None),
        (Status.OK, 6, Command.INFO),
    ]


def test_handle_body_never_raises() -> None:
    s = Session()
    for body in (b"", b"\x01", bytes(600), b"\xff" * 9):
        reply = s.device.handle_body(body)
        assert not decode_all(reply)[0].ok
    assert decode_all(s.device.handle_body(wire.encode_request_body(1, Command.INFO)))[0].ok


def test_reset_link_drops_a_partial_frame() -> None:
    s = Session()
    s.device.feed(wire.encode_request(1, Command.INFO)[:5])
    s.device.reset_link()
    assert decode_all(s.device.feed(wire.encode_request(2, Command.INFO)))[0].ok


def test_the_controller_needs_a_token() -> None:
    with pytest.raises(ValueError):
        DeviceController("not a token")  # type: ignore[arg-type]


# --- fuzzing ------------------------------------------------------------------------------------

READ_ONLY = [Command.INFO, Command.DISPLAY, Command.TIME_GET]


def token_state(token: Token) -> tuple[Any, ...]:
    return (token.flash.image, token.button.press_count, token.battery.to_dict(), token.rtc.to_dict())


def fresh_press_works(s: Session, seq: int) -> None:
    counter = s.token.flash.counter
    out = decode_all(s.device.feed(b"\x00" + wire.encode_request(seq, Command.PRESS)))
    assert [r.seq for r in out if r.seq == seq] == [seq]
    response = next(r for r in out if r.seq == seq)
    assert response.ok and response.payload == wire.TextResponse(hotp(SEED, counter))


@FUZZ
@given(st.binary(max_size=1500), st.lists(st.integers(0, 1500), max_size=5))
def test_random_bytes_never_break_the_device(data: bytes, cuts: list[int]) -> None:
    s = Session("hotp")
    before = token_state(s.token)
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    out = b"".join(s.device.feed(data[a:b]) for a, b in zip(points, points[1:]))
    assert all(not r.ok for r in decode_all(out))  # garbage gets NAKs only
    assert token_state(s.token) == before
    fresh_press_works(s, 4242)


@st.composite
def mixed_streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, Command]]]:
    """Valid frames (distinct seqs) with delimited garbage in between."""
    commands = draw(st.lists(st.sampled_from([*READ_ONLY, Command.PRESS]), min_size=1, max_size=6))
    stream = bytearray()
    sent = []
    for index, command in enumerate(commands):
        garbage = draw(st.binary(max_size=60))
        stream += garbage + b"\x00"
        seq = 1000 + index
        stream += wire.encode_request(seq, command)
        sent.append((seq, command))
    return bytes(stream), sent


@FUZZ
@given(mixed_streams(), st.lists(st.integers(0, 2000), max_size=5))
def test_every_valid_frame_gets_exactly_one_answer(case: tuple[bytes, list[tuple[int, Command]]],
                                                    cuts: list[int]) -> None:
    stream, sent = case
    s = Session("hotp")
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    out = decode_all(b"".join(s.device.feed(stream[a:b]) for a, b in zip(points, points[1:])))
    answered = [(r.seq, r.command) for r in out if r.seq != 0]
    assert answered == sent
    assert all(r.ok for r in out if r.seq != 0)
    assert all(not r.ok for r in out if r.seq == 0)
    presses = sum(command is Command.PRESS for _, command in sent)
    assert s.token.flash.counter == presses


@FUZZ
@given(st.sampled_from(READ_ONLY), st.lists(
    st.tuples(st.sampled_from(["flip", "set", "insert", "delete"]), st.integers(0, 100), st.integers(0, 255)),
    min_size=1, max_size=4))
def test_mutated_frames_leave_the_token_intact(command: Command, mutations: list[tuple[str, int, int]]) -> None:
    s = Session("hotp")
    before = token_state(s.token)
    frame = bytearray(wire.encode_request(77, command))
    for kind, where, value in mutations:
        at = where % len(frame) if frame else 0
        if kind == "flip" and frame:
            frame[at] ^= 1 << (value % 8)
        elif kind == "set" and frame:
            frame[at] = value
        elif kind == "insert":
            frame.insert(at, value)
        elif kind == "delete" and frame:
            del frame[at]
    out = decode_all(s.device.feed(bytes(frame)))
    assert all(r.seq in (0, 77) for r in out)
    assert token_state(s.token) == before
    fresh_press_works(s, 4243)


def test_feeding_something_other_than_bytes_is_a_caller_bug() -> None:
    s = Session()
    with pytest.raises(ValueError):
        s.device.feed(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        s.device.handle_body("frame")  # type: ignore[arg-type]
