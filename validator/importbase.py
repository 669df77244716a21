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
from vtoken.errors import DuplicateTokenError, ImportFailedError, InvalidInputError
from vtoken.oath import MAX_PERIOD, Algorithm, parse_algorithm
from vtoken.serialno import SERIAL_LENGTH, has_valid_check_digit, normalize

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_PERIOD",
    "MAX_SEED_BYTES",
    "MIN_SEED_BYTES",
    "ImportedToken",
    "Reading",
    "check_seed",
    "check_serial_text",
    "check_unique",
    "fail",
    "hash_name",
    "quote",
    "read_source",
]

#: Largest file an import reads (a PSKC key package is well under 2 KiB).
MAX_FILE_BYTES = 64 * 1024 * 1024
MIN_SEED_BYTES = 1
MAX_SEED_BYTES = 128
#: Longest piece of a bad field value quoted back in an error message.
QUOTE_MAX = 40

#: Every spelling of the three hashes that producers write (compared lower-case, ``-``, ``_`` and
#: spaces removed): ``SHA-256``, ``HMAC-SHA256``, ``sha256``, privacyIDEA's ``hashalgo="sha256"``.
_HASH_SPELLINGS = {
    "sha1": Algorithm.SHA1,
    "hmacsha1": Algorithm.SHA1,
    "sha256": Algorithm.SHA256,
    "hmacsha256": Algorithm.SHA256,
    "sha512": Algorithm.SHA512,
    "hmacsha512": Algorithm.SHA512,
}

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


def read_source(source: str | os.PathLike[str] | bytes, name: str | None) -> tuple[bytes, str]:
    """Bytes of ``source`` (a path, or the content as bytes) and the name to use in messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        display = name or "<data>"
    else:
        path = Path(source)
        display = name or str(path)
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            fail(display, None, f"cannot read the file: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        fail(display, None, f"file is larger than the limit of {MAX_FILE_BYTES} bytes")
    return data, display


def hash_name(text: str, name: str, where: str, what: str) -> Algorithm:
    """The hash a producer's spelling names; an unknown spelling is an error, never a silent SHA-1."""
    key = text.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    algorithm = _HASH_SPELLINGS.get(key)
    if algorithm is None:
        try:
            return parse_algorithm(text)
        except InvalidInputError:
            fail(name, where, f"{what} {quote(text)} is not a hash vtoken knows; use SHA1, SHA256 or SHA512")
    return algorithm


def check_serial_text(text: object, name: str, where: str, label: str) -> tuple[str, bool]:
    """The serial as stored (:func:`vtoken.serialno.normalize`) and whether it has a vtoken check digit."""
    if not isinstance(text, str) or not text.strip():
        fail(name, where, f"{label} is missing")
    try:
        serial = normalize(text)
    except InvalidInputError as exc:
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
