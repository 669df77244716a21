"""``vtoken codes``: print OATH codes, one per line, or find which step or counter gives a code."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence

import click

from host.cli.exits import EXIT_REFUSED, exit_refused_json
from host.cli.jsonout import echo_json, json_option
from host.cli.options import ALGORITHM_CHOICE, INPUT_FILE, time_or_now
from host.timearg import format_time_ns, time_fields
from firmware_sim.button import Button
from firmware_sim.models import TokenKind
from firmware_sim.statefile import load_token
from firmware_sim.token import Token
from validator.kernel import get_backend
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import BatteryDeadError, InvalidCodeError, InvalidInputError, InvalidTimeError
from vtoken.oath import (
    DEFAULT_PERIOD,
    DEFAULT_T0,
    MAX_COUNTER,
    check_counter,
    codes_equal,
    format_code,
    parse_code,
    parse_key,
    time_step,
)

#: ``reason`` of a ``--validate --json`` search that found nothing.
REASON_NO_MATCH = "no-match"

#: The largest ``--window``: a TOTP search computes at most 2 * MAX_WINDOW + 1 codes
#: (a few seconds at worst, from a token file), never hours.
MAX_WINDOW = 100_000


@click.command()
@click.option("--state", "state", type=INPUT_FILE, help="A token file: print what it would display.")
@click.option("--key", "key_hex", metavar="HEX", help="The seed as hex.")
@click.option("--key-b32", "key_b32", metavar="B32", help="The seed as base32 (as authenticator apps show it).")
@click.option("--totp", "mode", flag_value="totp", default=True, help="Time-based codes (default).")
@click.option("--hotp", "mode", flag_value="hotp", help="Counter-based codes.")
@click.option("--at", "at", metavar="TIME",
              help="TOTP time: Unix seconds, ISO 8601 with a zone, or 'now'. Default: now.")
@click.option("--counter", type=click.IntRange(min=0), default=0, show_default=True, help="HOTP counter.")
@click.option("--period", type=click.IntRange(min=1), default=DEFAULT_PERIOD, show_default=True, help="TOTP step, s.")
@click.option("--t0", type=click.IntRange(min=0), default=DEFAULT_T0, show_default=True, help="TOTP T0, Unix s.")
@click.option("--digits", type=click.IntRange(6, 10), default=6, show_default=True)
@click.option("--algorithm", type=ALGORITHM_CHOICE, default="sha1", show_default=True, help="Any case.")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="Consecutive steps or counters.")
@click.option(
    "--validate", "validate", metavar="CODE",
    help="Check CODE instead of printing codes: print the step or counter that gives it "
    "(exit 0), or exit 1 if none in the window does.",
)
@click.option(
    "--window", type=click.IntRange(0, MAX_WINDOW), default=0, show_default=True, metavar="N",
    help="With --validate: TOTP tries the steps from TIME's step - N to + N; HOTP the counters "
    "from --counter to --counter + N.",
)
@json_option
def codes(
    state: str | None,
    key_hex: str | None,
    key_b32: str | None,
    mode: str,
    at: str | None,
    counter: int,
    period: int,
    t0: int,
    digits: int,
    algorithm: str,
    count: int,
    validate: str | None,
    window: int,
    as_json: bool,
) -> None:
    """Print OATH codes, one per line.

    With --state, print what that token would display when pressed at TIME
    (true time; the token computes from its own drifting clock), and with
    --count, at TIME + period, TIME + 2 periods, ... (HOTP: successive presses).
    The token file is not changed.

    With --validate CODE (as oathtool's OTP argument with -w), search for CODE
    instead: TOTP in the steps TIME's step - N .. + N (--window N), HOTP in the
    counters --counter .. --counter + N (with --state: the token's own step at
    TIME, or its next counter). Print the matching step or counter and its offset
    from the start, the one closest to it if several match, and exit 0; exit 1
    when none matches.

    With --json, print one object: the codes (and the time they are for), or
    the search and its match ("ok": false and exit 1 when nothing matches).

    \b
    Examples:
      vtoken codes --key 3132333435363738393031323334353637383930 --hotp --counter 0 --count 10
      vtoken codes --key-b32 GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ --totp --at 2026-01-01T00:00:00Z --count 3
      vtoken codes --state fob.token --at 2027-06-01T12:00:00Z --count 2
      vtoken codes --key 3132333435363738393031323334353637383930 --at 1111111111 --digits 8 --validate 07081804 --window 2
    """
    ctx = click.get_current_context()
    if validate is not None and ctx.get_parameter_source("count") is not click.core.ParameterSource.DEFAULT:
        raise InvalidInputError("--count does not apply with --validate; use --window N to search N steps or counters")
    if validate is None and ctx.get_parameter_source("window") is not click.core.ParameterSource.DEFAULT:
        raise InvalidInputError("--window applies only with --validate CODE")
    if state is not None:
        if key_hex is not None or key_b32 is not None:
            raise InvalidInputError("--state takes the seed from the token; do not also give --key")
        for name in ("mode", "counter", "period", "t0", "digits", "algorithm"):
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                option = "--totp/--hotp" if name == "mode" else f"--{name}"
                raise InvalidInputError(f"{option} does not apply with --state: the token file fixes it")
        at_ns = time_or_now(at)
        if validate is not None:
            _report(token_search(state, at_ns, validate, window, at_given=at is not None), as_json)
            return
        _print_codes(token_codes(state, at_ns, count, at_given=at is not None), at_ns, as_json)
        return
    if (key_hex is None) == (key_b32 is None):
        raise InvalidInputError("give exactly one of --key HEX or --key-b32 B32")
    key = parse_key(key_hex, "hex") if key_hex is not None else parse_key(key_b32 or "", "base32")
    if validate is not None:
        check_code(validate, digits)
    at_ns: int | None = None
    if mode == "totp":
        at_ns = time_or_now(at)
        start = time_step(at_ns // NS_PER_SECOND, period=period, t0=t0)
    else:
        if at is not None:
            raise InvalidInputError("--at applies to --totp; use --counter with --hotp")
        start = counter
    prepared = get_backend().prepare(key, algorithm=algorithm, digits=digits)
    if validate is not None:

        def codes_of(first: int, n: int) -> list[str]:
            return [format_code(int(value), digits) for value in prepared.generate(first, n)]

        _report(search(validate, start, window, codes_of, totp=mode == "totp", period=period), as_json)
        return
    _print_codes([format_code(int(value), digits) for value in prepared.generate(start, count)], at_ns, as_json)


def _print_codes(shown: list[str], at_ns: int | None, as_json: bool) -> None:
    """The codes, one per line; or ``{"codes": [...], "at_ns", "at"}`` (the time None for HOTP from a key)."""
    if as_json:
        echo_json({"ok": True, "codes": shown, **time_fields("at", at_ns)})
        return
    for code in shown:
        click.echo(code)


# --- --validate --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Search:
    """Where a ``--validate`` search looked (``first .. last``, around ``start``), and what it found."""

    totp: bool
    period: int
    start: int
    first: int
    last: int
    match: int | None

    def describe_match(self) -> str:
        """One line: ``match: counter 5 (+5)`` or ``match: step 37037036 (-1, 30 s earlier)``."""
        assert self.match is not None
        offset = self.match - self.start
        where = f"{'step' if self.totp else 'counter'} {self.match} ({offset:+d}"
        if self.totp and offset:
            where += f", {abs(offset) * self.period} s {'earlier' if offset < 0 else 'later'}"
        return f"match: {where})"

    def describe_miss(self) -> str:
        """One line saying which steps or counters were tried."""
        unit = "step" if self.totp else "counter"
        if self.first == self.last:
            return f"no match: {unit} {self.first} does not give this code (use --window N to search further)"
        return f"no match: no {unit} from {self.first} to {self.last} gives this code"

    def as_json(self) -> dict[str, object]:
        """The search for ``--json``: where it looked and what it found (``match``/``offset`` None on a miss)."""
        return {
            "kind": "totp" if self.totp else "hotp",
            "start": self.start,
            "first": self.first,
            "last": self.last,
            "match": self.match,
            "offset": None if self.match is None else self.match - self.start,
        }


def check_code(code: str, digits: int) -> None:
    """Refuse (exit 2) a ``--validate`` code that is not exactly ``digits`` ASCII digits."""
    if not code:
        raise InvalidCodeError(f"--validate: the code is empty; give the {digits} digits the token shows")
    try:
        parse_code(code, digits)
    except InvalidCodeError as exc:
        raise InvalidCodeError(f"--validate {code!r}: {exc}") from None


def search(
    code: str,
    start: int,
    window: int,
    codes_of: Callable[[int, int], Sequence[str]],
    *,
    totp: bool,
    period: int,
) -> Search:
    """Find ``code`` among the steps ``start - window .. start + window`` (TOTP) or counters ``start .. start + window``.

    ``codes_of(first, n)`` gives the codes of ``first .. first + n - 1``. Every
    code of the window is compared (in constant time, no early exit); of several
    matches the one closest to ``start`` wins, then the earliest.
    """
    start = check_counter(start)
    first = max(0, start - window) if totp else start
    last = min(MAX_COUNTER, start + window)
    best: tuple[int, int] | None = None
    for position, candidate in zip(range(first, last + 1), codes_of(first, last - first + 1), strict=True):
        if codes_equal(candidate, code):
            rank = (abs(position - start), position)
            if best is None or rank < best:
                best = rank
    return Search(totp=totp, period=period, start=start, first=first, last=last,
                  match=None if best is None else best[1])


def _report(result: Search, as_json: bool) -> None:
    if result.match is None:
        if as_json:
            exit_refused_json(REASON_NO_MATCH, result.describe_miss(), **result.as_json())
        click.echo(result.describe_miss(), err=True)
        sys.exit(EXIT_REFUSED)
    if as_json:
        echo_json({"ok": True, **result.as_json()})
        return
    click.echo(result.describe_match())


# --- token files -------------------------------------------------------------------------------

#: Successive presses of an event token in ``--count`` are this far apart.
HOTP_PRESS_SPACING_NS = 2 * NS_PER_SECOND


def _dry_run_token(path: str, at_ns: int, *, at_given: bool = True) -> tuple[Token, SimulatedClock]:
    """The token in ``path`` at true time ``at_ns``, ready to be pressed; nothing is saved.

    ``at_given``: the user typed ``--at`` (else ``at_ns`` is this computer's clock), for the message.
    """
    clock = SimulatedClock(at_ns)
    fob = load_token(path, clock)
    last_event_ns = fob.battery.last_event_ns
    if at_ns < last_event_ns:
        last = format_time_ns(last_event_ns)
        if at_given:
            raise InvalidTimeError(
                f"--at {format_time_ns(at_ns)} is before the token's last recorded event at {last}; "
                "a token file cannot be replayed backwards"
            )
        raise InvalidTimeError(
            f"{path} records an event at {last}, {(last_event_ns - at_ns) / NS_PER_SECOND:.1f} s after this "
            f"computer's clock (served faster than real time, simulated ahead, or made with a future --at): "
            f"give --at {last} or later"
        )
    fob.button = Button()  # a dry run from a rested button, whatever the file's last press time
    fob.power_cycle()
    return fob, clock


def _press(fob: Token, clock: SimulatedClock) -> str:
    code = fob.press()
    if not code:
        raise BatteryDeadError(
            f"the token's display stays blank at {format_time_ns(clock.now_ns())}: its battery is dead"
        )
    return code


def token_codes(path: str, at_ns: int, count: int, *, at_given: bool = True) -> list[str]:
    """What the token in ``path`` displays when pressed at ``at_ns`` (and later steps)."""
    fob, clock = _dry_run_token(path, at_ns, at_given=at_given)
    spacing = fob.flash.period * NS_PER_SECOND if fob.model.kind is TokenKind.TOTP else HOTP_PRESS_SPACING_NS
    shown = []
    for i in range(count):
        if i:
            clock.advance(spacing)
        shown.append(_press(fob, clock))
    return shown


def token_search(path: str, at_ns: int, code: str, window: int, *, at_given: bool = True) -> Search:
    """Search ``code`` around what the token in ``path`` would show when pressed at ``at_ns``.

    The start is the step of the token's own (drifting) clock at ``at_ns``, or
    its next HOTP counter; the codes come from the token's flash. The file is
    not changed.
    """
    fob, clock = _dry_run_token(path, at_ns, at_given=at_given)
    flash = fob.flash
    check_code(code, flash.digits)
    totp = flash.kind is TokenKind.TOTP
    next_counter = None if totp else flash.counter
    device_ns = fob.device_time_ns()
    _press(fob, clock)  # at the same moment: refuses as `codes --state` does (dead battery, clock before T0)
    if totp:
        start = time_step(device_ns // NS_PER_SECOND, period=flash.period, t0=flash.t0)
    else:
        assert next_counter is not None
        start = next_counter

    def codes_of(first: int, n: int) -> list[str]:
        return [format_code(flash.code(c), flash.digits) for c in range(first, first + n)]

    return search(code, start, window, codes_of, totp=totp, period=flash.period)
