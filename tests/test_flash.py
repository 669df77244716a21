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
    FlashFault,
    FlashFaultError,
    FlashRecord,
    PowerLossError,
    SeedAuthenticationError,
    SeedCipher,
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


def test_serial_model_and_seed_must_fit_a_slot_together() -> None:
    # A 64-character vendor serial with a 128-byte seed used to overrun slot B (the image grew to 525 bytes).
    flash = Flash.blank(DEVICE_KEY)
    image = flash.image
    with pytest.raises(InvalidConfigError, match="269-byte flash record; a slot holds 256"):
        flash.provision(**params(seed=b"\x01" * MAX_SEED_SIZE, serial="A" * 64))  # type: ignore[arg-type]
    assert flash.image == image and len(flash.image) == IMAGE_SIZE
    fits = provisioned(seed=b"\x01" * (MAX_SEED_SIZE - 13), serial="A" * 64)  # exactly 256 bytes
    assert len(encode_record(fits.record)) == SLOT_SIZE and len(fits.image) == IMAGE_SIZE
    assert Flash.from_image(fits.image, DEVICE_KEY).record == fits.record
    with pytest.raises(InvalidConfigError, match="larger than a slot"):
        encode_record(dataclasses.replace(fits.record, model=MODEL + "X"))


def test_one_flipped_bit_is_always_locatable() -> None:
    # The loader's claim: at every record length, each single flipped bit changes the CRC-32 differently.
    from firmware_sim.flash import _single_bit_syndromes

    for length in range(9, SLOT_SIZE - 4 + 1):
        table = _single_bit_syndromes(length)
        assert len(table) == length * 8 and -1 not in table.values() and 0 not in table


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


def assert_refuses(flash: Flash, image: bytes | None = None) -> FlashFault:
    """``flash`` is in the fault state: it reports why, refuses every operation and writes nothing."""
    fault = flash.fault
    assert fault is not None and isinstance(fault, FlashFault)
    image = flash.image if image is None else image
    attempts: list[Callable[[], object]] = [
        lambda: flash.code(0), lambda: flash.record, lambda: flash.counter, lambda: flash.provisioned,
        lambda: flash.serial, lambda: flash.sequence, lambda: flash.active_slot, lambda: flash.calibration,
        lambda: flash.set_counter(10**6), lambda: flash.lock(), lambda: flash.set_calibration(7, True),
        lambda: flash.provision(**params(seed=RFC_KEY)),  # type: ignore[arg-type]
        flash.ensure_healthy,
    ]
    for attempt in attempts:
        with pytest.raises(FlashFaultError) as info:
            attempt()
        assert info.value.fault == fault and isinstance(info.value, CorruptStateError)
        assert "refuses to operate" in str(info.value)
    assert flash.image == image
    assert repr(flash) == f"Flash(fault=True, locked={fault.locked})"
    return fault


@pytest.mark.parametrize("offset", range(SLOT_SIZE))
def test_any_corrupt_byte_in_newest_slot_is_reported_not_skipped(offset: int) -> None:
    # Issue 15 item 6: damage to the newest record used to fall back silently to the older one.
    flash, older, newer = two_records()
    image = flash.image
    bad = patch(image, offset, image[offset] ^ 0x5A)  # slot A holds the newest
    loaded = Flash.from_image(bad, DEVICE_KEY)
    if offset >= len(encode_record(newer)):  # after the record: the erased padding decayed, the record is whole
        assert loaded.fault is None and loaded.record == newer
        assert "non-erased bytes after the record" in loaded.diagnostics[0]
        return
    fault = assert_refuses(loaded, bad)
    assert fault.slot == "A"
    assert fault.counter is not None and fault.counter >= older.counter
    if fault.sequence is not None:  # the damage was located: the lost record is known exactly
        assert fault.sequence == newer.sequence and fault.counter == newer.counter and not fault.locked
    else:  # not located: the damaged record might be a lock written after the provisioned older one
        assert fault.locked and loaded.locked
    assert loaded.diagnostics[1] == "slot B: record 1 (newest)"


def test_corrupt_older_slot_is_harmless() -> None:
    flash, _, newer = two_records()
    bad = patch(flash.image, SLOT_SIZE + 20, flash.image[SLOT_SIZE + 20] ^ 1)
    loaded = Flash.from_image(bad, DEVICE_KEY)
    assert loaded.fault is None and loaded.record == newer
    assert loaded.diagnostics == (
        "slot A: record 2 (newest)",
        # byte 20 is the model name's length prefix: the flip is located all the same
        "slot B: damaged record 1 (unknown enum value; one flipped bit at byte 20)"
        " (previous; the next write replaces it)",
    )
    loaded.set_counter(6)  # the next write replaces the damaged record
    assert loaded.active_slot == "B" and Flash.from_image(loaded.image, DEVICE_KEY).diagnostics[1] == (
        "slot B: record 3 (newest)"
    )


def test_older_slot_damage_that_cannot_be_located_is_refused() -> None:
    # Several bits: the record it hid is unknown, so it may be the newer one. Refuse rather than guess.
    flash, _, _ = two_records()
    bad = patch(flash.image, SLOT_SIZE + 30, flash.image[SLOT_SIZE + 30] ^ 0x5A)
    fault = assert_refuses(Flash.from_image(bad, DEVICE_KEY))
    assert fault.slot == "B" and fault.sequence is None and "not an interrupted write" in str(fault)


def test_both_slots_corrupt() -> None:
    flash, _, _ = two_records()
    image = flash.image
    bad = patch(patch(image, 30, image[30] ^ 0x5A), SLOT_SIZE + 30, image[SLOT_SIZE + 30] ^ 0x5A)
    with pytest.raises(CorruptStateError, match="no valid record") as info:
        Flash.from_image(bad, DEVICE_KEY)
    assert "CRC" in str(info.value)


def test_both_slots_with_one_flipped_bit_each() -> None:
    flash, _, newer = two_records()
    flash.lock()  # slot B: locked, counter 5, sequence 3; slot A: unlocked, sequence 2
    image = flash.image
    bad = patch(patch(image, 30, image[30] ^ 0x40), SLOT_SIZE + 30, image[SLOT_SIZE + 30] ^ 0x40)
    loaded = Flash.from_image(bad, DEVICE_KEY)
    fault = assert_refuses(loaded)
    assert (fault.slot, fault.sequence, fault.locked, fault.counter) == ("B", 3, True, 5)
    assert str(fault).startswith("flash damaged: no slot holds a valid record; slot B holds a damaged record")


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


def refused(image: bytes) -> bool:
    """True if ``image`` loads in the fault state (a record that is not valid and not an interrupted write)."""
    return assert_refuses(Flash.from_image(image, DEVICE_KEY)) is not None


def test_bad_magic_and_version() -> None:
    # A whole record with a valid CRC but a foreign magic or version is not a torn write: refuse, don't fall back.
    flash, older, _ = two_records()
    assert refused(patch_and_fix_crc(flash.image, 0, 0, ord("X")))
    assert refused(patch_and_fix_crc(flash.image, 0, 4, FORMAT_VERSION + 1))
    assert Flash.from_image(patch_and_fix_crc(flash.image, 1, 0, ord("X")), DEVICE_KEY).fault is not None


def test_garbage_after_record_is_reported_and_ignored() -> None:
    # Bytes after a CRC-valid record are no part of it: the record stands (it used to be skipped for the older one).
    flash, _, newer = two_records()
    loaded = Flash.from_image(patch(flash.image, SLOT_SIZE - 1, 0x00), DEVICE_KEY)
    assert loaded.fault is None and loaded.record == newer
    assert loaded.diagnostics[0] == "slot A: record 2 (newest); non-erased bytes after the record (ignored)"
    with pytest.raises(CorruptStateError, match="garbage after the record"):
        decode_record(slot(patch(flash.image, SLOT_SIZE - 1, 0x00), 0))  # decode_record itself stays strict


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
    assert refused(bad)


@pytest.mark.parametrize("value", [0, 3, 0x80, 0xFF])
def test_unknown_kind_byte_invalidates_slot(value: int) -> None:
    flash, older, _ = two_records()
    bad = patch_and_fix_crc(flash.image, 0, variable_offset(SERIAL, MODEL) + 26, value)
    with pytest.raises(CorruptStateError, match="unknown enum value"):
        decode_record(slot(bad, 0))
    assert refused(bad)


@pytest.mark.parametrize("field_offset", [24, 25], ids=["calp", "lock"])
def test_flag_byte_must_be_0_or_1(field_offset: int) -> None:
    flash, older, _ = two_records()
    bad = patch_and_fix_crc(flash.image, 0, variable_offset(SERIAL, MODEL) + field_offset, 2)
    with pytest.raises(CorruptStateError, match="flag"):
        decode_record(slot(bad, 0))
    assert refused(bad)


def test_out_of_range_fields_invalidate_slot() -> None:
    flash, _, _ = two_records()
    v = variable_offset(SERIAL, MODEL)
    for offset, value in [(v + 1, 5), (v + 1, 11), (v + 22, 0x02)]:  # digits 5, digits 11, CALM 512+
        bad = patch_and_fix_crc(flash.image, 0, offset, value)
        with pytest.raises(CorruptStateError):
            decode_record(slot(bad, 0))
        assert refused(bad)
    assert refused(patch_and_fix_crc(flash.image, 0, SERIAL_OFFSET + 1, ord("#")))  # a serial outside the rule
    assert refused(patch_and_fix_crc(flash.image, 0, SERIAL_OFFSET + 1, 0xC3))  # non-ASCII serial


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


# --- bit rot is reported, never a silent fallback (issue 15, item 6) ----------------------------------------


def start_hotp_unlocked() -> bytes:
    return provisioned(counter=41).image


def start_totp_unlocked() -> bytes:
    return provisioned(kind="totp").image


def start_hotp_in_a() -> bytes:
    flash = provisioned(counter=41)
    flash.set_counter(42)
    return flash.image


#: Every kind of write the firmware makes, from both slots: (start image, the write).
WRITES: list[tuple[str, Callable[[], bytes], Operation]] = [
    ("provision", start_blank, lambda f: f.provision(**params(counter=7))),  # type: ignore[arg-type]
    ("reprovision", start_newest_in_a,
     lambda f: f.provision(**params(seed=RFC_KEY, kind="totp", serial="2104000123456"))),  # type: ignore[arg-type]
    ("lock-totp", start_totp_unlocked, lambda f: f.lock()),
    ("lock-hotp", start_hotp_in_a, lambda f: f.lock()),
    ("press-hotp", start_hotp_unlocked, lambda f: f.set_counter(42)),
    ("press-hotp-in-a", start_hotp_in_a, lambda f: f.set_counter(43)),
    ("calibrate", start_totp_unlocked, lambda f: f.set_calibration(300, True)),
    ("calibrate-blank", start_blank, lambda f: f.set_calibration(3, False)),
]
WRITE_IDS = [w[0] for w in WRITES]


def written(start: Callable[[], bytes], operation: Operation) -> tuple[FlashRecord, Flash, int]:
    """The record before the write, the flash after it, and the slot index it wrote."""
    before = Flash.from_image(start(), DEVICE_KEY)
    after = Flash.from_image(start(), DEVICE_KEY)
    operation(after)
    return before.record, after, 0 if after.active_slot == "A" else 1


def flip(image: bytes, slot_index: int, bit: int) -> bytes:
    out = bytearray(image)
    out[slot_index * SLOT_SIZE + bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def tail_is_one_bit_from_erased(data: bytes, record: bytes) -> bool:
    """True if ``data`` reads ``record`` except that its last bytes read 0xFF but for one bit."""
    end = len(data.rstrip(b"\xff"))
    missing = record[end:]
    return data[:end] == record[:end] and sum(8 - bin(b).count("1") for b in missing) == 1


@pytest.mark.parametrize(("start", "operation"), [w[1:] for w in WRITES], ids=WRITE_IDS)
def test_every_flipped_bit_of_the_newest_record_is_reported(start: Callable[[], bytes], operation: Operation) -> None:
    before, after, target = written(start, operation)
    newest, image = after.record, after.image
    length = len(encode_record(newest))
    for bit in range(SLOT_SIZE * 8):
        bad = flip(image, target, bit)
        loaded = Flash.from_image(bad, DEVICE_KEY)
        if loaded.fault is None:
            # Only two flips leave a usable flash, and both keep the newest record: one in the erased padding,
            # and one that makes the record's last bytes read erased but for one bit (see the module docstring).
            assert loaded.record == newest, f"bit {bit} fell back to an older record"
            assert bit // 8 >= length or tail_is_one_bit_from_erased(slot(bad, target), encode_record(newest))
            continue
        fault = loaded.fault
        assert bit // 8 < length
        assert (fault.slot, fault.sequence, fault.bit) == ("AB"[target], newest.sequence, bit), f"bit {bit}"
        assert loaded.locked == newest.locked  # the lost record is known exactly: its lock counts
        if newest.provisioned and newest.kind is TokenKind.HOTP:
            assert fault.counter == max(newest.counter, before.counter if before.provisioned else 0)
        assert f"one flipped bit located at byte {bit // 8}" in str(fault)
    assert_refuses(Flash.from_image(flip(image, target, 8 * 20 + 3), DEVICE_KEY))


@pytest.mark.parametrize(("start", "operation"), [w[1:] for w in WRITES], ids=WRITE_IDS)
def test_every_flipped_bit_of_the_previous_record_is_harmless(start: Callable[[], bytes], operation: Operation) -> None:
    _, after, target = written(start, operation)
    newest, image = after.record, after.image
    if slot(image, 1 - target) == b"\xff" * SLOT_SIZE:
        pytest.skip("no previous record")
    for bit in range(0, SLOT_SIZE * 8, 3):
        loaded = Flash.from_image(flip(image, 1 - target, bit), DEVICE_KEY)
        assert loaded.fault is None and loaded.record == newest, f"bit {bit}"


@pytest.mark.parametrize(("start", "operation"), [w[1:] for w in WRITES], ids=WRITE_IDS)
def test_tears_of_every_write_fall_back_cleanly(start: Callable[[], bytes], operation: Operation) -> None:
    before, after, target = written(start, operation)
    new_slot = slot(after.image, target)
    data = encode_record(after.record)
    for tear_at in range(SLOT_SIZE + len(data)):
        flash = Flash.from_image(start(), DEVICE_KEY)
        flash.arm_power_loss(tear_at)
        with pytest.raises(PowerLossError) as lost:
            operation(flash)
        survivor = Flash.from_image(flash.image, DEVICE_KEY)
        assert survivor.fault is None, f"torn at {tear_at}: {survivor.fault}"
        torn = slot(flash.image, target)
        if survivor.record == before:
            assert "holds the last complete record" in str(lost.value)
            assert survivor.diagnostics[target] in (
                f"slot {'AB'[target]}: erased",
                f"slot {'AB'[target]}: partly erased (an erase was interrupted; ignored)",
                f"slot {'AB'[target]}: interrupted write (power lost before it completed; ignored)",
            ) or survivor.diagnostics[target].startswith(f"slot {'AB'[target]}: partly erased record") or tear_at == 0
        else:  # the write took effect: the slot already reads right, or right but for one bit at its end
            assert survivor.record == after.record
            assert torn == new_slot or tail_is_one_bit_from_erased(torn, data), f"torn at {tear_at}"


def ending_with_one_zero_bit() -> tuple[Flash, bytes]:
    """A locked-to-be token whose lock record's CRC ends in a byte with exactly one 0 bit."""
    for calm in range(MAX_CALM_FOR_SEARCH):
        flash = provisioned(kind="totp")
        flash.set_calibration(calm, False)
        image = flash.image
        flash.lock()
        last = encode_record(flash.record)[-1]
        if bin(last).count("1") == 7:
            return flash, image
    raise AssertionError("no such record")  # pragma: no cover


MAX_CALM_FOR_SEARCH = 512


def test_a_record_complete_but_for_its_last_bit_counts_as_written() -> None:
    # Power lost before the last bit of a lock record, and that bit decayed in a complete one, read the same;
    # either way the token must not come back unlocked.
    locked, before = ending_with_one_zero_bit()
    data = encode_record(locked.record)
    target = 0 if locked.active_slot == "A" else 1
    torn = Flash.from_image(before, DEVICE_KEY)
    torn.arm_power_loss(SLOT_SIZE + len(data) - 1)
    with pytest.raises(PowerLossError, match="the write took effect"):
        torn.lock()
    assert torn.fault is None and torn.locked and torn.record == locked.record
    assert torn.diagnostics[target].endswith("its last bytes read erased but for one bit (taken as written)")
    zero_bit = 7 - (data[-1] ^ 0xFF).bit_length() + 1
    decayed = flip(locked.image, target, (len(data) - 1) * 8 + zero_bit)
    assert decayed == torn.image
    assert Flash.from_image(decayed, DEVICE_KEY).locked


def test_several_damaged_bits_never_fall_back_silently() -> None:
    import random

    rng = random.Random(15)
    outcomes = {"refused": 0, "newest": 0}
    for _, start, operation in WRITES:
        before, after, target = written(start, operation)
        data, image = encode_record(after.record), after.image
        for _ in range(250):
            bad = bytearray(image)
            if rng.random() < 0.5:
                bad[target * SLOT_SIZE + rng.randrange(len(data))] ^= rng.randrange(1, 256)
            else:
                for bit in rng.sample(range(len(data) * 8), rng.choice((2, 3))):
                    bad[target * SLOT_SIZE + bit // 8] ^= 0x80 >> (bit % 8)
            damaged = slot(bytes(bad), target)
            end = len(damaged.rstrip(b"\xff"))
            if damaged[:end] == data[:end]:
                continue  # exactly what a torn write leaves: indistinguishable by definition
            try:
                loaded = Flash.from_image(bytes(bad), DEVICE_KEY)
            except CorruptStateError:
                outcomes["refused"] += 1
                continue
            if loaded.fault is not None:
                outcomes["refused"] += 1
                assert loaded.locked or not after.record.locked
            else:
                outcomes["newest"] += 1
                assert loaded.record == after.record
    assert outcomes["refused"] > 1900


def test_a_decayed_magic_is_not_taken_for_an_interrupted_erase() -> None:
    # 'V' (0x56) decayed to 0xFF mimics an erase that stopped after one byte; the rest is a whole record.
    flash, older, newer = two_records()
    bad = patch(flash.image, 0, 0xFF)
    fault = assert_refuses(Flash.from_image(bad, DEVICE_KEY))
    assert fault.sequence == newer.sequence and fault.counter == 5
    # A real interrupted erase leaves the older record's tail, which is no record: ignored.
    erasing = patch(patch(flash.image, 0, 0xFF), 1, 0xFF)
    erasing = erasing[:2] + b"\xff" * 40 + erasing[42:]
    assert Flash.from_image(erasing, DEVICE_KEY).record == older


@pytest.mark.parametrize("mask", [0x08, 0x48, 0x80, 0xF0])
def test_an_enlarged_ciphertext_length_is_not_taken_for_an_interrupted_write(mask: int) -> None:
    # A longer ciphertext length makes a whole record look like the start of a longer one still being written.
    flash = provisioned()
    flash.provision(**params(seed=RFC_KEY))  # type: ignore[arg-type]  # newest: a provisioning write, slot A
    offset = variable_offset(SERIAL, MODEL) + 39
    image = flash.image
    if image[offset] ^ mask < image[offset]:
        pytest.skip("the mask shortens the length")
    fault = assert_refuses(Flash.from_image(patch(image, offset, image[offset] ^ mask), DEVICE_KEY))
    assert fault.sequence == flash.sequence


def test_an_impossible_history_is_refused() -> None:
    flash = provisioned(counter=5)
    unlocked = flash.record
    flash.lock()
    locked = flash.record
    # Two valid records where the older one is locked and the newer not: never written by this firmware.
    image = image_of(dataclasses.replace(locked, sequence=7), dataclasses.replace(unlocked, sequence=8))
    fault = assert_refuses(Flash.from_image(image, DEVICE_KEY))
    assert fault.locked and "older record is factory-locked" in str(fault)
    image = image_of(dataclasses.replace(unlocked, sequence=7, counter=9), dataclasses.replace(unlocked, sequence=8))
    fault = assert_refuses(Flash.from_image(image, DEVICE_KEY))
    assert fault.counter == 9 and "higher HOTP counter" in str(fault)


def test_fault_error_carries_the_fault_and_pickles() -> None:
    import pickle

    flash, _, _ = two_records()
    loaded = Flash.from_image(patch(flash.image, 30, flash.image[30] ^ 1), DEVICE_KEY)
    with pytest.raises(FlashFaultError) as info:
        loaded.code(0)
    again = pickle.loads(pickle.dumps(info.value))
    assert isinstance(again, FlashFaultError) and again.fault == loaded.fault and str(again) == str(info.value)


def test_issue_15_bit_rot_cannot_unlock_a_token_over_the_wire() -> None:
    # The reproduction: one flipped bit in a locked TOTP token's newest record, then PROVISION over the wire.
    from firmware_sim.device import DeviceController
    from firmware_sim.factory import manufacture
    from firmware_sim.models import get_model
    from vtoken import wire
    from vtoken.clock import NS_PER_SECOND, SimulatedClock
    from vtoken.wire import Command, Status

    token = manufacture(model=get_model("totp30"), seed=RFC_KEY, serial="1000000005", device_key=DEVICE_KEY,
                        clock=SimulatedClock(1_767_225_600 * NS_PER_SECOND))
    assert token.flash.locked
    target = 0 if token.flash.active_slot == "A" else 1
    token.flash = Flash.from_image(flip(token.flash.image, target, 8 * 40 + 1), DEVICE_KEY)
    assert token.flash.fault is not None and token.flash.locked
    device = DeviceController(token, sim_control=True)
    image = token.flash.image
    for seq, command, fields in [
        (1, Command.PROVISION, dict(seed=SEED, serial="1000000005", model="totp", kind=TokenKind.TOTP,
                                    algorithm=Algorithm.SHA1, digits=6, period=30, t0=0, counter=0)),
        (2, Command.LOCK, {}),
        (3, Command.PRESS, {}),
    ]:
        reply = wire.decode_response(wire.unframe(device.handle_body(wire.unframe(
            wire.encode_request(seq, command, **fields)))))
        # PROVISION and LOCK meet the fail-closed lock first; every operation that reads the flash reports the fault
        expected = {Status.LOCKED, Status.DEVICE_FAULT} if command is not Command.PRESS else {Status.DEVICE_FAULT}
        assert reply.status in expected, (command, reply)
    info = wire.decode_response(wire.unframe(device.handle_body(wire.unframe(wire.encode_request(4, Command.INFO)))))
    assert info.status is Status.DEVICE_FAULT and "flash damaged" in info.message
    assert token.flash.image == image  # nothing was written


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
        lambda: Flash.from_image(flip(flash.image, 1, 8 * 100 + 7), DEVICE_KEY).code(0),
        lambda: Flash.from_image(patch(flash.image, 90, flash.image[90] ^ 0x5A), DEVICE_KEY).record,
        lambda: Flash.from_image(patch(flash.image, SLOT_SIZE + 90, 0x5A), DEVICE_KEY).set_counter(60),
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


def test_no_seed_in_a_faulted_flash() -> None:
    flash = provisioned(seed=b"SEED" * 32)
    flash.lock()
    for offset in (60, 70, 100, 150):  # nonce, ciphertext
        loaded = Flash.from_image(patch(flash.image, offset, flash.image[offset] ^ 4), DEVICE_KEY)  # newest: A
        assert loaded.fault is not None
        for text in (str(loaded.fault), repr(loaded.fault), repr(loaded), *loaded.diagnostics):
            assert_no_secret(text, b"SEED" * 32)
            assert_no_secret(text, DEVICE_KEY)


# --- the seed cipher -----------------------------------------------------------------------------


def test_the_seed_cipher_is_what_provisioning_writes() -> None:
    """SeedCipher is the one definition: the provisioned record holds exactly its nonce and ciphertext."""
    flash = Flash.blank(DEVICE_KEY)
    flash.provision(seed=SEED, serial=SERIAL, model=MODEL, kind=TokenKind.TOTP, algorithm=Algorithm.SHA1,
                    digits=6, period=30, t0=0, counter=0)
    [record] = [r for r in (decode_record(flash.image[i:i + SLOT_SIZE]) for i in (0, SLOT_SIZE)) if r.provisioned]
    cipher = SeedCipher(DEVICE_KEY)
    assert cipher.encrypt(record.sequence, SERIAL, SEED) == (record.nonce, record.ciphertext)
    assert cipher.decrypt(record) == SEED
    assert cipher.encrypt(record.sequence + 1, SERIAL, SEED)[0] != record.nonce  # the nonce follows the record
    for wrong in (SeedCipher(OTHER_KEY).decrypt, lambda r: cipher.decrypt(dataclasses.replace(r, serial="0000005732"))):
        with pytest.raises(SeedAuthenticationError):
            wrong(record)
    assert DEVICE_KEY.hex() not in repr(cipher) and SEED.hex() not in repr(cipher)
