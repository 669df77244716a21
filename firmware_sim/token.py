"""The simulated token: firmware behaviour over flash, RTC, battery, button and display.

The token reads time only through its injected :class:`~vtoken.clock.Clock`
(true time); its own notion of time comes from its drifting RTC. It sleeps until
the button is pressed; a press wakes it, computes the code for its own clock
(TOTP) or its next counter (HOTP), shows it, and the display blanks by itself.
A long press steps through an info menu: serial number, battery, time.
"""

from __future__ import annotations

import dataclasses
import enum
from fractions import Fraction

from firmware_sim.battery import Battery
from firmware_sim.button import LONG_PRESS_NS, Button, ButtonEvent
from firmware_sim.display import Display, DisplayState
from firmware_sim.flash import Flash
from firmware_sim.models import TokenKind, TokenModel, get_model
from firmware_sim.rtc import RTC
from vtoken.clock import NS_PER_SECOND, Clock
from vtoken.errors import BatteryDeadError, DeviceStateError
from vtoken.oath import format_code

FIRMWARE_VERSION = "1.2.0"

#: How long a menu item or an error stays on the display.
MENU_DISPLAY_NS = 10 * NS_PER_SECOND

#: The button is held this long by :meth:`Token.press`.
PRESS_HOLD_NS = 100_000_000


class MenuItem(enum.IntEnum):
    """The info menu's items, in the order a long press steps through them."""

    SERIAL = 0
    BATTERY = 1
    TIME = 2


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """What the token tells about itself (INFO); never the seed."""

    serial: str
    model: str
    firmware_version: str
    kind: str
    algorithm: str
    digits: int
    period: int
    t0: int
    counter: int | None
    battery_percent: int
    battery_low: bool
    locked: bool


class Token:
    """One simulated hardware token.

    Build new tokens with :func:`firmware_sim.factory.manufacture`, or restore
    one with :func:`firmware_sim.statefile.load_token`.
    """

    def __init__(
        self,
        *,
        model: TokenModel,
        flash: Flash,
        device_key: bytes,
        rtc: RTC,
        battery: Battery,
        clock: Clock,
        button: Button | None = None,
        display: Display | None = None,
        menu_item: MenuItem | None = None,
    ) -> None:
        self.model = model
        self.flash = flash
        self._device_key = bytes(device_key)
        self.rtc = rtc
        self.battery = battery
        self.clock = clock
        self.button = button if button is not None else Button()
        self.display = display if display is not None else Display(model.display_width)
        self.menu_item = menu_item

    # --- identity -------------------------------------------------------------------

    @property
    def serial(self) -> str:
        """The serial number printed on the back."""
        return self.flash.serial

    def info(self) -> TokenInfo:
        """Serial, model, parameters, battery and lock state."""
        now = self.now_ns()
        self._settle(now)
        level = self.battery.level(now)
        return TokenInfo(
            serial=self.flash.serial,
            model=self.flash.model,
            firmware_version=FIRMWARE_VERSION,
            kind=self.flash.kind.value,
            algorithm=self.flash.algorithm.value,
            digits=self.flash.digits,
            period=self.flash.period,
            t0=self.flash.t0,
            counter=self.flash.counter if self._kind is TokenKind.HOTP else None,
            battery_percent=_percent(level),
            battery_low=self.battery.is_low(now),
            locked=self.flash.locked,
        )

    @property
    def _kind(self) -> TokenKind:
        return self.flash.kind

    @property
    def device_key(self) -> bytes:
        """The MCU's unique key that encrypts the seed in flash (saved in the token file, never shown)."""
        return self._device_key

    # --- time ------------------------------------------------------------------------

    def device_time_ns(self) -> int:
        """What the token's RTC reads now (drift included)."""
        now = self.now_ns()
        self._settle(now)
        return self.rtc.device_time_ns(now)

    def offset_ns(self) -> int:
        """Token clock minus true time, in ns."""
        now = self.now_ns()
        self._settle(now)
        return self.rtc.device_time_ns(now) - now

    def set_device_time(self, device_ns: int) -> None:
        """Set the RTC (TIME_SET) so it reads ``device_ns`` now."""
        now = self.now_ns()
        self._settle(now)
        if self.battery.is_dead(now):
            raise BatteryDeadError("the battery is dead: the clock cannot be set")
        self.rtc.set_time(now, device_ns)

    # --- the button ------------------------------------------------------------------

    def press(self) -> str:
        """Press and release the button now; return the digits then displayed ('' if blank)."""
        now = self.now_ns()
        for event in self.button.press(now, PRESS_HOLD_NS):
            self._handle(event, now)
        return self.display.text(now)

    def long_press(self) -> str:
        """Hold the button for a long press; return the menu text displayed."""
        start = self.now_ns()
        now = start + LONG_PRESS_NS
        for event in self.button.long_press(start):
            self._handle(event, now)
        return self.display.text(now)

    def button_down(self) -> None:
        """Press the button now (without releasing it)."""
        now = self.now_ns()
        for event in self.button.down(now):
            self._handle(event, now)

    def button_up(self) -> None:
        """Release the button now."""
        now = self.now_ns()
        for event in self.button.up(now):
            self._handle(event, now)

    def current_code(self) -> str:
        """The code a press would show now, without pressing (TOTP only; no side effects)."""
        if self._kind is not TokenKind.TOTP:
            raise DeviceStateError("an event token computes a code only when pressed")
        now = self.now_ns()
        self._settle(now)
        if self.battery.is_dead(now):
            raise BatteryDeadError("the battery is dead")
        step, _ = self._totp_step(now)
        return format_code(self.flash.code(step), self.flash.digits)

    # --- power -----------------------------------------------------------------------

    def power_cycle(self) -> None:
        """Remove and restore power: RAM state (display, menu) is lost, flash and RTC stay."""
        self.display.blank()
        self.menu_item = None

    def replace_battery(self, battery: Battery) -> None:
        """Fit a new battery. A clock stopped by a dead battery restarts from where it stopped."""
        now = self.now_ns()
        self._settle(now)
        frozen = self.rtc.device_time_ns(now)
        self.battery = battery
        if not self.rtc.running:
            self.rtc.set_time(now, frozen)
        self.power_cycle()

    # --- internals -------------------------------------------------------------------

    def now_ns(self) -> int:
        """True time as the token lives it: the clock's, but never before its last button event.

        A press holds the button for a while; an operation asked for "at the same
        moment" happens once that press is over, so the token's time never runs backwards.
        """
        return self.button.ready_ns(self.clock.now_ns())

    def _settle(self, now: int) -> None:
        """Apply what happened while asleep: a battery that died stops the clock then."""
        death = self.battery.death_ns(now)
        if death is not None and death <= now and self.rtc.running:
            self.rtc.stop(death)

    def _totp_step(self, now: int) -> tuple[int, int]:
        """The TOTP step of the token's own clock, and true ns left in that step."""
        device_ns = self.rtc.device_time_ns(now)
        period_ns = self.flash.period * NS_PER_SECOND
        elapsed = device_ns - self.flash.t0 * NS_PER_SECOND
        if elapsed < 0:
            raise DeviceStateError("the token's clock reads a time before its T0")
        step, into = divmod(elapsed, period_ns)
        return step, period_ns - into

    def _handle(self, event: ButtonEvent, now: int) -> None:
        self._settle(now)
        if self.battery.is_dead(now):
            self.display.blank()
            self.menu_item = None
            return
        if event is ButtonEvent.LONG_PRESS:
            self.battery.record_press(now)
            self._step_menu(now)
            return
        if event is not ButtonEvent.PRESS:
            return
        self.battery.record_press(now)
        self.menu_item = None
        if not self.flash.provisioned:
            self.display.show(DisplayState.ERROR, "Err", now, now + MENU_DISPLAY_NS)
            return
        low = self.battery.is_low(now)
        if self._kind is TokenKind.TOTP:
            step, remaining = self._totp_step(now)
            code = self.flash.code(step)
            until = now + self.model.code_display_ns(remaining)
            self.display.show(
                DisplayState.CODE,
                format_code(code, self.flash.digits),
                now,
                until,
                countdown_end_ns=now + remaining,
                countdown_period_ns=self.flash.period * NS_PER_SECOND,
                low_battery=low,
            )
        else:
            counter = self.flash.counter
            code = self.flash.code(counter)
            self.flash.set_counter(counter + 1)  # durable before the code is shown
            until = now + self.model.code_display_ns(0)
            self.display.show(DisplayState.CODE, format_code(code, self.flash.digits), now, until, low_battery=low)

    def _step_menu(self, now: int) -> None:
        showing_menu = self.display.state(now) is DisplayState.MENU and self.menu_item is not None
        if not showing_menu:
            item: MenuItem | None = MenuItem.SERIAL
        elif self.menu_item is not None and self.menu_item < max(MenuItem):
            item = MenuItem(self.menu_item + 1)
        else:
            item = None
        self.menu_item = item
        if item is None:
            self.display.blank()
            return
        self.display.show(DisplayState.MENU, self._menu_text(item, now), now, now + MENU_DISPLAY_NS,
                          low_battery=self.battery.is_low(now))

    def _menu_text(self, item: MenuItem, now: int) -> str:
        width = self.display.width
        if item is MenuItem.SERIAL:
            return self.flash.serial[-width:]
        if item is MenuItem.BATTERY:
            percent = _percent(self.battery.level(now))
            return ("b " + str(percent)).rjust(width)[-width:]
        device_s = self.rtc.device_time_ns(now) // NS_PER_SECOND
        seconds_of_day = device_s % 86_400
        hh, rest = divmod(seconds_of_day, 3600)
        mm, ss = divmod(rest, 60)
        return f"{hh:02d}{mm:02d}{ss:02d}".rjust(width)

    def __repr__(self) -> str:
        return f"<Token serial={self.flash.serial} model={self.model.name} locked={self.flash.locked}>"


def _percent(level: Fraction) -> int:
    """A battery level as a whole percentage, rounded half up."""
    return int(level * 100 + Fraction(1, 2))


def model_of(flash: Flash) -> TokenModel:
    """The preset a flash image says the token is."""
    return get_model(flash.model)
