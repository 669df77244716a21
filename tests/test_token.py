"""The simulated token's firmware behaviour: codes, display, menu, battery, secrecy."""

from __future__ import annotations

import base64
import logging
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.battery import Battery
from firmware_sim.display import DisplayState
from firmware_sim.factory import Physics, manufacture
from firmware_sim.flash import Flash
from firmware_sim.models import HOTP_DISPLAY_NS, MODELS, get_model
from firmware_sim.rtc import TemperatureProfile
from firmware_sim.statefile import load_token, save_token
from firmware_sim.token import MENU_DISPLAY_NS, Token
from vtoken.clock import NS_PER_DAY, NS_PER_SECOND, SimulatedClock
from vtoken.errors import DeviceLockedError, DeviceStateError, InvalidConfigError
from vtoken.oath import hotp, totp

SEED = b"SEEDSEEDSEEDSEEDSEED"
DEVICE_KEY = bytes(range(32))
T_FACTORY = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z
SERIAL = "1000000005"


def make(model: str = "totp30", clock: SimulatedClock | None = None, **physics) -> tuple[Token, SimulatedClock]:
    clock = clock or SimulatedClock(T_FACTORY)
    token = manufacture(
        model=get_model(model), seed=SEED, serial=SERIAL, device_key=DEVICE_KEY, clock=clock, physics=Physics(**physics)
    )
    return token, clock


def expected_totp(token: Token, model: str = "totp30") -> str:
    m = get_model(model)
    return totp(SEED, token.device_time_ns() // NS_PER_SECOND, period=m.period, digits=m.digits, algorithm=m.algorithm)


def test_press_shows_the_code_of_the_tokens_own_clock() -> None:
    token, clock = make(ppm=20)
    clock.advance(365 * NS_PER_DAY)
    assert token.offset_ns() == 630_720_000_000  # +20 ppm for 365 days, exactly
    true_s = clock.now_ns() // NS_PER_SECOND
    assert token.press() == totp(SEED, true_s + 630)  # 630.72 s ahead; true time is on a step start
    assert token.press() != totp(SEED, true_s)


@settings(max_examples=60, deadline=None)
@given(
    ppm=st.integers(min_value=-50, max_value=50),
    days=st.integers(min_value=0, max_value=5 * 365),
    extra_s=st.integers(min_value=0, max_value=86_399),
    celsius=st.integers(min_value=-20, max_value=60),
    model=st.sampled_from(sorted(MODELS)),
)
def test_codes_equal_the_oath_core_at_the_tokens_clock(ppm: int, days: int, extra_s: int, celsius: int, model: str) -> None:
    token, clock = make(model, ppm=ppm, temperature=TemperatureProfile.constant(celsius), battery_years=10)
    clock.advance(days * NS_PER_DAY + extra_s * NS_PER_SECOND)
    if get_model(model).kind.value == "hotp":
        assert token.press() == hotp(SEED, 0, digits=get_model(model).digits)
    else:
        expected = expected_totp(token, model)
        assert token.press() == expected


def test_temperature_schedule_slows_the_clock() -> None:
    cold = TemperatureProfile.schedule([(T_FACTORY, 25), (T_FACTORY + 10 * NS_PER_DAY, 0)])
    token, clock = make(temperature=cold)
    clock.advance(20 * NS_PER_DAY)
    # 10 days at 0 °C: -0.034 * 25^2 = -21.25 ppm -> -18.36 s.
    assert token.offset_ns() == -18_360_000_000


def test_totp_display_blanks_at_the_end_of_the_step() -> None:
    token, clock = make()
    clock.advance(10 * NS_PER_SECOND)  # 10 s into a step
    code = token.press()
    assert token.display.state(clock.now_ns()) is DisplayState.CODE
    clock.advance(19 * NS_PER_SECOND)
    assert token.display.text(clock.now_ns()) == code
    clock.advance(NS_PER_SECOND)
    assert token.display.state(clock.now_ns()) is DisplayState.OFF
    assert token.display.text(clock.now_ns()) == ""


def test_hotp_counter_advances_per_press_and_display_time() -> None:
    token, clock = make("hotp")
    codes = [token.press() for _ in range(3)]
    assert codes == [hotp(SEED, c) for c in range(3)]
    assert token.flash.counter == 3
    press_time = clock.now_ns()
    clock.set(press_time + HOTP_DISPLAY_NS - 1)
    assert token.display.state(clock.now_ns()) is DisplayState.CODE
    clock.advance(2 * NS_PER_SECOND)
    assert token.display.state(clock.now_ns()) is DisplayState.OFF


def test_hotp_counter_survives_restart(tmp_path) -> None:
    token, clock = make("hotp")
    for _ in range(4):
        token.press()
    path = tmp_path / "fob.token"
    save_token(token, path)
    clock.advance(NS_PER_DAY)
    again = load_token(path, clock)
    assert again.press() == hotp(SEED, 4)
    save_token(again, path)
    assert load_token(path, clock).flash.counter == 5


def test_long_press_steps_through_the_menu() -> None:
    token, clock = make()
    assert token.long_press() == SERIAL[-6:]
    battery_text = token.long_press()
    assert battery_text.startswith("b") and battery_text.endswith("100")
    time_text = token.long_press()
    device_s = token.device_time_ns() // NS_PER_SECOND
    assert time_text == f"{device_s % 86400 // 3600:02d}{device_s % 3600 // 60:02d}{device_s % 60:02d}"
    assert token.long_press() == ""  # past the last item: the display goes off
    assert token.long_press() == SERIAL[-6:]  # and a new long press starts over
    clock.set(token.now_ns() + MENU_DISPLAY_NS)
    assert token.display.state(token.now_ns()) is DisplayState.OFF
    assert token.press() == expected_totp(token)  # a short press leaves the menu


def test_current_code_has_no_side_effects() -> None:
    token, _ = make()
    before = token.button.press_count
    assert token.current_code() == expected_totp(token)
    assert token.button.press_count == before
    hotp_token, _ = make("hotp")
    with pytest.raises(DeviceStateError):
        hotp_token.current_code()


def test_low_battery_then_dead_battery_stops_the_clock() -> None:
    token, clock = make(battery_years=1)
    clock.advance(int(Fraction(95, 100) * 365 * NS_PER_DAY))
    token.press()
    assert token.display.indicators(clock.now_ns()).low_battery
    assert token.info().battery_low
    offset_before_death = token.offset_ns()
    clock.advance(30 * NS_PER_DAY)  # past the end of life
    assert token.press() == ""  # dead: the display stays blank
    assert token.display.state(clock.now_ns()) is DisplayState.OFF
    assert not token.rtc.running
    # The clock stopped when the battery died: the token now lags true time by about two weeks.
    lag = offset_before_death - token.offset_ns()
    assert 10 * NS_PER_DAY < lag < 30 * NS_PER_DAY
    # A new battery restarts the clock from where it stopped: time is lost, not recovered.
    token.replace_battery(Battery(installed_ns=clock.now_ns()))
    assert token.rtc.running
    assert token.press() != ""
    assert token.offset_ns() < -10 * NS_PER_DAY


def test_power_cycle_keeps_flash_and_clock() -> None:
    token, clock = make("hotp", ppm=-30)
    token.press()
    clock.advance(NS_PER_DAY)
    offset = token.offset_ns()
    token.power_cycle()
    assert token.display.state(clock.now_ns()) is DisplayState.OFF
    assert token.offset_ns() == offset
    assert token.press() == hotp(SEED, 1)


def test_unprovisioned_token_shows_an_error() -> None:
    clock = SimulatedClock(T_FACTORY)
    token, _ = make(clock=clock)
    blank = Token(
        model=token.model, flash=Flash.blank(DEVICE_KEY), device_key=DEVICE_KEY, rtc=token.rtc,
        battery=token.battery, clock=clock,
    )
    assert blank.press() == "Err"
    assert blank.display.state(clock.now_ns()) is DisplayState.ERROR


def test_presses_at_the_same_moment_do_not_go_back_in_time() -> None:
    token, clock = make()
    first = token.press()
    assert token.press() == first  # the second press lands just after the first
    token.long_press()
    assert token.press() == expected_totp(token)


def test_unknown_model_is_refused() -> None:
    with pytest.raises(InvalidConfigError, match="unknown model"):
        get_model("c300")


def test_seed_never_shown(tmp_path, caplog) -> None:
    forms = [SEED, SEED.hex().encode(), SEED.hex().upper().encode(), base64.b32encode(SEED), base64.b64encode(SEED)]
    caplog.set_level(logging.DEBUG)
    token, clock = make("hotp")
    token.press()
    token.long_press()
    path = tmp_path / "fob.token"
    save_token(token, path)
    texts = [
        path.read_bytes(),
        token.flash.image,
        repr(token).encode(),
        repr(token.flash).encode(),
        str(token.info()).encode(),
        repr(token.rtc).encode(),
        caplog.text.encode(),
    ]
    for attempt, refusal in (
        (lambda: token.flash.provision(seed=b"x" * 20, serial=SERIAL, model="hotp", kind="hotp",
                                       algorithm="sha1", digits=6, period=30, t0=0), DeviceLockedError),
        (lambda: token.flash.set_counter(0), DeviceStateError),
    ):
        with pytest.raises(refusal) as info:
            attempt()
        texts.append(str(info.value).encode())
    for text in texts:
        for form in forms:
            assert form not in text
    assert not any(name for name in dir(token.flash) if "seed" in name.lower() and not name.startswith("_"))
