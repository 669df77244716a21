"""The flash image: record layout, A/B slots, torn writes, seed encryption and secrecy."""

from __future__ import annotations

import base64
import dataclasses
import zlib
from collections.abc import Callable, Iterator

import pytest
from construct import Enum, Int8ub

from firmware_sim.flash import (
    FORMAT_VERSION,
    IMAGE_SIZE,
    MAGIC,
    MAX_MODEL_LENGTH,
    MAX_SEED_SIZE,
    SLOT_SIZE,
    TAG_SIZE,
    Calibration,
    Flash,
    FlashRecord,
    PowerLossError,
    SeedAuthenticationError,
    TokenKind,
    decode_record,
    encode_record,
)
from vtoken.errors import (
    CorruptStateError,
    DeviceLockedError,
    DeviceStateError,
    InvalidConfigError,
    InvalidCounterError,
    InvalidDigitsError,
    InvalidInputError,
    InvalidKeyError,
    InvalidPeriodError,
    InvalidSerialError,
    InvalidTimeError,
    UnknownAlgorithmError,
    VTokenError,
)
from vtoken.oath import Algorithm, hotp_value

DEVICE_KEY = bytes(range(0xA0, 0xC0))
OTHER_KEY = bytes(range(0x20, 0x40))
SEED = b"SEEDSEEDSEEDSEEDSEEDSEEDSEEDSEED"  # recognizable 32-byte seed
RFC_KEY = b"12345678901234567890"
RFC4226_CODES = [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489]
SERIAL = "0000005724"
MODEL = "VT-100"

# Offsets of the fixed part of a record (see the module docstring).
SEQUENCE_OFFSET = 5
SERIAL_OFFSET = 9


def variable_offset(serial: str, model: str) -> int:
    """Offset of the algorithm byte: first field after serial and model."""
    return SERIAL_OFFSET + 1 + len(serial) + 1 + len(model)


def params(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        seed=SEED,
        serial=SERIAL,
        model=MODEL,
        kind="hotp",
        algorithm="sha1",
        digits=6,
        period=30,
        t0=0,
        counter=0,
    )
    base.update(overrides)
    return base


def provisioned(**overrides: object) -> Flash:
    flash = Flash.blank(DEVICE_KEY)
    flash.provision(**params(**overrides))  # type: ignore[arg-type]
    return flash


def slot(image: bytes, index: int) -> bytes:
    return image[index * SLOT_SIZE : (index + 1) * SLOT_SIZE]


def patch(image: bytes, offset: int, value: int) -> bytes:
    out = bytearray(image)
    out[offset] = value
    return bytes(out)


def patch_and_fix_crc(image: bytes, slot_index: int, offset_in_slot: int, value: int) -> bytes:
    """Change one record byte and recompute that record's CRC, so only the field check can fail."""
    record_len = len(encode_record(decode_record(slot(image, slot_index))))
    start = slot_index * SLOT_SIZE
    out = bytearray(image)
    out[start + offset_in_slot] = value
    body_end = start + record_len - 4
    out[body_end : body_end + 4] = zlib.crc32(bytes(out[start:body_end])).to_bytes(4, "big")
    return bytes(out)


def secret_forms(seed: bytes) -> list[bytes]:
    """The seed as raw bytes, hex and base32 (with and without padding), upper and lower case."""
    b32 = base64.b32encode(seed)
    forms = [seed, seed.hex().encode(), seed.hex().upper().encode(), b32, b32.rstrip(b"="), b32.lower()]
    return forms


def assert_no_secret(blob: bytes | str, seed: bytes = SEED) -> None:
    data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
    for form in secret_forms(seed):
        assert form not in data
        # no 8-byte window of the seed either (catches a partial leak)
        for i in range(0, len(form) - 8):
            assert form[i : i + 8] not in data


# --- record encoding --------------------------------------------------------------


def test_blank_layout() -> None:
    flash = Flash.blank(DEVICE_KEY)
    image = flash.image
    assert len(image) == IMAGE_SIZE == 2 * SLOT_SIZE
    assert image[:4] == MAGIC and image[4] == FORMAT_VERSION
    assert image[SEQUENCE_OFFSET : SEQUENCE_OFFSET + 4] == bytes(4)
    assert slot(image, 1) == b"\xff" * SLOT_SIZE
    assert flash.active_slot == "A" and flash.sequence == 0
    assert not flash.provisioned and not flash.locked
    assert repr(flash) == "Flash(provisioned=False, locked=False)"


def test_record_layout_and_crc() -> None:
    flash = provisioned()
    data = encode_record(flash.record)
    assert data[:4] == MAGIC
    assert data[4] == FORMAT_VERSION
    assert int.from_bytes(data[5:9], "big") == 1
    assert data[SERIAL_OFFSET] == len(SERIAL)
    assert data[SERIAL_OFFSET + 1 : SERIAL_OFFSET + 1 + len(SERIAL)] == SERIAL.encode()
    v = variable_offset(SERIAL, MODEL)
    assert data[v - 1 - len(MODEL) : v] == bytes([len(MODEL)]) + MODEL.encode()
    assert data[v] == 1  # sha1
    assert data[v + 1] == 6  # digits
    assert int.from_bytes(data[v + 2 : v + 6], "big") == 30
    assert data[v + 26] == 2  # kind hotp
    assert data[v + 39] == len(SEED) + TAG_SIZE
    assert len(data) == v + 40 + len(SEED) + TAG_SIZE + 4
    assert int.from_bytes(data[-4:], "big") == zlib.crc32(data[:-4])
    # the record sits at the start of slot B, rest erased
    image_slot = slot(flash.image, 1)
    assert image_slot[: len(data)] == data
    assert image_slot[len(data) :] == b"\xff" * (SLOT_SIZE - len(data))


def test_record_round_trip() -> None:
    record = provisioned(kind="totp", algorithm="sha512", digits=8, period=60, t0=1_000_000).record
    assert decode_record(encode_record(record)) == record
    padded = encode_record(record) + b"\xff" * 50
    assert decode_record(padded) == record
    blank = FlashRecord.blank(sequence=7, calibration=Calibration(300, True))
    assert decode_record(encode_record(blank)) == blank


def test_flash_round_trip() -> None:
    flash = provisioned(kind="totp", algorithm="sha256", digits=8, period=60, t0=2**40, counter=0)
    flash.set_calibration(123, True)
    flash.lock()
    again = Flash.from_image(flash.image, DEVICE_KEY)
    assert again.record == flash.record
    assert (again.serial, again.model, again.kind, again.algorithm) == (SERIAL, MODEL, TokenKind.TOTP, Algorithm.SHA256)
    assert (again.digits, again.period, again.t0, again.counter) == (8, 60, 2**40, 0)
    assert again.calibration == Calibration(123, True)
    assert again.locked and again.provisioned
    assert again.image == flash.image
    assert again.code(5) == flash.code(5)


def test_max_record_fits_slot() -> None:
    flash = provisioned(seed=b"\x01" * MAX_SEED_SIZE, serial="9" * 20, model="M" * MAX_MODEL_LENGTH, counter=2**64 - 1)
    assert len(encode_record(flash.record)) <= SLOT_SIZE
    assert Flash.from_image(flash.image, DEVICE_KEY).record == flash.record


@pytest.mark.parametrize("size", [0, MAX_SEED_SIZE + 1, 1000])
def test_seed_size_rejected(size: int) -> None:
    flash = Flash.blank(DEVICE_KEY)
    with pytest.raises(InvalidKeyError, match="1 to 128 bytes"):
        flash.provision(**params(seed=b"S" * size))  # type: ignore[arg-type]
    assert not flash.provisioned


def test_seed_size_bounds_accepted() -> None:
    for size in (1, MAX_SEED_SIZE):
        seed = bytes(range(size))
        flash = provisioned(seed=seed)
        assert flash.code(3) == hotp_value(seed, 3)


def test_calibration_ppm() -> None:
    # The flash stores the register; the RTC model (firmware_sim.rtc.Calibration) says what it does.
    assert Calibration(0, False).ppm == 0
    assert Calibration(511, False).ppm == pytest.approx(-487.3, abs=0.05)
    assert Calibration(0, True).ppm == pytest.approx(488.3, abs=0.05)
    assert Calibration(1, False).ppm == pytest.approx(-0.9537, abs=1e-3)


# --- A/B slots and corruption ----------------------------------------------------------------


def two_records() -> tuple[Flash, FlashRecord, FlashRecord]:
    """A flash whose newest record (counter 5, slot A) has an older one (counter 0, slot B)."""
    flash = provisioned()
    older = flash.record
    flash.set_counter(5)
    assert flash.active_slot == "A"
    return flash, older, flash.record


def test_writes_alternate_slots() -> None:
    flash = Flash.blank(DEVICE_KEY)
    slots = [flash.active_slot]
    flash.provision(**params())  # type: ignore[arg-type]
    for n in range(1, 6):
        slots.append(flash.active_slot)
        flash.set_counter(n)
    slots.append(flash.active_slot)
    assert slots == ["A", "B", "A", "B", "A", "B", "A"]
    assert flash.sequence == 6


@pytest.mark.parametrize("offset", range(SLOT_SIZE))
def test_any_corrupt_byte_in_newest_slot_falls_back(offset: int) -> None:
    flash, older, newer = two_records()
    image = flash.image
    bad = patch(image, offset, image[offset] ^ 0x5A)  # slot A holds the newest
    loaded = Flash.from_image(bad, DEVICE_KEY)
    assert loaded.record == older
    assert loaded.counter == 0 and loaded.active_slot == "B"


def test_corrupt_older_slot_is_harmless() -> None:
    flash, _, newer = two_records()
    bad = patch(flash.image, SLOT_SIZE + 20, flash.image[SLOT_SIZE + 20] ^ 1)
    assert Flash.from_image(bad, DEVICE_KEY).record == newer


def test_both_slots_corrupt() -> None:
    flash, _, _ = two_records()
    image = flash.image
    bad = patch(patch(image, 30, image[30] ^ 0x40), SLOT_SIZE + 30, image[SLOT_SIZE + 30] ^ 0x40)
    with pytest.raises(CorruptStateError, match="no valid record") as info:
        Flash.from_image(bad, DEVICE_KEY)
    assert "CRC" in str(info.value)


@pytest.mark.parametrize(
    "image", [b"\xff" * IMAGE_SIZE, bytes(IMAGE_SIZE), b""], ids=["erased", "zeros", "empty"]
)
def test_image_without_valid_record(image: bytes) -> None:
    with pytest.raises(CorruptStateError):
        Flash.from_image(image, DEVICE_KEY)


@pytest.mark.parametrize("size", [IMAGE_SIZE - 1, IMAGE_SIZE + 1, SLOT_SIZE])
def test_wrong_image_size(size: int) -> None:
    image = (Flash.blank(DEVICE_KEY).image + b"\xff" * SLOT_SIZE)[:size]
    with pytest.raises(CorruptStateError, match="512 bytes"):
        Flash.from_image(image, DEVICE_KEY)


def test_image_type_checked() -> None:
    with pytest.raises(InvalidInputError):
        Flash.from_image("not bytes", DEVICE_KEY)  # type: ignore[arg-type]


def test_bad_magic_and_version() -> None:
    flash, older, _ = two_records()
    assert Flash.from_image(patch_and_fix_crc(flash.image, 0, 0, ord("X")), DEVICE_KEY).record == older
    assert Flash.from_image(patch_and_fix_crc(flash.image, 0, 4, FORMAT_VERSION + 1), DEVICE_KEY).record == older


def test_garbage_after_record_invalidates_slot() -> None:
    flash, older, _ = two_records()
    assert Flash.from_image(patch(flash.image, SLOT_SIZE - 1, 0x00), DEVICE_KEY).record == older


# --- strict enums and flags ---------------------------------------------------------------------


def test_plain_construct_enum_would_parse_unknown_values() -> None:
    # The trap this module avoids: construct's Enum turns unknown bytes into ints.
    assert Enum(Int8ub, sha1=1).parse(b"\x07") == 7


@pytest.mark.parametrize("value", [0, 4, 7, 0xFF])
def test_unknown_algorithm_byte_invalidates_slot(value: int) -> None:
    flash, older, _ = two_records()
    bad = patch_and_fix_crc(flash.image, 0, variable_offset(SERIAL, MODEL), value)
    with pytest.raises(CorruptStateError, match="unknown enum value"):
        decode_record(slot(bad, 0))
    assert Flash.from_image(bad, DEVICE_KEY).record == older


@pytest.mark.parametrize("value", [0, 3, 0x80, 0xFF])
def test_unknown_kind_byte_invalidates_slot(value: int) -> None:
    flash, older, _ = two_records()
    bad = patch_and_fix_crc(flash.image, 0, variable_offset(SERIAL, MODEL) + 26, value)
    with pytest.raises(CorruptStateError, match="unknown enum value"):
        decode_record(slot(bad, 0))
    assert Flash.from_image(bad, DEVICE_KEY).record == older


@pytest.mark.parametrize("field_offset", [24, 25], ids=["calp", "lock"])
def test_flag_byte_must_be_0_or_1(field_offset: int) -> None:
    flash, older, _ = two_records()
    bad = patch_and_fix_crc(flash.image, 0, variable_offset(SERIAL, MODEL) + field_offset, 2)
    with pytest.raises(CorruptStateError, match="flag"):
        decode_record(slot(bad, 0))
    assert Flash.from_image(bad, DEVICE_KEY).record == older


def test_out_of_range_fields_invalidate_slot() -> None:
    flash, older, _ = two_records()
    v = variable_offset(SERIAL, MODEL)
    for offset, value in [(v + 1, 5), (v + 1, 11), (v + 22, 0x02)]:  # digits 5, digits 11, CALM 512+
        bad = patch_and_fix_crc(flash.image, 0, offset, value)
        assert Flash.from_image(bad, DEVICE_KEY).record == older
    bad = patch_and_fix_crc(flash.image, 0, SERIAL_OFFSET + 1, ord("#"))  # a serial outside the rule
    assert Flash.from_image(bad, DEVICE_KEY).record == older
    bad = patch_and_fix_crc(flash.image, 0, SERIAL_OFFSET + 1, 0xC3)  # non-ASCII serial
    assert Flash.from_image(bad, DEVICE_KEY).record == older


def test_encode_refuses_out_of_range_fields() -> None:
    record = provisioned().record
    with pytest.raises(InvalidConfigError):
        encode_record(dataclasses.replace(record, calm=512))


# --- sequence numbers ------------------------------------------------------------------------------


def image_of(a: FlashRecord | None, b: FlashRecord | None) -> bytes:
    image = bytearray(b"\xff" * IMAGE_SIZE)
    for index, record in enumerate((a, b)):
        if record is not None:
            data = encode_record(record)
            image[index * SLOT_SIZE : index * SLOT_SIZE + len(data)] = data
    return bytes(image)


@pytest.mark.parametrize(
    ("seq_a", "seq_b", "winner"),
    [(0, 1, "B"), (5, 4, "A"), (2**32 - 1, 0, "B"), (0, 2**32 - 1, "A"), (2**31, 2**31 - 1, "A")],
)
def test_newest_sequence_wins_with_wrap(seq_a: int, seq_b: int, winner: str) -> None:
    a = FlashRecord.blank(seq_a, Calibration(1, False))
    b = FlashRecord.blank(seq_b, Calibration(2, False))
    flash = Flash.from_image(image_of(a, b), DEVICE_KEY)
    assert flash.active_slot == winner
    assert flash.calibration.calm == (1 if winner == "A" else 2)


def test_sequence_wraps_on_write() -> None:
    flash = Flash.from_image(image_of(FlashRecord.blank(2**32 - 1), None), DEVICE_KEY)
    flash.set_calibration(9, False)
    assert flash.sequence == 0 and flash.active_slot == "B"
    flash.set_calibration(10, False)
    assert flash.sequence == 1 and flash.active_slot == "A"
    assert Flash.from_image(flash.image, DEVICE_KEY).calibration == Calibration(10, False)


# --- torn writes -----------------------------------------------------------------------------------------


Operation = Callable[[Flash], None]


def start_blank() -> bytes:
    return Flash.blank(DEVICE_KEY).image


def start_newest_in_b() -> bytes:
    flash = provisioned()
    assert flash.active_slot == "B"
    return flash.image


def start_newest_in_a() -> bytes:
    flash = provisioned()
    flash.set_counter(1)
    assert flash.active_slot == "A"
    return flash.image


TEAR_CASES: list[tuple[str, Callable[[], bytes], Operation]] = [
    ("provision-blank-A-to-B", start_blank, lambda f: f.provision(**params())),  # type: ignore[arg-type]
    ("counter-B-to-A", start_newest_in_b, lambda f: f.set_counter(7)),
    ("counter-A-to-B", start_newest_in_a, lambda f: f.set_counter(8)),
    ("lock-A-to-B", start_newest_in_a, lambda f: f.lock()),
    ("calibrate-B-to-A", start_newest_in_b, lambda f: f.set_calibration(200, True)),
    (
        "reprovision-A-to-B",
        start_newest_in_a,
        lambda f: f.provision(**params(seed=RFC_KEY, kind="totp", serial="2104000123456")),  # type: ignore[arg-type]
    ),
]


@pytest.mark.parametrize(("start", "operation"), [c[1:] for c in TEAR_CASES], ids=[c[0] for c in TEAR_CASES])
def test_write_torn_at_every_byte(start: Callable[[], bytes], operation: Operation) -> None:
    old_image = start()
    old = Flash.from_image(old_image, DEVICE_KEY)
    done = Flash.from_image(old_image, DEVICE_KEY)
    operation(done)
    new_image = done.image
    target = 1 if old.active_slot == "A" else 0
    assert done.active_slot == "AB"[target]
    assert slot(new_image, 1 - target) == slot(old_image, 1 - target)  # the other slot is never touched
    total = SLOT_SIZE + len(encode_record(done.record))

    old_outcomes = 0
    for tear_at in range(total):
        flash = Flash.from_image(old_image, DEVICE_KEY)
        flash.arm_power_loss(tear_at)
        with pytest.raises(PowerLossError):
            operation(flash)
        torn = flash.image
        survivor = Flash.from_image(torn, DEVICE_KEY)  # a reboot
        assert flash.record == survivor.record  # the torn object reloaded the same way
        if slot(torn, target) == slot(new_image, target):
            # the unwritten tail of the record already read as erased (0xFF): the write is complete
            assert survivor.record == done.record
        else:
            assert survivor.record == old.record, f"torn at {tear_at}"
            old_outcomes += 1
    assert old_outcomes >= total - 4  # only a few trailing CRC bytes may already read right

    complete = Flash.from_image(old_image, DEVICE_KEY)
    complete.arm_power_loss(total)
    operation(complete)
    assert complete.image == new_image
    assert Flash.from_image(complete.image, DEVICE_KEY).record == done.record


def test_torn_write_keeps_codes() -> None:
    flash = Flash.from_image(start_newest_in_a(), DEVICE_KEY)
    flash.arm_power_loss(SLOT_SIZE + 10)
    with pytest.raises(PowerLossError):
        flash.set_counter(9)
    assert flash.counter == 1 and flash.code(0) == hotp_value(SEED, 0)
    flash.set_counter(9)  # the hook is one-shot
    assert Flash.from_image(flash.image, DEVICE_KEY).counter == 9


def test_power_loss_hook_validates() -> None:
    with pytest.raises(InvalidConfigError):
        Flash.blank(DEVICE_KEY).arm_power_loss(-1)


# --- provisioning, lock, counter, calibration -----------------------------------------------------------


def test_provision_after_lock_refused() -> None:
    flash = provisioned()
    flash.lock()
    image = flash.image
    with pytest.raises(DeviceLockedError):
        flash.provision(**params(seed=RFC_KEY))  # type: ignore[arg-type]
    assert flash.image == image
    assert flash.code(0) == hotp_value(SEED, 0)


def test_reprovision_before_lock_replaces_seed() -> None:
    flash = provisioned()
    flash.provision(**params(seed=RFC_KEY, serial="123 456 789 4", model="VT-200"))  # type: ignore[arg-type]
    assert flash.serial == "1234567894" and flash.model == "VT-200"
    assert [flash.code(c) for c in range(10)] == RFC4226_CODES


def test_provision_keeps_calibration() -> None:
    flash = Flash.blank(DEVICE_KEY)
    flash.set_calibration(42, False)
    flash.provision(**params())  # type: ignore[arg-type]
    assert flash.calibration == Calibration(42, False)


def test_lock_is_idempotent() -> None:
    flash = provisioned()
    flash.lock()
    image = flash.image
    flash.lock()
    assert flash.image == image and flash.locked


def test_lock_requires_provisioning() -> None:
    with pytest.raises(DeviceStateError):
        Flash.blank(DEVICE_KEY).lock()


def test_updates_allowed_after_lock() -> None:
    flash = provisioned()
    flash.lock()
    flash.set_counter(3)
    flash.set_calibration(511, False)
    loaded = Flash.from_image(flash.image, DEVICE_KEY)
    assert loaded.counter == 3 and loaded.calibration == Calibration(511, False) and loaded.locked


def test_counter_forward_only() -> None:
    flash = provisioned(counter=10)
    flash.set_counter(11)
    with pytest.raises(DeviceStateError, match="forward"):
        flash.set_counter(10)
    image = flash.image
    flash.set_counter(11)  # same value: no write
    assert flash.image == image
    with pytest.raises(InvalidCounterError):
        flash.set_counter(-1)
    with pytest.raises(InvalidCounterError):
        flash.set_counter(2**64)


def test_counter_only_for_hotp() -> None:
    with pytest.raises(DeviceStateError, match="HOTP"):
        provisioned(kind="totp").set_counter(1)


@pytest.mark.parametrize(("calm", "calp"), [(-1, False), (512, False), (1.5, False), (True, False), (0, 1), (0, None)])
def test_calibration_validated(calm: object, calp: object) -> None:
    with pytest.raises(InvalidConfigError):
        Flash.blank(DEVICE_KEY).set_calibration(calm, calp)  # type: ignore[arg-type]


def test_unprovisioned_refuses_seed_operations() -> None:
    flash = Flash.blank(DEVICE_KEY)
    with pytest.raises(DeviceStateError):
        flash.code(0)
    with pytest.raises(DeviceStateError):
        flash.set_counter(1)
    for name in ("serial", "model", "kind", "algorithm", "digits", "period", "t0", "counter"):
        with pytest.raises(DeviceStateError):
            getattr(flash, name)
    assert flash.calibration == Calibration()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"serial": "12#34"}, InvalidSerialError),
        ({"serial": "abc 1234567"}, InvalidSerialError),
        ({"model": ""}, InvalidConfigError),
        ({"model": "M" * (MAX_MODEL_LENGTH + 1)}, InvalidConfigError),
        ({"model": "Modèle"}, InvalidConfigError),
        ({"kind": "motp"}, InvalidConfigError),
        ({"algorithm": "md5"}, UnknownAlgorithmError),
        ({"digits": 5}, InvalidDigitsError),
        ({"period": 0}, InvalidPeriodError),
        ({"period": 30.5}, InvalidPeriodError),
        ({"period": 2**32}, InvalidPeriodError),
        ({"t0": -1}, InvalidTimeError),
        ({"counter": -1}, InvalidCounterError),
        ({"seed": SEED.hex()}, InvalidKeyError),
    ],
)
def test_provision_validates(overrides: dict[str, object], error: type[Exception]) -> None:
    flash = Flash.blank(DEVICE_KEY)
    image = flash.image
    with pytest.raises(error):
        flash.provision(**params(**overrides))  # type: ignore[arg-type]
    assert flash.image == image


def test_kind_and_algorithm_accept_enums_and_names() -> None:
    flash = provisioned(kind=TokenKind.TOTP, algorithm=Algorithm.SHA256)
    assert flash.kind is TokenKind.TOTP and flash.algorithm is Algorithm.SHA256
    flash.provision(**params(kind="HOTP", algorithm="SHA-512"))  # type: ignore[arg-type]
    assert flash.kind is TokenKind.HOTP and flash.algorithm is Algorithm.SHA512


# --- codes --------------------------------------------------------------------------------------------------


def test_rfc4226_vectors() -> None:
    flash = provisioned(seed=RFC_KEY)
    flash.lock()
    assert [flash.code(c) for c in range(10)] == RFC4226_CODES
    assert [flash.code(c) for c in range(10)] == [hotp_value(RFC_KEY, c) for c in range(10)]


@pytest.mark.parametrize(
    ("algorithm", "seed", "step", "expected"),
    [
        ("sha1", b"12345678901234567890", 1, 94287082),
        ("sha256", b"12345678901234567890123456789012", 1, 46119246),
        ("sha512", b"1234567890" * 6 + b"1234", 1, 90693936),
        ("sha1", b"12345678901234567890", 20000000000 // 30, 65353130),
        ("sha256", b"12345678901234567890123456789012", 20000000000 // 30, 77737706),
        ("sha512", b"1234567890" * 6 + b"1234", 20000000000 // 30, 47863826),
    ],
)
def test_rfc6238_vectors(algorithm: str, seed: bytes, step: int, expected: int) -> None:
    flash = provisioned(seed=seed, kind="totp", algorithm=algorithm, digits=8)
    assert Flash.from_image(flash.image, DEVICE_KEY).code(step) == expected


def test_code_validates_counter() -> None:
    with pytest.raises(InvalidCounterError):
        provisioned().code(-1)


# --- device key -----------------------------------------------------------------------------------------------


def test_wrong_device_key_is_a_clear_error() -> None:
    image = provisioned().image
    with pytest.raises(SeedAuthenticationError, match="wrong device key") as info:
        Flash.from_image(image, OTHER_KEY)
    assert isinstance(info.value, CorruptStateError)


def test_tampered_ciphertext_with_fixed_crc() -> None:
    flash = provisioned()
    offset = variable_offset(SERIAL, MODEL) + 40  # first ciphertext byte, slot B
    bad = patch_and_fix_crc(flash.image, 1, offset, flash.image[SLOT_SIZE + offset] ^ 1)
    with pytest.raises(SeedAuthenticationError):
        Flash.from_image(bad, DEVICE_KEY)


def test_serial_is_bound_to_the_ciphertext() -> None:
    flash = provisioned(serial="0000005724")
    # swap the serial for another valid one of the same length, fix the CRC
    bad = patch_and_fix_crc(flash.image, 1, SERIAL_OFFSET + 1, ord("1"))
    with pytest.raises(SeedAuthenticationError):
        Flash.from_image(bad, DEVICE_KEY)


def test_blank_flash_loads_with_any_key() -> None:
    assert not Flash.from_image(Flash.blank(DEVICE_KEY).image, OTHER_KEY).provisioned


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33), "k" * 32, None])
def test_device_key_validated(key: object) -> None:
    with pytest.raises(InvalidKeyError):
        Flash.blank(key)  # type: ignore[arg-type]


# --- determinism and nonces --------------------------------------------------------------------------------


def script(key: bytes) -> bytes:
    flash = Flash.blank(key)
    flash.set_calibration(17, True)
    flash.provision(**params())  # type: ignore[arg-type]
    flash.set_counter(4)
    flash.lock()
    flash.set_counter(9)
    return flash.image


def test_same_operations_same_image() -> None:
    assert script(DEVICE_KEY) == script(DEVICE_KEY)
    assert script(DEVICE_KEY) != script(OTHER_KEY)


def nonce_of(flash: Flash) -> bytes:
    return flash.record.nonce


def test_nonce_differs_for_different_seeds_at_same_sequence() -> None:
    # Re-blanking with the same device key restarts the sequence: nonces must still differ.
    a = provisioned(seed=SEED)
    b = provisioned(seed=RFC_KEY)
    assert a.sequence == b.sequence
    assert nonce_of(a) != nonce_of(b)
    assert a.record.ciphertext[:16] != b.record.ciphertext[:16]


def test_later_writes_copy_nonce_and_ciphertext() -> None:
    flash = provisioned()
    nonce, ciphertext = flash.record.nonce, flash.record.ciphertext
    flash.set_counter(5)
    flash.lock()
    assert (flash.record.nonce, flash.record.ciphertext) == (nonce, ciphertext)


# --- secrecy ------------------------------------------------------------------------------------------------------


def error_messages() -> Iterator[str]:
    """Trigger many errors of this module with SEED involved and yield their text."""
    flash = provisioned()
    flash.set_counter(5)
    flash.lock()
    attempts: list[Callable[[], object]] = [
        lambda: flash.provision(**params()),  # type: ignore[arg-type]
        lambda: Flash.blank(DEVICE_KEY).provision(**params(seed=SEED * 5)),  # type: ignore[arg-type]
        lambda: Flash.blank(DEVICE_KEY).provision(**params(seed=SEED.hex())),  # type: ignore[arg-type]
        lambda: Flash.blank(DEVICE_KEY).provision(**params(seed=base64.b32encode(SEED).decode())),  # type: ignore[arg-type]
        lambda: Flash.blank(DEVICE_KEY).provision(**params(digits=99)),  # type: ignore[arg-type]
        lambda: Flash.from_image(flash.image, OTHER_KEY),
        lambda: Flash.from_image(patch(patch(flash.image, 100, 0x55), SLOT_SIZE + 100, 0x55), DEVICE_KEY),
        lambda: Flash.from_image(flash.image[:-1], DEVICE_KEY),
        lambda: Flash(SEED * 16, DEVICE_KEY),
        lambda: flash.set_counter(0),
        lambda: flash.code(-1),
        lambda: Flash.blank(SEED[:31]),
        lambda: Flash.blank(DEVICE_KEY).code(0),
        lambda: decode_record(slot(flash.image, 0)[:60]),
    ]
    for attempt in attempts:
        with pytest.raises(VTokenError) as info:
            attempt()
        yield str(info.value)
        yield repr(info.value)
    torn = Flash.from_image(flash.image, DEVICE_KEY)
    torn.arm_power_loss(300)
    with pytest.raises(PowerLossError) as lost:
        torn.set_counter(50)
    yield str(lost.value)


def test_seed_not_in_image() -> None:
    flash = provisioned()
    assert_no_secret(flash.image)
    flash.lock()
    flash.set_counter(3)
    assert_no_secret(flash.image)
    assert_no_secret(flash.image, DEVICE_KEY)
    big = provisioned(seed=b"SEED" * 32)
    assert_no_secret(big.image, b"SEED" * 32)


def test_seed_not_in_repr_or_str() -> None:
    flash = provisioned()
    for text in (repr(flash), str(flash), repr(flash.record), str(flash.record)):
        assert_no_secret(text)
        assert_no_secret(text, DEVICE_KEY)
    assert repr(flash) == f"Flash(serial={SERIAL!r}, model={MODEL!r}, locked=False)"
    flash.lock()
    assert repr(flash) == f"Flash(serial={SERIAL!r}, model={MODEL!r}, locked=True)"


def test_seed_not_in_error_messages() -> None:
    messages = list(error_messages())
    assert len(messages) > 20
    for message in messages:
        assert_no_secret(message)
        assert_no_secret(message, DEVICE_KEY)


def test_no_seed_accessor() -> None:
    flash = provisioned()
    flash.lock()
    public = [name for name in dir(flash) if not name.startswith("_")]
    for name in public:
        value = getattr(flash, name)
        if not callable(value):
            assert_no_secret(repr(value))
            if isinstance(value, bytes):
                assert_no_secret(value)
    assert not hasattr(flash, "__dict__")
    assert all("seed" not in name for name in public)
