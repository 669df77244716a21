"""The OATH core: HOTP (RFC 4226) and TOTP (RFC 6238), pure Python, no I/O.

Keys are bytes; :func:`parse_key` turns hex or base32 text into bytes. Codes
are returned as zero-padded strings. Times are Unix seconds (integers, or any
real number, floored to its step); nothing here reads a clock.

>>> hotp(b"12345678901234567890", 1)
'287082'
>>> totp(b"12345678901234567890", 59, digits=8)
'94287082'
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import math
import numbers
import struct

from vtoken.errors import (
    InvalidCodeError,
    InvalidCounterError,
    InvalidDigitsError,
    InvalidKeyError,
    InvalidPeriodError,
    InvalidTimeError,
    UnknownAlgorithmError,
)

MIN_DIGITS = 6
MAX_DIGITS = 10
DEFAULT_DIGITS = 6
DEFAULT_PERIOD = 30
DEFAULT_T0 = 0
MAX_COUNTER = 2**64 - 1

_COUNTER_STRUCT = struct.Struct(">Q")
_TRUNCATE_OFFSET_MASK = 0x0F
_TRUNCATE_VALUE_MASK = 0x7FFFFFFF


class Algorithm(str, enum.Enum):
    """The HMAC hash functions OATH tokens use."""

    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"

    @property
    def block_size(self) -> int:
        """Hash block size in bytes (64 or 128)."""
        return 128 if self is Algorithm.SHA512 else 64

    @property
    def digest_size(self) -> int:
        """Digest size in bytes."""
        return {Algorithm.SHA1: 20, Algorithm.SHA256: 32, Algorithm.SHA512: 64}[self]


class TokenKind(str, enum.Enum):
    """What a token computes: time-based (TOTP) or event-based (HOTP) codes."""

    TOTP = "totp"
    HOTP = "hotp"


def parse_algorithm(value: str | Algorithm) -> Algorithm:
    """Return the :class:`Algorithm` named by ``value`` (case-insensitive, ``sha-1`` allowed)."""
    if isinstance(value, Algorithm):
        return value
    if not isinstance(value, str):
        raise UnknownAlgorithmError(f"algorithm must be a string, not {type(value).__name__}")
    name = value.strip().lower().replace("-", "")
    try:
        return Algorithm(name)
    except ValueError:
        choices = ", ".join(a.value for a in Algorithm)
        raise UnknownAlgorithmError(f"unknown algorithm {value!r}; choose one of {choices}") from None


def check_digits(digits: int) -> int:
    """Validate a digit count (6 to 10) and return it."""
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral):
        raise InvalidDigitsError(f"digits must be an integer, not {type(digits).__name__}")
    if not MIN_DIGITS <= digits <= MAX_DIGITS:
        raise InvalidDigitsError(f"digits must be between {MIN_DIGITS} and {MAX_DIGITS}, not {digits}")
    return int(digits)


def check_key(key: bytes) -> bytes:
    """Validate a key given as bytes and return it."""
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise InvalidKeyError(
            f"key must be bytes, not {type(key).__name__}; use parse_key() for hex or base32 text"
        )
    key = bytes(key)
    if not key:
        raise InvalidKeyError("key is empty")
    return key


def check_counter(counter: int) -> int:
    """Validate a HOTP counter (0 to 2^64-1) and return it."""
    if isinstance(counter, bool) or not isinstance(counter, numbers.Integral):
        raise InvalidCounterError(f"counter must be an integer, not {type(counter).__name__}")
    if counter < 0:
        raise InvalidCounterError(f"counter must not be negative, got {counter}")
    if counter > MAX_COUNTER:
        raise InvalidCounterError(f"counter {counter} does not fit in 64 bits")
    return int(counter)


def parse_key(text: str, encoding: str = "hex") -> bytes:
    """Decode a key written as ``hex`` or ``base32`` text (spaces and dashes ignored).

    Base32 may omit its ``=`` padding and may be lower case, as authenticator
    apps print it. The error message never repeats the key text.
    """
    if not isinstance(text, str):
        raise InvalidKeyError(f"key text must be a string, not {type(text).__name__}")
    cleaned = "".join(text.split()).replace("-", "")
    if not cleaned:
        raise InvalidKeyError("key is empty")
    if encoding == "hex":
        if len(cleaned) % 2:
            raise InvalidKeyError(f"hex key has an odd number of digits ({len(cleaned)})")
        try:
            key = bytes.fromhex(cleaned)
        except ValueError:
            raise InvalidKeyError("hex key contains characters other than 0-9 and a-f") from None
    elif encoding == "base32":
        padded = cleaned.upper().rstrip("=")
        padded += "=" * (-len(padded) % 8)
        try:
            key = base64.b32decode(padded, casefold=False)
        except (binascii.Error, ValueError):
            raise InvalidKeyError("base32 key contains characters other than A-Z and 2-7, or has a bad length") from None
    else:
        raise InvalidKeyError(f"unknown key encoding {encoding!r}; use 'hex' or 'base32'")
    return check_key(key)


def truncate(mac: bytes, digits: int) -> int:
    """RFC 4226 dynamic truncation of an HMAC value to a ``digits``-digit integer."""
    offset = mac[-1] & _TRUNCATE_OFFSET_MASK
    value = int.from_bytes(mac[offset : offset + 4], "big") & _TRUNCATE_VALUE_MASK
    return value % (10**digits)


def format_code(value: int, digits: int) -> str:
    """Render a code value as a zero-padded string of ``digits`` digits."""
    return str(value).zfill(digits)


def hotp_value(key: bytes, counter: int, *, digits: int = DEFAULT_DIGITS, algorithm: str | Algorithm = Algorithm.SHA1) -> int:
    """HOTP(K, C) as an integer (RFC 4226 §5.3)."""
    key = check_key(key)
    counter = check_counter(counter)
    digits = check_digits(digits)
    alg = parse_algorithm(algorithm)
    mac = hmac.new(key, _COUNTER_STRUCT.pack(counter), alg.value).digest()
    return truncate(mac, digits)


def hotp(key: bytes, counter: int, *, digits: int = DEFAULT_DIGITS, algorithm: str | Algorithm = Algorithm.SHA1) -> str:
    """HOTP(K, C) as a zero-padded string (RFC 4226)."""
    return format_code(hotp_value(key, counter, digits=digits, algorithm=algorithm), check_digits(digits))


#: Longest TOTP period a seed file or URI may declare: a week (RFC 6238 recommends 30 s; vendor samples
#: reach two days).
MAX_PERIOD = 7 * 86_400


def check_period(period: int | float) -> int | float:
    """Validate a TOTP period (a positive, finite number of seconds)."""
    if isinstance(period, bool) or not isinstance(period, numbers.Real):
        raise InvalidPeriodError(f"period must be a number of seconds, not {type(period).__name__}")
    if not math.isfinite(period) or period <= 0:
        raise InvalidPeriodError(f"period must be a positive number of seconds, not {period}")
    return period


def time_step(at: int | float, *, period: int | float = DEFAULT_PERIOD, t0: int | float = DEFAULT_T0) -> int:
    """The TOTP step number T = floor((at - T0) / period) (RFC 6238 §4.2)."""
    period = check_period(period)
    for name, value in (("time", at), ("T0", t0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidTimeError(f"{name} must be a number of Unix seconds, not {type(value).__name__}")
        if not math.isfinite(value):
            raise InvalidTimeError(f"{name} must be finite, not {value}")
        if value < 0:
            raise InvalidTimeError(f"{name} must not be negative, got {value}")
    if at < t0:
        raise InvalidTimeError(f"time {at} is before T0 {t0}")
    step = (at - t0) // period
    step = int(step)
    if step > MAX_COUNTER:
        raise InvalidTimeError(f"time {at} gives a step beyond 2^64-1")
    return step


def step_start(step: int, *, period: int | float = DEFAULT_PERIOD, t0: int | float = DEFAULT_T0) -> int | float:
    """The Unix time at which TOTP step ``step`` begins."""
    return t0 + check_counter(step) * check_period(period)


def totp(
    key: bytes,
    at: int | float,
    *,
    period: int | float = DEFAULT_PERIOD,
    t0: int | float = DEFAULT_T0,
    digits: int = DEFAULT_DIGITS,
    algorithm: str | Algorithm = Algorithm.SHA1,
) -> str:
    """TOTP(K, at) as a zero-padded string (RFC 6238)."""
    step = time_step(at, period=period, t0=t0)
    return hotp(key, step, digits=digits, algorithm=algorithm)


def parse_code(code: str | int, digits: int) -> int:
    """Check a code typed by a user and return its integer value.

    A string must be exactly ``digits`` ASCII digits (leading zeros kept). An
    integer must lie in ``0 .. 10**digits - 1``.
    """
    # The common case first (a validator parses one code per check): exactly ``digits`` ASCII digits.
    if type(code) is str and type(digits) is int and len(code) == digits and MIN_DIGITS <= digits <= MAX_DIGITS:
        if code.isascii() and code.isdigit():
            return int(code)
    digits = check_digits(digits)
    if isinstance(code, bool):
        raise InvalidCodeError("code must be a string of digits, not a boolean")
    if isinstance(code, numbers.Integral):
        if not 0 <= code < 10**digits:
            raise InvalidCodeError(f"code must have {digits} digits, got a number outside 0 .. {10**digits - 1}")
        return int(code)
    if not isinstance(code, str):
        raise InvalidCodeError(f"code must be a string of digits, not {type(code).__name__}")
    if not code.isascii() or not code.isdigit():
        raise InvalidCodeError("code must contain only the digits 0-9")
    if len(code) != digits:
        raise InvalidCodeError(f"code must have exactly {digits} digits, got {len(code)}")
    return int(code)


def codes_equal(a: str, b: str) -> bool:
    """Compare two codes in constant time."""
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))
