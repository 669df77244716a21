"""Fuzzing the seed-file importer (PSKC, OATH CSV, otpauth), beside the wire decoder's fuzz tests.

Structured mutations of valid documents (a field replaced by a hostile value,
an element or line repeated or dropped, a namespace swapped) and byte-level
mutations (flips, inserts, deletes, truncation), plus random bytes in every
format. The only outcomes allowed: the import succeeds, or it raises
:class:`~vtoken.errors.ImportFailedError` with the store unchanged and no seed
in the message. Any other exception, a crash or a hang fails the run. The
bounds (``max_examples``, the sizes drawn) keep the whole file to a few
seconds in the default suite; ``VTOKEN_FUZZ_EXAMPLES`` raises the count for a
longer run.
"""

from __future__ import annotations

import base64
import io
import os
import re

import pskc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mutation import mutate, mutations
from validator.importbase import QUOTE_SERIAL_MAX
from validator.importer import FORMATS, ImportOptions, import_data
from validator.memstore import MemoryStore
from validator.records import TokenParams
from validator.sealing import Keyring, MasterKey, seal
from vtoken.errors import ImportFailedError
from vtoken.oath import TokenKind

#: Examples per fuzz test (each is one import of a document of at most a few KiB).
EXAMPLES = int(os.environ.get("VTOKEN_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYRING = Keyring(MasterKey(b"\x5a" * 32))
#: Seeds that are easy to spot in any message they might leak into.
SEEDS = (b"FUZZ-SEED-A-0123456789", b"FUZZ-SEED-B-9876543210", b"FUZZ-SEED-C-ABCDEFGHIJ")
PSK = bytes(range(16))
PASSWORD = "fuzz-password"
PRESENT = "0000005724"
PSKC_NS = "urn:ietf:params:xml:ns:keyprov:pskc"

#: Values a hostile producer writes into a field: huge, negative, empty, not numbers, markup, other scripts.
HOSTILE_VALUES = (
    "", " ", "0", "-1", "1", "6", "8", "11", "4000001", "9" * 25, "9" * 5000, "-" + "9" * 30, "0x10", "1e3",
    "TWELVE", "true", "&amp;", "&#0;", "&#x41;", "<![CDATA[7]]>", "\u00e9\u4e2d", "sha1", "SHA-256", "md5",
    "totp", "hotp", "ocra", "urn:example:other", base64.b64encode(b"x" * 200).decode(), "====", "A" * 300,
    "<a>" * 40 + "</a>" * 40, "<Extra/>", "\t\n", "otpauth://totp/x?secret=AAAA",
)


def _b64(seed: bytes) -> str:
    return base64.b64encode(seed).decode()


def _plain_pskc() -> str:
    packages = []
    for index, (seed, kind) in enumerate(zip(SEEDS, ("hotp", "totp", "totp")), start=1):
        data = ("<Counter><PlainValue>5</PlainValue></Counter>" if kind == "hotp" else
                "<Time><PlainValue>0</PlainValue></Time><TimeInterval><PlainValue>30</PlainValue></TimeInterval>"
                "<TimeDrift><PlainValue>-1</PlainValue></TimeDrift>")
        packages.append(
            f"<KeyPackage><DeviceInfo><Manufacturer>Fuzz</Manufacturer><SerialNo>FZ{index:04d}</SerialNo>"
            f'</DeviceInfo><Key Id="FZ{index:04d}" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:{kind}">'
            f'<AlgorithmParameters><Suite>HMAC-SHA1</Suite><ResponseFormat Length="6" Encoding="DECIMAL"/>'
            f"</AlgorithmParameters><Data><Secret><PlainValue>{_b64(seed)}</PlainValue></Secret>{data}</Data>"
            "<Policy><KeyUsage>OTP</KeyUsage></Policy></Key></KeyPackage>"
        )
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<KeyContainer Version="1.0" xmlns="{PSKC_NS}">'
            + "".join(packages) + "</KeyContainer>\n")


def _encrypted_pskc(**protection: object) -> str:
    container = pskc.PSKC()
    for index, seed in enumerate(SEEDS[:2], start=1):
        container.add_key(id=f"FE{index:04d}", serial=f"FE{index:04d}", secret=seed, counter=3,
                          algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp", response_length=6,
                          response_encoding="DECIMAL")
    if "psk" in protection:
        container.encryption.setup_preshared_key(key=PSK, key_name="Fuzz-PSK")
    else:
        container.encryption.setup_pbkdf2(PASSWORD, iterations=1000)
    out = io.BytesIO()
    container.write(out)
    return out.getvalue().decode()


PSKC_PLAIN = _plain_pskc()
PSKC_PSK = _encrypted_pskc(psk=True)
PSKC_PASSWORD = _encrypted_pskc(password=True)
CSV_HEADER = ("serial,seed,type,digits,period,counter,hash\n"
              f"FC0001,{SEEDS[0].hex()},totp,6,30,,sha1\n"
              f"FC0002,{SEEDS[1].hex()},hotp,8,,7,SHA-256\n")
CSV_OATH = (f"# privacyIDEA / LinOTP form\nFO0001, {SEEDS[0].hex()}, totp, 6, 30, sha1\n"
            f"FO0002, {SEEDS[2].hex()}\nFO0003, {SEEDS[1].hex()}, hotp, 8, 12\n")
OTPAUTH = "\n".join(
    f"otpauth://totp/Fuzz:FU{index:04d}?secret={base64.b32encode(seed).decode().rstrip('=')}&issuer=Fuzz&digits=6"
    for index, seed in enumerate(SEEDS, start=1)
) + "\n"

#: (document, format, options) the structured mutations start from.
TEMPLATES = (
    (PSKC_PLAIN, "pskc", ImportOptions()),
    (PSKC_PSK, "pskc", ImportOptions(psk=PSK)),
    (PSKC_PASSWORD, "pskc", ImportOptions(password=PASSWORD)),
    (CSV_HEADER, "csv", ImportOptions()),
    (CSV_OATH, "csv", ImportOptions()),
    (OTPAUTH, "otpauth", ImportOptions()),
)


#: A message showing this many consecutive characters of a seed's text (hex, base32, base64, raw) leaks it:
#: one more than the longest value of a field that may hold a misplaced seed that a message repeats
#: (:data:`~validator.importbase.QUOTE_SERIAL_MAX`; other fields repeat at most
#: :data:`~validator.importbase.QUOTE_FIELD_MAX`).
LEAK_WINDOW = QUOTE_SERIAL_MAX + 1


def _seed_pieces() -> frozenset[str]:
    """Every run of :data:`LEAK_WINDOW` characters of every written form of every seed."""
    pieces: set[str] = set()
    for seed in SEEDS:
        for form in (seed.decode(), seed.hex(), seed.hex().upper(), _b64(seed), base64.b32encode(seed).decode()):
            pieces.update(form[i : i + LEAK_WINDOW] for i in range(len(form) - LEAK_WINDOW + 1))
    return frozenset(pieces)


SEED_PIECES = _seed_pieces()


def _fresh_store() -> MemoryStore:
    store = MemoryStore()
    params = TokenParams(serial=PRESENT, kind=TokenKind.TOTP, has_check_digit=True)
    store.add_tokens([(params, seal(KEYRING, PRESENT, b"present-seed"))], at_ns=1, detail="fixture")
    return store


def _snapshot(store: MemoryStore) -> tuple[object, ...]:
    return store.list_tokens(), store.events(), store.sealed_key_ids()


def attempt(data: bytes, fmt: str, options: ImportOptions) -> None:
    """Import ``data``: it must succeed, or fail with ImportFailedError, the store unchanged, no seed shown."""
    store = _fresh_store()
    before = _snapshot(store)
    try:
        serials = import_data(store, KEYRING, data, name="fuzzed", fmt=fmt, options=options)
    except ImportFailedError as exc:
        assert _snapshot(store) == before
        text = str(exc) + repr(exc)
        leaked = [piece for piece in SEED_PIECES if piece in text]
        assert not leaked, f"seed shown in {text!r}"
        return
    assert serials and len(store.list_tokens()) == 1 + len(serials)


# --- mutations ------------------------------------------------------------------------------------------

_BYTE_MUTATIONS = mutations(100_000)


_XML_TEXT = re.compile(r">([^<>]+)<")
_XML_ATTRIBUTE = re.compile(r'(\w+="[^"]*")')
_XML_ELEMENT = re.compile(r"<(\w+:)?(KeyPackage|Key|Data|Secret|Counter|Time|TimeInterval|TimeDrift|ResponseFormat|"
                          r"AlgorithmParameters|DeviceInfo|SerialNo|Suite|Policy|EncryptionKey|MACMethod|"
                          r"IterationCount|KeyLength|Salt|CipherValue|ValueMAC)\b[^>]*?(/>|>.*?</\1?\2>)", re.DOTALL)


def _structured(text: str, fmt: str, choice: int, where: int, value: str) -> str:
    """One structural change to ``text``: a field's value replaced, a part repeated or dropped."""
    if fmt == "pskc":
        action = choice % 5
        if action == 0:  # an element's text
            spots = list(_XML_TEXT.finditer(text))
            if spots:
                spot = spots[where % len(spots)]
                return text[: spot.start(1)] + value + text[spot.end(1):]
        elif action == 1:  # an attribute's value
            spots = list(_XML_ATTRIBUTE.finditer(text))
            if spots:
                spot = spots[where % len(spots)]
                name = spot.group(1).split("=", 1)[0]
                return text[: spot.start(1)] + f'{name}="{value.replace(chr(34), "")}"' + text[spot.end(1):]
        elif action in (2, 3):  # an element repeated or dropped
            spots = list(_XML_ELEMENT.finditer(text))
            if spots:
                spot = spots[where % len(spots)]
                piece = spot.group(0)
                return text[: spot.start()] + (piece * 2 if action == 2 else "") + text[spot.end():]
        else:  # the root's namespace
            return text.replace(PSKC_NS, value or "urn:example:other", 1)
        return text
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    index = where % len(lines)
    action = choice % 5
    if action == 0:  # one field of a line
        cells = lines[index].rstrip("\n").split(",")
        cells[(where // max(1, len(lines))) % len(cells)] = value
        lines[index] = ",".join(cells) + "\n"
    elif action == 4:  # two fields swapped: a file with its columns out of order (the seed may land anywhere)
        cells = lines[index].rstrip("\n").split(",")
        first, second = (where // max(1, len(lines))) % len(cells), choice % len(cells)
        cells[first], cells[second] = cells[second], cells[first]
        lines[index] = ",".join(cells) + "\n"
    elif action == 1:
        lines.insert(index, lines[index])
    elif action == 2:
        del lines[index]
    else:
        lines[index] = value + "\n"
    return "".join(lines)


# --- the fuzz tests ---------------------------------------------------------------------------------------


@FUZZ
@given(st.sampled_from(TEMPLATES), st.lists(st.tuples(st.integers(0, 99), st.integers(0, 10_000),
                                                      st.sampled_from(HOSTILE_VALUES)), min_size=1, max_size=3))
def test_structured_mutations_import_or_fail_cleanly(template: tuple[str, str, ImportOptions],
                                                    changes: list[tuple[int, int, str]]) -> None:
    text, fmt, options = template
    for choice, where, value in changes:
        text = _structured(text, fmt, choice, where, value)
    attempt(text.encode("utf-8"), fmt, options)


@FUZZ
@given(st.sampled_from(TEMPLATES), _BYTE_MUTATIONS, st.sampled_from(FORMATS))
def test_byte_mutations_import_or_fail_cleanly(template: tuple[str, str, ImportOptions],
                                               mutations: list[tuple[str, int, int]], fmt: str) -> None:
    text, own_format, options = template
    fmt = own_format if fmt == "auto" else fmt
    if fmt != "pskc":
        options = ImportOptions()  # CSV and otpauth files take no key
    attempt(mutate(text.encode(), mutations), fmt, options)


@FUZZ
@given(st.one_of(st.binary(max_size=2000), st.text(max_size=600).map(lambda t: t.encode("utf-8", "surrogatepass"))),
       st.sampled_from(FORMATS))
def test_random_bytes_fail_cleanly(data: bytes, fmt: str) -> None:
    attempt(data, fmt, ImportOptions())


def test_the_templates_import() -> None:
    """The starting points are valid: the fuzzing explores around documents that import."""
    for text, fmt, options in TEMPLATES:
        store = _fresh_store()
        assert import_data(store, KEYRING, text.encode(), name="template", fmt=fmt, options=options)
