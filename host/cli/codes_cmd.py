"""``vtoken codes``: print OATH codes, one per line."""

from __future__ import annotations

import click

from host.timearg import format_time_ns, parse_time_ns
from host.wallclock import wall_time_ns
from firmware_sim.button import Button
from firmware_sim.models import TokenKind
from firmware_sim.statefile import load_token
from validator.kernel import get_backend
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import BatteryDeadError, InvalidInputError, InvalidTimeError
from vtoken.oath import DEFAULT_PERIOD, DEFAULT_T0, format_code, parse_key, time_step

ALGORITHMS = ("sha1", "sha256", "sha512")


@click.command()
@click.option("--state", "state", type=click.Path(dir_okay=False), help="A token file: print what it would display.")
@click.option("--key", "key_hex", metavar="HEX", help="The seed as hex.")
@click.option("--key-b32", "key_b32", metavar="B32", help="The seed as base32 (as authenticator apps show it).")
@click.option("--totp", "mode", flag_value="totp", default=True, help="Time-based codes (default).")
@click.option("--hotp", "mode", flag_value="hotp", help="Counter-based codes.")
@click.option("--at", "at", metavar="TIME", help="TOTP time: Unix seconds or ISO 8601 with a zone. Default: now.")
@click.option("--counter", type=click.IntRange(min=0), default=0, show_default=True, help="HOTP counter.")
@click.option("--period", type=click.IntRange(min=1), default=DEFAULT_PERIOD, show_default=True, help="TOTP step, s.")
@click.option("--t0", type=click.IntRange(min=0), default=DEFAULT_T0, show_default=True, help="TOTP T0, Unix s.")
@click.option("--digits", type=click.IntRange(6, 10), default=6, show_default=True)
@click.option("--algorithm", type=click.Choice(ALGORITHMS), default="sha1", show_default=True)
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="Consecutive steps or counters.")
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
) -> None:
    """Print OATH codes, one per line.

    With --state, print what that token would display when pressed at TIME
    (true time; the token computes from its own drifting clock), and with
    --count, at TIME + period, TIME + 2 periods, ... (HOTP: successive presses).
    The token file is not changed.

    \b
    Examples:
      vtoken codes --key 3132333435363738393031323334353637383930 --hotp --counter 0 --count 10
      vtoken codes --key-b32 GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ --totp --at 2026-01-01T00:00:00Z --count 3
      vtoken codes --state fob.token --at 2027-06-01T12:00:00Z --count 2
    """
    if state is not None:
        if key_hex is not None or key_b32 is not None:
            raise InvalidInputError("--state takes the seed from the token; do not also give --key")
        ctx = click.get_current_context()
        for name in ("mode", "counter", "period", "t0", "digits", "algorithm"):
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
                option = "--totp/--hotp" if name == "mode" else f"--{name}"
                raise InvalidInputError(f"{option} does not apply with --state: the token file fixes it")
        for code in token_codes(state, parse_time_ns(at) if at is not None else wall_time_ns(), count):
            click.echo(code)
        return
    if (key_hex is None) == (key_b32 is None):
        raise InvalidInputError("give exactly one of --key HEX or --key-b32 B32")
    key = parse_key(key_hex, "hex") if key_hex is not None else parse_key(key_b32 or "", "base32")
    if mode == "totp":
        at_ns = parse_time_ns(at) if at is not None else wall_time_ns()
        start = time_step(at_ns // NS_PER_SECOND, period=period, t0=t0)
    else:
        if at is not None:
            raise InvalidInputError("--at applies to --totp; use --counter with --hotp")
        start = counter
    prepared = get_backend().prepare(key, algorithm=algorithm, digits=digits)
    for value in prepared.generate(start, count):
        click.echo(format_code(int(value), digits))


#: Successive presses of an event token in ``--count`` are this far apart.
HOTP_PRESS_SPACING_NS = 2 * NS_PER_SECOND


def token_codes(path: str, at_ns: int, count: int) -> list[str]:
    """What the token in ``path`` displays when pressed at ``at_ns`` (and later steps)."""
    clock = SimulatedClock(at_ns)
    fob = load_token(path, clock)
    last_event_ns = fob.battery.last_event_ns
    if at_ns < last_event_ns:
        raise InvalidTimeError(
            f"--at {format_time_ns(at_ns)} is before the token's last recorded event at "
            f"{format_time_ns(last_event_ns)}; a token file cannot be replayed backwards"
        )
    fob.button = Button()  # a dry run from a rested button, whatever the file's last press time
    fob.power_cycle()
    spacing = fob.flash.period * NS_PER_SECOND if fob.model.kind is TokenKind.TOTP else HOTP_PRESS_SPACING_NS
    shown = []
    for i in range(count):
        if i:
            clock.advance(spacing)
        code = fob.press()
        if not code:
            raise BatteryDeadError(
                f"the token's display stays blank at {format_time_ns(clock.now_ns())}: its battery is dead"
            )
        shown.append(code)
    return shown
