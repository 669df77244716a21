"""The token's one mechanical button, with contact bounce, short and long presses.

The button only *classifies* what the finger does; the token decides what each
event means. Times are integer nanoseconds since the Unix epoch, always passed
in (``now_ns``); nothing here reads a clock.

Events
    * :attr:`ButtonEvent.PRESS`: a short press, reported on release.
    * :attr:`ButtonEvent.LONG_PRESS`: a hold of at least :data:`LONG_PRESS_NS`,
      reported exactly once per hold, by the first call (``poll``, ``down`` or
      ``up``) whose time is at or past the threshold. A long hold never also
      yields a PRESS on release.

Menu contract (for the token): as on commercial tokens (Digipass GO 6/7),
LONG_PRESS enters the info menu (serial number, battery, time) when it is not
showing, and advances it to the next item when it is; PRESS shows a code.
The button does not model stepping while held: hold again for the next item.

Debouncing is a lockout with resampling, as firmware does it:

    * an edge at least :data:`DEBOUNCE_NS` after the last accepted edge is
      accepted at once;
    * an edge sooner than that is bounce and ignored, but the contact's level
      is remembered;
    * when the lockout ends, the debounced state is resampled: if the contact
      settled on the other level, that edge is accepted at
      ``last accepted edge + DEBOUNCE_NS`` (reported by the next call, any of
      ``poll``/``down``/``up``).

So down/up/down/up within a few ms counts once, a button cannot get stuck
down by a bounce, and two presses 30 ms apart count twice. Repeating the level
the contact already has (``down`` while down) is a no-op. Time must never go
backwards across calls: :class:`~vtoken.errors.InvalidTimeError`.
"""

from __future__ import annotations

import enum
from typing import Any

from vtoken.clock import NS_PER_SECOND
from vtoken.errors import CorruptStateError, DeviceStateError, InvalidInputError, InvalidTimeError

NS_PER_MS = 1_000_000

#: Edges this soon after the last accepted edge are contact bounce.
DEBOUNCE_NS = 20 * NS_PER_MS
#: A hold at least this long is a long press (opens / advances the info menu).
LONG_PRESS_NS = 6 * NS_PER_SECOND
#: How long :meth:`Button.press` holds the button by default.
DEFAULT_PRESS_HOLD_NS = 100 * NS_PER_MS
#: How far past the threshold :meth:`Button.long_press` keeps holding.
LONG_PRESS_MARGIN_NS = 100 * NS_PER_MS

_DICT_KEYS = frozenset(
    {"press_count", "raw_down", "is_down", "last_edge_ns", "last_ns", "down_since_ns", "long_reported"}
)


class ButtonEvent(enum.Enum):
    """What the button reports to the token."""

    PRESS = "press"
    LONG_PRESS = "long_press"


def _check_time(now_ns: object, name: str = "now_ns") -> int:
    if isinstance(now_ns, bool) or not isinstance(now_ns, int):
        raise InvalidTimeError(f"{name} must be an integer number of nanoseconds")
    if now_ns < 0:
        raise InvalidTimeError(f"{name} must not be negative")
    return now_ns


class Button:
    """A debounced push button that classifies presses as short or long."""

    def __init__(self) -> None:
        self.press_count: int = 0
        self._raw_down = False
        self._is_down = False
        self._last_edge_ns: int | None = None
        self._last_ns: int | None = None
        self._down_since_ns: int | None = None
        self._long_reported = False

    # --- queries -------------------------------------------------------------------

    @property
    def is_down(self) -> bool:
        """The debounced state, as of the last call."""
        return self._is_down

    def ready_ns(self, now_ns: int) -> int:
        """The earliest time at or after ``now_ns`` when a new press can begin.

        A finger that presses "again at once" after a tap lands just after the
        previous release has settled, never before it.
        """
        ready = now_ns
        if self._last_ns is not None:
            ready = max(ready, self._last_ns)
        if self._last_edge_ns is not None:
            ready = max(ready, self._last_edge_ns + DEBOUNCE_NS)
        return ready

    # --- contact edges ---------------------------------------------------------------

    def down(self, now_ns: int) -> list[ButtonEvent]:
        """The contact closes at ``now_ns``; return the events this reveals."""
        return self._edge(True, now_ns)

    def up(self, now_ns: int) -> list[ButtonEvent]:
        """The contact opens at ``now_ns``; return the events this reveals (PRESS on release)."""
        return self._edge(False, now_ns)

    def poll(self, now_ns: int) -> list[ButtonEvent]:
        """Let time pass to ``now_ns``: report a settled bounce or a hold crossing the long-press threshold."""
        return self._advance(now_ns)

    # --- conveniences ------------------------------------------------------------------

    def press(self, now_ns: int, hold_ns: int = DEFAULT_PRESS_HOLD_NS) -> list[ButtonEvent]:
        """Press at ``now_ns`` and release ``hold_ns`` later; normally returns ``[PRESS]``.

        ``hold_ns`` must be at least :data:`DEBOUNCE_NS` (a shorter blip is bounce).
        """
        if isinstance(hold_ns, bool) or not isinstance(hold_ns, int) or hold_ns < DEBOUNCE_NS:
            raise InvalidInputError(f"hold_ns must be an integer of at least {DEBOUNCE_NS} ns")
        return self._tap(now_ns, hold_ns)

    def long_press(self, now_ns: int) -> list[ButtonEvent]:
        """Hold from ``now_ns`` for LONG_PRESS_NS plus a margin, then release; returns ``[LONG_PRESS]``."""
        return self._tap(now_ns, LONG_PRESS_NS + LONG_PRESS_MARGIN_NS)

    def _tap(self, now_ns: int, hold_ns: int) -> list[ButtonEvent]:
        now_ns = _check_time(now_ns)
        if self._raw_down:
            raise DeviceStateError("the button is already held down")
        return self.down(now_ns) + self.up(now_ns + hold_ns)

    # --- the state machine -------------------------------------------------------------

    def _advance(self, now_ns: int) -> list[ButtonEvent]:
        now_ns = _check_time(now_ns)
        if self._last_ns is not None and now_ns < self._last_ns:
            raise InvalidTimeError(f"time went backwards: {now_ns} < {self._last_ns}")
        self._last_ns = now_ns
        events: list[ButtonEvent] = []
        if self._raw_down != self._is_down and self._last_edge_ns is not None:
            settle_ns = self._last_edge_ns + DEBOUNCE_NS
            if now_ns >= settle_ns:
                events += self._accept(self._raw_down, settle_ns)
        if (
            self._is_down
            and not self._long_reported
            and self._down_since_ns is not None
            and now_ns - self._down_since_ns >= LONG_PRESS_NS
        ):
            events += self._report_long()
        return events

    def _edge(self, level: bool, now_ns: int) -> list[ButtonEvent]:
        events = self._advance(now_ns)
        if level == self._raw_down:
            return events
        self._raw_down = level
        locked = self._last_edge_ns is not None and now_ns - self._last_edge_ns < DEBOUNCE_NS
        if not locked and level != self._is_down:
            events += self._accept(level, now_ns)
        return events

    def _accept(self, level: bool, at_ns: int) -> list[ButtonEvent]:
        """Accept a debounced edge at ``at_ns``."""
        self._is_down = level
        self._last_edge_ns = at_ns
        if level:
            self._down_since_ns = at_ns
            self._long_reported = False
            return []
        held_ns = at_ns - (self._down_since_ns if self._down_since_ns is not None else at_ns)
        already_long = self._long_reported
        self._down_since_ns = None
        self._long_reported = False
        if already_long:
            return []
        if held_ns >= LONG_PRESS_NS:
            self.press_count += 1
            return [ButtonEvent.LONG_PRESS]
        self.press_count += 1
        return [ButtonEvent.PRESS]

    def _report_long(self) -> list[ButtonEvent]:
        self._long_reported = True
        self.press_count += 1
        return [ButtonEvent.LONG_PRESS]

    # --- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state, JSON-safe; :meth:`from_dict` restores it exactly."""
        return {
            "press_count": self.press_count,
            "raw_down": self._raw_down,
            "is_down": self._is_down,
            "last_edge_ns": self._last_edge_ns,
            "last_ns": self._last_ns,
            "down_since_ns": self._down_since_ns,
            "long_reported": self._long_reported,
        }

    @classmethod
    def from_dict(cls, d: Any) -> Button:
        """Rebuild a button from :meth:`to_dict` output; CorruptStateError if malformed."""
        if not isinstance(d, dict) or set(d) != _DICT_KEYS:
            raise CorruptStateError("button state has the wrong fields")

        def nonneg_int(key: str, optional: bool = False) -> int | None:
            value = d[key]
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CorruptStateError(f"button state field {key!r} is not a non-negative integer")
            return value

        def flag(key: str) -> bool:
            value = d[key]
            if not isinstance(value, bool):
                raise CorruptStateError(f"button state field {key!r} is not a boolean")
            return value

        button = cls()
        button.press_count = nonneg_int("press_count")  # type: ignore[assignment]
        button._raw_down = flag("raw_down")
        button._is_down = flag("is_down")
        button._long_reported = flag("long_reported")
        button._last_edge_ns = nonneg_int("last_edge_ns", optional=True)
        button._last_ns = nonneg_int("last_ns", optional=True)
        button._down_since_ns = nonneg_int("down_since_ns", optional=True)
        if button._is_down != (button._down_since_ns is not None):
            raise CorruptStateError("button state is inconsistent: down without a start time")
        if button._long_reported and not button._is_down:
            raise CorruptStateError("button state is inconsistent: long press reported while up")
        last = button._last_ns
        for stamp in (button._last_edge_ns, button._down_since_ns):
            if stamp is not None and (last is None or stamp > last):
                raise CorruptStateError("button state is inconsistent: an edge after the last time seen")
        return button

    def __repr__(self) -> str:
        return f"<Button is_down={self._is_down} press_count={self.press_count}>"
