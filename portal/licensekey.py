"""License keys: random, human-typable, with a check character that catches typos.

A key is 20 characters of Crockford base32 (no I, L, O, U: nothing to confuse
with 1 and 0) in groups of five, the last one a check character computed as in
Damm's algorithm, with the totally anti-symmetric quasigroup x∘y = 2x + y over
GF(32): it catches every single-character error and every swap of two adjacent
characters (Luhn mod 32 would miss a swap of 0 and Z). Typing is forgiving:
lower case, spaces and dashes are accepted, and I/L read as 1, O as 0.

>>> key = format_key(bytes(12))
>>> key
'00000-00000-00000-00000'
>>> normalize_key(key.lower().replace("-", " ")) == key
True
"""

from __future__ import annotations

from vtoken.errors import PortalError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_ALIASES = {"I": "1", "L": "1", "O": "0"}
PAYLOAD_CHARS = 19
GROUP = 5
KEY_CHARS = PAYLOAD_CHARS + 1
#: Random bytes needed for the payload (19 chars × 5 bits = 95 bits, from 12 bytes).
PAYLOAD_BYTES = 12
BASE = len(ALPHABET)


#: GF(32) = GF(2)[x] / (x^5 + x^2 + 1). Doubling is a bijection (the polynomial's constant term
#: is 1) and so is x -> 3x (it has no root 1), which makes x∘y = 2x + y a totally anti-symmetric
#: quasigroup: (c∘x)∘y = (c∘y)∘x only when x = y.
_GF32_POLY = 0b100101


def _double(value: int) -> int:
    value <<= 1
    return value ^ _GF32_POLY if value & BASE else value


def check_char(payload: str) -> str:
    """The check character of ``payload``: the one that brings the quasigroup's interim value to 0."""
    interim = 0
    for char in payload:
        interim = _double(interim) ^ _VALUE[char]
    return ALPHABET[_double(interim)]


def format_key(random_bytes: bytes) -> str:
    """A license key made from ``PAYLOAD_BYTES`` random bytes."""
    if len(random_bytes) != PAYLOAD_BYTES:
        raise ValueError(f"need {PAYLOAD_BYTES} random bytes")
    value = int.from_bytes(random_bytes, "big")
    payload = "".join(ALPHABET[(value >> (5 * i)) & (BASE - 1)] for i in range(PAYLOAD_CHARS))
    raw = payload + check_char(payload)
    return "-".join(raw[i : i + GROUP] for i in range(0, KEY_CHARS, GROUP))


def normalize_key(text: str) -> str:
    """The canonical form of a typed key; :class:`PortalError` ``key-malformed`` or ``key-typo``."""
    raw = "".join(ch for ch in text.upper() if ch not in " -")
    raw = "".join(_ALIASES.get(ch, ch) for ch in raw)
    if len(raw) != KEY_CHARS or any(ch not in _VALUE for ch in raw):
        raise PortalError(
            "key-malformed", f"a license key has {KEY_CHARS} letters and digits in groups of {GROUP}, like XXXXX-XXXXX-XXXXX-XXXXX"
        )
    if check_char(raw[:-1]) != raw[-1]:
        raise PortalError("key-typo", "this license key has a typo: check it against the e-mail and type it again")
    return "-".join(raw[i : i + GROUP] for i in range(0, KEY_CHARS, GROUP))
