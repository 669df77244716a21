"""Option parsing shared by several ``vtoken`` commands."""

from __future__ import annotations

from fractions import Fraction

import click

from host.timearg import parse_time_ns
from host.wallclock import wall_time_ns
from vtoken.errors import InvalidConfigError, InvalidKeyError
from vtoken.oath import parse_key


def time_or_now(text: str | None) -> int:
    """``--at`` as nanoseconds, or the wall clock's now when absent."""
    return parse_time_ns(text) if text is not None else wall_time_ns()


def hex_bytes(text: str, what: str) -> bytes:
    """Decode a hex option value; the message names the option, never the value."""
    try:
        return parse_key(text, "hex")
    except InvalidKeyError as exc:
        raise InvalidKeyError(f"{what}: {exc}") from None


def exact_number(text: str, what: str) -> Fraction:
    """A decimal number given on the command line, kept exact."""
    try:
        return Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise InvalidConfigError(f"{what} must be a number, not {text!r}") from None


at_option = click.option("--at", "at", metavar="TIME", help="Unix seconds or ISO 8601 with a zone. Default: now.")
