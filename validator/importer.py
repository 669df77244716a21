"""Importing token seeds, all or nothing: PSKC, OATH CSV and otpauth URIs.

:func:`import_file` reads and checks the whole file first (through
:mod:`validator.pskcfile` or :mod:`validator.csvfile`), seals every seed under
the master key, and only then adds the tokens to the store in one
transaction. Any problem raises :class:`~vtoken.errors.ImportFailedError`
naming the file, the key package or line, and the real cause, and leaves the
store unchanged. Seeds never appear in messages: :func:`read_pskc` and
:func:`read_csv` return them as :class:`~validator.sealing.SecretBytes`, whose
repr shows only the length. What each format accepts and refuses is in those
modules' docstrings and in the README's import section.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
from collections.abc import Mapping
from pathlib import Path

from validator.csvfile import CSV_COLUMNS, read_csv_data, read_otpauth_data, text_of
from validator.importbase import (
    MAX_FILE_BYTES,
    ImportedToken,
    Reading,
    fail,
    quote,
    read_source,
)
from validator.pskcfile import MAX_PBKDF2_ITERATIONS, PSKC_KINDS, read_pskc_data
from validator.sealing import Keyring, MasterKey, seal
from validator.store import TokenStore
from vtoken.errors import DuplicateTokenError, ImportFailedError
from vtoken.oath import TokenKind

__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "MAX_FILE_BYTES",
    "MAX_PBKDF2_ITERATIONS",
    "PSKC_KINDS",
    "ImportOptions",
    "ImportReport",
    "import_data",
    "import_file",
    "read_csv",
    "read_otpauth",
    "read_pskc",
]

FORMAT_AUTO = "auto"
FORMAT_PSKC = "pskc"
FORMAT_CSV = "csv"
FORMAT_OTPAUTH = "otpauth"
#: Formats :func:`import_file` reads (``auto`` guesses from the name, then the content).
FORMATS = (FORMAT_AUTO, FORMAT_PSKC, FORMAT_CSV, FORMAT_OTPAUTH)
_PSKC_SUFFIXES = frozenset({".xml", ".pskc", ".pskcxml"})
_CSV_SUFFIXES = frozenset({".csv", ".oath"})
_UTF8_BOM = b"\xef\xbb\xbf"
_OTPAUTH_SCHEME = b"otpauth://"


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """How to read a file: its protection (``psk`` or ``password``), the signer's certificate (PEM text)
    or ``ignore_signature``, and ``skip_unsupported`` to import the HOTP/TOTP keys of a mixed file."""

    psk: bytes | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    certificate: str | None = None
    ignore_signature: bool = False
    skip_unsupported: bool = False


@dataclasses.dataclass(frozen=True)
class ImportReport:
    """What an import added: ``count`` tokens, their serials (file order), how many of each kind,
    notes for the operator, and the keys skipped (``--skip-unsupported``)."""

    path: str
    format: str
    count: int
    serials: tuple[str, ...]
    kinds: Mapping[TokenKind, int]
    notes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def read_pskc(
    source: str | os.PathLike[str] | bytes,
    *,
    psk: bytes | None = None,
    password: str | None = None,
    name: str | None = None,
    certificate: str | None = None,
    ignore_signature: bool = False,
    skip_unsupported: bool = False,
    now_ns: int | None = None,
) -> list[ImportedToken]:
    """Every token in a PSKC file (a path, or its content as bytes): parameters and plaintext seed.

    ``psk`` (the AES key) or ``password`` (PBKDF2) decrypts an encrypted file;
    give neither for a plaintext file. Raises :class:`ImportFailedError`.
    """
    data, display = read_source(source, name)
    return read_pskc_data(data, display, psk=psk, password=password, certificate=certificate,
                          ignore_signature=ignore_signature, skip_unsupported=skip_unsupported,
                          now_ns=now_ns).tokens


def read_csv(source: str | os.PathLike[str] | bytes, *, name: str | None = None,
             skip_unsupported: bool = False) -> list[ImportedToken]:
    """Every token in a CSV file, with vtoken's header line or in headerless OATH CSV (privacyIDEA, LinOTP).

    ``source`` is a path, the content as bytes, or the content as text (a
    ``str`` containing a line break; any other ``str`` is a path). Raises
    :class:`ImportFailedError`.
    """
    text, display = text_of(source, name)
    return read_csv_data(text, display, skip_unsupported=skip_unsupported).tokens


def read_otpauth(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> list[ImportedToken]:
    """Every token in a file of otpauth:// URIs, one per line. Raises :class:`ImportFailedError`."""
    text, display = text_of(source, name)
    return read_otpauth_data(text, display).tokens


# --- import ------------------------------------------------------------------------------------------


def _detect_format(fmt: str, path: Path, data: bytes, name: str) -> str:
    if fmt in FORMATS and fmt != FORMAT_AUTO:
        return fmt
    if fmt != FORMAT_AUTO:
        fail(name, None, f"unknown format {quote(fmt)}; use {', '.join(FORMATS)}")
    head = (data[len(_UTF8_BOM):] if data.startswith(_UTF8_BOM) else data).lstrip()
    if head.startswith(b"{"):
        fail(name, None, "this is a JSON document (a vtoken token file?), not a seed file; "
                         "export a token's seed with 'vtoken token export'")
    suffix = path.suffix.lower()
    if suffix in _PSKC_SUFFIXES:
        return FORMAT_PSKC
    if suffix in _CSV_SUFFIXES:
        return FORMAT_CSV
    if head.startswith(b"<"):
        return FORMAT_PSKC
    first = next((line.strip() for line in head.splitlines() if line.strip() and not line.startswith(b"#")), b"")
    return FORMAT_OTPAUTH if first.lower().startswith(_OTPAUTH_SCHEME) else FORMAT_CSV


def import_file(
    store: TokenStore,
    keyring: Keyring | MasterKey,
    path: str | os.PathLike[str],
    *,
    psk: bytes | None = None,
    password: str | None = None,
    format: str = FORMAT_AUTO,  # noqa: A002 - the CLI option's name
    now_ns: int | None = None,
    options: ImportOptions | None = None,
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
    data, name = read_source(file_path, None)
    opts = _options(options, psk, password)
    return _import(store, keyring, data, name, _detect_format(format, file_path, data, name), file_path.name,
                   opts, now_ns=now_ns)


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
    options: ImportOptions | None = None,
) -> list[str]:
    """Import a PSKC or CSV document given as bytes (an upload), all or nothing; return the serials."""
    if not isinstance(data, bytes):
        raise ImportFailedError(f"{name}: expected the file's bytes")
    if len(data) > MAX_FILE_BYTES:
        fail(name, None, f"larger than {MAX_FILE_BYTES} bytes: split the file")
    report = _import(store, keyring, data, name, _detect_format(fmt, Path(""), data, name), name,
                     _options(options, psk, password), now_ns=now_ns)
    return list(report.serials)


def _options(options: ImportOptions | None, psk: bytes | None, password: str | None) -> ImportOptions:
    opts = options or ImportOptions()
    if psk is not None or password is not None:
        opts = dataclasses.replace(opts, psk=psk if psk is not None else opts.psk,
                                   password=password if password is not None else opts.password)
    return opts


def _read(data: bytes, name: str, fmt: str, opts: ImportOptions, now_ns: int) -> Reading:
    if fmt == FORMAT_PSKC:
        return read_pskc_data(data, name, psk=opts.psk, password=opts.password, certificate=opts.certificate,
                              ignore_signature=opts.ignore_signature, skip_unsupported=opts.skip_unsupported,
                              now_ns=now_ns)
    if opts.psk is not None or opts.password is not None:
        fail(name, None, f"{fmt} files are not encrypted: a pre-shared key or password applies to PSKC only")
    if opts.certificate is not None:
        fail(name, None, f"{fmt} files are not signed: a certificate applies to PSKC only")
    text, _ = text_of(data, name)
    if fmt == FORMAT_OTPAUTH:
        return read_otpauth_data(text, name)
    return read_csv_data(text, name, skip_unsupported=opts.skip_unsupported)


def _import(
    store: TokenStore,
    keyring: Keyring | MasterKey,
    data: bytes,
    name: str,
    fmt: str,
    source: str,
    opts: ImportOptions,
    *,
    now_ns: int | None,
) -> ImportReport:
    when = time.time_ns() if now_ns is None else now_ns
    reading = _read(data, name, fmt, opts, when)
    tokens = reading.tokens
    items = [(params, seal(keyring, params.serial, seed)) for params, seed in tokens]
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
        notes=tuple(reading.notes),
        skipped=tuple(reading.skipped),
    )
