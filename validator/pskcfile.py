"""Reading PSKC (RFC 6030 and its drafts) through python-pskc, as real vendors write it.

What it takes, and what it refuses (each refusal names its real cause):

* **Serials**: the DeviceInfo SerialNo as the vendor printed it
  (``ZZ8000000001``, ``306EUO4-00960``); a key without one takes its Key Id.
* **Kinds**: HOTP and TOTP under every URI producers use (RFC 6030, the
  algorithm-profiles draft, ``#hotp`` pre-RFC forms, the draft's bare ``HOTP``).
  Keys of other kinds (OCRA, PIN, static password, Yubikey AES, SecurID,
  ActivIdentity 3DES, anything unknown) fail the whole file, each named;
  ``skip_unsupported`` imports the rest and lists what was skipped.
* **Hash**: ``<Suite>`` text in any spelling (``SHA-256``, ``HMAC-SHA256``,
  ``sha256``) or privacyIDEA's ``<Suite hashalgo="sha256"/>``, which
  python-pskc does not read; an unknown spelling is an error, never SHA-1.
* **Encryption**: a pre-shared key or a PBKDF2 password (every method
  python-pskc decrypts: AES/Camellia/3DES CBC and key wrap). When one is given
  every secret must be encrypted (no plaintext seed slipped in). A
  CBC-encrypted value must carry a ValueMAC, checked here in constant time over
  the ciphertext (RFC 6030 §6.1.1) or, as pre-RFC drafts and ActivIdentity
  wrote it, over the plaintext (reported in the notes). Secrets encrypted to an
  RSA certificate, or held elsewhere (KeyReference), cannot be imported.
* **Signatures**: a signed file is verified against the operator's
  certificate (signxml through python-pskc) and only the signed content is
  imported; without a certificate a signed file is refused unless
  ``ignore_signature``; a certificate for an unsigned file is refused too.
* **Policy**: a key past its ExpiryDate, one whose KeyUsage excludes OTP, one
  whose PIN the server would have to check, or with Policy elements vtoken
  does not understand (RFC 6030 §5: do not use the key) is refused.

Documents are refused before any XML parser sees them if they carry a DOCTYPE
or ENTITY declaration, are not UTF-8, or exceed the size limit; whitespace
before the XML declaration (privacyIDEA's files) is tolerated. A streaming
pre-scan (expat, no DTD, no entities, no tree) then refuses, before any parser
builds a tree: nesting deeper than :data:`~validator.importbase.MAX_XML_DEPTH`,
more than :data:`~validator.importbase.MAX_XML_ELEMENTS` elements, an integer
field longer than :data:`~validator.importbase.MAX_INT_DIGITS` characters, a
ResponseFormat Length of 0 or empty (python-pskc reads both as absent, which
would import the token as 6 digits), and a root element in a namespace other
than PSKC's (:data:`PSKC_NAMESPACES`; a root in no namespace, as Feitian,
LinOTP and privacyIDEA write it, is read). PBKDF2 work is bounded before any
derivation (:func:`_check_pbkdf2`).
"""

from __future__ import annotations

import binascii
import contextlib
import datetime as _dt
import hashlib
import hmac
import io
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn
from xml.parsers import expat

import pskc
from cryptography.utils import CryptographyDeprecationWarning
from pskc.encryption import algorithm_key_lengths
from pskc.exceptions import DecryptionError, KeyDerivationError, ParseError, PSKCError
from pskc.key import EncryptedValue

from validator.importbase import (
    MAX_INT_CIPHER_CHARS,
    MAX_INT_DIGITS,
    MAX_PBKDF2_ITERATIONS,
    MAX_PBKDF2_KEY_BYTES,
    MAX_PBKDF2_WORK,
    MAX_PERIOD,
    MAX_XML_DEPTH,
    MAX_XML_ELEMENTS,
    QUOTE_MAX,
    Reading,
    check_seed,
    check_serial_text,
    check_unique,
    fail,
    hash_name,
    quote,
)
from validator.records import TokenParams
from validator.store import INT64_MAX
from vtoken.clock import NS_PER_SECOND
from vtoken.errors import InvalidInputError
from vtoken.oath import DEFAULT_DIGITS, DEFAULT_PERIOD, Algorithm, TokenKind, check_counter, check_digits

__all__ = [
    "MAX_INT_CIPHER_CHARS",
    "MAX_INT_DIGITS",
    "MAX_PBKDF2_ITERATIONS",
    "MAX_PBKDF2_KEY_BYTES",
    "MAX_PBKDF2_WORK",
    "MAX_XML_DEPTH",
    "MAX_XML_ELEMENTS",
    "PBKDF2_PRF_DIGEST_BYTES",
    "PSKC_KINDS",
    "PSKC_NAMESPACES",
    "read_pskc_data",
]

#: Namespaces a PSKC root element may be in: RFC 6030's (the one python-pskc's ``pskc.xml.namespaces``
#: names) and those of the pre-RFC drafts python-pskc's test files use and it reads (the
#: algorithm-profiles draft, draft-hoyer-keyprov-portable-symmetric-key-container-00 and -01, and
#: ActivIdentity's). python-pskc strips every namespace before it reads, so without this check a document
#: in any namespace would import. A root in no namespace at all is read too (Feitian, LinOTP and
#: privacyIDEA write them so).
PSKC_NAMESPACES = frozenset({
    "urn:ietf:params:xml:ns:keyprov:pskc",
    "urn:ietf:params:xml:ns:keyprov:pskc:1.0",
    "urn:ietf:params:xml:ns:keyprov:container",
    "urn:ietf:params:xml:ns:keyprov:container:1.0",
    "http://www.openauthentication.org/OATH/2006/08/PSKC",
})
#: PBKDF2 pseudo-random functions vtoken derives keys with (the hash python-pskc takes from the PRF URI,
#: ``...#hmac-sha256``; none given means HMAC-SHA1), and their digest sizes in bytes: the work of a
#: derivation is IterationCount times ceil(KeyLength / digest size) HMAC blocks.
PBKDF2_PRF_DIGEST_BYTES: Mapping[str, int] = {
    name: hashlib.new(name).digest_size for name in ("sha1", "sha224", "sha256", "sha384", "sha512")
}
_PBKDF2_DEFAULT_PRF = "sha1"
_PRF_RE = re.compile(r"^(.*#)?hmac-(?P<hash>[a-z0-9-]+)$")

#: PSKC algorithm URIs (compared lower-case). RFC 6030 §10.1 registers the hotp one; the totp one comes
#: from the PSKC algorithm-profiles draft (what Feitian files use); the ``#`` forms and the bare names are
#: from pre-RFC drafts. python-pskc does not normalise key algorithm URIs (only encryption/MAC ones).
PSKC_KINDS: Mapping[str, TokenKind] = {
    "urn:ietf:params:xml:ns:keyprov:pskc:hotp": TokenKind.HOTP,
    "urn:ietf:params:xml:ns:keyprov:pskc#hotp": TokenKind.HOTP,
    "http://www.ietf.org/keyprov/pskc#hotp": TokenKind.HOTP,
    "hotp": TokenKind.HOTP,
    "urn:ietf:params:xml:ns:keyprov:pskc:totp": TokenKind.TOTP,
    "urn:ietf:params:xml:ns:keyprov:pskc#totp": TokenKind.TOTP,
    "http://www.ietf.org/keyprov/pskc#totp": TokenKind.TOTP,
    "totp": TokenKind.TOTP,
}
#: Key kinds vtoken does not validate, recognised by a fragment of their algorithm URI (lower-case).
_UNSUPPORTED_KINDS: tuple[tuple[str, str], ...] = (
    ("ocra", "OCRA (challenge-response)"),
    ("yubikey", "Yubikey AES (Yubico OTP)"),
    ("securid", "SecurID"),
    ("actividentity-3des", "ActivIdentity 3DES"),
)
_UNSUPPORTED_SUFFIXES: tuple[tuple[str, str], ...] = (
    (":pin", "PIN"),
    ("#pin", "PIN"),
    (":pw", "static password"),
    ("#pw", "static password"),
)
#: ResponseFormat Encoding values accepted (codes are decimal digits).
_DECIMAL = "DECIMAL"
#: PINPolicy usage modes that leave the PIN to the token itself.
_LOCAL_PIN_MODES = frozenset({"local"})

_DECLARATION_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_XML_ENCODING_RE = re.compile(rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ROOT_RE = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_NON_UTF8_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"
_XML_WHITESPACE = b" \t\r\n"
_ENCRYPTED_FIELDS = ("secret", "counter", "time_offset", "time_interval", "time_drift")


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _describe(exc: BaseException) -> str:
    """A message for an exception from python-pskc or its parsers, without echoing file content at length."""
    if isinstance(exc, binascii.Error):
        return "invalid base64 data"
    if isinstance(exc, PSKCError):
        return str(exc) or type(exc).__name__
    try:
        text = str(exc)
    except ValueError:  # e.g. formatting an integer past Python's int-to-str limit
        text = ""
    if len(text) > 2 * QUOTE_MAX:
        text = text[: 2 * QUOTE_MAX] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet_ciphers() -> Iterator[None]:
    """3DES and Camellia still decrypt vendor files; cryptography's deprecation warnings must not reach users."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def _document(data: bytes, name: str) -> bytes:
    """The document with a UTF-8 BOM and leading whitespace removed, after the safety checks.

    DOCTYPE/ENTITY declarations (entity bombs, external entities) and anything
    but UTF-8 (so that the byte scan cannot be dodged with UTF-16 or EBCDIC) are
    refused before any XML parser sees the bytes.
    """
    if data.startswith(_NON_UTF8_BOMS) or b"\x00" in data:
        fail(name, None, "PSKC files must be UTF-8 encoded (found a UTF-16/32 byte order mark or NUL bytes)")
    body = data[len(_UTF8_BOM):] if data.startswith(_UTF8_BOM) else data
    body = body.lstrip(_XML_WHITESPACE)
    match = _DECLARATION_RE.search(body)
    if match:
        fail(
            name,
            f"line {_line_of(body, match.start())}",
            "XML entity declarations are not accepted (the file has a DOCTYPE or ENTITY declaration)",
        )
    declared = _XML_ENCODING_RE.match(body)
    if declared and declared.group(1).decode("ascii").lower() not in _UTF8_NAMES:
        fail(name, None, f"PSKC files must be UTF-8 encoded, not {declared.group(1).decode('ascii')}")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        fail(name, f"line {_line_of(body, exc.start)}", "the file is not valid UTF-8")
    return body


#: Elements whose own text python-pskc reads as an integer (``findint``).
_INT_ELEMENTS = frozenset({"IterationCount", "PBEIterationCount", "KeyLength", "NumberOfTransactions"})
#: Data fields holding an integer in a PlainValue or Value child (RFC 6030 §4.3.4), and the pre-RFC
#: ``<Data Name="...">`` spellings python-pskc maps to them.
_INT_DATA_FIELDS = frozenset({"Counter", "Time", "TimeInterval", "TimeDrift"})
_LEGACY_INT_DATA_NAMES: Mapping[str, str] = {"counter": "Counter", "time": "Time", "time_interval": "TimeInterval"}
#: The elements of an integer Data field that hold its value, and the most characters each may have: a
#: PlainValue is the number; a CipherValue, or a pre-RFC ``<Value>`` (plain or encrypted), may be base64.
_INT_VALUE_LIMITS: Mapping[str, int] = {
    "PlainValue": MAX_INT_DIGITS,
    "Value": MAX_INT_CIPHER_CHARS,
    "CipherValue": MAX_INT_CIPHER_CHARS,
}
#: Attributes python-pskc reads as integers (``getint``), on the elements that carry them.
_INT_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "ResponseFormat": frozenset({"Length", "length"}),
    "ChallengeFormat": frozenset({"Min", "min", "Max", "max"}),
    "PINPolicy": frozenset({"MaxFailedAttempts", "MinLength", "MaxLength"}),
}
_LENGTH_ATTRIBUTES = frozenset({"Length", "length"})


def _local_name(tag: str) -> str:
    return tag.rpartition(":")[2]


def _significant(text: str) -> int:
    """How many characters of ``text`` are not whitespace (what ``int()`` and python-pskc would read)."""
    return len(text) - sum(text.count(c) for c in " \t\r\n")


class _PreScan:
    """Expat callbacks that bound a document before any parser builds a tree of it.

    Keeps one small frame per open element (the depth is bounded, so is the
    stack) and counts the characters of integer fields without storing them.
    """

    __slots__ = ("_name", "_parser", "_elements", "_stack", "_chars")

    def __init__(self, name: str, parser: Any) -> None:
        self._name = name
        self._parser = parser
        self._elements = 0
        #: Per open element: the integer Data field it is in (if any), and the integer field its own text
        #: holds with that text's limit in characters (if it holds one).
        self._stack: list[tuple[str | None, str | None, int]] = []
        self._chars = 0

    def _fail(self, problem: str) -> NoReturn:
        fail(self._name, f"line {self._parser.CurrentLineNumber}", problem)

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        self._elements += 1
        if self._elements > MAX_XML_ELEMENTS:
            self._fail(f"the document has more than {MAX_XML_ELEMENTS} elements; split the file")
        if len(self._stack) >= MAX_XML_DEPTH:
            self._fail(f"elements are nested more than {MAX_XML_DEPTH} deep (a PSKC document needs fewer than 10)")
        local = _local_name(tag)
        if not self._stack:
            self._check_root(tag, local, attributes)
        field = self._stack[-1][0] if self._stack else None
        if local in _INT_DATA_FIELDS:
            field = local
        elif local == "Data" and "Name" in attributes:
            field = _LEGACY_INT_DATA_NAMES.get(attributes["Name"].strip().lower(), field)
        text_field: str | None = None
        limit = 0
        if local in _INT_ELEMENTS:
            text_field, limit = local, MAX_INT_DIGITS
        elif field is not None and local in _INT_VALUE_LIMITS:
            text_field, limit = field, _INT_VALUE_LIMITS[local]
        names = _INT_ATTRIBUTES.get(local)
        if names:
            self._check_int_attributes(local, names, attributes)
        self._stack.append((field, text_field, limit))
        self._chars = 0

    def _check_root(self, tag: str, local: str, attributes: dict[str, str]) -> None:
        prefix = tag.rpartition(":")[0]
        namespace = attributes.get(f"xmlns:{prefix}" if prefix else "xmlns")
        if prefix and namespace is None:
            self._fail(f"the root element <{quote(tag)[1:-1]}> uses the prefix {quote(prefix)}, which is not bound "
                       "to a namespace")
        if namespace and namespace not in PSKC_NAMESPACES:
            self._fail(f"not a PSKC file: the root element <{quote(local)[1:-1]}> is in the XML namespace "
                       f"{quote(namespace)}, not PSKC's (urn:ietf:params:xml:ns:keyprov:pskc)")

    def _check_int_attributes(self, local: str, names: frozenset[str], attributes: dict[str, str]) -> None:
        for attribute in sorted(names & attributes.keys()):
            value = attributes[attribute]
            if _significant(value) > MAX_INT_DIGITS:
                self._fail(f"{local} {attribute} is longer than {MAX_INT_DIGITS} characters; it must be a small "
                           "whole number")
            if local == "ResponseFormat" and attribute in _LENGTH_ATTRIBUTES:
                text = value.strip()
                if not text:
                    self._fail(f"ResponseFormat {attribute} is empty; give the number of digits of a code (6 to 10)")
                with contextlib.suppress(ValueError):
                    if int(text) == 0:
                        self._fail(f"ResponseFormat {attribute} is 0; give the number of digits of a code "
                                   "(6 to 10)")

    def end(self, tag: str) -> None:
        self._stack.pop()
        self._chars = 0

    def text(self, data: str) -> None:
        if not self._stack:
            return
        _, field, limit = self._stack[-1]
        if field is None:
            return
        self._chars += _significant(data)
        if self._chars > limit:
            self._fail(f"{field} is longer than {limit} characters; it must be a whole number that fits 64 bits")

    def declaration(self, *args: object) -> NoReturn:
        self._fail("XML entity declarations are not accepted (the file has a DOCTYPE or ENTITY declaration)")


def _prescan(body: bytes, name: str) -> None:
    """Bound the document before any parser builds a tree of it (see :class:`_PreScan`).

    Expat streams the bytes with no DTD, no entity expansion and no tree; its
    tag stack lives on the heap, so depth cannot crash it. A document expat
    finds malformed is refused here with the parser's position.
    """
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    scan = _PreScan(name, parser)
    parser.buffer_text = True
    parser.StartElementHandler = scan.start
    parser.EndElementHandler = scan.end
    parser.CharacterDataHandler = scan.text
    parser.StartDoctypeDeclHandler = scan.declaration
    parser.EntityDeclHandler = scan.declaration
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        _malformed(body, name, exc, parser.ErrorByteIndex)


def _malformed(body: bytes, name: str, exc: expat.ExpatError, index: int) -> NoReturn:
    """Refuse a document expat found malformed, in libxml2's words where lxml is there to give them.

    lxml sees only what expat accepted (within every limit) up to the end of
    the markup where expat stopped, so this too parses a bounded document.
    """
    line, column = exc.lineno, exc.offset + 1
    detail = expat.errors.messages.get(exc.code, "") if exc.code else ""
    end = body.find(b">", max(index, 0))
    prefix = body if end < 0 else body[: end + 1]
    etree: Any
    try:
        from lxml import etree
    except ImportError:  # python-pskc falls back to xml.etree: expat's words are the parser's
        etree = None
    if etree is not None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
        try:
            etree.fromstring(prefix, parser)
        except etree.XMLSyntaxError as error:
            position = getattr(error, "position", None)
            if isinstance(position, tuple) and len(position) == 2:
                line, column = position
            detail = re.sub(r",? line \d+, column \d+$", "", str(getattr(error, "msg", "") or "")) or detail
        except Exception:  # noqa: BLE001 - any other failure of the reporter: expat's words stand
            pass
    fail(name, f"line {line}, column {column}", "malformed XML" + (f" ({detail[: 2 * QUOTE_MAX]})" if detail else ""))


def _root_name(body: bytes) -> str | None:
    text = re.sub(rb"<\?.*?\?>|<!--.*?-->", b"", body, flags=re.DOTALL)
    match = _ROOT_RE.search(text)
    return match.group(1).decode("ascii", "replace") if match else None


def _parse(body: bytes, name: str) -> pskc.PSKC:
    try:
        return pskc.PSKC(io.BytesIO(body))
    except ParseError as exc:
        cause = exc.__context__
        position = getattr(cause, "position", None)
        if isinstance(position, tuple) and len(position) == 2:
            detail = str(getattr(cause, "msg", "") or "")
            detail = re.sub(r",? line \d+, column \d+$", "", detail)
            fail(name, f"line {position[0]}, column {position[1]}",
                 "malformed XML" + (f" ({detail[: 2 * QUOTE_MAX]})" if detail else ""))
        if "Missing KeyContainer" in str(exc):
            root = _root_name(body)
            hint = " (a SafeNet/SafeWord token file)" if root == "Tokens" else ""
            fail(name, None, f"not a PSKC file: the root element is <{root}>{hint}, not <KeyContainer>; "
                             "vtoken imports PSKC, OATH CSV and otpauth:// URIs")
        version = re.match(r"Unsupported version '(.*)'$", str(exc))
        if version:
            fail(name, None, f"unsupported PSKC version {quote(version.group(1))} (vtoken reads 1.0 and the pre-RFC "
                             "drafts)")
        fail(name, None, f"not a PSKC file: {_describe(exc)}")
    except ValueError as exc:  # python-pskc lets int(), bool and date parsing errors through
        literal = re.match(r"invalid literal for int\(\) with base 10: (.*)$", _describe(exc).split(": ", 1)[-1])
        if literal:
            fail(name, None, f"a field that must be a whole number holds {literal.group(1)}")
        boolean = re.match(r"invalid boolean value: (.*)$", _describe(exc).split(": ", 1)[-1])
        if boolean:
            fail(name, None, f"a field that must be true or false holds {boolean.group(1)}")
        fail(name, None, f"cannot parse the PSKC file: {_describe(exc)}")
    except Exception as exc:  # noqa: BLE001 - python-pskc lets base64 and other parsing errors through
        fail(name, None, f"cannot parse the PSKC file: {_describe(exc)}")


def _verify_signature(container: pskc.PSKC, name: str, certificate: str | None,
                      ignore_signature: bool, notes: list[str]) -> pskc.PSKC:
    """The container to import: the signed content of a verified file, or the file as read."""
    signature = container.signature
    if not signature.is_signed:
        if certificate is not None:
            fail(name, None, "a signing certificate was given but the file is not signed")
        return container
    if certificate is None:
        if ignore_signature:
            notes.append("the file is signed; its signature was NOT checked (--ignore-signature)")
            return container
        fail(name, None, "the file is signed: give the signer's certificate (--certificate) to verify it, "
                         "or --ignore-signature to import it unchecked")
    try:
        signed = signature.verify(certificate=certificate) and signature.signed_pskc
    except Exception as exc:  # noqa: BLE001 - signxml raises many types; every one means "not verified"
        fail(name, None, f"the XML signature does not verify against the certificate given: {_describe(exc)}")
    notes.append("the file's XML signature verified against the certificate given; only signed content imported")
    return signed


def _raw_field(key: Any, field: str) -> object:
    # python-pskc keeps each Data value in the attribute "_<field>" (pskc.key.DataTypeProperty): either
    # the plaintext or an EncryptedValue holding cipher_value, mac_value and algorithm.
    return getattr(key, "_" + field, None)


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _hashalgo_attributes(container: pskc.PSKC) -> list[str | None]:
    """privacyIDEA's ``<Suite hashalgo="...">`` of each Key in document order (python-pskc ignores it)."""
    tree = getattr(container.signature, "tree", None)
    if tree is None:
        return []
    root = tree.getroot() if hasattr(tree, "getroot") else tree
    found: list[str | None] = []
    for package in root:
        if _local(package.tag) not in ("KeyPackage", "Device"):
            continue
        for key in package:
            if _local(key.tag) != "Key":
                continue
            value = None
            for parameters in key:
                if _local(parameters.tag) == "AlgorithmParameters":
                    for suite in parameters:
                        if _local(suite.tag) == "Suite" and suite.get("hashalgo"):
                            value = suite.get("hashalgo")
            found.append(value)
    return found


def _kind_of(uri: str) -> tuple[TokenKind | None, str | None]:
    """(kind, None) for HOTP/TOTP URIs, else (None, a name for the unsupported kind)."""
    lowered = uri.strip().lower()
    kind = PSKC_KINDS.get(lowered)
    if kind is not None:
        return kind, None
    for fragment, label in _UNSUPPORTED_KINDS:
        if fragment in lowered:
            return None, label
    for suffix, label in _UNSUPPORTED_SUFFIXES:
        if lowered.endswith(suffix):
            return None, label
    return None, f"unknown algorithm {quote(uri)}"


def _keys(container: pskc.PSKC) -> list[tuple[str, Any]]:
    """Every Key with its place ("key package N", "key package N, key M")."""
    out: list[tuple[str, Any]] = []
    for number, device in enumerate(container.devices, start=1):
        keys = device.keys
        for index, key in enumerate(keys, start=1):
            out.append((f"key package {number}" + (f", key {index}" if len(keys) > 1 else ""), key))
    return out


def _who(key: Any) -> str:
    serial = key.serial if isinstance(key.serial, str) and key.serial.strip() else None
    ident = key.id if isinstance(key.id, str) and key.id.strip() else None
    parts = ([f"serial {serial.strip()}"] if serial else []) + ([f"Key Id {ident.strip()}"] if ident else [])
    return f" ({', '.join(parts)})" if parts else ""


def _check_protection(container: pskc.PSKC, keys: list[tuple[str, Any]], name: str) -> None:
    """Refuse secrets vtoken cannot decrypt whatever it is given, naming why."""
    for where, key in keys:
        raw = _raw_field(key, "secret")
        if isinstance(raw, EncryptedValue):
            method = (raw.algorithm or container.encryption.algorithm or "").lower()
            if "rsa" in method:
                fail(name, where + _who(key),
                     f"the secret is encrypted to an RSA certificate ({method.rsplit('#', 1)[-1]}): vtoken imports "
                     "files protected by a pre-shared key or a password; ask the sender for one of those")
        elif raw is None and getattr(key, "key_reference", None):
            fail(name, where + _who(key),
                 "the secret is not in the file: the Key refers to a key held elsewhere (KeyReference), "
                 "which vtoken cannot import")


def _check_pbkdf2(container: pskc.PSKC, name: str) -> None:
    """Refuse a key derivation whose work exceeds :data:`MAX_PBKDF2_WORK`, before any of it is done.

    PBKDF2 costs IterationCount HMAC computations per hash block of the derived
    key (ceil(KeyLength / digest size)), all paid before the password or a MAC
    can be checked; KeyLength must also be a length the file's cipher uses.
    """
    encryption = container.encryption
    derivation = encryption.derivation
    iterations, key_length = derivation.pbkdf2_iterations, derivation.pbkdf2_key_length
    if iterations is not None:
        if iterations < 1:
            fail(name, None, f"PBKDF2 iteration count {iterations} must be at least 1")
        if iterations > MAX_PBKDF2_ITERATIONS:
            fail(name, None, f"PBKDF2 iteration count {iterations} exceeds the limit of {MAX_PBKDF2_ITERATIONS}")
    prf_uri = derivation.pbkdf2_prf
    prf = _PBKDF2_DEFAULT_PRF
    if prf_uri:
        match = _PRF_RE.search(prf_uri)
        prf = match.group("hash") if match else ""
    digest_bytes = PBKDF2_PRF_DIGEST_BYTES.get(prf)
    if digest_bytes is None:
        fail(name, None, f"PBKDF2 pseudo-random function {quote(prf_uri)} is not supported; use HMAC-SHA1, "
                         "HMAC-SHA224, HMAC-SHA256, HMAC-SHA384 or HMAC-SHA512")
    if key_length is not None:
        if not 1 <= key_length <= MAX_PBKDF2_KEY_BYTES:
            fail(name, None, f"PBKDF2 KeyLength {key_length} is not a key length any PSKC cipher uses "
                             f"(at most {MAX_PBKDF2_KEY_BYTES} bytes)")
        try:
            lengths: list[int] = list(algorithm_key_lengths(encryption.algorithm))
        except DecryptionError:
            lengths = []  # no or an unknown cipher: refused with its own message when decrypting
        if lengths and key_length not in lengths:
            fail(name, None, f"PBKDF2 KeyLength {key_length} does not fit the encryption method "
                             f"({(encryption.algorithm or '').rsplit('#', 1)[-1]} takes "
                             f"{' or '.join(map(str, lengths))}-byte keys)")
    if iterations is not None and key_length is not None:
        work = iterations * -(-key_length // digest_bytes)
        if work > MAX_PBKDF2_WORK:
            fail(name, None, f"PBKDF2 work of {iterations} iterations x {-(-key_length // digest_bytes)} block(s) "
                             f"({work}) exceeds the limit of {MAX_PBKDF2_WORK} block-iterations")


def _setup_decryption(container: pskc.PSKC, name: str, psk: bytes | None, password: str | None) -> None:
    encryption = container.encryption
    derivation = encryption.derivation
    encrypted = any(
        isinstance(_raw_field(key, field), EncryptedValue) for key in container.keys for field in _ENCRYPTED_FIELDS
    )
    if password is not None:
        if not isinstance(password, str) or not password:
            fail(name, None, "the password must be a non-empty string")
        if derivation.algorithm is None:
            fail(name, None, "a password was given but the file is not password-protected (no KeyDerivation)")
        _check_pbkdf2(container, name)
        try:
            encryption.derive_key(password)
        except (KeyDerivationError, ValueError, TypeError) as exc:
            fail(name, None, f"cannot derive the decryption key from the password: {_describe(exc)}")
    elif psk is not None:
        if not isinstance(psk, (bytes, bytearray, memoryview)):
            fail(name, None, f"the pre-shared key must be bytes, not {type(psk).__name__}")
        if derivation.algorithm is not None:
            fail(name, None, "the file is password-protected (PBKDF2): give the password, not a pre-shared key")
        encryption.key = bytes(psk)
    elif encrypted:
        if derivation.algorithm is not None:
            fail(name, None, "the file is password-protected (PBKDF2): give its password")
        key_name = encryption.key_name
        fail(name, None, "the file is encrypted with a pre-shared key"
                         + (f" named {quote(key_name)}" if key_name else "") + ": give it")


def _verify_value_mac(container: pskc.PSKC, value: EncryptedValue, name: str, where: str, label: str,
                      notes: list[str]) -> None:
    """Check the ValueMAC of a CBC-encrypted value in constant time: over the ciphertext, else the plaintext."""
    algorithm = value.algorithm or container.encryption.algorithm or ""
    if not algorithm.lower().endswith("-cbc"):
        return  # key-wrap algorithms carry their own integrity check, verified when decrypting
    if not value.mac_value:
        if container.mac.algorithm is None and getattr(container.mac, "_key", None) is None:
            note = ("the file has no MACMethod (a pre-RFC 6030 draft form): its encrypted values are not "
                    "authenticated, so an altered file would import wrong seeds")
            if note not in notes:
                notes.append(note)
            return
        fail(name, where, f"{label} is CBC-encrypted without a ValueMAC although the file has a MACMethod; "
                          "refusing unauthenticated data")
    if container.mac.algorithm is None:
        fail(name, where, f"{label} has a ValueMAC but the file has no MACMethod to check it with")
    try:
        over_ciphertext = container.mac.generate_mac(value.cipher_value)
    except DecryptionError as exc:
        if str(exc).startswith("Unsupported"):
            fail(name, where, f"cannot check the ValueMAC of {label}: {_describe(exc)}")
        fail(name, where, f"the pre-shared key or password is wrong: the MAC key does not decrypt ({_describe(exc)})")
    except (PSKCError, ValueError, TypeError, AssertionError) as exc:
        fail(name, where, f"cannot check the ValueMAC of {label}: {_describe(exc)}")
    if hmac.compare_digest(over_ciphertext, value.mac_value):
        return
    try:
        plaintext: bytes | None = container.encryption.decrypt_value(value.cipher_value, value.algorithm)
    except (DecryptionError, ValueError):
        plaintext = None  # altered ciphertext (or a wrong key without a MAC key to tell): not a plaintext MAC
    if plaintext is not None and hmac.compare_digest(container.mac.generate_mac(plaintext), value.mac_value):
        notes.append(f"{where}: the ValueMAC of {label} is computed over the plaintext (the pre-RFC 6030 form "
                     "older drafts and ActivIdentity write), not the ciphertext; it matches")
        return
    if isinstance(getattr(container.mac, "_key", None), EncryptedValue):
        fail(name, where, f"the ValueMAC of {label} does not match over the ciphertext or the plaintext: the file "
                          "was altered after it was written (its MAC key decrypts, so the key or password is right)")
    fail(name, where, f"the ValueMAC of {label} does not match: the file was altered after it was written, "
                      "or the pre-shared key or password is wrong (the file has no MAC key to tell which)")


def _field(container: pskc.PSKC, key: Any, field: str, label: str, name: str, where: str, notes: list[str]) -> Any:
    """A Data value, MAC-checked and decrypted if it is encrypted."""
    raw = _raw_field(key, field)
    if isinstance(raw, EncryptedValue):
        if container.encryption.key is None:
            fail(name, where, f"{label} is encrypted: give the pre-shared key or the password")
        _verify_value_mac(container, raw, name, where, label, notes)
    try:
        return getattr(key, field)
    except DecryptionError as exc:
        text = str(exc)
        if text.startswith("No algorithm"):
            fail(name, where, f"{label} is encrypted but the file does not name the encryption method")
        if text.startswith("Unsupported algorithm"):
            fail(name, where, f"{label} is encrypted with a method vtoken cannot decrypt ({_describe(exc)})")
        fail(name, where, f"cannot decrypt {label} ({_describe(exc)}): the pre-shared key or password is probably wrong")
    except Exception as exc:  # noqa: BLE001 - python-pskc decoding errors of any kind
        fail(name, where, f"cannot read {label}: {_describe(exc)}")


def _int_field(value: object, label: str, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(name, where, f"{label} must be an integer")
    if abs(value) > INT64_MAX:
        fail(name, where, f"{label} is out of range (more than {len(str(INT64_MAX))} digits)")
    return int(value)


def _hash(key: Any, hashalgo: str | None, name: str, where: str) -> Algorithm:
    suite = key.algorithm_suite
    from_text = hash_name(suite, name, where, "algorithm suite") if suite and suite.strip() else None
    from_attribute = hash_name(hashalgo, name, where, "Suite hashalgo") if hashalgo else None
    if from_text and from_attribute and from_text is not from_attribute:
        fail(name, where, f"the Suite says {quote(suite)} but its hashalgo attribute says {quote(hashalgo)}")
    return from_text or from_attribute or Algorithm.SHA1  # RFC 4226/6238 default


def _check_policy(key: Any, name: str, where: str, now_ns: int | None) -> None:
    policy = key.policy
    if policy.unknown_policy_elements:
        fail(name, where, "the key's Policy has elements vtoken does not understand (RFC 6030 §5: do not use it)")
    if policy.key_usage and "OTP" not in policy.key_usage:
        usages = ", ".join(quote(usage) if isinstance(usage, str) else "(empty)" for usage in policy.key_usage)
        fail(name, where, f"the key's Policy does not allow OTP use (KeyUsage {usages})")
    mode = getattr(policy, "pin_usage", None)
    if isinstance(mode, str) and mode.strip().lower() not in _LOCAL_PIN_MODES:
        fail(name, where, f"the key's PINPolicy (PINUsageMode {quote(mode)}) needs the server to check a PIN, "
                          "which vtoken does not do")
    expiry = policy.expiry_date
    if now_ns is not None and isinstance(expiry, _dt.datetime):
        when = expiry if expiry.tzinfo else expiry.replace(tzinfo=_dt.timezone.utc)
        if when.timestamp() * NS_PER_SECOND <= now_ns:
            fail(name, where, f"the key expired on {when.date().isoformat()} (Policy ExpiryDate); "
                              "the vendor's file says it must no longer be used")


def _token(container: pskc.PSKC, key: Any, kind: TokenKind, hashalgo: str | None, name: str, where: str, *,
           require_encrypted: bool, now_ns: int | None, notes: list[str]) -> tuple[TokenParams, Any]:
    label = "serial number (DeviceInfo/SerialNo, or the Key Id)"
    text = key.serial if isinstance(key.serial, str) and key.serial.strip() else key.id
    serial, has_check_digit = check_serial_text(text, name, where, label)
    where = f"{where} (serial {serial})"
    algorithm = _hash(key, hashalgo, name, where)

    if key.challenge_encoding is not None:
        fail(name, where, "challenge-response keys are not supported")
    encoding = key.response_encoding
    if encoding is not None and encoding.strip().upper() != _DECIMAL:
        fail(name, where, f"ResponseFormat Encoding {quote(encoding)} is not supported; codes must be DECIMAL")
    if key.response_check:
        fail(name, where, "ResponseFormat CheckDigits (Luhn) is not supported")
    try:
        digits = check_digits(DEFAULT_DIGITS if key.response_length is None else key.response_length)
    except InvalidInputError as exc:
        fail(name, where, f"ResponseFormat Length: {exc}")
    _check_policy(key, name, where, now_ns)

    if require_encrypted and not isinstance(_raw_field(key, "secret"), EncryptedValue):
        fail(name, where, "the secret is not encrypted although a pre-shared key or password was given")
    seed = check_seed(_field(container, key, "secret", "the secret", name, where, notes), name, where)

    period, t0, counter, drift = DEFAULT_PERIOD, 0, 0, 0
    if kind is TokenKind.TOTP:
        interval = _field(container, key, "time_interval", "TimeInterval", name, where, notes)
        if interval is not None:
            period = _int_field(interval, "TimeInterval", name, where)
            if not 1 <= period <= MAX_PERIOD:
                fail(name, where, f"TimeInterval must be 1 to {MAX_PERIOD} seconds, not {period}")
        # RFC 6030 §4.3.4 (Data/Time): "If time intervals are used, this element carries the number of time
        # intervals passed from a specific start point, normally it is algorithm dependent." We read it as the
        # start point T0 counted in intervals, so T0 = Time × TimeInterval seconds: this is what
        # firmware_sim.fleet writes (t0 // period), and vendor files write 0 (T0 = the Unix epoch) under
        # either reading.
        offset = _field(container, key, "time_offset", "Time", name, where, notes)
        if offset is not None:
            t0 = _int_field(offset, "Time", name, where) * period
            if t0 < 0:
                fail(name, where, "Time must not be negative")
            if t0 > INT64_MAX:
                fail(name, where, "Time is out of range")
        # RFC 6030 §4.3.4 (Data/TimeDrift): intervals, device minus server ("device at 8, server at 9 →
        # record -1"); TokenParams.drift_steps uses the same sign.
        time_drift = _field(container, key, "time_drift", "TimeDrift", name, where, notes)
        if time_drift is not None:
            drift = _int_field(time_drift, "TimeDrift", name, where)
    else:
        raw_counter = _field(container, key, "counter", "Counter", name, where, notes)
        if raw_counter is not None:
            counter = _int_field(raw_counter, "Counter", name, where)
            try:
                check_counter(counter)
            except InvalidInputError as exc:
                fail(name, where, f"Counter: {exc}")

    params = TokenParams(
        serial=serial, kind=kind, algorithm=algorithm, digits=digits, period=period, t0=t0,
        counter=counter, drift_steps=drift, has_check_digit=has_check_digit,
    )
    return params, seed


def read_pskc_data(
    data: bytes,
    name: str,
    *,
    psk: bytes | None = None,
    password: str | None = None,
    certificate: str | None = None,
    ignore_signature: bool = False,
    skip_unsupported: bool = False,
    now_ns: int | None = None,
) -> Reading:
    """Every HOTP/TOTP token of a PSKC document, with notes and the keys skipped; all or nothing.

    ``certificate`` is the PEM text of the signer's certificate. ``now_ns``
    (when given) refuses keys past their Policy ExpiryDate. Raises
    :class:`~vtoken.errors.ImportFailedError`.
    """
    if psk is not None and password is not None:
        fail(name, None, "give a pre-shared key or a password, not both")
    reading = Reading()
    with _quiet_ciphers():
        body = _document(data, name)
        _prescan(body, name)
        container = _verify_signature(_parse(body, name), name, certificate, ignore_signature, reading.notes)
        keys = _keys(container)
        if not keys:
            fail(name, None, "the file holds no key packages")
        hashalgos = _hashalgo_attributes(container)
        if len(hashalgos) != len(keys):
            hashalgos = [None] * len(keys)
        wanted: list[tuple[str, Any, TokenKind, str | None]] = []
        unsupported: list[str] = []
        for (where, key), hashalgo in zip(keys, hashalgos):
            uri = (key.algorithm or "").strip()
            if not uri:
                fail(name, where + _who(key), "the Key has no Algorithm, so it is neither HOTP nor TOTP")
            kind, other = _kind_of(uri)
            if kind is None:
                unsupported.append(f"{where}{_who(key)}: {other}")
            else:
                wanted.append((where, key, kind, hashalgo))
        if unsupported and not skip_unsupported:
            fail(name, None, "the file holds keys of kinds vtoken does not validate: " + "; ".join(unsupported)
                 + " (--skip-unsupported imports the HOTP and TOTP keys alone)")
        reading.skipped.extend(unsupported)
        if not wanted:
            fail(name, None, "the file holds no HOTP or TOTP keys (skipped: " + "; ".join(unsupported) + ")")
        _check_protection(container, [(where, key) for where, key, _, _ in wanted], name)
        _setup_decryption(container, name, psk, password)
        require_encrypted = psk is not None or password is not None
        found = []
        for where, key, kind, hashalgo in wanted:
            token = _token(container, key, kind, hashalgo, name, where, require_encrypted=require_encrypted,
                           now_ns=now_ns, notes=reading.notes)
            found.append((token, where))
    check_unique(found, name)
    reading.tokens = [token for token, _ in found]
    return reading
