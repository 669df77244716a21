"""Hostile seed files (issue 15): each attack reproduced, each refused before its work starts.

Every refusal is an :class:`~vtoken.errors.ImportFailedError` naming the file
and the cause, with the store unchanged and no seed in the message. Attacks
that once crashed or hung the process (150,000 nested elements, a FIFO in
place of a file) run in a subprocess with a timeout, so a regression fails the
test instead of taking pytest down with it.
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pskc
import pytest

import validator.pskcfile as pskcfile_module
from validator.importbase import (
    MAX_INT_CIPHER_CHARS,
    MAX_INT_DIGITS,
    MAX_PBKDF2_ITERATIONS,
    MAX_PBKDF2_WORK,
    MAX_XML_DEPTH,
    MAX_XML_ELEMENTS,
)
from validator.importer import import_data, import_file, read_pskc
from validator.kernel import Backend
from validator.records import TokenParams
from validator.sealing import Keyring, MasterKey, seal
from validator.store import SQLiteStore
from vtoken.errors import ImportFailedError, InvalidCounterError
from vtoken.oath import TokenKind

ROOT = Path(__file__).resolve().parents[1]
PSKC_NS = "urn:ietf:params:xml:ns:keyprov:pskc"
HOTP_URI = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
TOTP_URI = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
SEED = b"HOSTILE-SEED-01234567"
SEED_FORMS = (SEED.decode(), SEED.hex(), base64.b64encode(SEED).decode())
PASSWORD = "hostile-password"
PRESENT = "0000005724"
#: Hostile files must be refused in well under this (the import of a sane file takes milliseconds).
FAST_S = 5.0
#: A subprocess that has not answered in this long is hanging (a blocked open, a runaway derivation).
SUBPROCESS_TIMEOUT_S = 60
NINES = "9" * 5000


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(MasterKey(b"\x17" * 32))


@pytest.fixture
def store(tmp_path: Path, keyring: Keyring) -> SQLiteStore:
    with SQLiteStore(tmp_path / "hostile.db") as s:
        params = TokenParams(serial=PRESENT, kind=TokenKind.TOTP, has_check_digit=True)
        s.add_tokens([(params, seal(keyring, PRESENT, b"present-seed"))], at_ns=1, detail="fixture")
        yield s


def state(store: SQLiteStore) -> tuple:
    return store.list_tokens(), store.events()


def key_package(*, algorithm: str = HOTP_URI, length: str = "6", data: str = "", serial: str = "HOSTILE1",
                extra: str = "") -> str:
    return (
        f"<KeyPackage><DeviceInfo><SerialNo>{serial}</SerialNo></DeviceInfo>"
        f'<Key Id="{serial}" Algorithm="{algorithm}"><AlgorithmParameters>'
        f'<ResponseFormat Length="{length}" Encoding="DECIMAL"/></AlgorithmParameters>'
        f"<Data><Secret><PlainValue>{base64.b64encode(SEED).decode()}</PlainValue></Secret>{data}</Data></Key>"
        f"{extra}</KeyPackage>"
    )


def document(*packages: str, root: str = f'KeyContainer Version="1.0" xmlns="{PSKC_NS}"', close: str = "KeyContainer",
             inner: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<{root}>{inner}{"".join(packages)}</{close}>\n').encode()


def refused(store: SQLiteStore, keyring: Keyring, data: bytes, match: str, tmp_path: Path, **kwargs: object
            ) -> ImportFailedError:
    """Import ``data`` from a file; expect a quick ImportFailedError matching ``match`` and an unchanged store."""
    path = tmp_path / "hostile.pskcxml"
    path.write_bytes(data)
    before = state(store)
    started = time.perf_counter()
    with pytest.raises(ImportFailedError, match=match) as info:
        import_file(store, keyring, path, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert elapsed < FAST_S, f"refused only after {elapsed:.1f} s"
    assert state(store) == before
    text = str(info.value) + repr(info.value)
    assert str(path) in text
    assert not any(form in text for form in SEED_FORMS)
    return info.value


def imports(store: SQLiteStore, keyring: Keyring, data: bytes, tmp_path: Path, **kwargs: object) -> list[str]:
    path = tmp_path / "fine.pskcxml"
    path.write_bytes(data)
    return list(import_file(store, keyring, path, **kwargs).serials)  # type: ignore[arg-type]


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)


# --- 1. nesting depth and element count -------------------------------------------------------------

_DEEP_IMPORT = """
import sys
if sys.argv[1] == "etree":  # python-pskc's fallback parser when lxml is missing: recursion in C
    sys.modules["lxml"] = None
    sys.modules["lxml.etree"] = None
from validator.importer import read_pskc
from vtoken.errors import ImportFailedError
depth = int(sys.argv[2])
doc = (b'<?xml version="1.0"?><KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc">'
       + b"<a>" * depth + b"</a>" * depth + b"</KeyContainer>")
try:
    read_pskc(doc, name="deep.pskcxml")
except ImportFailedError as exc:
    print("refused:", exc)
"""


@pytest.mark.parametrize("parser", ["lxml", "etree"])
def test_150000_nested_elements_are_refused_without_a_crash(parser: str) -> None:
    """The 1 MB file that crashed the importer with SIGSEGV (python-pskc deep-copies the tree recursively)."""
    done = run_python(_DEEP_IMPORT, parser, "150000")
    assert done.returncode == 0, f"exit {done.returncode} (a negative code is a signal): {done.stderr[-2000:]}"
    assert f"nested more than {MAX_XML_DEPTH} deep" in done.stdout
    assert "Traceback" not in done.stderr


def _nested(depth: int) -> bytes:
    """A valid file whose deepest element is at ``depth`` (KeyContainer is 1, KeyPackage 2, then a chain)."""
    chain = depth - 2
    return document(key_package(extra="<Ext>" * chain + "</Ext>" * chain))


def test_nesting_at_the_limit_imports_and_one_more_is_refused(store: SQLiteStore, keyring: Keyring,
                                                              tmp_path: Path) -> None:
    refused(store, keyring, _nested(MAX_XML_DEPTH + 1), f"line 2: elements are nested more than {MAX_XML_DEPTH} deep",
            tmp_path)
    assert imports(store, keyring, _nested(MAX_XML_DEPTH), tmp_path) == ["HOSTILE1"]


def test_too_many_elements_are_refused_before_parsing(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    flood = document(key_package(), inner="<a/>" * MAX_XML_ELEMENTS)
    refused(store, keyring, flood, f"more than {MAX_XML_ELEMENTS} elements", tmp_path)


def test_element_count_at_the_limit_imports(store: SQLiteStore, keyring: Keyring, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = document(key_package())
    elements = data.count(b"<") - data.count(b"</") - data.count(b"<?")  # every start tag (one is self-closing)
    monkeypatch.setattr(pskcfile_module, "MAX_XML_ELEMENTS", elements - 1)
    refused(store, keyring, data, f"more than {elements - 1} elements", tmp_path)
    monkeypatch.setattr(pskcfile_module, "MAX_XML_ELEMENTS", elements)
    assert imports(store, keyring, data, tmp_path) == ["HOSTILE1"]


def test_malformed_xml_is_reported_with_the_parser_position(store: SQLiteStore, keyring: Keyring,
                                                            tmp_path: Path) -> None:
    refused(store, keyring, b"<?xml version='1.0'?>\n<KeyContainer>\n</Other>\n", r"line 3, column \d+: malformed XML",
            tmp_path)
    refused(store, keyring, document(key_package())[:-30], "malformed XML", tmp_path)


# --- 2. PBKDF2 work -------------------------------------------------------------------------------------


def password_file(*, algorithm: str = "aes128-cbc", iterations: int = 1000, key_length: int | None = None,
                  prf: str | None = None) -> str:
    container = pskc.PSKC()
    container.add_key(id="PBE1", serial="PBE1", secret=SEED, algorithm=HOTP_URI, counter=0, response_length=6,
                      response_encoding="DECIMAL")
    container.encryption.setup_pbkdf2(PASSWORD, algorithm=algorithm, iterations=iterations, key_length=key_length,
                                      prf=prf)
    # python-pskc writes the PRF as element text but reads it from the Algorithm attribute (RFC 6030 Figure 7's form)
    return re.sub(r"<PRF>([^<]*)</PRF>", r'<PRF Algorithm="\1"/>', _written(container))


def _written(container: pskc.PSKC) -> str:
    out = io.BytesIO()
    container.write(out)
    return out.getvalue().decode()


def with_derivation(text: str, *, iterations: int | None = None, key_length: int | None = None) -> bytes:
    if iterations is not None:
        text = re.sub(r"<IterationCount>\d+</IterationCount>", f"<IterationCount>{iterations}</IterationCount>", text)
    if key_length is not None:
        text = re.sub(r"<KeyLength>\d+</KeyLength>", f"<KeyLength>{key_length}</KeyLength>", text)
    return text.encode()


_PBKDF2_IMPORT = """
import sys, time
from validator.importer import read_pskc
from vtoken.errors import ImportFailedError
started = time.perf_counter()
try:
    read_pskc(sys.argv[1], password=sys.argv[2])
except ImportFailedError as exc:
    print(f"refused after {time.perf_counter() - started:.3f} s:", exc)
"""
#: A derivation the old code would have run: the import must be refused within this, or it is deriving.
PBKDF2_REFUSAL_S = 10


@pytest.mark.parametrize(
    ("iterations", "key_length", "match"),
    [
        (1_000_000, 2_000_000, "KeyLength 2000000 is not a key length any PSKC cipher uses"),  # 52 CPU minutes before
        (1_000_000, 320, "KeyLength 320 is not a key length"),  # 6.6 s before, under the iteration cap
        (MAX_PBKDF2_ITERATIONS + 1, 16, "iteration count"),
        (10_000_000, 16, "iteration count"),  # the old cap: seconds of work
        (1000, 32, "KeyLength 32 does not fit the encryption method .aes128-cbc takes 16-byte keys"),
        (0, 16, "iteration count 0 must be at least 1"),
        (1000, -1, "KeyLength -1"),
    ],
)
def test_pbkdf2_work_is_bounded_before_deriving(tmp_path: Path, iterations: int, key_length: int, match: str) -> None:
    """In a subprocess with a timeout: a regression would derive for up to 52 CPU minutes, not fail at once."""
    path = tmp_path / "pbe.pskcxml"
    path.write_bytes(with_derivation(password_file(), iterations=iterations, key_length=key_length))
    try:
        done = subprocess.run([sys.executable, "-c", _PBKDF2_IMPORT, str(path), PASSWORD], cwd=ROOT,
                              capture_output=True, text=True, timeout=PBKDF2_REFUSAL_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still deriving after {PBKDF2_REFUSAL_S} s: the PBKDF2 work was not bounded first")
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(match, done.stdout), done.stdout
    assert float(done.stdout.split()[2]) < FAST_S


def test_pbkdf2_refusal_leaves_the_store_unchanged(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    data = with_derivation(password_file(), iterations=1000, key_length=320)
    refused(store, keyring, data, "KeyLength 320", tmp_path, password=PASSWORD)


def test_pbkdf2_work_counts_hash_blocks(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    """AES-256 with HMAC-SHA1 needs two blocks per iteration: half the iterations fit."""
    text = password_file(algorithm="aes256-cbc")
    blocks = 2
    over = MAX_PBKDF2_WORK // blocks + 1
    refused(store, keyring, with_derivation(text, iterations=over), rf"{over} iterations x 2 block\(s\)", tmp_path,
            password=PASSWORD)
    sha512 = password_file(algorithm="aes256-cbc", prf="hmac-sha512")  # one 64-byte block covers a 32-byte key
    assert imports(store, keyring, sha512.encode(), tmp_path, password=PASSWORD) == ["PBE1"]


def test_pbkdf2_work_at_the_limit_imports(store: SQLiteStore, keyring: Keyring, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = password_file(iterations=1000).encode()  # AES-128: 16 bytes, one HMAC-SHA1 block: work 1000
    monkeypatch.setattr(pskcfile_module, "MAX_PBKDF2_WORK", 999)
    refused(store, keyring, data, "exceeds the limit of 999 block-iterations", tmp_path, password=PASSWORD)
    monkeypatch.setattr(pskcfile_module, "MAX_PBKDF2_WORK", 1000)
    assert imports(store, keyring, data, tmp_path, password=PASSWORD) == ["PBE1"]


def test_unknown_pbkdf2_prf_is_refused_before_deriving(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    text = password_file(prf="hmac-sha256").replace("hmac-sha256", "hmac-md5")
    refused(store, keyring, text.encode(), "pseudo-random function .* is not supported", tmp_path, password=PASSWORD)


# --- 3. huge integers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field"), [(TOTP_URI, "TimeInterval"), (HOTP_URI, "Counter"), (TOTP_URI, "Time"),
                                             (TOTP_URI, "TimeDrift")])
def test_huge_integers_name_their_field(store: SQLiteStore, keyring: Keyring, tmp_path: Path, kind: str,
                                        field: str) -> None:
    data = document(key_package(algorithm=kind, data=f"<{field}><PlainValue>{NINES}</PlainValue></{field}>"))
    refused(store, keyring, data, f"{field} is longer than {MAX_INT_DIGITS} characters", tmp_path)


@pytest.mark.parametrize("field", ["Counter", "Time", "TimeInterval"])
def test_huge_integers_in_pre_rfc_data_elements(store: SQLiteStore, keyring: Keyring, tmp_path: Path,
                                                 field: str) -> None:
    name = {"Counter": "COUNTER", "Time": "TIME", "TimeInterval": "TIME_INTERVAL"}[field]
    data = document(key_package()).replace(
        b"</Data>", f'</Data><Data Name="{name}"><Value>{NINES}</Value></Data>'.encode())
    refused(store, keyring, data, f"{field} is longer than {MAX_INT_CIPHER_CHARS} characters", tmp_path)


def test_huge_encrypted_integer_is_refused_before_parsing(store: SQLiteStore, keyring: Keyring,
                                                          tmp_path: Path) -> None:
    """python-pskc turns a decrypted integer into an int in quadratic time: a long CipherValue is refused."""
    cipher = base64.b64encode(os.urandom(3000)).decode()
    counter = ("<Counter><EncryptedValue><EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#aes128-cbc\"/>"
               f"<CipherData><CipherValue>{cipher}</CipherValue></CipherData></EncryptedValue></Counter>")
    refused(store, keyring, document(key_package(data=counter)), "Counter is longer than", tmp_path)


@pytest.mark.parametrize("name", ["IterationCount", "KeyLength"])
def test_huge_integers_in_key_derivation(store: SQLiteStore, keyring: Keyring, tmp_path: Path, name: str) -> None:
    text = password_file()
    data = re.sub(rf"<{name}>\d+</{name}>", f"<{name}>{NINES}</{name}>", text).encode()
    refused(store, keyring, data, f"{name} is longer than {MAX_INT_DIGITS} characters", tmp_path, password=PASSWORD)


def test_huge_integer_attribute_names_it(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    refused(store, keyring, document(key_package(length=NINES)), "ResponseFormat Length is longer than", tmp_path)


def test_integers_at_the_limit_are_read(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    counter = "0" * (MAX_INT_DIGITS - 1) + "7"  # the longest text allowed: a plain number, with leading zeros
    data = document(key_package(data=f"<Counter><PlainValue> {counter} </PlainValue></Counter>"))
    tokens = read_pskc(data, name="limit.pskcxml")
    assert tokens[0][0].counter == 7
    over = document(key_package(data=f"<Counter><PlainValue>0{counter}</PlainValue></Counter>"))
    refused(store, keyring, over, "Counter is longer than", tmp_path)


# --- 5. ResponseFormat Length 0, foreign namespaces --------------------------------------------------------


@pytest.mark.parametrize(("length", "match"), [("0", "Length is 0"), ("", "Length is empty"), ("00", "Length is 0"),
                                               (" ", "Length is empty")])
def test_response_length_zero_or_empty_is_refused(store: SQLiteStore, keyring: Keyring, tmp_path: Path, length: str,
                                                  match: str) -> None:
    """python-pskc reads ``Length="0"`` as absent, which imported the token as 6 digits."""
    refused(store, keyring, document(key_package(length=length)), f"ResponseFormat {match}", tmp_path)


def test_lower_case_length_zero_is_refused_too(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    data = document(key_package()).replace(b'Length="6"', b'length="0"')
    refused(store, keyring, data, "ResponseFormat length is 0", tmp_path)


def test_root_in_a_foreign_namespace_is_refused(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    foreign = document(key_package(), root='KeyContainer Version="1.0" xmlns="urn:example:not-pskc"')
    refused(store, keyring, foreign, "root element <KeyContainer> is in the XML namespace 'urn:example:not-pskc'",
            tmp_path)
    prefixed = document(key_package(), root='x:KeyContainer Version="1.0" xmlns:x="urn:example:not-pskc"',
                        close="x:KeyContainer")
    refused(store, keyring, prefixed, "XML namespace 'urn:example:not-pskc'", tmp_path)
    unbound = document(key_package(), root='x:KeyContainer Version="1.0"', close="x:KeyContainer")
    refused(store, keyring, unbound, "prefix 'x', which is not bound", tmp_path)


@pytest.mark.parametrize(
    "root",
    [
        f'KeyContainer Version="1.0" xmlns="{PSKC_NS}"',
        'KeyContainer Version="1.0"',  # no namespace: Feitian, LinOTP, privacyIDEA
        'KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc:1.0"',  # pre-RFC draft
    ],
    ids=["rfc6030", "none", "draft"],
)
def test_pskc_namespaces_import(store: SQLiteStore, keyring: Keyring, tmp_path: Path, root: str) -> None:
    assert imports(store, keyring, document(key_package(), root=root), tmp_path) == ["HOSTILE1"]


def test_any_prefix_bound_to_the_pskc_namespace_imports(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    data = (f'<foo:KeyContainer Version="1.0" xmlns:foo="{PSKC_NS}"><foo:KeyPackage><foo:Key Id="ODD1" '
            f'Algorithm="{HOTP_URI}"><foo:Data><foo:Secret><foo:PlainValue>{base64.b64encode(SEED).decode()}'
            "</foo:PlainValue></foo:Secret></foo:Data></foo:Key></foo:KeyPackage></foo:KeyContainer>").encode()
    assert imports(store, keyring, data, tmp_path) == ["ODD1"]


# --- 4. a FIFO in place of the file -------------------------------------------------------------------------

_FIFO_IMPORT = """
import sys
from validator.importer import read_pskc, read_csv
from vtoken.errors import ImportFailedError
for read in (read_pskc, read_csv):
    try:
        read(sys.argv[1])
    except ImportFailedError as exc:
        print("refused:", exc)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "seeds.pskcxml"
    os.mkfifo(fifo)
    done = run_python(_FIFO_IMPORT, str(fifo))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("not a regular file") == 2, done.stdout


def test_a_directory_is_refused(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    folder = tmp_path / "folder.pskcxml"
    folder.mkdir()
    with pytest.raises(ImportFailedError, match="not a regular file|cannot read"):
        import_file(store, keyring, folder)


def test_upload_limits_hold_for_bytes_too(store: SQLiteStore, keyring: Keyring) -> None:
    """An upload (bytes, the portal's path) meets the same pre-scan as a file."""
    before = state(store)
    with pytest.raises(ImportFailedError, match="nested more than"):
        import_data(store, keyring, _nested(MAX_XML_DEPTH + 1), name="upload.xml")
    assert state(store) == before


# --- 5. item 12: a window scan is bounded per call -----------------------------------------------------------


_FIND_ALL = """
import sys
from validator.kernel import c_backend, python_backend
from vtoken.errors import InvalidCounterError
backend = c_backend() if sys.argv[1] == "c" else python_backend()
key = backend.prepare(b"12345678901234567890")
for scan in (lambda: key.find(0, 2**64 - 1, "000000"), lambda: key.find_pair(0, 2**64 - 2, "000000", "000000")):
    try:
        scan()
    except InvalidCounterError as exc:
        print("refused:", exc)
"""


def test_find_over_the_whole_counter_space_is_refused(backend: Backend) -> None:
    """``find(0, 2**64-1)``: the C kernel would scan for centuries, deaf to Ctrl-C. In a subprocess with a
    timeout, so a regression fails instead of hanging."""
    done = run_python(_FIND_ALL, backend.name)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("counters per call") == 2, done.stdout


def test_find_refuses_a_scan_that_could_not_be_interrupted(backend: Backend) -> None:
    from validator._kernel_api import MAX_SCAN_COUNT

    key = backend.prepare(b"12345678901234567890")
    started = time.perf_counter()
    with pytest.raises(InvalidCounterError, match="at most"):
        key.find_pair(0, MAX_SCAN_COUNT + 1, "000000", "000000")
    with pytest.raises(InvalidCounterError, match="at most"):
        key.find(0, MAX_SCAN_COUNT + 1, "000000")
    assert time.perf_counter() - started < 1.0


def test_find_scans_the_whole_limit(cbackend: Backend) -> None:
    from validator._kernel_api import MAX_SCAN_COUNT

    key = cbackend.prepare(b"12345678901234567890")
    last = MAX_SCAN_COUNT - 1
    code = key.generate(last, 1)[0]
    assert last in key.find(0, MAX_SCAN_COUNT, int(code))


# --- a CSV file with its columns out of order never shows the seed (found by tests/test_fuzz_import.py) ------

CSV_SEED = SEED.hex()


@pytest.mark.parametrize(
    "text",
    [
        f"FO0001, 3132, {CSV_SEED}\n",  # the seed in the type column
        f"serial,seed,type\nFC1,totp,{CSV_SEED}\n",
        f"FO0001, 3132, totp, 6, 30, {CSV_SEED}\n",  # ... in the hash column
        f"FO0001, 3132, hotp, 6, {CSV_SEED}\n",  # ... in the counter column
        f"FO0001 {CSV_SEED}, totp, 6, 30, sha1\n",  # a comma lost: serial and seed run together
        f"{CSV_SEED}, zz, totp\n",  # serial and seed swapped
        f"{CSV_SEED}, 3132, ocra\n",
    ],
)
def test_a_misplaced_seed_is_not_repeated_in_the_message(store: SQLiteStore, keyring: Keyring, tmp_path: Path,
                                                         text: str) -> None:
    path = tmp_path / "columns.csv"
    path.write_text(text)
    before = state(store)
    with pytest.raises(ImportFailedError) as info:
        import_file(store, keyring, path)
    assert state(store) == before
    message = str(info.value)
    assert not any(CSV_SEED[i : i + 17] in message for i in range(len(CSV_SEED) - 16)), message
    assert "line 1" in message or "line 2" in message


def test_short_wrong_values_are_still_quoted(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    path = tmp_path / "typo.csv"
    path.write_text("FO0001, 3132, totpp\n")
    with pytest.raises(ImportFailedError, match=r"line 1 \(serial FO0001\): unknown type 'totpp'"):
        import_file(store, keyring, path)


def test_an_empty_key_usage_is_refused_not_a_type_error(store: SQLiteStore, keyring: Keyring, tmp_path: Path) -> None:
    """Found by the fuzzer: ``<KeyUsage></KeyUsage>`` gave a TypeError while formatting the refusal."""
    data = document(key_package()).replace(b"</Data></Key>", b"</Data><Policy><KeyUsage></KeyUsage></Policy></Key>")
    refused(store, keyring, data, r"does not allow OTP use \(KeyUsage \(empty\)\)", tmp_path)
