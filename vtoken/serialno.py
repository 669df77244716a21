"""Serial numbers: the one rule for every serial vtoken stores, looks up or prints.

Two kinds of serial share one rule (:func:`normalize`):

* **Digit serials.** Text made of ASCII digits, spaces and dashes is a digit
  serial: the spaces and dashes are dropped (``000-000-572-4`` and
  ``0000005724`` are one token). vtoken's own serials are 10 digits: a 9-digit
  payload and a Damm check digit, which catches every single-digit
  substitution and every transposition of two adjacent digits, so a mistyped
  serial is reported as "probably mistyped". Vendors' digit serials (Feitian's
  13 digits, RFC 6030's ``987654321``) carry no check digit.
* **Vendor serials** with letters (``ZZ8000000001``, ``306EUO4-00960``,
  ``PW001``): letters, digits and ``-``, ``_``, ``.``, starting with a letter
  or digit, kept exactly as written and compared exactly (case matters).

Either kind is at most :data:`MAX_SERIAL_LENGTH` characters once normalized;
surrounding whitespace is ignored.

>>> make_serial(572)
'0000005724'
>>> format_serial("0000005724")
'000-000-572-4'
>>> check_serial("000 000 572-4")
'0000005724'
>>> normalize(" 306EUO4-00960 ")
'306EUO4-00960'
"""

from __future__ import annotations

import numbers
import re

from vtoken.errors import InvalidSerialError

__all__ = [
    "DAMM_TABLE",
    "GROUP_SIZE",
    "GROUP_SEPARATOR",
    "MAX_PAYLOAD",
    "MAX_SERIAL_LENGTH",
    "PAYLOAD_LENGTH",
    "SERIAL_LENGTH",
    "check_serial",
    "damm_check_digit",
    "format_serial",
    "has_valid_check_digit",
    "is_digit_serial",
    "make_serial",
    "normalize",
]

#: Digits in the payload of a vtoken serial.
PAYLOAD_LENGTH = 9
#: Digits in a full vtoken serial (payload + check digit).
SERIAL_LENGTH = PAYLOAD_LENGTH + 1
#: Largest payload :func:`make_serial` accepts.
MAX_PAYLOAD = 10**PAYLOAD_LENGTH - 1
#: Longest serial :func:`normalize` accepts (any vendor), in characters after normalizing.
MAX_SERIAL_LENGTH = 64
#: Digits per group in :func:`format_serial`.
GROUP_SIZE = 3
#: Separator between groups in :func:`format_serial`.
GROUP_SEPARATOR = "-"

_IGNORED_CHARS = (" ", "-")
_ASCII_DIGITS = frozenset("0123456789")
#: Text that is a digit serial: digits, spaces and dashes, with at least one digit.
_DIGIT_SERIAL_RE = re.compile(r"[0-9 -]*[0-9][0-9 -]*", re.ASCII)
#: A vendor serial as stored: a letter or digit, then letters, digits, ``-``, ``_`` and ``.``.
_VENDOR_SERIAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
#: Longest piece of a rejected serial quoted back in a message.
_QUOTE_MAX = 24

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


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _QUOTE_MAX else text[:_QUOTE_MAX] + "...")


def normalize(text: str) -> str:
    """The serial as stored: digit serials lose spaces and dashes, vendor serials are kept exactly.

    Raises :class:`InvalidSerialError` for anything else: an empty serial,
    characters other than letters, digits, ``-``, ``_``, ``.`` (and spaces in
    a digit serial), or more than :data:`MAX_SERIAL_LENGTH` characters.
    """
    if not isinstance(text, str):
        raise InvalidSerialError(f"serial must be a string, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise InvalidSerialError("serial is empty")
    if _DIGIT_SERIAL_RE.fullmatch(stripped):
        cleaned = stripped
        for char in _IGNORED_CHARS:
            cleaned = cleaned.replace(char, "")
    elif _VENDOR_SERIAL_RE.fullmatch(stripped):
        cleaned = stripped
    else:
        raise InvalidSerialError(
            f"serial {_quoted(stripped)} is not valid: use letters, digits and - _ . "
            "(a digit serial may also contain spaces)"
        )
    if len(cleaned) > MAX_SERIAL_LENGTH:
        raise InvalidSerialError(f"serial must be at most {MAX_SERIAL_LENGTH} characters, not {len(cleaned)}")
    return cleaned


def is_digit_serial(serial: str) -> bool:
    """True if the normalized ``serial`` is all ASCII digits (vtoken's own serials and some vendors')."""
    return bool(serial) and set(serial) <= _ASCII_DIGITS


def has_valid_check_digit(serial: str) -> bool:
    """True if ``serial`` (normalized first) ends in a correct Damm check digit.

    Returns False, rather than raising, for text that is not a well-formed serial.
    """
    try:
        cleaned = normalize(serial)
    except InvalidSerialError:
        return False
    return is_digit_serial(cleaned) and _damm_interim(cleaned) == 0


def check_serial(text: str, *, require_check_digit: bool = True) -> str:
    """Normalize ``text`` and, unless told otherwise, verify its check digit; return the normalized serial.

    The Damm check runs over every digit, whatever the length. Pass
    ``require_check_digit=False`` for vendor serials that carry none.
    """
    cleaned = normalize(text)
    if require_check_digit and not is_digit_serial(cleaned):
        raise InvalidSerialError(f"serial {cleaned} is not a vtoken serial (10 digits ending in a check digit)")
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
    not verified here. Vendor serials with letters are shown as they are.
    """
    cleaned = normalize(serial)
    if not is_digit_serial(cleaned):
        return cleaned
    groups = [cleaned[i : i + GROUP_SIZE] for i in range(0, len(cleaned), GROUP_SIZE)]
    return GROUP_SEPARATOR.join(groups)
