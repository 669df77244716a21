"""Importing PSKC and CSV: fleets, RFC 6030 style files, every refusal, and an unchanged store after each."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import pskc
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pskc.exceptions import DecryptionError

import validator.importer as importer_module
import validator.importbase as importbase_module
import validator.pskcfile as pskcfile_module
from firmware_sim.fleet import FleetSpec, build_pskc, derive_seed
from firmware_sim.models import get_model
from validator.importer import ImportReport, import_file, read_csv, read_pskc
from validator.records import TokenParams
from validator.sealing import Keyring, MasterKey, seal, unseal
from validator.store import SQLiteStore
from vtoken.errors import DuplicateTokenError, ImportFailedError, StorageError
from vtoken.oath import Algorithm, TokenKind

BATCH_SECRET = bytes(range(32))
PSK = bytes.fromhex("12345678901234567890123456789012")
PASSWORD = "qwerty-fleet"
#: A seed that is easy to spot in any text it might leak into.
SEED = b"LEAKY-SEED-0123456789"
SEED_FORMS = (SEED.decode(), SEED.hex(), SEED.hex().upper(), base64.b64encode(SEED).decode(), repr(SEED))
PRESENT_SERIAL = "0000005724"

PSKC_NS = "urn:ietf:params:xml:ns:keyprov:pskc"
HOTP_URI = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
TOTP_URI = "urn:ietf:params:xml:ns:keyprov:pskc:totp"


# --- fixtures and builders ----------------------------------------------------------------------------


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(MasterKey(b"\x42" * 32))


@pytest.fixture
def store(tmp_path: Path, keyring: Keyring) -> SQLiteStore:
    """A store already holding one token, so "unchanged" is a real comparison."""
    with SQLiteStore(tmp_path / "validator.db") as s:
        params = TokenParams(serial=PRESENT_SERIAL, kind=TokenKind.TOTP, has_check_digit=True)
        s.add_tokens([(params, seal(keyring, PRESENT_SERIAL, b"present-seed"))], at_ns=1, detail="fixture")
        yield s


def fleet_file(tmp_path: Path, model: str = "totp30", count: int = 5, **protection: object) -> Path:
    spec = FleetSpec(batch_secret=BATCH_SECRET, model=get_model(model), count=count)
    container = build_pskc(spec, created_ns=0, **protection)  # type: ignore[arg-type]
    suffix = "-".join(protection) or "plain"
    path = tmp_path / f"{model}-{suffix}.pskcxml"
    container.write(str(path))
    return path


def key_package(
    serial: str | None = "987654321",
    algorithm: str = HOTP_URI,
    secret_b64: str | None = base64.b64encode(b"12345678901234567890").decode(),
    length: int | str = 8,
    encoding: str = "DECIMAL",
    data_extra: str = "<Counter><PlainValue>0</PlainValue></Counter>",
    params_extra: str = "",
    key_id: str | None = "12345678",
) -> str:
    id_xml = f' Id="{key_id}"' if key_id is not None else ""
    serial_xml = f"<SerialNo>{serial}</SerialNo>" if serial is not None else ""
    secret_xml = f"<Secret><PlainValue>{secret_b64}</PlainValue></Secret>" if secret_b64 is not None else ""
    return f"""
  <KeyPackage>
    <DeviceInfo><Manufacturer>Manufacturer</Manufacturer>{serial_xml}</DeviceInfo>
    <CryptoModuleInfo><Id>CM_ID_001</Id></CryptoModuleInfo>
    <Key{id_xml} Algorithm="{algorithm}">
      <Issuer>Issuer</Issuer>
      <AlgorithmParameters>{params_extra}<ResponseFormat Length="{length}" Encoding="{encoding}"/></AlgorithmParameters>
      <Data>{secret_xml}{data_extra}</Data>
    </Key>
  </KeyPackage>"""


def container(*packages: str, head: str = "") -> bytes:
    body = "".join(packages)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{head}'
        f'<KeyContainer Version="1.0" xmlns="{PSKC_NS}">{body}\n</KeyContainer>\n'
    ).encode()


def _cbc(key: bytes, plaintext: bytes, iv: bytes) -> bytes:
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(data) + encryptor.finalize()


def rfc6030_psk_file(
    psk: bytes, seed: bytes, *, serial: str = "987654321", with_mac: bool = True, with_mac_method: bool = True,
    mac_over_plaintext: bool = False,
) -> bytes:
    """A pre-shared-key file laid out like RFC 6030 Figure 6, encrypted here without python-pskc.

    ``mac_over_plaintext`` writes the ValueMAC as pre-RFC drafts and ActivIdentity did.
    """
    mac_key = bytes.fromhex("1122334455667788990011223344556677889900")
    mac_key_ct = _cbc(psk, mac_key, bytes(range(16)))
    secret_ct = _cbc(psk, seed, bytes(range(16, 32)))
    mac = hmac.new(mac_key, seed if mac_over_plaintext else secret_ct, hashlib.sha1).digest()
    mac_xml = f"<ValueMAC>{base64.b64encode(mac).decode()}</ValueMAC>" if with_mac else ""
    mac_method = f"""
  <MACMethod Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1">
    <MACKey>
      <xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
      <xenc:CipherData><xenc:CipherValue>{base64.b64encode(mac_key_ct).decode()}</xenc:CipherValue></xenc:CipherData>
    </MACKey>
  </MACMethod>""" if with_mac_method else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<KeyContainer Version="1.0" xmlns="{PSKC_NS}"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:xenc="http://www.w3.org/2001/04/xmlenc#">
  <EncryptionKey><ds:KeyName>Pre-shared-key</ds:KeyName></EncryptionKey>{mac_method}
  <KeyPackage>
    <DeviceInfo><Manufacturer>Manufacturer</Manufacturer><SerialNo>{serial}</SerialNo></DeviceInfo>
    <Key Id="12345678" Algorithm="{HOTP_URI}">
      <AlgorithmParameters><ResponseFormat Length="8" Encoding="DECIMAL"/></AlgorithmParameters>
      <Data>
        <Secret>
          <EncryptedValue>
            <xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
            <xenc:CipherData><xenc:CipherValue>{base64.b64encode(secret_ct).decode()}</xenc:CipherValue></xenc:CipherData>
          </EncryptedValue>
          {mac_xml}
        </Secret>
        <Counter><PlainValue>0</PlainValue></Counter>
      </Data>
    </Key>
  </KeyPackage>
</KeyContainer>
""".encode()


def tamper_b64(text: str, element: str, *, start: int = 0) -> str:
    """Change one base64 character in the first ``element`` at or after offset ``start``."""
    match = re.compile(rf"<(?:\w+:)?{element}>([^<]+)</").search(text, start)
    assert match is not None
    i = match.start(1) + 4
    replacement = "A" if text[i] != "A" else "B"
    return text[:i] + replacement + text[i + 1 :]


def assert_no_seed(text: str) -> None:
    for form in SEED_FORMS:
        assert form not in text


def state(store: SQLiteStore) -> tuple[object, ...]:
    return store.list_tokens(), store.events(), store.sealed_key_ids()


def refused(
    store: SQLiteStore, keyring: Keyring, path: Path, match: str, **kwargs: object
) -> ImportFailedError:
    """Import ``path``, expect ImportFailedError matching ``match`` naming the file, and an unchanged store."""
    before = state(store)
    with pytest.raises(ImportFailedError, match=match) as info:
        import_file(store, keyring, path, **kwargs)  # type: ignore[arg-type]
    assert state(store) == before
    assert str(path) in str(info.value)
    assert_no_seed(str(info.value) + repr(info.value))
    return info.value


# --- fleets (firmware_sim.fleet) --------------------------------------------------------------------------------


@pytest.mark.parametrize("protection", [{}, {"psk": PSK[:16]}, {"password": PASSWORD}], ids=["plain", "psk", "password"])
@pytest.mark.parametrize("model", ["totp30", "hotp"])
def test_fleet_round_trip(tmp_path: Path, store: SQLiteStore, keyring: Keyring, model: str, protection: dict) -> None:
    path = fleet_file(tmp_path, model, **protection)
    tokens = read_pskc(path, **protection)
    spec_model = get_model(model)
    assert len(tokens) == 5
    for params, seed in tokens:
        assert seed == derive_seed(BATCH_SECRET, params.serial)
        assert params.kind.value == spec_model.kind.value
        assert (params.algorithm, params.digits, params.t0, params.counter, params.drift_steps) == (
            Algorithm.SHA1, 6, 0, 0, 0)
        assert params.period == 30
        assert params.has_check_digit
        assert derive_seed(BATCH_SECRET, params.serial).hex() not in repr(tokens)

    report = import_file(store, keyring, path, now_ns=123, **protection)
    assert isinstance(report, ImportReport)
    assert report.count == 5 and report.format == "pskc"
    assert report.serials == tuple(p.serial for p, _ in tokens)
    assert report.kinds == {TokenKind(spec_model.kind.value): 5}
    for serial in report.serials:
        record = store.get(serial)
        assert unseal(keyring, serial, record.sealed) == derive_seed(BATCH_SECRET, serial)
        assert [(e.event, e.at_ns) for e in store.events(serial)] == [("added", 123)]
        assert path.name in store.events(serial)[0].detail


def test_fleet_hash_suite_and_digits(tmp_path: Path) -> None:
    (params, _), *_ = read_pskc(fleet_file(tmp_path, "totp30-sha256", count=1))
    assert params.algorithm is Algorithm.SHA256
    (params, _), *_ = read_pskc(fleet_file(tmp_path, "totp30-8", count=1))
    assert params.digits == 8
    (params, _), *_ = read_pskc(fleet_file(tmp_path, "totp60", count=1))
    assert params.period == 60


def test_importing_the_same_fleet_twice_reports_duplicates(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = fleet_file(tmp_path, count=3)
    import_file(store, keyring, path)
    before = state(store)
    with pytest.raises(DuplicateTokenError, match="already in the store") as info:
        import_file(store, keyring, path)
    assert len(info.value.serials) == 3 and str(path) in str(info.value)
    assert state(store) == before


# --- python-pskc's own checks (what we rely on, and what we add) ---------------------------------------------


def test_python_pskc_checks_a_present_mac_but_not_a_missing_one(tmp_path: Path) -> None:
    text = fleet_file(tmp_path, count=1, psk=PSK[:16]).read_text()
    tampered = pskc.PSKC(_write(tmp_path / "t.xml", tamper_b64(text, "ValueMAC")))
    tampered.encryption.key = PSK[:16]
    with pytest.raises(DecryptionError, match="MAC"):
        tampered.keys[0].secret
    # Without a ValueMAC python-pskc decrypts unauthenticated CBC data silently: the importer must refuse it.
    stripped = pskc.PSKC(_write(tmp_path / "s.xml", re.sub(r"<pskc:ValueMAC>[^<]*</pskc:ValueMAC>", "", text)))
    stripped.encryption.key = PSK[:16]
    assert stripped.keys[0].secret is not None


def _write(path: Path, text: str | bytes) -> str:
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return str(path)


# --- RFC 6030 style files -------------------------------------------------------------------------------------


def test_rfc6030_plain_hotp_with_counter(tmp_path: Path) -> None:
    data = container(key_package(data_extra="<Counter><PlainValue>42</PlainValue></Counter>"))
    ((params, seed),) = read_pskc(data)
    assert seed == b"12345678901234567890"
    assert params == TokenParams(
        serial="987654321", kind=TokenKind.HOTP, digits=8, counter=42, has_check_digit=False
    )


def test_rfc6030_totp_interval_60_drift_minus_one(tmp_path: Path) -> None:
    data = container(
        key_package(
            serial="1234567890123",
            algorithm=TOTP_URI,
            length=6,
            data_extra=(
                "<Time><PlainValue>0</PlainValue></Time>"
                "<TimeInterval><PlainValue>60</PlainValue></TimeInterval>"
                "<TimeDrift><PlainValue>-1</PlainValue></TimeDrift>"
            ),
        )
    )
    ((params, _),) = read_pskc(data)
    assert (params.kind, params.period, params.t0, params.drift_steps) == (TokenKind.TOTP, 60, 0, -1)
    assert params.serial == "1234567890123" and not params.has_check_digit


def test_pskc_time_is_t0_in_intervals() -> None:
    data = container(key_package(algorithm=TOTP_URI, data_extra=(
        "<Time><PlainValue>4</PlainValue></Time><TimeInterval><PlainValue>60</PlainValue></TimeInterval>")))
    ((params, _),) = read_pskc(data)
    assert (params.t0, params.period, params.drift_steps) == (240, 60, 0)


def test_totp_defaults_when_data_is_absent() -> None:
    ((params, _),) = read_pskc(container(key_package(algorithm=TOTP_URI, data_extra="")))
    assert (params.period, params.t0, params.drift_steps, params.digits) == (30, 0, 0, 8)


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("http://www.ietf.org/keyprov/pskc#hotp", TokenKind.HOTP),
        ("http://www.ietf.org/keyprov/pskc#totp", TokenKind.TOTP),
        ("URN:IETF:PARAMS:XML:NS:KEYPROV:PSKC:TOTP", TokenKind.TOTP),
    ],
)
def test_older_algorithm_uris(uri: str, kind: TokenKind) -> None:
    ((params, _),) = read_pskc(container(key_package(algorithm=uri)))
    assert params.kind is kind


@pytest.mark.parametrize(("suite", "algorithm"), [("SHA-256", Algorithm.SHA256), ("HMAC-SHA512", Algorithm.SHA512),
                                                   ("sha1", Algorithm.SHA1)])
def test_suite_selects_the_hash(suite: str, algorithm: Algorithm) -> None:
    data = container(key_package(params_extra=f"<Suite>{suite}</Suite>"))
    ((params, _),) = read_pskc(data)
    assert params.algorithm is algorithm


def test_rfc6030_psk_file_written_without_python_pskc(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "figure6.pskcxml"
    path.write_bytes(rfc6030_psk_file(PSK, SEED))
    ((params, seed),) = read_pskc(path, psk=PSK)
    assert seed == SEED and params.digits == 8
    import_file(store, keyring, path, psk=PSK)
    assert unseal(keyring, "987654321", store.get("987654321").sealed) == SEED


def test_serial_is_normalised() -> None:
    ((params, _),) = read_pskc(container(key_package(serial=" 000-000-572-4 ")))
    assert params.serial == "0000005724" and params.has_check_digit


# --- PSKC refusals: each leaves the store unchanged ------------------------------------------------------------


def test_malformed_xml(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(container(key_package()).replace(b"</DeviceInfo>", b"</DeviceInf>"))
    refused(store, keyring, path, r"line \d+, column \d+: malformed XML")


def test_truncated_file(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    data = fleet_file(tmp_path, count=3).read_bytes()
    path = tmp_path / "truncated.pskcxml"
    path.write_bytes(data[: len(data) // 2])
    refused(store, keyring, path, "malformed XML")


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"><KeyPackage>
<DeviceInfo><SerialNo>&lol3;</SerialNo></DeviceInfo></KeyPackage></KeyContainer>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!doctype KeyContainer [<!entity xxe SYSTEM "file:///etc/passwd">]>
<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"><KeyPackage>
<DeviceInfo><SerialNo>&xxe;</SerialNo></DeviceInfo></KeyPackage></KeyContainer>
"""


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "external-entity"])
def test_entity_declarations_are_refused(tmp_path: Path, store: SQLiteStore, keyring: Keyring, text: str) -> None:
    path = tmp_path / "evil.xml"
    path.write_text(text)
    error = refused(store, keyring, path, "XML entity declarations are not accepted")
    assert "line 2" in str(error)


def test_utf16_cannot_hide_a_doctype(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "evil16.xml"
    path.write_bytes(BILLION_LAUGHS.replace('version="1.0"?>', 'version="1.0" encoding="UTF-16"?>', 1).encode("utf-16"))
    refused(store, keyring, path, "UTF-8")
    path.write_bytes(container(key_package()).replace(b"UTF-8", b"ISO-8859-1"))
    refused(store, keyring, path, "UTF-8")


def test_file_size_cap(tmp_path: Path, store: SQLiteStore, keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fleet_file(tmp_path, count=2)
    monkeypatch.setattr(importbase_module, "MAX_FILE_BYTES", 1024)
    refused(store, keyring, path, "larger than")


@pytest.mark.parametrize("element", ["ValueMAC", "CipherValue"])
def test_tampered_psk_file(tmp_path: Path, store: SQLiteStore, keyring: Keyring, element: str) -> None:
    text = fleet_file(tmp_path, count=3, psk=PSK[:16]).read_text()
    path = tmp_path / "tampered.pskcxml"
    # Tamper with the second key package's secret: the first one is fine, and still nothing is imported.
    second = text.index("<pskc:KeyPackage>", text.index("<pskc:KeyPackage>") + 1)
    path.write_text(tamper_b64(text, element, start=second))
    refused(store, keyring, path, r"key package 2 \(serial \d+\): the ValueMAC of the secret does not match.*altered",
            psk=PSK[:16])


def test_tampered_hand_written_psk_file(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    text = rfc6030_psk_file(PSK, SEED).decode()
    path = tmp_path / "figure6.xml"
    path.write_text(tamper_b64(text, "CipherValue", start=text.index("<Secret>")))
    refused(store, keyring, path, "the ValueMAC of the secret does not match.*altered", psk=PSK)


def test_cbc_without_mac_is_refused(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "nomac.xml"
    path.write_bytes(rfc6030_psk_file(PSK, SEED, with_mac=False))
    refused(store, keyring, path, "without a ValueMAC", psk=PSK)


def test_mac_without_mac_method_is_refused(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "nomacmethod.xml"
    path.write_bytes(rfc6030_psk_file(PSK, SEED, with_mac_method=False))
    refused(store, keyring, path, "no MACMethod", psk=PSK)


def test_wrong_psk(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = fleet_file(tmp_path, count=2, psk=PSK[:16])
    refused(store, keyring, path, "pre-shared key or password", psk=bytes(16))
    refused(store, keyring, path, "pre-shared key or password", psk=bytes(32))  # wrong length too


def test_wrong_password(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = fleet_file(tmp_path, count=2, password=PASSWORD)
    refused(store, keyring, path, "pre-shared key or password", password="not-" + PASSWORD)


def test_missing_or_mismatched_protection(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    psk_file = fleet_file(tmp_path, count=1, psk=PSK[:16])
    password_file = fleet_file(tmp_path, count=1, password=PASSWORD)
    plain_file = fleet_file(tmp_path, count=1)
    refused(store, keyring, psk_file, "encrypted with a pre-shared key named 'Pre-shared-key': give it")
    refused(store, keyring, psk_file, "not password-protected", password=PASSWORD)
    refused(store, keyring, password_file, "give the password", psk=PSK[:16])
    refused(store, keyring, psk_file, "not both", psk=PSK[:16], password=PASSWORD)
    # A plaintext seed where an encrypted one was expected could have been swapped in: refused.
    refused(store, keyring, plain_file, "not encrypted although", psk=PSK[:16])


def test_pbkdf2_iteration_cap(tmp_path: Path, store: SQLiteStore, keyring: Keyring, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fleet_file(tmp_path, count=1, password=PASSWORD)
    monkeypatch.setattr(pskcfile_module, "MAX_PBKDF2_ITERATIONS", 1000)
    refused(store, keyring, path, "iteration count", password=PASSWORD)


@pytest.mark.parametrize(
    ("package", "match"),
    [
        (key_package(algorithm="urn:ietf:params:xml:ns:keyprov:pskc#ocra"), "kinds vtoken does not validate.*OCRA"),
        (key_package(algorithm="urn:example:mystery"), "kinds vtoken does not validate.*unknown algorithm"),
        (key_package(serial=None, key_id=None), r"serial number \(DeviceInfo/SerialNo, or the Key Id\) is missing"),
        (key_package(serial="ABC 123"), "not valid"),
        (key_package(secret_b64=None), "secret .seed. is missing"),
        (key_package(secret_b64=base64.b64encode(b"x" * 129).decode()), "1 to 128 bytes"),
        (key_package(length=5), "Length"),
        (key_package(length=11), "Length"),
        (key_package(encoding="ALPHANUMERIC"), "DECIMAL"),
        (key_package(params_extra="<Suite>MD5</Suite>"), "algorithm suite"),
        (key_package(algorithm=TOTP_URI, data_extra="<TimeInterval><PlainValue>0</PlainValue></TimeInterval>"),
         "TimeInterval"),
        (key_package(data_extra="<Counter><PlainValue>-4</PlainValue></Counter>"), "Counter"),
        (key_package(data_extra="<Counter><PlainValue>12abc</PlainValue></Counter>"), "parse"),
    ],
    ids=["ocra", "unknown-uri", "no-serial", "bad-serial", "no-secret", "long-secret", "digits-5", "digits-11",
         "alphanumeric", "md5", "interval-0", "negative-counter", "garbage-counter"],
)
def test_bad_key_package(tmp_path: Path, store: SQLiteStore, keyring: Keyring, package: str, match: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(container(key_package(serial="1111111111"), package))
    error = refused(store, keyring, path, match)
    if "parse" not in match:
        assert "key package 2" in str(error)


def test_duplicate_serial_within_the_file(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "dup.xml"
    path.write_bytes(container(key_package(serial="555555"), key_package(serial="666666"), key_package(serial="555-555")))
    error = refused(store, keyring, path, "more than once: 555555 at key package 1 and key package 3")
    assert isinstance(error, DuplicateTokenError) and error.serials == ("555555",)


def test_not_pskc_and_empty(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "other.xml"
    path.write_text('<?xml version="1.0"?><html><body/></html>')
    refused(store, keyring, path, "not a PSKC file")
    path.write_bytes(container())
    refused(store, keyring, path, "no key packages")
    refused(store, keyring, tmp_path / "missing.xml", "cannot read")


# --- secrets never leak ----------------------------------------------------------------------------------------


def test_seed_never_in_messages_reprs_or_events(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    b64 = base64.b64encode(SEED).decode()
    good = tmp_path / "good.xml"
    good.write_bytes(container(key_package(serial="777777", secret_b64=b64)))
    tokens = read_pskc(good)
    assert_no_seed(repr(tokens) + str(tokens))
    import_file(store, keyring, good)
    assert_no_seed(repr(store.list_tokens()) + repr(store.events()))
    # Every kind of failure carrying this seed: the message never repeats it.
    for package in (
        key_package(serial="777777", secret_b64=b64),  # duplicate against the store
        key_package(serial="888888", secret_b64=b64, length=4),
        key_package(serial="888888", secret_b64=b64[1:]),  # broken base64
    ):
        path = tmp_path / "leak.xml"
        path.write_bytes(container(package))
        refused(store, keyring, path, ".")
    text = rfc6030_psk_file(PSK, SEED).decode()
    path = tmp_path / "leak-psk.xml"
    path.write_text(text)
    refused(store, keyring, path, ".", psk=bytes(16))
    path.write_text(tamper_b64(text, "ValueMAC"))
    refused(store, keyring, path, ".", psk=PSK)


# --- CSV -----------------------------------------------------------------------------------------------------


CSV_GOOD = f"""serial,seed,type,digits,period,counter
100000000-5,{SEED.hex()},totp,,,
1000000018,3132333435363738393031323334353637383930,TOTP,8,60,

1000000026,3132333435363738393031323334353637383930,hotp,6,,10
"""


def test_csv_happy_path(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    tokens = read_csv(CSV_GOOD)
    assert [p for p, _ in tokens] == [
        TokenParams(serial="1000000005", kind=TokenKind.TOTP, has_check_digit=True),
        TokenParams(serial="1000000018", kind=TokenKind.TOTP, digits=8, period=60, has_check_digit=True),
        TokenParams(serial="1000000026", kind=TokenKind.HOTP, counter=10, has_check_digit=True),
    ]
    assert tokens[0][1] == SEED
    assert_no_seed(repr(tokens))
    path = tmp_path / "tokens.csv"
    path.write_text(CSV_GOOD)
    assert read_csv(path) == read_csv(str(path)) == read_csv(CSV_GOOD.encode()) == tokens
    report = import_file(store, keyring, path)
    assert (report.count, report.format, report.kinds) == (3, "csv", {TokenKind.TOTP: 2, TokenKind.HOTP: 1})
    assert unseal(keyring, "1000000005", store.get("1000000005").sealed) == SEED


def test_csv_header_only_required_columns_and_algorithm() -> None:
    ((params, _),) = read_csv(f"Serial , Seed, Type, Algorithm\n123456,{SEED.hex()},totp,SHA-256\n")
    assert params.algorithm is Algorithm.SHA256 and params.digits == 6 and params.period == 30


HEADER = "serial,seed,type,digits,period,counter\n"
GOOD_ROW = "1111111111,3132333435363738393031323334353637383930,totp,6,30,\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (HEADER + GOOD_ROW + "2222222222,31323g,totp,6,30,\n", "line 3 .serial 2222222222.: seed: hex key contains"),
        (HEADER + GOOD_ROW + "2222222222,313,totp,6,30,\n", "line 3 .*odd number"),
        (HEADER + GOOD_ROW + "2222222222,3132,motp,6,30,\n", "line 3 .*unknown type 'motp'"),
        (HEADER + GOOD_ROW + "2222222222,3132,totp,5,30,\n", "line 3 .*digits"),
        (HEADER + GOOD_ROW + "2222222222,3132,totp,six,30,\n", "line 3 .*digits"),
        (HEADER + GOOD_ROW + "2222222222,3132,totp,6,0,\n", "line 3 .*period"),
        (HEADER + GOOD_ROW + "2222222222,3132,hotp,6,30,\n", "line 3 .*period applies to totp"),
        (HEADER + GOOD_ROW + "2222222222,3132,totp,6,30,5\n", "line 3 .*counter applies to hotp"),
        (HEADER + GOOD_ROW + "2222222222,,totp,6,30,\n", "line 3 .*seed is missing"),
        (HEADER + GOOD_ROW + "2222222222,3132,totp\n", "line 3: expected 6 fields"),
        (HEADER + GOOD_ROW + ",3132,totp,6,30,\n", "line 3: serial is missing"),
        ("serial,type,digits\n1111111111,totp,6\n", "line 1: missing column.s.: seed"),
        ("serial,seed,type,colour\n", "line 1: unknown column"),
        ("serial,seed,type,type\n", "line 1: column.s. given twice"),
        (HEADER + GOOD_ROW + '2222222222,"3132,totp,6,30,\n', "line 3.*malformed CSV|line 3: expected"),
        (HEADER, "no tokens"),
        ("\n\n", "empty"),
        (HEADER + GOOD_ROW + "\n" + GOOD_ROW.replace("1111111111", "1111-111-111"), "more than once: 1111111111 at line 2 and line 4"),
    ],
)
def test_csv_errors(tmp_path: Path, store: SQLiteStore, keyring: Keyring, text: str, match: str) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text(text)
    refused(store, keyring, path, match)


def test_csv_refuses_psk_and_bad_encoding(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text(HEADER + GOOD_ROW)
    refused(store, keyring, path, "PSKC only", psk=PSK)
    path.write_bytes((HEADER + GOOD_ROW).encode() + b"\xff\xfe,junk\n")
    refused(store, keyring, path, "line 3: the file is not valid UTF-8")


def test_csv_seed_never_in_errors(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "tokens.csv"
    for row in (
        f"3333333333,{SEED.hex()},totp,5,,\n",
        f"3333333333,{SEED.hex()}zz,totp,6,,\n",
        f"3333333333,{SEED.hex()},xotp,6,,\n",
        f"3333333333,{SEED.hex()},totp,6,,\n3333333333,{SEED.hex()},totp,6,,\n",
    ):
        path.write_text(HEADER + row)
        refused(store, keyring, path, ".")


# --- format detection ------------------------------------------------------------------------------------------


def test_format_detection(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    pskc_unknown_suffix = tmp_path / "seeds.dat"
    pskc_unknown_suffix.write_bytes(container(key_package(serial="121212")))
    assert import_file(store, keyring, pskc_unknown_suffix).format == "pskc"
    csv_unknown_suffix = tmp_path / "seeds.txt"
    csv_unknown_suffix.write_text(HEADER + GOOD_ROW)
    assert import_file(store, keyring, csv_unknown_suffix).format == "csv"
    forced = tmp_path / "forced.xml"
    forced.write_text(HEADER + GOOD_ROW.replace("1111111111", "1313131313"))
    assert import_file(store, keyring, forced, format="csv").count == 1
    refused(store, keyring, forced, "unknown format", format="yaml")


def test_store_errors_are_not_hidden(tmp_path: Path, keyring: Keyring) -> None:
    path = tmp_path / "tokens.csv"
    path.write_text(HEADER + GOOD_ROW)
    closed = SQLiteStore(tmp_path / "closed.db")
    closed.close()
    with pytest.raises(StorageError):
        import_file(closed, keyring, path)



# --- issue 13: vendor spellings, signatures, mixed files, OATH CSV, otpauth ----------------------------------


@pytest.mark.parametrize(
    ("params_extra", "algorithm"),
    [
        ('<Suite hashalgo="sha256"/>', Algorithm.SHA256),  # privacyIDEA's export form (python-pskc ignores it)
        ('<Suite hashalgo="SHA512"></Suite>', Algorithm.SHA512),
        ('<Suite hashalgo="sha256">HMAC-SHA256</Suite>', Algorithm.SHA256),
        ("<Suite>sha256</Suite>", Algorithm.SHA256),
        ("<Suite>SHA256</Suite>", Algorithm.SHA256),
        ("<Suite>HMAC-SHA1</Suite>", Algorithm.SHA1),
        ("<Suite>SHA-1</Suite>", Algorithm.SHA1),
    ],
)
def test_every_hash_spelling(params_extra: str, algorithm: Algorithm) -> None:
    [(params, _)] = read_pskc(container(key_package(params_extra=params_extra)))
    assert params.algorithm is algorithm


@pytest.mark.parametrize(
    ("params_extra", "match"),
    [
        ('<Suite hashalgo="md5"/>', "Suite hashalgo 'md5' is not a hash vtoken knows"),
        ("<Suite>SHA-3</Suite>", "algorithm suite 'SHA-3' is not a hash"),
        ('<Suite hashalgo="sha256">SHA-512</Suite>', "Suite says 'SHA-512' but its hashalgo attribute says 'sha256'"),
    ],
)
def test_unknown_or_contradictory_hash_is_an_error_never_sha1(params_extra: str, match: str) -> None:
    with pytest.raises(ImportFailedError, match=match):
        read_pskc(container(key_package(params_extra=params_extra)))


@pytest.mark.parametrize("algorithm", ["HOTP", "hotp", "http://www.ietf.org/keyprov/pskc#hotp"])
def test_draft_algorithm_spellings(algorithm: str) -> None:
    [(params, _)] = read_pskc(container(key_package(algorithm=algorithm)))
    assert params.kind is TokenKind.HOTP


@pytest.mark.parametrize("serial", ["ZZ8000000001", "306EUO4-00960", "PW001"])
def test_vendor_serials_import_as_printed(serial: str) -> None:
    [(params, _)] = read_pskc(container(key_package(serial=serial)))
    assert params.serial == serial and not params.has_check_digit


def test_key_id_is_the_serial_when_there_is_no_serial_number() -> None:
    [(params, _)] = read_pskc(container(key_package(serial=None, key_id="MBK000000001")))
    assert params.serial == "MBK000000001"


def test_whitespace_before_the_xml_declaration_is_tolerated() -> None:
    [(params, _)] = read_pskc(b"  \n\t" + container(key_package()))
    assert params.serial == "987654321"


def test_mixed_file_fails_whole_naming_each_unsupported_key_unless_skipped(
    tmp_path: Path, store: SQLiteStore, keyring: Keyring
) -> None:
    path = tmp_path / "mixed.xml"
    path.write_bytes(container(
        key_package(serial="111111"),
        key_package(serial="222222", algorithm="urn:ietf:params:xml:ns:keyprov:pskc:ocra"),
        key_package(serial="PIN-1", algorithm="urn:ietf:params:xml:ns:keyprov:pskc:pin"),
        key_package(serial="333333", algorithm=TOTP_URI, data_extra=""),
    ))
    error = refused(store, keyring, path, "kinds vtoken does not validate")
    assert "key package 2 (serial 222222, Key Id 12345678): OCRA" in str(error)
    assert "key package 3 (serial PIN-1, Key Id 12345678): PIN" in str(error)
    report = import_file(store, keyring, path, options=importer_module.ImportOptions(skip_unsupported=True))
    assert report.serials == ("111111", "333333")
    assert [s.split(":")[0] for s in report.skipped] == ["key package 2 (serial 222222, Key Id 12345678)",
                                                         "key package 3 (serial PIN-1, Key Id 12345678)"]


def test_expired_key_is_refused_as_of_the_import_time(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "expiring.xml"
    path.write_bytes(container(key_package(data_extra="").replace(
        "</Key>", "<Policy><ExpiryDate>2030-01-01T00:00:00Z</ExpiryDate></Policy></Key>")))
    refused(store, keyring, path, "expired on 2030-01-01", now_ns=1_900_000_000 * 10**9)
    assert import_file(store, keyring, path, now_ns=1_800_000_000 * 10**9).count == 1


def _signing_identity(tmp_path: Path) -> tuple[bytes, str]:
    """A fresh RSA key and its self-signed certificate (PEM), as a vendor would sign with."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vtoken test vendor")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(42).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def _signed_fleet(tmp_path: Path, key_pem: bytes, cert_pem: str) -> Path:
    spec = FleetSpec(batch_secret=BATCH_SECRET, model=get_model("totp30"), count=2)
    signed = build_pskc(spec, created_ns=0)
    signed.signature.sign(key_pem, cert_pem)
    path = tmp_path / "signed.pskcxml"
    signed.write(str(path))
    return path


def test_signed_file_verifies_against_the_operators_certificate(
    tmp_path: Path, store: SQLiteStore, keyring: Keyring
) -> None:
    key_pem, cert_pem = _signing_identity(tmp_path)
    path = _signed_fleet(tmp_path, key_pem, cert_pem)
    # no certificate: refused, unless the operator says to ignore the signature
    refused(store, keyring, path, "the file is signed: give the signer's certificate")
    # someone else's certificate: refused
    _, other_pem = _signing_identity(tmp_path)
    refused(store, keyring, path, "signature does not verify", options=importer_module.ImportOptions(
        certificate=other_pem))
    report = import_file(store, keyring, path, options=importer_module.ImportOptions(certificate=cert_pem))
    assert report.count == 2 and any("signature verified" in note for note in report.notes)


def test_altered_signed_file_is_refused_always(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    key_pem, cert_pem = _signing_identity(tmp_path)
    text = _signed_fleet(tmp_path, key_pem, cert_pem).read_text()
    altered = tmp_path / "altered.pskcxml"
    altered.write_text(tamper_b64(text, "PlainValue", start=text.index("<pskc:Secret>")))
    refused(store, keyring, altered, "signature does not verify",
            options=importer_module.ImportOptions(certificate=cert_pem))
    refused(store, keyring, altered, "the file is signed")
    # the operator's explicit choice: imported unchecked, and the report says so
    report = import_file(store, keyring, altered, options=importer_module.ImportOptions(ignore_signature=True))
    assert any("NOT checked" in note for note in report.notes)


def test_certificate_for_an_unsigned_file_is_refused(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    _, cert_pem = _signing_identity(tmp_path)
    refused(store, keyring, fleet_file(tmp_path, count=1), "not signed",
            options=importer_module.ImportOptions(certificate=cert_pem))


def test_rsa_encrypted_file_names_the_real_cause(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "rsa.xml"
    secret = ('<Secret><EncryptedValue><xenc:EncryptionMethod xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" '
              'Algorithm="http://www.w3.org/2001/04/xmlenc#rsa_1_5"/><xenc:CipherData '
              'xmlns:xenc="http://www.w3.org/2001/04/xmlenc#"><xenc:CipherValue>AAAA</xenc:CipherValue>'
              '</xenc:CipherData></EncryptedValue></Secret>')
    path.write_bytes(container(key_package(secret_b64=None, data_extra=secret)))
    error = refused(store, keyring, path, "encrypted to an RSA certificate")
    assert "pre-shared key or the password" not in str(error)


def test_mac_over_the_plaintext_is_accepted_and_reported(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "plaintext-mac.xml"
    path.write_bytes(rfc6030_psk_file(PSK, SEED, mac_over_plaintext=True))
    report = import_file(store, keyring, path, psk=PSK)
    assert any("computed over the plaintext" in note for note in report.notes)
    assert bytes(unseal(keyring, "987654321", store.get("987654321").sealed)) == SEED
    # a wrong key is still a wrong key, whichever form the MAC has
    refused(store, keyring, path, "the pre-shared key or password is wrong", psk=bytes(16))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tok1, 1212\n", [("tok1", "hotp", "sha1", 6, 0)]),
        ("# comment\n t2 , 3132333435363738393031323334353637383930 , totp , 8 , 60 , SHA256 ,,\n",
         [("t2", "totp", "sha256", 8, 60)]),
        ("h3, 3132333435363738393031323334353637383930, hotp, 6, 17, sha512\n", [("h3", "hotp", "sha512", 6, 17)]),
        ("h4, " + "31" * 32 + ", hotp\n", [("h4", "hotp", "sha256", 6, 0)]),  # LinOTP: 32-byte seed → SHA-256
        ("h5, " + "31" * 64 + ", totp, 6, 30\n", [("h5", "totp", "sha512", 6, 30)]),
        ("serial,seed,type,hash\nh6," + "31" * 20 + ",hotp,HMAC-SHA256\n", [("h6", "hotp", "sha256", 6, 0)]),
    ],
)
def test_oath_csv_as_privacyidea_and_linotp_write_it(text: str, expected: list) -> None:
    tokens = read_csv(text)
    got = [(p.serial, p.kind.value, p.algorithm.value, p.digits, p.period if p.kind is TokenKind.TOTP else p.counter)
           for p, _ in tokens]
    assert got == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("only-a-serial\n", "only 1 field"),
        ("a, 3132, hotp, 6, 0, sha1, extra\n", "7 fields: expected at most 6"),
        ("a, 3132, hotp, 6, 0, md5\n", "hash 'md5' is not a hash vtoken knows"),
        ("a, 3132, ocra, OCRA-1:HOTP-SHA1-8:QH40\n", "kinds vtoken does not validate.*OCRA"),
        ("a, 3132, motp\n", "unknown type 'motp'"),
        ("OATH-HOTP,11.12.13 18:55,1,cccccccccccc,,9168,,,0,0,0,6\n", "Yubico personalization-tool export"),
        ("a, 3132, totp, 6, 0\n", "period must be 1 to"),
    ],
)
def test_oath_csv_refusals(text: str, match: str) -> None:
    with pytest.raises(ImportFailedError, match=match):
        read_csv(text)


def test_otpauth_uris_import(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(
        "# exported\n"
        "otpauth://totp/vtoken:ZZ0001?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=vtoken&algorithm=SHA256"
        "&digits=8&period=60\n"
        "otpauth://hotp/ZZ0002?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&counter=5\n"
    )
    report = import_file(store, keyring, path)
    assert report.format == "otpauth" and report.serials == ("ZZ0001", "ZZ0002")
    first, second = store.get("ZZ0001").params, store.get("ZZ0002").params
    assert (first.kind, first.algorithm, first.digits, first.period) == (TokenKind.TOTP, Algorithm.SHA256, 8, 60)
    assert (second.kind, second.counter) == (TokenKind.HOTP, 5)
    assert bytes(unseal(keyring, "ZZ0001", store.get("ZZ0001").sealed)) == b"12345678901234567890"


def test_otpauth_errors_name_the_line_and_never_the_secret(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("otpauth://totp/A1?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n"
                    "otpauth://totp/B1?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=MD5\n")
    error = refused(store, keyring, path, "line 2")
    assert "GEZDGNBV" not in str(error)
    path.write_text("otpauth://totp/alice@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n")
    refused(store, keyring, path, "account name")


def test_a_token_file_given_to_import_names_what_it_is(tmp_path: Path, store: SQLiteStore, keyring: Keyring) -> None:
    path = tmp_path / "fob.token"
    path.write_text('{"format": "vtoken-token", "version": 1}')
    refused(store, keyring, path, "vtoken token file.*vtoken token export")
