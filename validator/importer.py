"""Importing token seeds: PSKC (RFC 6030) through python-pskc, and CSV.

An import is all or nothing. :func:`import_file` parses and checks the whole
file first, seals every seed under the master key, and only then adds the
tokens to the store in one transaction. Any problem raises
:class:`~vtoken.errors.ImportFailedError` naming the file, the key package or
line, and the problem, and leaves the store unchanged. Seeds never appear in
messages: :func:`read_pskc` and :func:`read_csv` return them as
:class:`~validator.sealing.SecretBytes`, whose repr shows only the length.

PSKC files are refused before any XML parser sees them if they carry a
DOCTYPE or ENTITY declaration (entity expansion bombs, external entities), are
not UTF-8, or exceed :data:`MAX_FILE_BYTES`. When a pre-shared key or a
password is given, every secret must be encrypted (no silent downgrade to a
plaintext seed an attacker slipped in), and a CBC-encrypted value must carry
a ValueMAC, which is checked here in constant time before decryption
(python-pskc skips the check when the MAC is absent).
"""

from __future__ import annotations

import binascii
import collections
import csv
import dataclasses
import hmac
import io
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pskc
from pskc.exceptions import DecryptionError, KeyDerivationError, ParseError, PSKCError
from pskc.key import EncryptedValue

from validator.records import TokenParams
from validator.sealing import Keyring, MasterKey, SecretBytes, seal
from validator.store import INT64_MAX, TokenStore
from vtoken.errors import DuplicateTokenError, ImportFailedError, InvalidInputError
from vtoken.oath import (
    DEFAULT_DIGITS,
    DEFAULT_PERIOD,
    Algorithm,
    TokenKind,
    check_counter,
    check_digits,
    parse_algorithm,
    parse_key,
)
from vtoken.serialno import SERIAL_LENGTH, has_valid_check_digit, normalize

__all__ = [
    "CSV_COLUMNS",
    "MAX_FILE_BYTES",
    "ImportReport",
    "import_data",
    "import_file",
    "read_csv",
    "read_pskc",
]

#: Largest file :func:`import_file` reads (a PSKC key package is well under 2 KiB).
MAX_FILE_BYTES = 64 * 1024 * 1024
MIN_SEED_BYTES = 1
MAX_SEED_BYTES = 128
#: PBKDF2 iteration counts above this are refused (a file could otherwise stall the import for hours).
MAX_PBKDF2_ITERATIONS = 10_000_000
#: Longest TOTP period accepted (one day).
MAX_PERIOD = 86_400

FORMAT_AUTO = "auto"
FORMAT_PSKC = "pskc"
FORMAT_CSV = "csv"
_PSKC_SUFFIXES = frozenset({".xml", ".pskc", ".pskcxml"})
_CSV_SUFFIXES = frozenset({".csv"})

#: PSKC algorithm URIs (compared lower-case). RFC 6030 §10.1 registers the hotp one; the totp one comes
#: from the PSKC algorithm-profiles draft (what Feitian files use); the ``#`` forms are from pre-RFC drafts.
#: python-pskc does not normalise key algorithm URIs (only encryption/MAC ones), so every form is listed.
PSKC_KINDS: Mapping[str, TokenKind] = {
    "urn:ietf:params:xml:ns:keyprov:pskc:hotp": TokenKind.HOTP,
    "urn:ietf:params:xml:ns:keyprov:pskc#hotp": TokenKind.HOTP,
    "http://www.ietf.org/keyprov/pskc#hotp": TokenKind.HOTP,
    "urn:ietf:params:xml:ns:keyprov:pskc:totp": TokenKind.TOTP,
    "urn:ietf:params:xml:ns:keyprov:pskc#totp": TokenKind.TOTP,
    "http://www.ietf.org/keyprov/pskc#totp": TokenKind.TOTP,
}
#: ResponseFormat Encoding values accepted (codes are decimal digits).
_DECIMAL = "DECIMAL"

#: CSV columns: the first three are required, the rest default; ``algorithm`` (sha1/sha256/sha512) is optional.
CSV_COLUMNS = ("serial", "seed", "type", "digits", "period", "counter")
CSV_REQUIRED = ("serial", "seed", "type")
CSV_OPTIONAL_EXTRA = ("algorithm",)

_DECLARATION_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_ENCODING_RE = re.compile(rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_NON_UTF8_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"
#: Longest piece of a bad field value quoted back in an error message.
_QUOTE_MAX = 40

ImportedToken = tuple[TokenParams, SecretBytes]


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What an import added: ``count`` tokens, their serials (file order), and how many of each kind."""

    path: str
    format: str
    count: int
    serials: tuple[str, ...]
    kinds: Mapping[TokenKind, int]


# --- helpers ---------------------------------------------------------------------------------


def _fail(name: str, where: str | None, problem: str) -> NoReturn:
    place = f"{name}: {where}: " if where else f"{name}: "
    raise ImportFailedError(place + problem)


def _quote(text: object) -> str:
    value = str(text)
    return repr(value if len(value) <= _QUOTE_MAX else value[:_QUOTE_MAX] + "...")


def _read_source(source: str | os.PathLike[str] | bytes, name: str | None) -> tuple[bytes, str]:
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
            _fail(display, None, f"cannot read the file: {exc.strerror or exc}")
    if len(data) > MAX_FILE_BYTES:
        _fail(display, None, f"file is larger than the limit of {MAX_FILE_BYTES} bytes")
    return data, display


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _check_xml_safety(data: bytes, name: str) -> None:
    """Refuse DOCTYPE/ENTITY declarations and non-UTF-8 documents before any parser sees them.

    Only UTF-8 (or ASCII) is accepted so that a byte scan for ``<!DOCTYPE``
    cannot be dodged with UTF-16 or EBCDIC encodings.
    """
    if data.startswith(_NON_UTF8_BOMS) or b"\x00" in data:
        _fail(name, None, "PSKC files must be UTF-8 encoded (found a UTF-16/32 byte order mark or NUL bytes)")
    match = _DECLARATION_RE.search(data)
    if match:
        _fail(
            name,
            f"line {_line_of(data, match.start())}",
            "XML entity declarations are not accepted (the file has a DOCTYPE or ENTITY declaration)",
        )
    body = data[len(_UTF8_BOM):] if data.startswith(_UTF8_BOM) else data
    declared = _XML_ENCODING_RE.match(body)
    if declared and declared.group(1).decode("ascii").lower() not in _UTF8_NAMES:
        _fail(name, None, f"PSKC files must be UTF-8 encoded, not {declared.group(1).decode('ascii')}")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(name, f"line {_line_of(data, exc.start)}", "the file is not valid UTF-8")


def _describe(exc: BaseException) -> str:
    """A message for an exception from python-pskc or its parsers, without echoing file content at length."""
    if isinstance(exc, binascii.Error):
        return "invalid base64 data"
    if isinstance(exc, PSKCError):
        return str(exc) or type(exc).__name__
    text = str(exc)
    if len(text) > 2 * _QUOTE_MAX:
        text = text[: 2 * _QUOTE_MAX] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- PSKC ---------------------------------------------------------------------------------------


def _parse_container(data: bytes, name: str) -> pskc.PSKC:
    try:
        return pskc.PSKC(io.BytesIO(data))
    except ParseError as exc:
        cause = exc.__context__
        position = getattr(cause, "position", None)
        if isinstance(position, tuple) and len(position) == 2:
            _fail(name, f"line {position[0]}, column {position[1]}", "malformed XML")
        _fail(name, None, f"not a PSKC file: {_describe(exc)}")
    except Exception as exc:  # python-pskc lets int(), base64 and date parsing errors through
        _fail(name, None, f"cannot parse the PSKC file: {_describe(exc)}")


def _raw_field(key: Any, field: str) -> object:
    # python-pskc keeps each Data value in the attribute "_<field>" (pskc.key.DataTypeProperty): either
    # the plaintext or an EncryptedValue holding cipher_value, mac_value and algorithm.
    return getattr(key, "_" + field, None)


def _setup_decryption(container: pskc.PSKC, name: str, psk: bytes | None, password: str | None) -> None:
    encryption = container.encryption
    derivation = encryption.derivation
    encrypted = any(
        isinstance(_raw_field(key, field), EncryptedValue)
        for key in container.keys
        for field in ("secret", "counter", "time_offset", "time_interval", "time_drift")
    )
    if password is not None:
        if not isinstance(password, str) or not password:
            _fail(name, None, "the password must be a non-empty string")
        if derivation.algorithm is None:
            _fail(name, None, "a password was given but the file is not password-protected (no KeyDerivation)")
        iterations = derivation.pbkdf2_iterations
        if iterations is not None and iterations > MAX_PBKDF2_ITERATIONS:
            _fail(name, None, f"PBKDF2 iteration count {iterations} exceeds the limit of {MAX_PBKDF2_ITERATIONS}")
        try:
            encryption.derive_key(password)
        except (KeyDerivationError, ValueError, TypeError) as exc:
            _fail(name, None, f"cannot derive the decryption key from the password: {_describe(exc)}")
    elif psk is not None:
        if not isinstance(psk, (bytes, bytearray, memoryview)):
            _fail(name, None, f"the pre-shared key must be bytes, not {type(psk).__name__}")
        if derivation.algorithm is not None:
            _fail(name, None, "the file is password-protected (PBKDF2): give the password, not a pre-shared key")
        encryption.key = bytes(psk)
    elif encrypted:
        _fail(name, None, "the file is encrypted: give the pre-shared key or the password")


def _verify_value_mac(container: pskc.PSKC, value: EncryptedValue, name: str, where: str, label: str) -> None:
    """Check the ValueMAC of a CBC-encrypted value over its ciphertext (RFC 6030 §6.1.1), in constant time."""
    algorithm = value.algorithm or container.encryption.algorithm or ""
    if not algorithm.lower().endswith("-cbc"):
        return  # key-wrap algorithms carry their own integrity check, verified when decrypting
    if not value.mac_value:
        _fail(name, where, f"{label} is CBC-encrypted without a ValueMAC; refusing unauthenticated data")
    if container.mac.algorithm is None:
        _fail(name, where, f"{label} has a ValueMAC but the file has no MACMethod to check it with")
    try:
        expected = container.mac.generate_mac(value.cipher_value)
    except (PSKCError, ValueError, TypeError, AssertionError) as exc:
        _fail(
            name,
            where,
            f"cannot check the ValueMAC of {label}: decrypting the MAC key failed ({_describe(exc)}); "
            "the pre-shared key or password is probably wrong",
        )
    if not hmac.compare_digest(expected, value.mac_value):
        _fail(name, where, f"ValueMAC of {label} does not match: the file was altered, or the pre-shared key or password is wrong")


def _field(container: pskc.PSKC, key: Any, field: str, label: str, name: str, where: str) -> Any:
    """A Data value, MAC-checked and decrypted if it is encrypted."""
    raw = _raw_field(key, field)
    if isinstance(raw, EncryptedValue):
        if container.encryption.key is None:
            _fail(name, where, f"{label} is encrypted: give the pre-shared key or the password")
        _verify_value_mac(container, raw, name, where, label)
    try:
        return getattr(key, field)
    except DecryptionError as exc:
        _fail(
            name, where, f"cannot decrypt {label} ({_describe(exc)}): the pre-shared key or password is probably wrong"
        )
    except Exception as exc:  # noqa: BLE001 - python-pskc decoding errors of any kind
        _fail(name, where, f"cannot read {label}: {_describe(exc)}")


def _int_field(value: object, label: str, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(name, where, f"{label} must be an integer")
    if abs(value) > INT64_MAX:
        _fail(name, where, f"{label} {value} is out of range")
    return int(value)


def _hash_suite(suite: str | None, name: str, where: str) -> Algorithm:
    """Suite (``SHA-256``, ``HMAC-SHA256``, ...) to an Algorithm; SHA-1 when absent (RFC 4226/6238 default)."""
    if suite is None or not suite.strip():
        return Algorithm.SHA1
    text = suite.strip()
    if text.upper().startswith("HMAC-"):
        text = text[len("HMAC-"):]
    try:
        return parse_algorithm(text)
    except InvalidInputError:
        _fail(name, where, f"unsupported algorithm suite {_quote(suite)}; use SHA-1, SHA-256 or SHA-512")


def _serial(text: object, name: str, where: str, label: str) -> tuple[str, bool]:
    """The normalised serial and whether it carries a valid check digit (10-digit vtoken serials)."""
    if not isinstance(text, str) or not text.strip():
        _fail(name, where, f"{label} is missing")
    try:
        serial = normalize(text.strip())
    except InvalidInputError as exc:
        _fail(name, where, f"{label} {_quote(text)}: {exc}")
    return serial, len(serial) == SERIAL_LENGTH and has_valid_check_digit(serial)


def _check_seed(seed: object, name: str, where: str) -> SecretBytes:
    if seed is None:
        _fail(name, where, "the secret (seed) is missing")
    if not isinstance(seed, (bytes, bytearray)):
        _fail(name, where, "the secret (seed) is not binary data")
    if not MIN_SEED_BYTES <= len(seed) <= MAX_SEED_BYTES:
        _fail(name, where, f"the secret (seed) must be {MIN_SEED_BYTES} to {MAX_SEED_BYTES} bytes, not {len(seed)}")
    return SecretBytes(seed)


def _pskc_token(
    container: pskc.PSKC, key: Any, name: str, where: str, *, require_encrypted: bool
) -> ImportedToken:
    serial, has_check_digit = _serial(key.serial, name, where, "serial number (DeviceInfo/SerialNo)")
    where = f"{where} (serial {serial})"

    uri = (key.algorithm or "").strip()
    if not uri:
        _fail(name, where, "the Key has no Algorithm")
    kind = PSKC_KINDS.get(uri.lower())
    if kind is None:
        _fail(name, where, f"unsupported key algorithm {_quote(uri)}; only HOTP and TOTP can be imported")
    algorithm = _hash_suite(key.algorithm_suite, name, where)

    if key.challenge_encoding is not None:
        _fail(name, where, "challenge-response keys are not supported")
    encoding = key.response_encoding
    if encoding is not None and encoding.strip().upper() != _DECIMAL:
        _fail(name, where, f"ResponseFormat Encoding {_quote(encoding)} is not supported; codes must be DECIMAL")
    if key.response_check:
        _fail(name, where, "ResponseFormat CheckDigits (Luhn) is not supported")
    try:
        digits = check_digits(DEFAULT_DIGITS if key.response_length is None else key.response_length)
    except InvalidInputError as exc:
        _fail(name, where, f"ResponseFormat Length: {exc}")

    policy = key.policy
    if policy.unknown_policy_elements:
        _fail(name, where, "the key's Policy has elements vtoken does not understand (RFC 6030 §5: do not use it)")
    if policy.key_usage and "OTP" not in policy.key_usage:
        _fail(name, where, f"the key's Policy does not allow OTP use (KeyUsage {', '.join(policy.key_usage)})")

    if require_encrypted and not isinstance(_raw_field(key, "secret"), EncryptedValue):
        _fail(name, where, "the secret is not encrypted although a pre-shared key or password was given")
    seed = _check_seed(_field(container, key, "secret", "the secret", name, where), name, where)

    period, t0, counter, drift = DEFAULT_PERIOD, 0, 0, 0
    if kind is TokenKind.TOTP:
        interval = _field(container, key, "time_interval", "TimeInterval", name, where)
        if interval is not None:
            period = _int_field(interval, "TimeInterval", name, where)
            if not 1 <= period <= MAX_PERIOD:
                _fail(name, where, f"TimeInterval must be 1 to {MAX_PERIOD} seconds, not {period}")
        # RFC 6030 §4.3.4 (Data/Time): "If time intervals are used, this element carries the number of time
        # intervals passed from a specific start point, normally it is algorithm dependent." We read it as the
        # start point T0 counted in intervals, so T0 = Time × TimeInterval seconds: this is what
        # firmware_sim.fleet writes (t0 // period), and vendor files write 0 (T0 = the Unix epoch) under
        # either reading.
        offset = _field(container, key, "time_offset", "Time", name, where)
        if offset is not None:
            t0 = _int_field(offset, "Time", name, where) * period
            if t0 < 0:
                _fail(name, where, f"Time must not be negative, not {offset}")
        # RFC 6030 §4.3.4 (Data/TimeDrift): intervals, device minus server ("device at 8, server at 9 →
        # record -1"); TokenParams.drift_steps uses the same sign.
        time_drift = _field(container, key, "time_drift", "TimeDrift", name, where)
        if time_drift is not None:
            drift = _int_field(time_drift, "TimeDrift", name, where)
    else:
        raw_counter = _field(container, key, "counter", "Counter", name, where)
        if raw_counter is not None:
            counter = _int_field(raw_counter, "Counter", name, where)
            try:
                check_counter(counter)
            except InvalidInputError as exc:
                _fail(name, where, f"Counter: {exc}")

    params = TokenParams(
        serial=serial,
        kind=kind,
        algorithm=algorithm,
        digits=digits,
        period=period,
        t0=t0,
        counter=counter,
        drift_steps=drift,
        has_check_digit=has_check_digit,
    )
    return params, seed


def _check_unique(tokens: Sequence[tuple[ImportedToken, str]], name: str) -> None:
    """Refuse a file naming a serial twice, citing where each copy is."""
    places: dict[str, list[str]] = collections.defaultdict(list)
    for (params, _), where in tokens:
        places[params.serial].append(where)
    twice = {serial: wheres for serial, wheres in places.items() if len(wheres) > 1}
    if twice:
        detail = "; ".join(f"{serial} at {' and '.join(wheres)}" for serial, wheres in sorted(twice.items()))
        raise DuplicateTokenError(set(twice), f"{name}: serial number(s) appear more than once: {detail}")


def read_pskc(
    source: str | os.PathLike[str] | bytes,
    *,
    psk: bytes | None = None,
    password: str | None = None,
    name: str | None = None,
) -> list[ImportedToken]:
    """Every token in a PSKC file (a path, or its content as bytes): parameters and plaintext seed.

    ``psk`` (the AES key) or ``password`` (PBKDF2) decrypts an encrypted file;
    give neither for a plaintext file. Raises :class:`ImportFailedError`.
    """
    data, display = _read_source(source, name)
    if psk is not None and password is not None:
        _fail(display, None, "give a pre-shared key or a password, not both")
    _check_xml_safety(data, display)
    container = _parse_container(data, display)
    if not container.devices:
        _fail(display, None, "the file holds no key packages")
    _setup_decryption(container, display, psk, password)
    require_encrypted = psk is not None or password is not None
    tokens: list[tuple[ImportedToken, str]] = []
    for number, device in enumerate(container.devices, start=1):
        where = f"key package {number}"
        if len(device.keys) != 1:
            _fail(display, where, f"expected one Key, found {len(device.keys)}")
        token = _pskc_token(container, device.keys[0], display, where, require_encrypted=require_encrypted)
        tokens.append((token, where))
    _check_unique(tokens, display)
    return [token for token, _ in tokens]


# --- CSV ------------------------------------------------------------------------------------------


def _csv_int(value: str, column: str, name: str, where: str) -> int:
    if not value.isascii() or not value.isdigit():
        _fail(name, where, f"{column} must be a non-negative whole number, not {_quote(value)}")
    return int(value)


def _csv_token(row: Mapping[str, str], name: str, where: str) -> ImportedToken:
    serial, has_check_digit = _serial(row["serial"], name, where, "serial")
    where = f"{where} (serial {serial})"
    kind_text = row["type"].lower()
    try:
        kind = TokenKind(kind_text)
    except ValueError:
        _fail(name, where, f"unknown type {_quote(row['type'])}; use totp or hotp")
    if not row["seed"]:
        _fail(name, where, "the seed is missing")
    try:
        seed = _check_seed(parse_key(row["seed"], "hex"), name, where)
    except InvalidInputError as exc:  # parse_key's messages never repeat the key
        _fail(name, where, f"seed: {exc}")

    digits = DEFAULT_DIGITS
    if row.get("digits"):
        try:
            digits = check_digits(_csv_int(row["digits"], "digits", name, where))
        except InvalidInputError as exc:
            _fail(name, where, f"digits: {exc}")
    algorithm = Algorithm.SHA1
    if row.get("algorithm"):
        try:
            algorithm = parse_algorithm(row["algorithm"])
        except InvalidInputError as exc:
            _fail(name, where, f"algorithm: {exc}")

    period, counter = DEFAULT_PERIOD, 0
    if kind is TokenKind.TOTP:
        if row.get("counter"):
            _fail(name, where, "counter applies to hotp tokens only; leave it empty for totp")
        if row.get("period"):
            period = _csv_int(row["period"], "period", name, where)
            if not 1 <= period <= MAX_PERIOD:
                _fail(name, where, f"period must be 1 to {MAX_PERIOD} seconds, not {period}")
    else:
        if row.get("period"):
            _fail(name, where, "period applies to totp tokens only; leave it empty for hotp")
        if row.get("counter"):
            counter = _csv_int(row["counter"], "counter", name, where)
            if counter > INT64_MAX:
                _fail(name, where, f"counter {counter} is out of range")

    params = TokenParams(
        serial=serial,
        kind=kind,
        algorithm=algorithm,
        digits=digits,
        period=period,
        counter=counter,
        has_check_digit=has_check_digit,
    )
    return params, seed


def _csv_header(cells: list[str], name: str) -> list[str]:
    header = [cell.strip().lower() for cell in cells]
    known = set(CSV_COLUMNS) | set(CSV_OPTIONAL_EXTRA)
    unknown = [c for c in header if c not in known]
    if unknown:
        _fail(name, "line 1", f"unknown column(s) {', '.join(map(_quote, unknown))}; columns are {','.join(CSV_COLUMNS)}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        _fail(name, "line 1", f"column(s) given twice: {', '.join(repeated)}")
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        _fail(name, "line 1", f"missing column(s): {', '.join(missing)} (the header must name {','.join(CSV_COLUMNS)})")
    return header


def _csv_text(source: str | os.PathLike[str] | bytes, name: str | None) -> tuple[str, str]:
    if isinstance(source, str) and ("\n" in source or "\r" in source):
        data, display = source.encode("utf-8"), name or "<text>"
        if len(data) > MAX_FILE_BYTES:
            _fail(display, None, f"text is larger than the limit of {MAX_FILE_BYTES} bytes")
    else:
        data, display = _read_source(source, name)
    try:
        return data.decode("utf-8-sig"), display
    except UnicodeDecodeError as exc:
        _fail(display, f"line {_line_of(data, exc.start)}", "the file is not valid UTF-8")


def read_csv(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> list[ImportedToken]:
    """Every token in a CSV file: header ``serial,seed,type,digits,period,counter``; seeds in hex.

    ``source`` is a path, the content as bytes, or the content as text (a
    ``str`` containing a line break; any other ``str`` is a path). ``type`` is
    totp or hotp; ``digits`` defaults to 6, ``period`` (totp only) to 30,
    ``counter`` (hotp only) to 0; an optional ``algorithm`` column takes
    sha1/sha256/sha512. Blank lines are skipped. Raises :class:`ImportFailedError`.
    """
    text, display = _csv_text(source, name)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    tokens: list[tuple[ImportedToken, str]] = []
    line = 1
    try:
        for cells in reader:
            start, line = line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = _csv_header(cells, display)
                continue
            where = f"line {start}"
            if len(cells) != len(header):
                _fail(display, where, f"expected {len(header)} fields ({','.join(header)}), found {len(cells)}")
            row = {column: cell.strip() for column, cell in zip(header, cells)}
            tokens.append((_csv_token(row, display, where), where))
    except csv.Error as exc:
        _fail(display, f"line {reader.line_num}", f"malformed CSV: {exc}")
    if header is None:
        _fail(display, None, "the file is empty (expected a header line)")
    if not tokens:
        _fail(display, None, "the file holds no tokens")
    _check_unique(tokens, display)
    return [token for token, _ in tokens]


# --- import ------------------------------------------------------------------------------------------


def _detect_format(fmt: str, path: Path, data: bytes, name: str) -> str:
    if fmt in (FORMAT_PSKC, FORMAT_CSV):
        return fmt
    if fmt != FORMAT_AUTO:
        _fail(name, None, f"unknown format {_quote(fmt)}; use auto, pskc or csv")
    suffix = path.suffix.lower()
    if suffix in _PSKC_SUFFIXES:
        return FORMAT_PSKC
    if suffix in _CSV_SUFFIXES:
        return FORMAT_CSV
    head = data[len(_UTF8_BOM):] if data.startswith(_UTF8_BOM) else data
    return FORMAT_PSKC if head.lstrip().startswith(b"<") else FORMAT_CSV


def import_file(
    store: TokenStore,
    keyring: Keyring | MasterKey,
    path: str | os.PathLike[str],
    *,
    psk: bytes | None = None,
    password: str | None = None,
    format: str = FORMAT_AUTO,  # noqa: A002 - the CLI option's name
    now_ns: int | None = None,
) -> ImportReport:
    """Import every token of a PSKC or CSV file into ``store``, all or nothing.

    The whole file is parsed and checked, every seed is sealed under the
    keyring's current key, and the tokens are added in one transaction (with an
    ``added`` audit event each). Raises :class:`ImportFailedError` (or its
    subclass :class:`DuplicateTokenError`) with nothing written; errors of
    the store itself (:class:`StorageError`) and of the key
    (:class:`MasterKeyError`) pass through, also with nothing written.
    """
    file_path = Path(path)
    data, name = _read_source(file_path, None)
    return _import(store, keyring, data, name, _detect_format(format, file_path, data, name), file_path.name,
                   psk=psk, password=password, now_ns=now_ns)


def import_data(
    store: TokenStore,
    keyring: Keyring | MasterKey,
    data: bytes,
    *,
    name: str = "the uploaded file",
    psk: bytes | None = None,
    password: str | None = None,
    fmt: str = FORMAT_AUTO,
    now_ns: int | None = None,
) -> list[str]:
    """Import a PSKC or CSV document given as bytes (an upload), all or nothing; return the serials."""
    if not isinstance(data, bytes):
        raise ImportFailedError(f"{name}: expected the file's bytes")
    if len(data) > MAX_FILE_BYTES:
        _fail(name, None, f"larger than {MAX_FILE_BYTES} bytes: split the file")
    report = _import(store, keyring, data, name, _detect_format(fmt, Path(""), data, name), name,
                     psk=psk, password=password, now_ns=now_ns)
    return list(report.serials)


def _import(
    store: TokenStore,
    keyring: Keyring | MasterKey,
    data: bytes,
    name: str,
    fmt: str,
    source: str,
    *,
    psk: bytes | None,
    password: str | None,
    now_ns: int | None,
) -> ImportReport:
    if fmt == FORMAT_PSKC:
        tokens = read_pskc(data, psk=psk, password=password, name=name)
    else:
        if psk is not None or password is not None:
            _fail(name, None, "CSV files are not encrypted: a pre-shared key or password applies to PSKC only")
        tokens = read_csv(data, name=name)
    items = [(params, seal(keyring, params.serial, seed)) for params, seed in tokens]
    when = time.time_ns() if now_ns is None else now_ns
    try:
        store.add_tokens(items, at_ns=when, detail=f"imported from {source} ({fmt})")
    except DuplicateTokenError as exc:
        raise DuplicateTokenError(exc.serials, f"{name}: {exc}") from None
    kinds = collections.Counter(params.kind for params, _ in tokens)
    return ImportReport(
        path=name,
        format=fmt,
        count=len(tokens),
        serials=tuple(params.serial for params, _ in tokens),
        kinds=dict(kinds),
    )
