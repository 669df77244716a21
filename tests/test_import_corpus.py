"""Every file of the shared corpus of real PSKC and OATH CSV files gets its outcome.

The corpus (``../shared/corpus/`` beside the project, read in place; see its
README for origins) holds files from python-pskc's, LinOTP's and privacyIDEA's
test suites. The table below names, for every file, either the tokens a
correct importer takes from it (kind, hash, digits, period or starting
counter), or the real cause it must be refused for. A test fails if the
folder holds a file the table does not name, so nothing is skipped silently.

An imported token is then proved right independently of the importer: its
seed is read straight from the file (the CSV text, or python-pskc with the
file's credentials), pyotp computes codes with the table's hash, digits and
period, and the validator must register the token with two of them and accept
a third.

Outside CI the test skips when the corpus folder is absent; with
``VTOKEN_REQUIRE_CORPUS=1`` (``.ci/run`` sets it) it fails instead.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import warnings
from pathlib import Path

import pskc
import pyotp
import pytest

from validator.importer import ImportOptions, import_file
from validator.kernel import python_backend
from validator.memstore import MemoryStore
from validator.sealing import Keyring, MasterKey
from validator.service import Validator
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import ImportFailedError

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [os.environ.get("VTOKEN_CORPUS"), ROOT.parent / "shared" / "corpus", "/work/shared/corpus"]
CORPUS = next((Path(c) for c in _CANDIDATES if c and (Path(c) / "credentials.tsv").is_file()), None)
REQUIRED = os.environ.get("VTOKEN_REQUIRE_CORPUS") == "1"

#: "Now" for the import (2026-12-01): ExpiryDate policies are judged against it.
NOW_NS = 1_796_083_200 * NS_PER_SECOND


@dataclasses.dataclass(frozen=True)
class Ok:
    """The file imports exactly these tokens: (serial, kind, hash, digits, period for totp | counter for hotp)."""

    tokens: tuple[tuple[str, str, str, int, int], ...]
    skip_unsupported: bool = False
    skipped: int = 0
    note: str | None = None


@dataclasses.dataclass(frozen=True)
class Refused:
    """The whole file is refused with a message matching ``cause``; ``also`` retries with --skip-unsupported."""

    cause: str
    also_with_skip: str | None = None


def ok(*tokens: tuple[str, str, str, int, int], skip: int = 0, note: str | None = None) -> Ok:
    return Ok(tuple(tokens), skip_unsupported=skip > 0, skipped=skip, note=note)


UNSUPPORTED = "kinds vtoken does not validate"
NO_OATH_KEYS = "no HOTP or TOTP keys"
NO_ALGORITHM = "the Key has no Algorithm, so it is neither HOTP nor TOTP"
FEITIAN = (
    ("1000133508267", "hotp", "sha1", 6, 0), ("1000133508255", "hotp", "sha1", 6, 0),
    ("2600124809778", "totp", "sha1", 6, 60), ("2600124809787", "totp", "sha1", 6, 60),
    ("2600135004012", "totp", "sha1", 6, 60), ("2600135004013", "totp", "sha1", 6, 60),
)
PLAINTEXT_MAC = "ValueMAC of the secret is computed over the plaintext"

EXPECTED: dict[str, Ok | Refused] = {
    # --- LinOTP / privacyIDEA OATH CSV: serial, seed, type, digits, period|counter, hash ---
    "csv/linotp/oath_tokens.csv": ok(
        ("tok1", "hotp", "sha1", 6, 0), ("tok2", "totp", "sha1", 6, 30), ("tok3", "hotp", "sha1", 8, 0),
        ("tok4", "totp", "sha1", 8, 60)),
    "csv/linotp/oath_tokens_bad_seed.csv": Refused(r"line 2 \(serial tok2\): seed: hex key contains characters"),
    "csv/linotp/oath_tokens_sha256.csv": ok(
        ("htok_sha256_1", "hotp", "sha256", 8, 0), ("htok_sha256_2", "hotp", "sha256", 6, 0),
        ("htok_sha256_3", "hotp", "sha256", 8, 0), ("ttok_sha256_4", "totp", "sha256", 6, 30),
        ("ttok_sha256_5", "totp", "sha256", 8, 60), ("htok_sha1_6", "hotp", "sha1", 8, 0),
        ("htok_sha256_7", "hotp", "sha256", 8, 0), ("htok_sha256_8", "hotp", "sha256", 8, 0),
        note="SHA256 assumed from the 32-byte seed, as LinOTP does"),
    # its first line is a bare seed with no serial: malformed, so the whole file is refused
    "csv/linotp/oath_tokens_sha512.csv": Refused(r"line 1: only 1 field: expected serial, seed"),
    "csv/privacyidea/empty.oath": Refused("the file holds no tokens"),
    "csv/privacyidea/import.oath": ok(
        ("token01", "hotp", "sha1", 6, 0), ("token02", "totp", "sha1", 6, 30), ("token03", "totp", "sha1", 8, 60)),
    "csv/privacyidea/ocra.csv": Refused(UNSUPPORTED + r".*ocra1234\): OCRA", "no tokens.*skipped.*OCRA"),
    "csv/privacyidea/yubico-oath.csv": Refused("Yubico personalization-tool export, not OATH CSV"),
    # --- LinOTP PSKC ---
    "pskc/linotp/ocra_pskc_tokens.xml": Refused(UNSUPPORTED + r".*306EUO4-00960.*OCRA", NO_OATH_KEYS),
    "pskc/linotp/pskc_tokens.xml": ok(*FEITIAN),
    "pskc/linotp/safenet_tokens.xml": Refused(r"not a PSKC file: the root element is <Tokens> \(a SafeNet"),
    # --- privacyIDEA ---
    "pskc/privacyidea/inline_XML_PSKC.xml": ok(
        ("1000133508267", "hotp", "sha256", 6, 0), *FEITIAN[1:], skip=1),
    "pskc/privacyidea/pskc-aes.xml": Refused(r"line 54, column 1: malformed XML \(Premature end of data"),
    "pskc/privacyidea/pskc-password.xml": ok(("987654321", "hotp", "sha1", 8, 0)),  # whitespace before <?xml
    # --- python-pskc: vendors and drafts ---
    "pskc/python-pskc/actividentity/test.pskcxml": ok(("0950380269", "hotp", "sha1", 8, 837830147), note=PLAINTEXT_MAC),
    "pskc/python-pskc/draft-hoyer-keyprov-portable-symmetric-key-container-00/non-encrypted.pskcxml": ok(
        ("98765432187", "hotp", "sha1", 6, 12)),
    "pskc/python-pskc/draft-hoyer-keyprov-portable-symmetric-key-container-00/password-encrypted.pskcxml": ok(
        ("98765432187", "hotp", "sha1", 6, 100), note=PLAINTEXT_MAC),
    "pskc/python-pskc/draft-hoyer-keyprov-portable-symmetric-key-container-01/non-encrypted.pskcxml": ok(
        ("98765432187", "hotp", "sha1", 6, 42)),
    "pskc/python-pskc/draft-hoyer-keyprov-portable-symmetric-key-container-01/password-encrypted.pskcxml": ok(
        ("98765432187", "hotp", "sha1", 6, 100), note=PLAINTEXT_MAC),
    "pskc/python-pskc/draft-hoyer-keyprov-pskc-algorithm-profiles-01/actividentity-3des.pskcxml": Refused(
        UNSUPPORTED + ".*ActivIdentity 3DES", NO_OATH_KEYS),
    "pskc/python-pskc/draft-hoyer-keyprov-pskc-algorithm-profiles-01/ocra.pskcxml": Refused(
        UNSUPPORTED + ".*OCRA", NO_OATH_KEYS),
    "pskc/python-pskc/draft-hoyer-keyprov-pskc-algorithm-profiles-01/securid-aes-counter.pskcxml": Refused(
        UNSUPPORTED + ".*SecurID", NO_OATH_KEYS),
    "pskc/python-pskc/draft-hoyer-keyprov-pskc-algorithm-profiles-01/totp.pskcxml": ok(
        ("987654323", "totp", "sha1", 6, 30)),
    "pskc/python-pskc/draft-ietf-keyprov-pskc-02/figure2.pskcxml": ok(("987654321", "hotp", "sha1", 8, 0)),
    "pskc/python-pskc/draft-ietf-keyprov-pskc-02/figure3.pskcxml": ok(("987654321", "hotp", "sha1", 8, 0), skip=1),
    "pskc/python-pskc/draft-ietf-keyprov-pskc-02/figure4.pskcxml": ok(
        ("987654321", "hotp", "sha1", 8, 0), note=PLAINTEXT_MAC),
    "pskc/python-pskc/draft-ietf-keyprov-pskc-02/figure5.pskcxml": ok(
        ("987654321", "hotp", "sha1", 8, 0), note="has no MACMethod"),
    "pskc/python-pskc/draft-ietf-keyprov-pskc-02/figure6.pskcxml": Refused("encrypted to an RSA certificate"),
    "pskc/python-pskc/draft-ietf-keyprov-pskc-02/figure7.pskcxml": Refused(r"not in the file.*\(KeyReference\)"),
    "pskc/python-pskc/draft-ietf-keyprov-pskc-02/figure8.pskcxml": Refused("the file is signed: give the signer's"),
    "pskc/python-pskc/draft-ietf-keyprov-pskc-02/figure9.pskcxml": Refused(
        r"key package 1 \(serial 654321\): the key expired on 2006-05-31"),
    **{
        f"pskc/python-pskc/encryption/{stem}.pskcxml": Refused("key package 1: " + NO_ALGORITHM)
        for stem in ("aes128-cbc-noiv", "aes128-cbc", "aes192-cbc", "aes256-cbc", "camellia128-cbc",
                     "camellia192-cbc", "camellia256-cbc", "kw-aes128", "kw-aes192", "kw-aes256",
                     "kw-camellia128", "kw-camellia192", "kw-camellia256", "kw-tripledes",
                     "mac-over-plaintext", "no-mac-key", "tripledes-cbc")
    },
    "pskc/python-pskc/feitian/20120919-test001-4282.xml": Refused(
        r"serial 2600215704919\): the key expired on 2022-09-01 \(Policy ExpiryDate\)"),
    "pskc/python-pskc/feitian/file1.pskcxml": ok(*FEITIAN),
    "pskc/python-pskc/invalid/incomplete-derivation.pskcxml": Refused("Incomplete PBKDF2 configuration"),
    "pskc/python-pskc/invalid/mac-algorithm.pskcxml": Refused("cannot check the ValueMAC.*Unsupported MAC algorithm"),
    "pskc/python-pskc/invalid/mac-value.pskcxml": Refused(
        r"ValueMAC of the secret does not match .*altered after it was written \(its MAC key decrypts"),
    "pskc/python-pskc/invalid/missing-encryption-method.pskcxml": Refused("does not name the encryption method"),
    "pskc/python-pskc/invalid/missing-encryption.pskcxml": Refused("does not name the encryption method"),
    "pskc/python-pskc/invalid/no-mac-method.pskcxml": Refused("has a ValueMAC but the file has no MACMethod"),
    "pskc/python-pskc/invalid/not-boolean.pskcxml": Refused("must be true or false holds 'not really'"),
    "pskc/python-pskc/invalid/not-integer.pskcxml": Refused("must be a whole number holds 'TWELVE'"),
    "pskc/python-pskc/invalid/not-integer2.pskcxml": Refused("must be a whole number holds 'FOUR'"),
    "pskc/python-pskc/invalid/notxml.pskcxml": Refused(r"line 3, column 19: malformed XML"),
    "pskc/python-pskc/invalid/unknown-encryption.pskcxml": Refused("encrypted with a method vtoken cannot decrypt"),
    "pskc/python-pskc/invalid/wrongelement.pskcxml": Refused("root element is <SomethingElse>, not <KeyContainer>"),
    "pskc/python-pskc/invalid/wrongversion.pskcxml": Refused("unsupported PSKC version '1.2'"),
    "pskc/python-pskc/misc/SampleFullyQualifiedNS.xml": ok(("XXXX0000001F", "totp", "sha256", 6, 172800), skip=1),
    "pskc/python-pskc/misc/checkdigits.pskcxml": Refused(NO_ALGORITHM),
    "pskc/python-pskc/misc/integers.pskcxml": Refused(NO_ALGORITHM),
    "pskc/python-pskc/misc/odd-namespace.pskcxml": ok(("12345678", "hotp", "sha1", 6, 0)),  # serial from the Key Id
    "pskc/python-pskc/misc/partialxml.pskcxml": Refused("key package 2: " + NO_ALGORITHM),
    "pskc/python-pskc/misc/policy.pskcxml": Refused(
        UNSUPPORTED + r".*key package 5 \(Key Id 123456781\): PIN", r"key package 1: serial number .* is missing"),
    "pskc/python-pskc/multiotp/pskc-hotp-aes.txt": ok(
        ("ZZ0000000000", "hotp", "sha1", 6, 0), ("ZZ0100000000", "hotp", "sha1", 8, 0)),
    "pskc/python-pskc/multiotp/pskc-hotp-pbe.txt": ok(("ZZ0000000002", "hotp", "sha1", 6, 0)),
    "pskc/python-pskc/multiotp/pskc-totp-aes.txt": ok(
        ("ZZ1000000000", "totp", "sha1", 6, 30), ("ZZ1100000000", "totp", "sha1", 8, 30),
        ("ZZ1000000001", "totp", "sha256", 6, 30), ("ZZ1100000001", "totp", "sha256", 8, 30)),
    "pskc/python-pskc/multiotp/pskc-totp-pbe.txt": ok(("ZZ1000000002", "totp", "sha1", 6, 30)),
    "pskc/python-pskc/multiotp/tokens_hotp_aes.pskc": ok(
        ("ZZ7000000001", "hotp", "sha256", 8, 16887061004979670),
        ("ZZ7000000002", "hotp", "sha512", 8, 33134002894009587)),
    "pskc/python-pskc/multiotp/tokens_hotp_pbe.pskc": ok(("ZZ7000000000", "hotp", "sha1", 8, 3175185617134465)),
    "pskc/python-pskc/multiotp/tokens_ocra_aes.pskc": Refused(
        UNSUPPORTED + r".*ZZ9000000001.*OCRA.*ZZ9900000003.*PIN", NO_OATH_KEYS),
    "pskc/python-pskc/multiotp/tokens_ocra_pbe.pskc": Refused(UNSUPPORTED + ".*OCRA", NO_OATH_KEYS),
    "pskc/python-pskc/multiotp/tokens_totp_aes.pskc": ok(
        ("ZZ8000000001", "totp", "sha256", 8, 30), ("ZZ8000000002", "totp", "sha512", 8, 30)),
    "pskc/python-pskc/multiotp/tokens_totp_pbe.pskc": ok(("ZZ8000000000", "totp", "sha1", 8, 30)),
    "pskc/python-pskc/nagraid/file1.pskcxml": Refused(UNSUPPORTED + r".*306EUO4-00960.*OCRA", NO_OATH_KEYS),
    "pskc/python-pskc/rfc6030/figure10.pskcxml": Refused(r"key package 1 \(serial 654321\): the key expired on 2006"),
    "pskc/python-pskc/rfc6030/figure2.pskcxml": ok(("12345678", "hotp", "sha1", 6, 0)),  # serial from the Key Id
    "pskc/python-pskc/rfc6030/figure3.pskcxml": ok(("987654321", "hotp", "sha1", 8, 0)),
    "pskc/python-pskc/rfc6030/figure4.pskcxml": Refused(r"not in the file.*\(KeyReference\)"),
    "pskc/python-pskc/rfc6030/figure5.pskcxml": ok(("987654321", "hotp", "sha1", 8, 0), skip=1),
    "pskc/python-pskc/rfc6030/figure6.pskcxml": ok(("987654321", "hotp", "sha1", 8, 0)),
    "pskc/python-pskc/rfc6030/figure7.pskcxml": ok(("987654321", "hotp", "sha1", 8, 0)),
    "pskc/python-pskc/rfc6030/figure8.pskcxml": Refused(r"encrypted to an RSA certificate \(rsa_1_5\)"),
    "pskc/python-pskc/rfc6030/figure9.pskcxml": Refused("the file is signed: give the signer's"),
    "pskc/python-pskc/yubico/example1.pskcxml": Refused(UNSUPPORTED + ".*Yubikey AES", NO_OATH_KEYS),
    "pskc/python-pskc/yubico/example2.pskcxml": Refused(UNSUPPORTED + ".*Yubikey AES", NO_OATH_KEYS),
    "pskc/python-pskc/yubico/example3.pskcxml": Refused(UNSUPPORTED + ".*Yubikey AES", NO_OATH_KEYS),
}


def _credentials() -> dict[str, tuple[str, str]]:
    assert CORPUS is not None
    lines = (CORPUS / "credentials.tsv").read_text().splitlines()[1:]
    return {path: (kind, value) for path, kind, value in (line.split("\t") for line in lines if line)}


def _corpus_files() -> list[str]:
    if CORPUS is None:
        return []
    skip = {"README.md", "credentials.tsv"}
    return sorted(
        str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")
        if p.is_file() and p.name not in skip and "certificate" not in p.parts
    )


@pytest.fixture(autouse=True)
def _corpus_present() -> None:
    if CORPUS is None:
        if REQUIRED:
            pytest.fail("the shared corpus folder (../shared/corpus) is missing but VTOKEN_REQUIRE_CORPUS=1")
        pytest.skip("the shared corpus folder (../shared/corpus) is not here")


def _protection(rel: str) -> dict[str, object]:
    kind, value = _credentials().get(rel, (None, None))
    if kind == "key":
        return {"psk": bytes.fromhex(value)}
    if kind == "password":
        return {"password": value}
    return {}


def _import(rel: str, *, skip_unsupported: bool = False, now_ns: int = NOW_NS):
    store = MemoryStore()
    keyring = Keyring(MasterKey(bytes(range(32))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation warning (3DES, Camellia) may escape the importer
        report = import_file(store, keyring, CORPUS / rel, now_ns=now_ns,
                             options=ImportOptions(skip_unsupported=skip_unsupported, **_protection(rel)))
    return store, keyring, report


def _seed_from_file(rel: str, serial: str) -> bytes:
    """The seed of ``serial`` read without vtoken's importer: the CSV text, or python-pskc directly."""
    path = CORPUS / rel
    if path.parent.parent.name == "csv":
        for line in path.read_text().splitlines():
            fields = [f.strip() for f in line.split(",")]
            if fields[0] == serial:
                return bytes.fromhex(fields[1])
        raise AssertionError(f"{serial} not in {rel}")
    container = pskc.PSKC(io_bytes(path))
    protection = _protection(rel)
    if "psk" in protection:
        container.encryption.key = protection["psk"]
    if "password" in protection:
        container.encryption.derive_key(protection["password"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in container.keys:
            if (key.serial or key.id) == serial and (key.algorithm or "").lower().endswith(("hotp", "totp")):
                return key.secret
    raise AssertionError(f"{serial} not in {rel}")


def io_bytes(path: Path):
    import io

    return io.BytesIO(path.read_bytes().lstrip())


class _HOTP(pyotp.HOTP):
    min_secret_length_bits = 8  # vendor test files carry short seeds (LinOTP's "1212", RFC 6030's "1234")


def _codes(seed: bytes, kind: str, algorithm: str, digits: int, start: int, at_s: int) -> list[str]:
    """Three consecutive codes from pyotp: counters ``start``..., or the TOTP steps from ``at_s`` (period ``start``).

    TOTP is HOTP of the step number (RFC 6238 §4); pyotp's TOTP class caps the period at 120 s, so the
    step is passed to its HOTP.
    """
    otp = _HOTP(base64.b32encode(seed).decode(), digits=digits, digest=getattr(hashlib, algorithm))
    first = start if kind == "hotp" else at_s // start
    return [otp.at(first + i) for i in range(3)]


def test_the_table_names_every_corpus_file() -> None:
    assert set(_corpus_files()) == set(EXPECTED), "a corpus file has no expected outcome (or one is gone)"


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_corpus_file(rel: str) -> None:
    expected = EXPECTED[rel]
    if isinstance(expected, Refused):
        for skip, cause in ((False, expected.cause), (True, expected.also_with_skip)):
            if cause is None:
                continue
            with pytest.raises(ImportFailedError) as info:
                _import(rel, skip_unsupported=skip)
            message = str(info.value)
            assert re.search(cause, message), message
            assert message.startswith(str(CORPUS / rel) + ": "), message  # names the file
            assert "Traceback" not in message
        return
    if expected.skip_unsupported:  # without the option the mixed file fails whole, naming the other kinds
        with pytest.raises(ImportFailedError, match=UNSUPPORTED):
            _import(rel)
    store, keyring, report = _import(rel, skip_unsupported=expected.skip_unsupported)
    assert report.serials == tuple(t[0] for t in expected.tokens)
    assert len(report.skipped) == expected.skipped
    if expected.note:
        assert any(expected.note in note for note in report.notes), report.notes
    at_s = NOW_NS // NS_PER_SECOND
    for serial, kind, algorithm, digits, period_or_counter in expected.tokens:
        params = store.get(serial).params
        assert (params.kind.value, params.algorithm.value, params.digits) == (kind, algorithm, digits)
        assert (params.period if kind == "totp" else params.counter) == period_or_counter
        codes = _codes(_seed_from_file(rel, serial), kind, algorithm, digits, period_or_counter, at_s)
        clock = SimulatedClock(NOW_NS)
        validator = Validator(store, keyring, clock, backend=python_backend())
        step_ns = period_or_counter * NS_PER_SECOND if kind == "totp" else NS_PER_SECOND
        registered = validator.register(serial, codes[0], codes[1], NOW_NS + step_ns)
        assert registered.accepted, (serial, registered)
        checked = validator.check(serial, codes[2], NOW_NS + 2 * step_ns)
        assert checked.accepted, (serial, checked)


def test_expired_keys_import_before_their_expiry_date() -> None:
    """The Feitian file's keys expire in 2022: imported as of 2015 they are taken, with their TOTP period."""
    rel = "pskc/python-pskc/feitian/20120919-test001-4282.xml"
    store, _, report = _import(rel, now_ns=1_420_070_400 * NS_PER_SECOND)
    assert report.serials == ("2600215704919", "1000117803294")
    assert store.get("2600215704919").params.period == 60


# The encryption/ files are python-pskc's vectors for each cipher: bare keys with no Algorithm, serial or Id.
# Given those (the MAC covers only the secret), each must decrypt to the plaintext its comment states.
ENCRYPTION_VECTORS = sorted(rel for rel in EXPECTED if "/encryption/" in rel and "noiv" not in rel)


@pytest.mark.parametrize("rel", ENCRYPTION_VECTORS)
def test_every_encryption_method_decrypts_to_its_stated_plaintext(rel: str, tmp_path: Path) -> None:
    text = (CORPUS / rel).read_text()
    stated = re.search(r"(?:plain ?text value is|plaintext should be|plain value is)\s+([0-9A-Fa-f\s]+?)\.", text)
    path = tmp_path / Path(rel).name
    path.write_text(text.replace("<Key>", '<Key Id="VEC-1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:hotp">', 1))
    store = MemoryStore()
    keyring = Keyring(MasterKey(bytes(range(32))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = import_file(store, keyring, path, now_ns=NOW_NS, options=ImportOptions(**_protection(rel)))
    assert report.serials == ("VEC-1",)
    from validator.sealing import unseal

    seed = unseal(keyring, "VEC-1", store.get("VEC-1").sealed)
    default = b"12345678901234567890"  # the python-pskc vectors' usual secret, stated as text where stated
    value = "".join(stated.group(1).split()) if stated else None
    assert bytes(seed) == (default if value in (None, default.decode()) else bytes.fromhex(value))
    if "mac-over-plaintext" in rel:
        assert any(PLAINTEXT_MAC in note for note in report.notes)
