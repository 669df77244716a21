"""The token's seven-segment LCD: digits as segment bitmasks, timeouts, indicators, faults.

Each digit is a bitmask: bit 0 = segment a (top), b (top right), c (bottom
right), d (bottom), e (bottom left), f (top left), bit 6 = g (middle)::

     aaa
    f   b
     ggg
    e   c
     ddd

Text is right-aligned like an LCD; only the characters in :data:`CHAR_MASKS`
can be shown, and each has its own mask, so :func:`decode_masks` inverts
:func:`encode_text` exactly. Times are integer nanoseconds since the Unix
epoch, always passed in; a shown screen blanks by itself at ``until_ns``.

Faults (for teams testing tools that read displays): a *stuck-on* segment is
lit whenever the display is on (state not OFF) -- when the display is off the
whole glass is unpowered, so it is blank; a *dead* segment is never lit. Faults
are hardware, so they survive :meth:`Display.show` and :meth:`Display.blank`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from typing import Any

from vtoken.errors import CorruptStateError, InvalidConfigError, InvalidInputError, InvalidTimeError

SEG_A = 1 << 0
SEG_B = 1 << 1
SEG_C = 1 << 2
SEG_D = 1 << 3
SEG_E = 1 << 4
SEG_F = 1 << 5
SEG_G = 1 << 6
#: Every segment of one digit.
ALL_SEGMENTS = SEG_A | SEG_B | SEG_C | SEG_D | SEG_E | SEG_F | SEG_G

#: Masks of the digits 0-9, indexed by digit.
DIGIT_MASKS: tuple[int, ...] = (0x3F, 0x06, 0x5B, 0x4F, 0x66, 0x6D, 0x7D, 0x07, 0x7F, 0x6F)

#: Every character the display can show, with its mask (all masks distinct).
CHAR_MASKS: dict[str, int] = {
    **{str(digit): mask for digit, mask in enumerate(DIGIT_MASKS)},
    "A": SEG_A | SEG_B | SEG_C | SEG_E | SEG_F | SEG_G,
    "b": SEG_C | SEG_D | SEG_E | SEG_F | SEG_G,
    "C": SEG_A | SEG_D | SEG_E | SEG_F,
    "c": SEG_D | SEG_E | SEG_G,
    "d": SEG_B | SEG_C | SEG_D | SEG_E | SEG_G,
    "E": SEG_A | SEG_D | SEG_E | SEG_F | SEG_G,
    "F": SEG_A | SEG_E | SEG_F | SEG_G,
    "G": SEG_A | SEG_C | SEG_D | SEG_E | SEG_F,
    "H": SEG_B | SEG_C | SEG_E | SEG_F | SEG_G,
    "h": SEG_C | SEG_E | SEG_F | SEG_G,
    "J": SEG_B | SEG_C | SEG_D | SEG_E,
    "L": SEG_D | SEG_E | SEG_F,
    "n": SEG_C | SEG_E | SEG_G,
    "o": SEG_C | SEG_D | SEG_E | SEG_G,
    "P": SEG_A | SEG_B | SEG_E | SEG_F | SEG_G,
    "r": SEG_E | SEG_G,
    "t": SEG_D | SEG_E | SEG_F | SEG_G,
    "U": SEG_B | SEG_C | SEG_D | SEG_E | SEG_F,
    "u": SEG_C | SEG_D | SEG_E,
    "y": SEG_B | SEG_C | SEG_D | SEG_F | SEG_G,
    "-": SEG_G,
    "_": SEG_D,
    "=": SEG_D | SEG_G,
    " ": 0,
}
#: The inverse of :data:`CHAR_MASKS`.
MASK_CHARS: dict[int, str] = {mask: char for char, mask in CHAR_MASKS.items()}
#: What :func:`decode_masks` gives for a mask that is no known character.
UNKNOWN_CHAR = "?"

#: The display widths (digits) the hardware comes in.
SUPPORTED_WIDTHS = (6, 8)
DEFAULT_WIDTH = 6
#: Countdown bars a display shows (like the RSA SID700's six 10-s dots).
DEFAULT_COUNTDOWN_BARS = 6

# Text art: each digit is ART_ROWS rows of ART_COLS characters.
ART_ROWS = 5
ART_COLS = 5
ART_DIGIT_GAP = "  "
_ART_HORIZONTAL = " --- "
_ART_NO_HORIZONTAL = " " * ART_COLS
_ART_BAR_ON = "#"
_ART_BAR_OFF = "."
LOW_BATTERY_LABEL = "LOW BAT"


class DisplayState(enum.Enum):
    """What the display is showing."""

    OFF = "off"
    CODE = "code"
    MENU = "menu"
    LOW_BATTERY = "low_battery"
    ERROR = "error"


@dataclasses.dataclass(frozen=True)
class Indicators:
    """The LCD's annunciators: low-battery icon and countdown bars (``countdown_total`` 0 = none)."""

    low_battery: bool = False
    countdown_bars: int = 0
    countdown_total: int = 0


# --- helpers --------------------------------------------------------------------------


def _check_int(value: object, name: str, error: type[Exception] = InvalidInputError) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an integer")
    return value


def _check_time(value: object, name: str) -> int:
    value = _check_int(value, name, InvalidTimeError)
    if value < 0:
        raise InvalidTimeError(f"{name} must not be negative")
    return value


def _check_mask(value: object, name: str) -> int:
    value = _check_int(value, name)
    if not 0 <= value <= ALL_SEGMENTS:
        raise InvalidInputError(f"{name} must be a segment mask in 0..0x{ALL_SEGMENTS:02X}")
    return value


def encode_text(text: str, width: int) -> tuple[int, ...]:
    """Segment masks of ``text`` right-aligned in ``width`` digits (blanks on the left)."""
    width = _check_int(width, "width")
    if width < 1:
        raise InvalidInputError("width must be at least 1")
    if not isinstance(text, str):
        raise InvalidInputError("text must be a string")
    if len(text) > width:
        raise InvalidInputError(f"text of {len(text)} characters does not fit {width} digits")
    bad = sorted({char for char in text if char not in CHAR_MASKS})
    if bad:
        shown = "".join(CHAR_MASKS)
        raise InvalidInputError(f"cannot show {''.join(bad)!r} on seven segments; allowed: {shown!r}")
    return tuple(CHAR_MASKS[char] for char in text.rjust(width))


def decode_masks(masks: Iterable[int]) -> str:
    """One character per mask, the inverse of :func:`encode_text`; unknown masks give '?'."""
    return "".join(MASK_CHARS.get(_check_mask(mask, "mask"), UNKNOWN_CHAR) for mask in masks)


def countdown_bars(now_ns: int, end_ns: int, period_ns: int, bars: int = DEFAULT_COUNTDOWN_BARS) -> int:
    """Countdown bars lit at ``now_ns`` for a countdown of ``period_ns`` ending at ``end_ns``.

    Each bar stands for ``period_ns / bars`` of time and stays lit while any of
    its slice remains: ``ceil(remaining * bars / period_ns)``, clamped to
    ``0..bars``. With 60 s and 6 bars: 60 s left -> 6, 50 s -> 5, 50 s + 1 ns
    -> 6, 1 ns -> 1, at or past the end -> 0.
    """
    now_ns = _check_time(now_ns, "now_ns")
    end_ns = _check_time(end_ns, "end_ns")
    period_ns = _check_int(period_ns, "period_ns")
    bars = _check_int(bars, "bars")
    if period_ns <= 0:
        raise InvalidInputError("period_ns must be positive")
    if bars < 1:
        raise InvalidInputError("bars must be at least 1")
    remaining = end_ns - now_ns
    if remaining <= 0:
        return 0
    return min(bars, -(-remaining * bars // period_ns))


# --- the display ------------------------------------------------------------------------


class Display:
    """A 6- or 8-digit seven-segment LCD that blanks by itself."""

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        if type(width) is not int or width not in SUPPORTED_WIDTHS:
            raise InvalidConfigError(f"display width must be one of {SUPPORTED_WIDTHS}, not {width!r}")
        self._width: int = width
        self._faults: dict[int, tuple[int, int]] = {}
        self._reset()

    def _reset(self) -> None:
        self._state = DisplayState.OFF
        self._text = ""
        self._masks: tuple[int, ...] = (0,) * self._width
        self._until_ns: int | None = None
        self._countdown_end_ns: int | None = None
        self._countdown_period_ns: int | None = None
        self._low_battery = False

    # --- properties ------------------------------------------------------------------

    @property
    def width(self) -> int:
        """Number of digits."""
        return self._width

    @property
    def until_ns(self) -> int | None:
        """When the current screen blanks (None when blanked)."""
        return self._until_ns

    @property
    def faults(self) -> dict[int, tuple[int, int]]:
        """Faulty digits: position -> (stuck_on_mask, dead_mask); a copy."""
        return dict(self._faults)

    # --- showing -------------------------------------------------------------------------

    def show(
        self,
        state: DisplayState,
        text: str,
        now_ns: int,
        until_ns: int,
        *,
        countdown_end_ns: int | None = None,
        countdown_period_ns: int | None = None,
        low_battery: bool = False,
    ) -> None:
        """Show ``text`` (right-aligned) from ``now_ns`` until ``until_ns`` (exclusive).

        ``countdown_end_ns`` lights countdown bars until then; each of the
        :data:`DEFAULT_COUNTDOWN_BARS` bars stands for a sixth of
        ``countdown_period_ns`` (default: the time from ``now_ns`` to the end,
        so the bars start full; pass the TOTP step to show its true position).
        """
        if not isinstance(state, DisplayState):
            raise InvalidInputError("state must be a DisplayState")
        if state is DisplayState.OFF:
            raise InvalidInputError("use blank() to switch the display off")
        masks = encode_text(text, self._width)
        now_ns = _check_time(now_ns, "now_ns")
        until_ns = _check_time(until_ns, "until_ns")
        if until_ns < now_ns:
            raise InvalidTimeError("until_ns is before now_ns")
        if not isinstance(low_battery, bool):
            raise InvalidInputError("low_battery must be a boolean")
        period: int | None = None
        if countdown_end_ns is not None:
            countdown_end_ns = _check_time(countdown_end_ns, "countdown_end_ns")
            if countdown_end_ns <= now_ns:
                raise InvalidTimeError("countdown_end_ns must be after now_ns")
            if countdown_period_ns is None:
                period = countdown_end_ns - now_ns
            else:
                period = _check_int(countdown_period_ns, "countdown_period_ns")
                if period <= 0:
                    raise InvalidInputError("countdown_period_ns must be positive")
        elif countdown_period_ns is not None:
            raise InvalidInputError("countdown_period_ns needs countdown_end_ns")
        self._state = state
        self._text = text
        self._masks = masks
        self._until_ns = until_ns
        self._countdown_end_ns = countdown_end_ns
        self._countdown_period_ns = period
        self._low_battery = low_battery

    def blank(self) -> None:
        """Switch the display off now."""
        self._reset()

    # --- what is seen ----------------------------------------------------------------------

    def state(self, now_ns: int) -> DisplayState:
        """The state at ``now_ns``: OFF once ``until_ns`` is reached."""
        now_ns = _check_time(now_ns, "now_ns")
        if self._state is DisplayState.OFF or self._until_ns is None or now_ns >= self._until_ns:
            return DisplayState.OFF
        return self._state

    def is_on(self, now_ns: int) -> bool:
        """Whether anything is shown at ``now_ns``."""
        return self.state(now_ns) is not DisplayState.OFF

    def masks(self, now_ns: int) -> tuple[int, ...]:
        """The lit segments of each digit at ``now_ns``, faults applied; all zero when off."""
        if not self.is_on(now_ns):
            return (0,) * self._width
        lit = []
        for position, mask in enumerate(self._masks):
            stuck, dead = self._faults.get(position, (0, 0))
            lit.append((mask | stuck) & ~dead & ALL_SEGMENTS)
        return tuple(lit)

    def text(self, now_ns: int) -> str:
        """The visible characters at ``now_ns`` (faults applied, outer blanks dropped); '' when off."""
        if not self.is_on(now_ns):
            return ""
        return decode_masks(self.masks(now_ns)).strip(" ")

    def indicators(self, now_ns: int) -> Indicators:
        """The annunciators at ``now_ns`` (none when off)."""
        if not self.is_on(now_ns):
            return Indicators()
        if self._countdown_end_ns is None or self._countdown_period_ns is None:
            return Indicators(low_battery=self._low_battery)
        bars = countdown_bars(now_ns, self._countdown_end_ns, self._countdown_period_ns, DEFAULT_COUNTDOWN_BARS)
        return Indicators(self._low_battery, bars, DEFAULT_COUNTDOWN_BARS)

    # --- faults ------------------------------------------------------------------------------

    def set_fault(self, position: int, stuck_on_mask: int = 0, dead_mask: int = 0) -> None:
        """Make segments of digit ``position`` (0 = leftmost) stuck on or dead; replaces its fault.

        A segment cannot be both; zero masks clear the digit's fault.
        """
        position = _check_int(position, "position")
        if not 0 <= position < self._width:
            raise InvalidInputError(f"position must be in 0..{self._width - 1}")
        stuck_on_mask = _check_mask(stuck_on_mask, "stuck_on_mask")
        dead_mask = _check_mask(dead_mask, "dead_mask")
        if stuck_on_mask & dead_mask:
            raise InvalidInputError("a segment cannot be both stuck on and dead")
        if stuck_on_mask == 0 and dead_mask == 0:
            self._faults.pop(position, None)
        else:
            self._faults[position] = (stuck_on_mask, dead_mask)

    def clear_faults(self) -> None:
        """Repair every segment."""
        self._faults.clear()

    # --- persistence ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state, JSON-safe; :meth:`from_dict` restores it exactly."""
        return {
            "width": self._width,
            "state": self._state.value,
            "text": self._text,
            "until_ns": self._until_ns,
            "countdown_end_ns": self._countdown_end_ns,
            "countdown_period_ns": self._countdown_period_ns,
            "low_battery": self._low_battery,
            "faults": [
                {"position": position, "stuck_on_mask": stuck, "dead_mask": dead}
                for position, (stuck, dead) in sorted(self._faults.items())
            ],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Display:
        """Rebuild a display from :meth:`to_dict` output; CorruptStateError if malformed."""
        keys = {"width", "state", "text", "until_ns", "countdown_end_ns", "countdown_period_ns", "low_battery",
                "faults"}
        if not isinstance(d, dict) or set(d) != keys:
            raise CorruptStateError("display state has the wrong fields")
        try:
            display = cls(d["width"])
            faults = d["faults"]
            if not isinstance(faults, list):
                raise InvalidInputError("faults must be a list")
            for fault in faults:
                if not isinstance(fault, dict) or set(fault) != {"position", "stuck_on_mask", "dead_mask"}:
                    raise InvalidInputError("a fault has the wrong fields")
                if fault["position"] in display._faults:
                    raise InvalidInputError("two faults for one position")
                display.set_fault(fault["position"], fault["stuck_on_mask"], fault["dead_mask"])
            state = DisplayState(d["state"])
            if state is DisplayState.OFF:
                off = {"text": "", "until_ns": None, "countdown_end_ns": None, "countdown_period_ns": None,
                       "low_battery": False}
                if any(d[key] != value or type(d[key]) is not type(value) for key, value in off.items()):
                    raise InvalidInputError("an off display holds content")
                return display
            if d["countdown_end_ns"] is not None and d["countdown_period_ns"] is None:
                raise InvalidInputError("countdown without a period")
            until_ns = _check_time(d["until_ns"], "until_ns")
            end_ns = d["countdown_end_ns"]
            # show() needs a 'now'; the earliest consistent one keeps every value as stored.
            now_ns = 0 if end_ns is None else min(until_ns, _check_time(end_ns, "countdown_end_ns") - 1)
            now_ns = max(now_ns, 0)
            display.show(
                state,
                d["text"],
                now_ns,
                until_ns,
                countdown_end_ns=end_ns,
                countdown_period_ns=d["countdown_period_ns"],
                low_battery=d["low_battery"],
            )
        except (InvalidInputError, ValueError, TypeError) as exc:
            raise CorruptStateError(f"display state is corrupt: {exc}") from None
        return display

    def __repr__(self) -> str:
        return f"<Display width={self._width} state={self._state.value} text={self._text!r}>"


# --- text art ----------------------------------------------------------------------------------


def _art_rows(mask: int) -> tuple[str, ...]:
    def vertical(left: int, right: int) -> str:
        return ("|" if mask & left else " ") + " " * (ART_COLS - 2) + ("|" if mask & right else " ")

    def horizontal(segment: int) -> str:
        return _ART_HORIZONTAL if mask & segment else _ART_NO_HORIZONTAL

    return (
        horizontal(SEG_A),
        vertical(SEG_F, SEG_B),
        horizontal(SEG_G),
        vertical(SEG_E, SEG_C),
        horizontal(SEG_D),
    )


def render_indicators(indicators: Indicators) -> str:
    """One line for the annunciators, e.g. ``[####..]  LOW BAT``; '' when nothing is lit."""
    parts = []
    if indicators.countdown_total > 0:
        lit = max(0, min(indicators.countdown_bars, indicators.countdown_total))
        parts.append("[" + _ART_BAR_ON * lit + _ART_BAR_OFF * (indicators.countdown_total - lit) + "]")
    if indicators.low_battery:
        parts.append(LOW_BATTERY_LABEL)
    return "  ".join(parts)


def render_art(masks: Iterable[int], indicators: Indicators | None = None) -> str:
    """Plain-ASCII seven-segment art of ``masks`` (5 rows, lines right-stripped).

    Digits are 5 columns wide, two blanks apart; a sixth line shows the
    indicators when any is lit. "12" renders as::

                ---
            |      |
                ---
            |  |
                ---
    """
    checked = [_check_mask(mask, "mask") for mask in masks]
    glyphs = [_art_rows(mask) for mask in checked]
    lines = [ART_DIGIT_GAP.join(glyph[row] for glyph in glyphs).rstrip() for row in range(ART_ROWS)]
    if indicators is not None:
        extra = render_indicators(indicators)
        if extra:
            lines.append(extra)
    return "\n".join(lines)
