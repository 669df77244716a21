"""What every seed-file reader shares: limits, the failure shape, serials, seeds, hash names.

Readers (:mod:`validator.pskcfile`, :mod:`validator.csvfile`) return a
:class:`Reading`: the tokens with their plaintext seeds (as
:class:`~validator.sealing.SecretBytes`, whose repr shows only the length),
notes worth telling the operator, and the keys skipped on request. Any problem
raises :class:`~vtoken.errors.ImportFailedError` naming the file, the place
(key package or line) and the cause; messages never contain a seed.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from validator.records import TokenParams
from validator.sealing import SecretBytes
from vtoken.safefile import FileTooLargeError, NotRegularFileError, read_regular_file
from vtoken.errors import DuplicateTokenError, ImportFailedError, InvalidInputError
from vtoken.oath import MAX_PERIOD, Algorithm, parse_algorithm
from vtoken.serialno import SERIAL_LENGTH, has_valid_check_digit, normalize

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_INT_CIPHER_CHARS",
    "MAX_INT_DIGITS",
    "MAX_PBKDF2_ITERATIONS",
    "MAX_PBKDF2_KEY_BYTES",
    "MAX_PBKDF2_WORK",
    "MAX_PERIOD",
    "MAX_SEED_BYTES",
    "MAX_XML_DEPTH",
    "MAX_XML_ELEMENTS",
    "MIN_SEED_BYTES",
    "ImportedToken",
    "Reading",
    "check_seed",
    "check_serial_text",
    "check_unique",
    "fail",
    "hash_name",
    "quote",
    "quote_field",
    "read_source",
    "serial_tag",
]

# --- limits on the work a hostile file can cause, each checked before that work starts -------------

#: Largest file an import reads (a PSKC key package is well under 2 KiB). Checked on the size read,
#: from a regular file only (a FIFO or device is refused before any read, so it cannot block).
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Deepest element nesting a PSKC document may have (RFC 6030 documents need at most 10; an encrypted
#: PBKDF2 key derivation is the deepest, at 8). Counted by a streaming pre-scan before any parser builds
#: a tree: python-pskc copies the tree recursively, and 150,000 levels crashed the process.
MAX_XML_DEPTH = 32
#: Most elements a PSKC document may have (a plaintext key package has about 13, an encrypted one about
#: 20: room for some 25,000 to 38,000 tokens per file; split bigger shipments). Counted by the same
#: pre-scan (0.6 s for 500,000 elements); a file at the limit takes about 8 s of CPU and 350 MiB to
#: import (0.7 KiB and 16 µs per element in the parsers behind it).
MAX_XML_ELEMENTS = 500_000
#: Most characters (whitespace aside) in the text of a PSKC integer field (Counter, Time, TimeInterval,
#: TimeDrift, IterationCount, KeyLength, ...) or integer attribute (ResponseFormat Length, ...): a sign
#: and 19 digits hold any 64-bit value, and the base64 form python-pskc also reads needs 12. Checked
#: in the pre-scan, so no parser converts a 5,000-digit number (Python refuses to print one).
MAX_INT_DIGITS = 20
#: Most base64 characters of an encrypted integer field (a CipherValue, or a pre-RFC ``<Value>`` that may
#: be one): 64 bytes, an IV and three cipher blocks (files write 44: an IV and one block). python-pskc turns
#: the plaintext into an integer in time quadratic in its length, so this too is checked before parsing.
MAX_INT_CIPHER_CHARS = 88
#: PBKDF2 iteration counts above this are refused (the work bound below implies it; this names it).
MAX_PBKDF2_ITERATIONS = 4_000_000
#: Most PBKDF2 work a password-protected file may ask for, in block-iterations: IterationCount times
#: the hash blocks of the derived key, ceil(KeyLength / digest size of the PRF). This is paid before
#: any password or MAC can be checked. 4,000,000 admits OWASP's 2023 figure of 1,300,000 iterations of
#: HMAC-SHA1 for an AES-256 key (2 blocks); at the limit a derivation takes 1.0 s of CPU (HMAC-SHA1,
#: HMAC-SHA256) to 2.4 s (HMAC-SHA512) on the reference machine.
MAX_PBKDF2_WORK = 4_000_000
#: Longest key PBKDF2 may derive: the longest key any PSKC cipher takes (AES-256, Camellia-256).
#: A file's KeyLength must also be one its encryption method uses (16, 24 or 32 bytes).
MAX_PBKDF2_KEY_BYTES = 32
#: Shortest and longest seed an import takes (RFC 4226 §4 requires 16 bytes and recommends 20; shorter
#: vendor seeds are still read).
MIN_SEED_BYTES = 1
MAX_SEED_BYTES = 128
#: Longest piece of a bad field value quoted back in an error message.
QUOTE_MAX = 40
#: Longest value of a short field (a type, hash, digit count, period or counter) quoted back when it is
#: wrong; a longer one is described by its length alone. A long value where a short one belongs is most
#: likely a column out of place, and the value may then be the seed.
QUOTE_FIELD_MAX = 12
#: Longest serial of a CSV or otpauth line repeated in a message (vendor serials are 10 to 13
#: characters); a longer one is described by its length alone: in a file with its columns out of order,
#: or a damaged line, the "serial" may be the seed or part of it.
QUOTE_SERIAL_MAX = 16

#: Every spelling of the three hashes that producers write (compared lower-case, ``-``, ``_`` and
#: spaces removed): ``SHA-256``, ``HMAC-SHA256``, ``sha256``, privacyIDEA's ``hashalgo="sha256"``.
ImportedToken = tuple[TokenParams, SecretBytes]


@dataclasses.dataclass
class Reading:
    """What a reader found: tokens (file order), notes for the operator, and keys skipped on request."""

    tokens: list[ImportedToken] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


def fail(name: str, where: str | None, problem: str) -> NoReturn:
    """Raise :class:`ImportFailedError` as ``name: where: problem``."""
    place = f"{name}: {where}: " if where else f"{name}: "
    raise ImportFailedError(place + problem)


def quote(text: object) -> str:
    """``text`` quoted for a message, cut to :data:`QUOTE_MAX` characters."""
    value = str(text)
    return repr(value if len(value) <= QUOTE_MAX else value[:QUOTE_MAX] + "...")


def quote_field(text: object) -> str:
    """``text`` quoted for a message if it is short (:data:`QUOTE_FIELD_MAX`), else only its length.

    For values of short fields only: a long one may be a seed in the wrong column.
    """
    value = str(text)
    if len(value) <= QUOTE_FIELD_MAX:
        return repr(value)
    return f"(a {len(value)}-character value: is a column out of place?)"


def serial_tag(serial: object) -> str:
    """`` (serial X)`` for a message about a CSV line, or its length alone when it is long.

    In a CSV file with its columns out of order the "serial" may be the seed;
    a serial longer than :data:`QUOTE_SERIAL_MAX` is not repeated.
    """
    text = str(serial).strip()
    if len(text) <= QUOTE_SERIAL_MAX:
        return f" (serial {text})"
    return f" (a serial of {len(text)} characters)"


def read_source(source: str | os.PathLike[str] | bytes, name: str | None) -> tuple[bytes, str]:
    """Bytes of ``source`` (a path, or the content as bytes) and the name to use in messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        display = name or "<data>"
    else:
        path = Path(source)
        display = name or str(path)
        data = _read_regular_file(path, display)
    if len(data) > MAX_FILE_BYTES:
        fail(display, None, f"file is larger than the limit of {MAX_FILE_BYTES} bytes")
    return data, display


def _read_regular_file(path: Path, display: str) -> bytes:
    """The bytes of ``path``: a regular file of at most :data:`MAX_FILE_BYTES` (see :mod:`vtoken.safefile`)."""
    try:
        return read_regular_file(path, MAX_FILE_BYTES)
    except NotRegularFileError:
        fail(display, None, "not a regular file (a FIFO, device or directory cannot be imported)")
    except FileTooLargeError:
        fail(display, None, f"file is larger than the limit of {MAX_FILE_BYTES} bytes")
    except OSError as exc:
        fail(display, None, f"cannot read the file: {exc.strerror or exc}")


def hash_name(text: str, name: str, where: str, what: str) -> Algorithm:
    """The hash a producer's spelling names; an unknown spelling is an error, never a silent SHA-1."""
    key = text.strip().lower().replace("-", "").replace("_", "").replace(" ", "").removeprefix("hmac")
    try:
        return parse_algorithm(key)  # SHA-1, sha_256, "HMAC-SHA512", hmacsha1, ...
    except InvalidInputError:
        fail(name, where, f"{what} {quote_field(text)} is not a hash vtoken knows; use SHA1, SHA256 or SHA512")


def check_serial_text(text: object, name: str, where: str, label: str) -> tuple[str, bool]:
    """The serial as stored (:func:`vtoken.serialno.normalize`) and whether it has a vtoken check digit."""
    if not isinstance(text, str) or not text.strip():
        fail(name, where, f"{label} is missing")
    try:
        serial = normalize(text)
    except InvalidInputError as exc:
        if len(text.strip()) > QUOTE_SERIAL_MAX:  # never echo what may be a serial run into the seed
            fail(name, where, f"{label}: a {len(text.strip())}-character value that is not a valid serial (use "
                              "letters, digits and - _ .; is a column out of place?)")
        fail(name, where, f"{label}: {exc}")
    return serial, len(serial) == SERIAL_LENGTH and has_valid_check_digit(serial)


def check_seed(seed: object, name: str, where: str) -> SecretBytes:
    """The seed as :class:`SecretBytes`, if it is bytes of a length vtoken takes."""
    if seed is None:
        fail(name, where, "the secret (seed) is missing")
    if not isinstance(seed, (bytes, bytearray)):
        fail(name, where, "the secret (seed) is not binary data")
    if not MIN_SEED_BYTES <= len(seed) <= MAX_SEED_BYTES:
        fail(name, where, f"the secret (seed) must be {MIN_SEED_BYTES} to {MAX_SEED_BYTES} bytes, not {len(seed)}")
    return SecretBytes(seed)


def check_unique(tokens: Sequence[tuple[ImportedToken, str]], name: str) -> None:
    """Refuse a file naming a serial twice, citing where each copy is."""
    places: dict[str, list[str]] = collections.defaultdict(list)
    for (params, _), where in tokens:
        places[params.serial].append(where)
    twice = {serial: wheres for serial, wheres in places.items() if len(wheres) > 1}
    if twice:
        detail = "; ".join(f"{serial} at {' and '.join(wheres)}" for serial, wheres in sorted(twice.items()))
        raise DuplicateTokenError(set(twice), f"{name}: serial number(s) appear more than once: {detail}")
