"""Serial numbers as printed on the back of a token, with a Damm check digit.

A vtoken serial is 10 ASCII digits: a 9-digit payload (zero-padded) followed
by one check digit computed with the Damm algorithm. Damm's check digit
catches every single-digit substitution and every transposition of two
adjacent digits (including ones that involve the check digit itself).

Serials imported from other vendors (for example 13-digit Feitian serials)
carry no check digit; accept them with ``check_serial(text,
require_check_digit=False)``.

>>> make_serial(572)
'0000005724'
>>> format_serial("0000005724")
'000-000-572-4'
>>> check_serial("000 000 572-4")
'0000005724'
"""

from __future__ import annotations

import numbers

from vtoken.errors import InvalidSerialError

__all__ = [
    "DAMM_TABLE",
    "GROUP_SIZE",
    "GROUP_SEPARATOR",
    "MAX_PAYLOAD",
    "MAX_SERIAL_LENGTH",
    "MIN_SERIAL_LENGTH",
    "PAYLOAD_LENGTH",
    "SERIAL_LENGTH",
    "check_serial",
    "damm_check_digit",
    "format_serial",
    "has_valid_check_digit",
    "make_serial",
    "normalize",
]

#: Digits in the payload of a vtoken serial.
PAYLOAD_LENGTH = 9
#: Digits in a full vtoken serial (payload + check digit).
SERIAL_LENGTH = PAYLOAD_LENGTH + 1
#: Largest payload :func:`make_serial` accepts.
MAX_PAYLOAD = 10**PAYLOAD_LENGTH - 1
#: Shortest serial :func:`normalize` accepts (any vendor).
MIN_SERIAL_LENGTH = 6
#: Longest serial :func:`normalize` accepts (any vendor).
MAX_SERIAL_LENGTH = 20
#: Digits per group in :func:`format_serial`.
GROUP_SIZE = 3
#: Separator between groups in :func:`format_serial`.
GROUP_SEPARATOR = "-"

_IGNORED_CHARS = (" ", "-")
_ASCII_DIGITS = frozenset("0123456789")

#: The weakly totally anti-symmetric quasigroup of order 10 published by
#: H. Michael Damm (2004); row = interim digit, column = next input digit.
DAMM_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def _damm_interim(digits: str) -> int:
    """Run the Damm quasigroup over a string of ASCII digits; return the interim digit."""
    interim = 0
    for char in digits:
        interim = DAMM_TABLE[interim][ord(char) - ord("0")]
    return interim


def damm_check_digit(digits: str) -> str:
    """The Damm check digit (one character) for a non-empty string of ASCII digits."""
    if not isinstance(digits, str) or not digits or not set(digits) <= _ASCII_DIGITS:
        raise InvalidSerialError("a check digit can only be computed over ASCII digits")
    return str(_damm_interim(digits))


def make_serial(number: int) -> str:
    """The 10-digit serial for payload ``number`` (0..999_999_999): zero-padded payload + check digit."""
    if isinstance(number, bool) or not isinstance(number, numbers.Integral):
        raise InvalidSerialError(f"serial payload must be an integer, not {type(number).__name__}")
    if not 0 <= number <= MAX_PAYLOAD:
        raise InvalidSerialError(f"serial payload must be between 0 and {MAX_PAYLOAD}, not {number}")
    payload = str(int(number)).zfill(PAYLOAD_LENGTH)
    return payload + damm_check_digit(payload)


def normalize(text: str) -> str:
    """Strip spaces and dashes; the rest must be 6..20 ASCII digits, else :class:`InvalidSerialError`."""
    if not isinstance(text, str):
        raise InvalidSerialError(f"serial must be a string, not {type(text).__name__}")
    cleaned = text
    for char in _IGNORED_CHARS:
        cleaned = cleaned.replace(char, "")
    if not cleaned:
        raise InvalidSerialError("serial is empty")
    if not set(cleaned) <= _ASCII_DIGITS:
        raise InvalidSerialError("serial must contain only the digits 0-9 (spaces and dashes are ignored)")
    if not MIN_SERIAL_LENGTH <= len(cleaned) <= MAX_SERIAL_LENGTH:
        raise InvalidSerialError(
            f"serial must have {MIN_SERIAL_LENGTH} to {MAX_SERIAL_LENGTH} digits, got {len(cleaned)}"
        )
    return cleaned


def has_valid_check_digit(serial: str) -> bool:
    """True if ``serial`` (normalized first) ends in a correct Damm check digit.

    Returns False, rather than raising, for text that is not a well-formed serial.
    """
    try:
        cleaned = normalize(serial)
    except InvalidSerialError:
        return False
    return _damm_interim(cleaned) == 0


def check_serial(text: str, *, require_check_digit: bool = True) -> str:
    """Normalize ``text`` and, unless told otherwise, verify its check digit; return the normalized serial.

    The Damm check runs over every digit, whatever the length. Pass
    ``require_check_digit=False`` for vendor serials that carry none.
    """
    cleaned = normalize(text)
    if require_check_digit and _damm_interim(cleaned) != 0:
        raise InvalidSerialError(
            f"serial {cleaned} fails its check digit: it was probably mistyped; "
            "read it again from the back of the token"
        )
    return cleaned


def format_serial(serial: str) -> str:
    """Serial for display: the normalized digits in groups of 3 from the left, joined by dashes.

    The last group holds what is left, so a vtoken serial reads
    ``123-456-789-0`` (payload in three groups, check digit alone) and a
    13-digit vendor serial reads ``123-456-789-012-3``. The check digit is
    not verified here.
    """
    cleaned = normalize(serial)
    groups = [cleaned[i : i + GROUP_SIZE] for i in range(0, len(cleaned), GROUP_SIZE)]
    return GROUP_SEPARATOR.join(groups)
