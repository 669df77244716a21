"""``vtoken codes``: print OATH codes, one per line."""

from __future__ import annotations

import click

from host.timearg import NS_PER_SECOND, parse_time_ns
from host.wallclock import wall_time_ns
from validator.kernel import get_backend
from vtoken.errors import InvalidInputError
from vtoken.oath import DEFAULT_PERIOD, DEFAULT_T0, format_code, parse_key, time_step

ALGORITHMS = ("sha1", "sha256", "sha512")


@click.command()
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

    \b
    Examples:
      vtoken codes --key 3132333435363738393031323334353637383930 --hotp --counter 0 --count 10
      vtoken codes --key-b32 GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ --totp --at 2026-01-01T00:00:00Z --count 3
    """
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

