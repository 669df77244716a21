"""Option parsing and checks shared by several ``vtoken`` commands.

One definition each of: what ``--at`` accepts (``now`` included), a file the
command reads (missing or unreadable: exit 2, as click reports it), the
``--algorithm`` choice (any case), and the seed-length and serial checks that
``provision`` and ``token new`` share.
"""

from __future__ import annotations

from fractions import Fraction

import click

from firmware_sim.fleet import SEED_BYTES
from host.timearg import parse_time_ns
from host.wallclock import wall_time_ns
from vtoken.errors import InvalidConfigError, InvalidKeyError, InvalidSerialError
from vtoken.oath import Algorithm, parse_key
from vtoken.serialno import SERIAL_LENGTH, has_valid_check_digit, is_digit_serial, normalize

#: The word every time option (``--at``, ``time --set``) accepts for this computer's clock.
NOW = "now"

#: RFC 4226 §4 requirement R6: the shared secret is at least 128 bits (16 bytes); 160 bits are recommended.
RFC4226_MIN_SEED_BYTES = 16
#: The seed length RFC 4226 recommends, and the one vtoken makes (20 bytes).
RECOMMENDED_SEED_BYTES = SEED_BYTES

#: The option that lets a seed shorter than :data:`RFC4226_MIN_SEED_BYTES` through.
ALLOW_SHORT_SEED = "--allow-short-seed"
#: The option that lets a serial failing its check digit through.
FORCE_SERIAL = "--force-serial"

#: The hash algorithms a command may be asked for, lower-case as printed.
ALGORITHMS = tuple(algorithm.value for algorithm in Algorithm)

#: ``--algorithm``'s type: any case (``SHA256``, ``sha256``), given to the command lower-case.
ALGORITHM_CHOICE = click.Choice(ALGORITHMS, case_sensitive=False)

#: A file the command reads: it must exist, be a file and be readable, else exit 2 (bad input).
INPUT_FILE = click.Path(exists=True, dir_okay=False, readable=True)


def time_or_now(text: str | None) -> int:
    """A time option as nanoseconds: Unix seconds, ISO 8601 with a zone, or ``now`` (also when absent)."""
    if text is None or text.strip().lower() == NOW:
        return wall_time_ns()
    return parse_time_ns(text)


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


def plural(count: int, noun: str, *, signed: bool = False) -> str:
    """``1 token``, ``2 tokens`` (``+1 step``, ``-2 steps`` when ``signed``): a count and its noun in -s."""
    number = f"{count:+d}" if signed else str(count)
    return f"{number} {noun}" + ("" if abs(count) == 1 else "s")


def check_seed_length(seed: bytes, allow_short: bool) -> bytes:
    """Refuse (exit 2) a seed shorter than RFC 4226's 128 bits unless ``allow_short``; return the seed.

    The message gives the length, never the seed.
    """
    if len(seed) < RFC4226_MIN_SEED_BYTES and not allow_short:
        raise InvalidKeyError(
            f"the seed is {plural(len(seed), 'byte')}; RFC 4226 requires at least {RFC4226_MIN_SEED_BYTES} "
            f"(128 bits) and recommends {RECOMMENDED_SEED_BYTES}: give {ALLOW_SHORT_SEED} to use it anyway"
        )
    return seed


def check_serial_option(text: str, force: bool) -> str:
    """A ``--serial`` value, normalized; a mistyped vtoken serial needs ``force``.

    A 10-digit all-digit serial is a vtoken serial and must end in its Damm
    check digit: if it does not, a warning goes to stderr and, unless
    ``force``, the command stops with exit 2. Vendor serials (other lengths,
    letters) carry no check digit and pass as they are.
    """
    serial = normalize(text)
    if len(serial) == SERIAL_LENGTH and is_digit_serial(serial) and not has_valid_check_digit(serial):
        warning = f"serial {serial} fails its check digit: probably mistyped"
        if not force:
            raise InvalidSerialError(f"{warning}; check it, or give {FORCE_SERIAL} to use it as typed")
        click.echo(f"warning: {warning} (used as typed: {FORCE_SERIAL})", err=True)
    return serial


at_option = click.option(
    "--at", "at", metavar="TIME", help="Unix seconds, ISO 8601 with a zone, or 'now'. Default: now."
)
allow_short_seed_option = click.option(
    ALLOW_SHORT_SEED, "allow_short_seed", is_flag=True,
    help=f"Accept a seed shorter than {RFC4226_MIN_SEED_BYTES} bytes (RFC 4226 asks for at least "
    f"{RFC4226_MIN_SEED_BYTES}, recommends {RECOMMENDED_SEED_BYTES}).",
)
force_serial_option = click.option(
    FORCE_SERIAL, "force_serial", is_flag=True,
    help="Use a 10-digit serial whose check digit is wrong (otherwise refused as probably mistyped).",
)
