"""Reading seeds from text: OATH CSV (vtoken's with a header, privacyIDEA's and LinOTP's without) and otpauth URIs.

**CSV with a header** (vtoken's own): ``serial,seed,type,digits,period,counter``
and an optional ``algorithm`` (or ``hash``) column, seeds in hex.

**OATH CSV without a header**, as privacyIDEA and LinOTP import it: one token
per line, ``serial, seed, type, digits, period|counter, hash``: only serial
and seed are required; type defaults to hotp, digits to 6; the fifth field is
the period of a totp token (default 30) or the counter of a hotp token
(default 0); the hash is sha1/sha256/sha512 in any spelling. Spaces around
fields, empty trailing fields and ``#`` comment lines are allowed. With no
hash field the hash follows LinOTP's rule: a 32-byte seed means SHA-256, a
64-byte seed SHA-512, anything else SHA-1 (reported in the notes). ``ocra``
lines are keys vtoken does not validate: they fail the file unless skipped.

**otpauth URIs** (the Key Uri Format authenticator apps read), one per line;
the label's account name is the serial.

All or nothing: any bad line fails the whole file, naming the line.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping

from validator.importbase import (
    MAX_FILE_BYTES,
    MAX_PERIOD,
    ImportedToken,
    Reading,
    check_seed,
    check_serial_text,
    check_unique,
    fail,
    hash_name,
    quote_field,
    read_source,
    serial_tag,
)
from validator.records import TokenParams
from validator.store import INT64_MAX
from vtoken.errors import InvalidInputError
from vtoken.oath import DEFAULT_DIGITS, DEFAULT_PERIOD, Algorithm, TokenKind, check_digits, parse_key
from vtoken.otpauth import parse_uri

__all__ = ["CSV_COLUMNS", "OATH_CSV_FIELDS", "read_csv_data", "read_otpauth_data", "text_of"]

#: Header CSV columns: the first three are required, the rest default.
CSV_COLUMNS = ("serial", "seed", "type", "digits", "period", "counter")
CSV_REQUIRED = ("serial", "seed", "type")
#: Optional header columns naming the hash (the same thing; ``hash`` is what the headerless form calls it).
CSV_HASH_COLUMNS = ("algorithm", "hash")
#: The headerless OATH CSV fields, in order.
OATH_CSV_FIELDS = ("serial", "seed", "type", "digits", "period|counter", "hash")
#: Token types of OATH CSV that vtoken does not validate.
_UNSUPPORTED_TYPES: Mapping[str, str] = {"ocra": "OCRA (challenge-response)"}
#: First fields of a Yubico personalization-tool export (a different format).
_YUBICO_FIRST_FIELDS = frozenset({"yubico otp", "oath-hotp", "static password"})
#: Seed lengths LinOTP reads as SHA-256 and SHA-512 when no hash is given.
_HASH_BY_SEED_LENGTH: Mapping[int, Algorithm] = {32: Algorithm.SHA256, 64: Algorithm.SHA512}
_COMMENT = "#"


def text_of(source: str | os.PathLike[str] | bytes, name: str | None) -> tuple[str, str]:
    """The text of ``source``: a path, bytes, or the content as a ``str`` containing a line break."""
    if isinstance(source, str) and ("\n" in source or "\r" in source):
        data, display = source.encode("utf-8"), name or "<text>"
        if len(data) > MAX_FILE_BYTES:
            fail(display, None, f"text is larger than the limit of {MAX_FILE_BYTES} bytes")
    else:
        data, display = read_source(source, name)
    try:
        return data.decode("utf-8-sig"), display
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        fail(display, f"line {line}", "the file is not valid UTF-8")


def _whole(value: str, column: str, name: str, where: str) -> int:
    if not value.isascii() or not value.isdigit():
        fail(name, where, f"{column} must be a non-negative whole number, not {quote_field(value)}")
    if len(value) > len(str(INT64_MAX)) or int(value) > INT64_MAX:
        fail(name, where, f"{column} is out of range")
    return int(value)


def _token(row: Mapping[str, str], name: str, where: str, notes: list[str]) -> ImportedToken:
    """One token from a row of named fields (missing or empty fields take their defaults)."""
    serial, has_check_digit = check_serial_text(row.get("serial", ""), name, where, "serial")
    where = where + serial_tag(serial)
    kind_text = row.get("type") or TokenKind.HOTP.value
    try:
        kind = TokenKind(kind_text.lower())
    except ValueError:
        fail(name, where, f"unknown type {quote_field(kind_text)}; use totp or hotp")
    if not row.get("seed"):
        fail(name, where, "the seed is missing")
    try:
        seed = check_seed(parse_key(row["seed"], "hex"), name, where)
    except InvalidInputError as exc:  # parse_key's messages never repeat the key
        fail(name, where, f"seed: {exc}")

    digits = DEFAULT_DIGITS
    if row.get("digits"):
        try:
            digits = check_digits(_whole(row["digits"], "digits", name, where))
        except InvalidInputError as exc:
            fail(name, where, f"digits: {exc}")
    hash_text = row.get("hash")
    if hash_text:
        algorithm = hash_name(hash_text, name, where, "hash")
    else:
        algorithm = _HASH_BY_SEED_LENGTH.get(len(seed), Algorithm.SHA1)
        if algorithm is not Algorithm.SHA1:
            notes.append(f"{where}: no hash given; {algorithm.value.upper()} assumed from the {len(seed)}-byte "
                         "seed, as LinOTP does")

    period, counter = DEFAULT_PERIOD, 0
    if kind is TokenKind.TOTP:
        if row.get("counter"):
            fail(name, where, "counter applies to hotp tokens only; leave it empty for totp")
        if row.get("period"):
            period = _whole(row["period"], "period", name, where)
            if not 1 <= period <= MAX_PERIOD:
                fail(name, where, f"period must be 1 to {MAX_PERIOD} seconds, not {period}")
    else:
        if row.get("period"):
            fail(name, where, "period applies to totp tokens only; leave it empty for hotp")
        if row.get("counter"):
            counter = _whole(row["counter"], "counter", name, where)

    params = TokenParams(serial=serial, kind=kind, algorithm=algorithm, digits=digits, period=period,
                         counter=counter, has_check_digit=has_check_digit)
    return params, seed


def _header(cells: list[str], name: str, where: str) -> list[str]:
    header = [cell.strip().lower() for cell in cells]
    known = set(CSV_COLUMNS) | set(CSV_HASH_COLUMNS)
    unknown = [c for c in header if c not in known]
    if unknown:
        fail(name, where, f"unknown column(s) {', '.join(map(quote_field, unknown))}; columns are "
                          f"{','.join(CSV_COLUMNS)}")
    header = ["hash" if c in CSV_HASH_COLUMNS else c for c in header]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        fail(name, where, f"column(s) given twice: {', '.join(repeated)}")
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        fail(name, where, f"missing column(s): {', '.join(missing)} (the header must name {','.join(CSV_COLUMNS)})")
    return header


def _oath_row(cells: list[str], name: str, where: str) -> dict[str, str]:
    """The named fields of a headerless OATH CSV line (trailing empty fields dropped)."""
    while cells and not cells[-1]:
        cells.pop()
    if len(cells) < 2:
        fail(name, where, f"only {len(cells)} field: expected {', '.join(OATH_CSV_FIELDS)} (serial and seed required)")
    if len(cells) > len(OATH_CSV_FIELDS):
        fail(name, where, f"{len(cells)} fields: expected at most {len(OATH_CSV_FIELDS)} "
                          f"({', '.join(OATH_CSV_FIELDS)})")
    row = dict(zip(("serial", "seed", "type", "digits", "fifth", "hash"), cells))
    fifth = row.pop("fifth", "")
    row["period" if (row.get("type") or "").lower() == TokenKind.TOTP.value else "counter"] = fifth
    return row


def read_csv_data(text: str, name: str, *, skip_unsupported: bool = False) -> Reading:
    """Every token of a CSV document, with or without vtoken's header line; all or nothing."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    reading = Reading()
    header: list[str] | None = None
    headerless = False
    found: list[tuple[ImportedToken, str]] = []
    line = 1
    try:
        for raw in reader:
            start, line = line, reader.line_num + 1
            cells = [cell.strip() for cell in raw]
            if not any(cells) or cells[0].startswith(_COMMENT):
                continue
            where = f"line {start}"
            if header is None and not headerless:
                if cells[0].lower() == "serial":
                    header = _header(cells, name, where)
                    continue
                if cells[0].lower() in _YUBICO_FIRST_FIELDS:
                    fail(name, where, "this is a Yubico personalization-tool export, not OATH CSV; vtoken imports "
                                      f"OATH CSV ({', '.join(OATH_CSV_FIELDS)}), PSKC and otpauth:// URIs")
                headerless = True
            if header is not None:
                if len(cells) != len(header):
                    fail(name, where, f"expected {len(header)} fields ({','.join(header)}), found {len(cells)}")
                row = dict(zip(header, cells))
            else:
                row = _oath_row(cells, name, where)
            kind = (row.get("type") or "").lower()
            if kind in _UNSUPPORTED_TYPES:
                skipped = f"{where}{serial_tag(row.get('serial', ''))}: {_UNSUPPORTED_TYPES[kind]}"
                if not skip_unsupported:
                    fail(name, None, f"the file holds keys of kinds vtoken does not validate: {skipped} "
                                     "(--skip-unsupported imports the HOTP and TOTP keys alone)")
                reading.skipped.append(skipped)
                continue
            found.append((_token(row, name, where, reading.notes), where))
    except csv.Error as exc:
        fail(name, f"line {reader.line_num}", f"malformed CSV: {exc}")
    if not found:
        fail(name, None, "the file holds no tokens" + (f" (skipped: {'; '.join(reading.skipped)})"
                                                          if reading.skipped else ""))
    check_unique(found, name)
    reading.tokens = [token for token, _ in found]
    return reading


def read_otpauth_data(text: str, name: str) -> Reading:
    """Every token of a list of otpauth:// URIs, one per line (``#`` comments allowed); all or nothing."""
    reading = Reading()
    found: list[tuple[ImportedToken, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(_COMMENT):
            continue
        where = f"line {number}"
        try:
            key = parse_uri(line)
        except InvalidInputError as exc:
            fail(name, where, str(exc))
        serial, has_check_digit = check_serial_text(key.account, name, where, "the label's account name (the serial)")
        where = where + serial_tag(serial)
        seed = check_seed(bytes(key.secret), name, where)
        params = TokenParams(
            serial=serial, kind=key.kind, algorithm=key.algorithm, digits=key.digits, period=key.period,
            counter=key.counter, has_check_digit=has_check_digit,  # parse_uri gives the kind's defaults
        )
        found.append(((params, seed), where))
    if not found:
        fail(name, None, "the file holds no otpauth:// URIs")
    check_unique(found, name)
    reading.tokens = [token for token, _ in found]
    return reading
