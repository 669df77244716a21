"""The token's seed storage: a two-slot (A/B) flash image with CRC-checked records.

The image is ``IMAGE_SIZE`` bytes: slot A then slot B, ``SLOT_SIZE`` bytes
each. Erased flash reads ``0xFF``. Each slot holds at most one record followed
by erased bytes. A record (big-endian; ``S`` = serial length, ``M`` = model
length, ``C`` = ciphertext length)::

    offset        size  field
    0             4     magic b"VTKF"
    4             1     format version (1)
    5             4     sequence number (uint32, wraps; see below)
    9             1+S   serial (ASCII digits, uint8 length prefix; empty when blank)
    10+S          1+M   model name (printable ASCII, uint8 length prefix; empty when blank)
    11+S+M        1     algorithm (1 sha1, 2 sha256, 3 sha512; anything else is invalid)
    12+S+M        1     digits (6..10)
    13+S+M        4     period in seconds (uint32, >= 1)
    17+S+M        8     T0 in Unix seconds (uint64)
    25+S+M        8     HOTP counter (uint64)
    33+S+M        2     CALM (uint16, 0..511)
    35+S+M        1     CALP (0 or 1)
    36+S+M        1     lock flag (0 or 1)
    37+S+M        1     token kind (1 totp, 2 hotp; anything else is invalid)
    38+S+M        12    AES-GCM nonce (all zero when blank)
    50+S+M        1+C   encrypted seed: ciphertext ‖ 16-byte tag (uint8 length prefix; empty when blank)
    51+S+M+C      4     CRC-32 (zlib.crc32) of bytes 0 .. 50+S+M+C

A record is ``55 + S + M + C`` bytes and must fit a 256-byte slot: S <= 64
(:data:`vtoken.serialno.MAX_SERIAL_LENGTH`), M <= 32 and C <= 144 (a seed of at
most 128 bytes) are each allowed, but not all at once: :meth:`Flash.provision`
refuses a serial, model and seed whose record would not fit (with a 10-digit
serial and a 6-character model any seed fits).

**Writes.** Every change writes a whole new record, with sequence number + 1,
to the slot that does *not* hold the newest valid record: first that slot is
erased (all ``0xFF``), then the record is programmed (the rest stays ``0xFF``).
On load both slots are parsed; a slot is valid if magic, version, CRC, enum
values, field ranges and erased padding are all right, and the valid slot with
the newer sequence number wins. A write torn at any byte therefore leaves the
previous record intact in the other slot. Sequence numbers compare in serial
number arithmetic (RFC 1982), so the uint32 may wrap (the two slots always
differ by one); in any case 2^32 writes is far beyond a flash page's endurance.

**Torn write or bit rot.** Falling back to the other slot is right only when
the newer write never completed. A slot that is not valid is therefore
classified before it is ignored:

* *erased* (all ``0xFF``) or *partly erased* (its first byte is ``0xFF``: an
  erase was interrupted; a record always starts with ``V``, which no single
  flipped bit turns into ``0xFF``, and restoring the magic and version must
  not reveal a whole record, see below);
* *torn write*: the bytes are a proper prefix of a record the firmware could
  have been writing next, followed only by erased bytes: magic, version and
  sequence number + 1 exactly; for a counter, lock or calibration write every
  other field byte-for-byte the surviving record's; for a provisioning write
  (only while unlocked) a valid field grammar with the lock clear, the
  calibration kept and a new nonce; and, once the body is complete, the CRC
  bytes written so far must match. Only this is ignored silently;
* *damaged record*: anything else. The loader first looks for one flipped bit:
  over a whole record (at most 2,048 bits with its CRC) CRC-32 has Hamming
  distance 5 (checked exhaustively at the longest record), so a single flipped
  bit anywhere (any field, the CRC, a length prefix) is located exactly, and
  the record it hid is known: its sequence number, lock flag and counter. It
  also restores the two bytes a torn write cannot explain: a magic decayed to
  ``0xFF`` (mimics an interrupted erase) and an enlarged ciphertext length
  (mimics a longer record still being written; the length must make the
  record end where the written bytes end). A whole CRC-valid record appearing
  is damage, not a torn write (that would take a 2^-32 CRC coincidence).

A damaged record is harmless only if it is exactly the previous record
(sequence number one below the newest valid one) and consistent with it; it
is reported in :attr:`Flash.diagnostics` and the next write replaces it. Any
other damage may hide the newest state, so the flash enters the **fault
state** (:attr:`Flash.fault`): every operation and state read raises
:class:`FlashFaultError` (a :class:`CorruptStateError`) instead of continuing
with an older record, except :attr:`Flash.locked`, which fails closed (True if
any record is, or the damaged one may be, locked), :attr:`Flash.fault`,
:attr:`Flash.diagnostics` and :attr:`Flash.image`. The fault also gives the
highest HOTP counter any slot records. There is no in-field repair: choosing a
record would be the silent fallback this prevents.

Records are also checked against each other: an older record that is locked
when the newest is not, or (same seed) holds a higher HOTP counter, is an
impossible history and a fault too.

Two edge cases are decided, not detected. Non-erased bytes *after* a
CRC-valid record (the erased padding decayed) leave the record valid, with a
diagnostic. A record whose last bytes read ``0xFF`` but for one bit is byte
for byte both "power lost before the last bit was programmed" and "that bit
decayed"; it is taken as written (the record's body is complete and its CRC
matches but for that bit), which never loses a lock or rolls a counter back.
What stays undetectable is damage that turns a record's entire tail into
``0xFF`` (several bits of the CRC decayed to the erased state): that is
exactly what a torn write leaves, and it is treated as one.

**The blank state.** :meth:`Flash.blank` writes an *unprovisioned* record (no
serial, model or seed) with sequence 0 to slot A. A freshly erased image (all
``0xFF``) holds no valid record and is rejected with :class:`CorruptStateError`,
like any image with no valid slot. Because blank is a record, even the first
provisioning write cannot be torn into an unreadable image.

**Seed encryption.** The seed is encrypted with AES-256-GCM under a key derived
from the 32-byte device key (the MCU's unique key, held outside the flash
image). The associated data binds the magic, the format version and the
serial. GCM must never reuse a nonce for two different plaintexts under one
key. The nonce is derived deterministically, SIV-style, as
``HMAC-SHA256(nonce_key, label ‖ version ‖ sequence ‖ serial ‖ seed)[:12]``:
two different seeds (or serials) give different nonces except with
probability about 2^-96, even if the sequence number restarts (flash re-blanked
with the same device key). The same inputs give the same nonce and ciphertext,
which reveals only that two images hold the same seed for the same serial.
The seed is encrypted only when provisioned; every later write copies nonce
and ciphertext. Identical operations therefore give identical image bytes.

**Secrets.** No method returns the seed, before or after the lock; the only
use of the seed is :meth:`Flash.code`. Neither the seed nor the device key
appears in a repr, a str, an exception message, or the image in plaintext.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import numbers
import struct
import zlib
from typing import Any

from construct import (
    Adapter,
    Bytes,
    Checksum,
    Const,
    ConstructError,
    Enum,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    MappingError,
    PascalString,
    Prefixed,
    RawCopy,
    Struct,
    ValidationError,
    this,
)
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vtoken import serialno
from vtoken.errors import (
    CorruptStateError,
    DeviceLockedError,
    DeviceStateError,
    InvalidConfigError,
    InvalidInputError,
    InvalidKeyError,
    InvalidPeriodError,
    InvalidSerialError,
    InvalidTimeError,
    StorageError,
)
from firmware_sim.rtc import Calibration
from vtoken.oath import Algorithm, TokenKind, check_counter, check_digits, hotp_value, parse_algorithm

__all__ = [
    "DEVICE_KEY_SIZE",
    "FORMAT_VERSION",
    "IMAGE_SIZE",
    "MAGIC",
    "MAX_CALM",
    "MAX_MODEL_LENGTH",
    "MAX_SEED_SIZE",
    "MIN_SEED_SIZE",
    "NONCE_SIZE",
    "SLOT_COUNT",
    "SLOT_SIZE",
    "TAG_SIZE",
    "Calibration",
    "Flash",
    "FlashFault",
    "FlashFaultError",
    "FlashRecord",
    "PowerLossError",
    "SeedAuthenticationError",
    "SeedCipher",
    "TokenKind",
    "decode_record",
    "encode_record",
]

# --- constants ------------------------------------------------------------------

MAGIC = b"VTKF"
FORMAT_VERSION = 1
SLOT_SIZE = 256
SLOT_COUNT = 2
IMAGE_SIZE = SLOT_SIZE * SLOT_COUNT
SLOT_NAMES = ("A", "B")
ERASED_BYTE = 0xFF

DEVICE_KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
MIN_SEED_SIZE = 1
MAX_SEED_SIZE = 128
MAX_MODEL_LENGTH = 32

MAX_CALM = 511
#: Pulses added when CALP is set (STM32 smooth calibration).
#: Length of a smooth-calibration cycle in RTC pulses (32 s at 32.768 kHz).

SEQUENCE_MODULUS = 2**32
_SEQUENCE_HALF = SEQUENCE_MODULUS // 2
MAX_PERIOD = 2**32 - 1
MAX_T0 = 2**64 - 1

_BLANK_NONCE = bytes(NONCE_SIZE)
_BLANK_DIGITS = 6
_BLANK_PERIOD = 30
_ENC_KEY_LABEL = b"vtoken flash v1 seed-encryption key"
_NONCE_KEY_LABEL = b"vtoken flash v1 nonce-derivation key"
_NONCE_LABEL = b"vtoken flash v1 nonce"
_SEQUENCE_STRUCT = struct.Struct(">I")

#: Bytes of a record besides serial, model and ciphertext (their contents, not their length prefixes).
_RECORD_OVERHEAD = 55
#: Offset of the serial's length prefix; the model's follows the serial, the ciphertext's the nonce.
_SERIAL_LENGTH_OFFSET = 9
#: Offsets of the fixed-size fields, relative to the algorithm byte (``11 + S + M``).
_REL_DIGITS, _REL_PERIOD, _REL_COUNTER, _REL_CALM, _REL_CALP, _REL_LOCK, _REL_KIND = 1, 2, 14, 22, 24, 25, 26
_REL_NONCE, _REL_CT_LENGTH = 27, 39
_SERIAL_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
_ERASED = bytes([ERASED_BYTE])


# --- errors -----------------------------------------------------------------------


class SeedAuthenticationError(CorruptStateError):
    """The encrypted seed does not authenticate: wrong device key, or a tampered image."""


class PowerLossError(StorageError):
    """A simulated power loss tore a flash write; the flash reloaded what survived."""


@dataclasses.dataclass(frozen=True)
class FlashFault:
    """Why a flash refuses to operate: damage that may hide its newest state (see the module docstring).

    ``slot`` is the slot holding the damage (``"A"`` or ``"B"``); ``detail``
    says what is wrong in words (never contents); ``sequence`` is the damaged
    record's sequence number and ``bit`` the bit offset in the slot of the
    flipped bit when one flipped bit was located, else None. ``locked`` fails
    closed: True if any record is locked or the damaged one may be. ``counter``
    is the highest HOTP counter any slot records (None if no HOTP record was
    readable): a repaired token must never count below it.
    """

    slot: str
    detail: str
    sequence: int | None
    bit: int | None
    locked: bool
    counter: int | None

    def __str__(self) -> str:
        return f"flash damaged: {self.detail}"


class FlashFaultError(CorruptStateError):
    """The flash is in the fault state (``fault`` says why): the token refuses to operate."""

    def __init__(self, fault: FlashFault) -> None:
        self.fault = fault
        super().__init__(f"{fault}; the token refuses to operate rather than fall back to an older record")

    def __reduce__(self) -> tuple[type[FlashFaultError], tuple[FlashFault]]:
        return (type(self), (self.fault,))


# --- value types --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FlashRecord:
    """One decoded flash record. Holds the seed only encrypted (``ciphertext``)."""

    sequence: int
    serial: str
    model: str
    algorithm: Algorithm
    digits: int
    period: int
    t0: int
    counter: int
    calm: int
    calp: bool
    locked: bool
    kind: TokenKind
    nonce: bytes = dataclasses.field(repr=False)
    ciphertext: bytes = dataclasses.field(repr=False)

    @property
    def provisioned(self) -> bool:
        """True if the record carries an encrypted seed."""
        return bool(self.ciphertext)

    @classmethod
    def blank(cls, sequence: int = 0, calibration: Calibration = Calibration()) -> FlashRecord:
        """An unprovisioned record: no serial, model or seed."""
        return cls(
            sequence=sequence,
            serial="",
            model="",
            algorithm=Algorithm.SHA1,
            digits=_BLANK_DIGITS,
            period=_BLANK_PERIOD,
            t0=0,
            counter=0,
            calm=calibration.calm,
            calp=calibration.calp,
            locked=False,
            kind=TokenKind.TOTP,
            nonce=_BLANK_NONCE,
            ciphertext=b"",
        )


# --- construct schema -----------------------------------------------------------------


class _StrictEnum(Enum):
    """An Enum that refuses unknown values both ways (plain Enum parses them as ints)."""

    def _decode(self, obj: int, context: Any, path: str) -> Any:
        try:
            return self.decmapping[obj]
        except KeyError:
            raise MappingError(f"unknown enum value {obj}", path=path) from None

    def _encode(self, obj: Any, context: Any, path: str) -> Any:
        if isinstance(obj, int) and not isinstance(obj, str) and obj not in self.decmapping:
            raise MappingError(f"unknown enum value {obj}", path=path)
        return super()._encode(obj, context, path)


class _StrictFlag(Adapter):
    """A boolean stored as one byte that must be exactly 0 or 1."""

    def _decode(self, obj: int, context: Any, path: str) -> bool:
        if obj not in (0, 1):
            raise ValidationError(f"flag byte must be 0 or 1, not {obj}", path=path)
        return obj == 1

    def _encode(self, obj: bool, context: Any, path: str) -> int:
        return 1 if obj else 0


_ALGORITHM_CODES = {Algorithm.SHA1: 1, Algorithm.SHA256: 2, Algorithm.SHA512: 3}
_KIND_CODES = {TokenKind.TOTP: 1, TokenKind.HOTP: 2}

_BODY = Struct(
    "magic" / Const(MAGIC),
    "version" / Const(FORMAT_VERSION, Int8ub),
    "sequence" / Int32ub,
    "serial" / PascalString(Int8ub, "ascii"),
    "model" / PascalString(Int8ub, "ascii"),
    "algorithm" / _StrictEnum(Int8ub, **{a.value: code for a, code in _ALGORITHM_CODES.items()}),
    "digits" / Int8ub,
    "period" / Int32ub,
    "t0" / Int64ub,
    "counter" / Int64ub,
    "calm" / Int16ub,
    "calp" / _StrictFlag(Int8ub),
    "locked" / _StrictFlag(Int8ub),
    "kind" / _StrictEnum(Int8ub, **{k.value: code for k, code in _KIND_CODES.items()}),
    "nonce" / Bytes(NONCE_SIZE),
    "ciphertext" / Prefixed(Int8ub, GreedyBytes),
)

_RECORD = Struct(
    "body" / RawCopy(_BODY),
    "crc" / Checksum(Int32ub, zlib.crc32, this.body.data),
)

_SLOT = Struct(
    "record" / _RECORD,
    "padding" / GreedyBytes,
)

_CONSTRUCT_REASONS = {
    "ConstError": "bad magic or unsupported format version",
    "ChecksumError": "CRC mismatch",
    "MappingError": "unknown enum value",
    "ValidationError": "invalid flag byte",
    "StreamError": "record truncated",
}


# --- record encoding ------------------------------------------------------------------


def _is_printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _record_problem(record: FlashRecord) -> str | None:
    """Why ``record`` is not a valid record, or None. Never mentions secret material."""
    if not 0 <= record.sequence < SEQUENCE_MODULUS:
        return "sequence number out of range"
    if not 0 <= record.calm <= MAX_CALM:
        return "CALM out of range"
    if not isinstance(record.algorithm, Algorithm) or not isinstance(record.kind, TokenKind):
        return "unknown algorithm or token kind"
    if not 0 <= record.counter <= MAX_T0 or not 0 <= record.t0 <= MAX_T0:
        return "counter or T0 out of range"
    if len(record.nonce) != NONCE_SIZE:
        return "bad nonce length"
    if not record.provisioned:
        if record.serial or record.model or record.nonce != _BLANK_NONCE or record.locked:
            return "unprovisioned record with provisioning data"
        return None
    try:
        if serialno.normalize(record.serial) != record.serial:
            return "serial not normalized"
    except InvalidSerialError:
        return "malformed serial"
    if not 1 <= len(record.model) <= MAX_MODEL_LENGTH or not _is_printable_ascii(record.model):
        return "malformed model name"
    if not 6 <= record.digits <= 10:
        return "digits out of range"
    if not 1 <= record.period <= MAX_PERIOD:
        return "period out of range"
    if not MIN_SEED_SIZE + TAG_SIZE <= len(record.ciphertext) <= MAX_SEED_SIZE + TAG_SIZE:
        return "bad encrypted-seed length"
    if _RECORD_OVERHEAD + len(record.serial) + len(record.model) + len(record.ciphertext) > SLOT_SIZE:
        return "record larger than a slot"
    return None


def encode_record(record: FlashRecord) -> bytes:
    """The bytes of one record (without slot padding), CRC included."""
    problem = _record_problem(record)
    if problem is not None:
        raise InvalidConfigError(f"cannot encode flash record: {problem}")
    body = {
        "sequence": record.sequence,
        "serial": record.serial,
        "model": record.model,
        "algorithm": record.algorithm.value,
        "digits": record.digits,
        "period": record.period,
        "t0": record.t0,
        "counter": record.counter,
        "calm": record.calm,
        "calp": record.calp,
        "locked": record.locked,
        "kind": record.kind.value,
        "nonce": record.nonce,
        "ciphertext": record.ciphertext,
    }
    return bytes(_RECORD.build({"body": {"value": body}}))


def decode_record(data: bytes) -> FlashRecord:
    """Parse one slot's contents: a record followed only by erased (0xFF) bytes.

    Raises :class:`CorruptStateError` naming the problem (never the contents).
    """
    data = bytes(data)
    if not data.strip(bytes([ERASED_BYTE])):
        raise CorruptStateError("slot is erased")
    try:
        parsed = _SLOT.parse(data)
    except ConstructError as exc:
        reason = _CONSTRUCT_REASONS.get(type(exc).__name__, "malformed record")
        raise CorruptStateError(reason) from None
    except UnicodeDecodeError:
        raise CorruptStateError("non-ASCII serial or model") from None
    if parsed.padding.strip(bytes([ERASED_BYTE])):
        raise CorruptStateError("garbage after the record")
    body = parsed.record.body.value
    record = FlashRecord(
        sequence=body.sequence,
        serial=body.serial,
        model=body.model,
        algorithm=Algorithm(str(body.algorithm)),
        digits=body.digits,
        period=body.period,
        t0=body.t0,
        counter=body.counter,
        calm=body.calm,
        calp=body.calp,
        locked=body.locked,
        kind=TokenKind(str(body.kind)),
        nonce=bytes(body.nonce),
        ciphertext=bytes(body.ciphertext),
    )
    problem = _record_problem(record)
    if problem is not None:
        raise CorruptStateError(problem)
    return record


def _is_newer(a: int, b: int) -> bool:
    """True if sequence ``a`` is newer than ``b`` (RFC 1982 serial number arithmetic)."""
    return 0 < (a - b) % SEQUENCE_MODULUS < _SEQUENCE_HALF


# --- slot analysis: torn write or damage (see the module docstring) ------------------------------


def _length_prefix_offsets(data: bytes) -> list[int]:
    """Offsets of the serial, model and ciphertext length prefixes, as far as ``data`` reaches."""
    offsets: list[int] = []
    serial_at = _SERIAL_LENGTH_OFFSET
    if len(data) <= serial_at:
        return offsets
    offsets.append(serial_at)
    model_at = serial_at + 1 + data[serial_at]
    if len(data) <= model_at:
        return offsets
    offsets.append(model_at)
    ciphertext_at = model_at + 1 + data[model_at] + _REL_CT_LENGTH
    if len(data) > ciphertext_at:
        offsets.append(ciphertext_at)
    return offsets


def _record_length(data: bytes) -> int | None:
    """The record length ``data``'s length prefixes declare, or None if one lies beyond ``data``."""
    offsets = _length_prefix_offsets(data)
    if len(offsets) < 3:
        return None
    return _RECORD_OVERHEAD + sum(data[offset] for offset in offsets)


def _crc_frames(data: bytes) -> bool:
    """True if ``data`` frames a record whose CRC matches, followed only by erased bytes."""
    length = _record_length(data)
    if length is None or length > len(data):
        return False
    body_end = length - 4
    return zlib.crc32(data[:body_end]) == int.from_bytes(data[body_end:length], "big") and not data[
        length:
    ].strip(_ERASED)


@functools.lru_cache(maxsize=None)
def _single_bit_syndromes(length: int) -> dict[int, int]:
    """CRC-32 change -> bit index, for flipping one bit of a ``length``-byte message (-1: ambiguous).

    CRC-32 is affine: crc(m ^ e) == crc(m) ^ crc(e) ^ crc(0...0) for equal lengths.
    """
    zero = zlib.crc32(bytes(length))
    table: dict[int, int] = {}
    buf = bytearray(length)
    for bit in range(length * 8):
        buf[bit >> 3] = 0x80 >> (bit & 7)
        syndrome = zlib.crc32(buf) ^ zero
        table[syndrome] = -1 if syndrome in table else bit
        buf[bit >> 3] = 0
    return table


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit >> 3] ^= 0x80 >> (bit & 7)
    return bytes(out)


def _locate_one_bit(data: bytes) -> tuple[FlashRecord, int] | None:
    """The valid record ``data`` is one flipped bit away from, and that bit's index; None if none (or several)."""
    candidates: set[int] = set()
    length = _record_length(data)
    if length is not None and length <= len(data) and not data[length:].strip(_ERASED):
        body_end = length - 4
        syndrome = zlib.crc32(data[:body_end]) ^ int.from_bytes(data[body_end:length], "big")
        if syndrome & (syndrome - 1) == 0 and syndrome:
            candidates.add(body_end * 8 + 31 - (syndrome.bit_length() - 1))  # a bit of the stored CRC
        elif syndrome:
            bit = _single_bit_syndromes(body_end).get(syndrome, -1)
            if bit >= 0:
                candidates.add(bit)
    for offset in _length_prefix_offsets(data):  # a flipped length prefix moves the CRC: try each bit
        candidates.update(range(offset * 8, offset * 8 + 8))
    found: list[tuple[FlashRecord, int]] = []
    for bit in sorted(candidates):
        candidate = _flip(data, bit)
        if not _crc_frames(candidate):
            continue
        try:
            found.append((decode_record(candidate), bit))
        except CorruptStateError:
            continue
    return found[0] if len(found) == 1 else None


def _locate_restored(data: bytes) -> FlashRecord | None:
    """A complete record hidden by damage to its predictable bytes (and at most one more flipped bit).

    Two bytes a torn write cannot explain are predictable: the magic and
    version at the start (decayed to ``0xFF`` they mimic an interrupted
    erase), and the ciphertext length prefix, which must make the record end
    where the written bytes end (enlarged, it mimics an interrupted write).
    If restoring them yields a CRC-valid record, the slot held that complete
    record: a torn write would need its last four bytes to equal a CRC (2^-32).
    """
    candidates: list[bytes] = []
    erased_prefix = len(data) - len(data.lstrip(_ERASED))
    header = MAGIC + bytes([FORMAT_VERSION])
    if 0 < erased_prefix <= len(header):
        candidates.append(header[:erased_prefix] + data[erased_prefix:])
    offsets = _length_prefix_offsets(data)
    if len(offsets) == 3:
        ct_at, end = offsets[2], len(data.rstrip(_ERASED))
        for erased_tail in range(4):  # the record's own last bytes may read 0xFF
            length = end + erased_tail - ct_at - 5
            if length != data[ct_at] and MIN_SEED_SIZE + TAG_SIZE <= length <= MAX_SEED_SIZE + TAG_SIZE:
                candidates.append(data[:ct_at] + bytes([length]) + data[ct_at + 1 :])
    found: set[FlashRecord] = set()
    for candidate in candidates:
        if _crc_frames(candidate):
            try:
                found.add(decode_record(candidate))
            except CorruptStateError:
                pass
            continue
        located = _locate_one_bit(candidate)
        if located is not None:
            found.add(located[0])
    return found.pop() if len(found) == 1 else None


def _decode_unpadded(data: bytes) -> FlashRecord | None:
    """The record at the start of ``data`` if it is valid, whatever follows it; else None."""
    length = _record_length(data)
    if length is None or length > len(data):
        return None
    try:
        return decode_record(data[:length])
    except CorruptStateError:
        return None


_VALID, _ERASED_SLOT, _ERASING, _DAMAGED, _UNKNOWN = "valid", "erased", "erasing", "damaged", "unknown"


@dataclasses.dataclass(frozen=True)
class _Reading:
    """What one slot holds. ``record``: the valid record, or the one a located flipped bit damaged."""

    state: str
    data: bytes = dataclasses.field(repr=False)
    record: FlashRecord | None = None
    reason: str = ""
    bit: int | None = None
    note: str = ""


def _read_slot(data: bytes) -> _Reading:
    try:
        return _Reading(_VALID, data, decode_record(data))
    except CorruptStateError as exc:
        reason = str(exc)
    if not data.strip(_ERASED):
        return _Reading(_ERASED_SLOT, data, reason=reason)
    record = _decode_unpadded(data)
    if record is not None:
        return _Reading(_VALID, data, record, reason, note="non-erased bytes after the record (ignored)")
    located = _locate_one_bit(data)
    if located is None:
        restored = _locate_restored(data)
        if restored is not None:
            return _Reading(_DAMAGED, data, restored, reason)
        return _Reading(_ERASING if data[0] == ERASED_BYTE else _UNKNOWN, data, reason=reason)
    record, bit = located
    if bit >> 3 >= len(data.rstrip(_ERASED)):
        # Byte for byte both "power lost before this bit was programmed" and "this bit decayed":
        # the body is complete and the CRC matches but for that bit, so the record counts as written.
        note = "its last bytes read erased but for one bit (taken as written)"
        return _Reading(_VALID, data, record, reason, bit, note)
    return _Reading(_DAMAGED, data, record, reason, bit)


def _algorithm_offset(serial_length: int, model_length: int) -> int:
    return _SERIAL_LENGTH_OFFSET + 2 + serial_length + model_length


def _field(data: bytes, offset: int, size: int) -> bytes | None:
    """``data[offset:offset+size]`` if all of it is there, else None."""
    return data[offset : offset + size] if offset + size <= len(data) else None


def _crc_prefix_matches(written: bytes, body_end: int) -> bool:
    """For a prefix that holds a whole body: the CRC bytes written so far are the body's CRC."""
    crc = zlib.crc32(written[:body_end]).to_bytes(4, "big")
    return written[body_end:] == crc[: len(written) - body_end]


def _legal_step(before: FlashRecord, after: FlashRecord) -> bool:
    """True if ``after`` can follow ``before`` by a counter, lock or calibration write."""
    return (
        after.locked >= before.locked
        and after.counter >= before.counter
        and dataclasses.replace(after, sequence=before.sequence, counter=before.counter, locked=before.locked,
                                calm=before.calm, calp=before.calp) == before
    )


def _torn_copy_write(written: bytes, base: FlashRecord, sequence: int) -> bool:
    """Is ``written`` a proper prefix of a counter, lock or calibration write following ``base``?"""
    template = encode_record(dataclasses.replace(base, sequence=sequence))
    body_end = len(template) - 4
    if len(written) >= len(template):
        return False
    alg = _algorithm_offset(len(base.serial), len(base.model))
    mutable = set(range(alg + _REL_CALM, alg + _REL_CALP + 1))
    if base.provisioned and base.kind is TokenKind.HOTP:
        mutable.update(range(alg + _REL_COUNTER, alg + _REL_COUNTER + 8))
    if base.provisioned and not base.locked:
        mutable.add(alg + _REL_LOCK)
    if any(written[i] != template[i] for i in range(min(len(written), body_end)) if i not in mutable):
        return False
    if len(written) >= body_end:  # the whole body is there: it must be a legal record and step
        if not _crc_prefix_matches(written, body_end):
            return False
        try:
            after = decode_record(written[:body_end] + zlib.crc32(written[:body_end]).to_bytes(4, "big"))
        except CorruptStateError:
            return False
        return _legal_step(dataclasses.replace(base, sequence=sequence), after)
    lock = _field(written, alg + _REL_LOCK, 1)
    if lock is not None and lock[0] not in ((1,) if base.locked else (0, 1)):
        return False
    calp = _field(written, alg + _REL_CALP, 1)
    if calp is not None and calp[0] not in (0, 1):
        return False
    calm = _field(written, alg + _REL_CALM, 2)
    if calm is not None and int.from_bytes(calm, "big") > MAX_CALM:
        return False
    counter = _field(written, alg + _REL_COUNTER, 8)
    return counter is None or int.from_bytes(counter, "big") >= base.counter


def _torn_provisioning(written: bytes, base: FlashRecord) -> bool:
    """Is ``written`` a proper prefix of a provisioning write following the unlocked ``base``?"""
    serial_length = written[_SERIAL_LENGTH_OFFSET]
    serial = written[_SERIAL_LENGTH_OFFSET + 1 : _SERIAL_LENGTH_OFFSET + 1 + serial_length]
    if not 1 <= serial_length <= serialno.MAX_SERIAL_LENGTH or not set(serial) <= _SERIAL_BYTES:
        return False
    model_at = _SERIAL_LENGTH_OFFSET + 1 + serial_length
    if len(written) <= model_at:
        return True
    try:
        if serialno.normalize(serial.decode("ascii")) != serial.decode("ascii"):
            return False
    except InvalidSerialError:
        return False
    model_length = written[model_at]
    model = written[model_at + 1 : model_at + 1 + model_length]
    if not 1 <= model_length <= MAX_MODEL_LENGTH or not all(0x20 <= b < 0x7F for b in model):
        return False
    alg = _algorithm_offset(serial_length, model_length)
    calibration = base.calm.to_bytes(2, "big") + bytes([base.calp])  # provisioning keeps the calibration
    checks: list[tuple[int, int, Any]] = [
        (0, 1, lambda v: v[0] in _ALGORITHM_CODES.values()),
        (_REL_DIGITS, 1, lambda v: 6 <= v[0] <= 10),
        (_REL_PERIOD, 4, lambda v: int.from_bytes(v, "big") >= 1),
        (_REL_CALM, 3, lambda v: v == calibration),
        (_REL_LOCK, 1, lambda v: v[0] == 0),
        (_REL_KIND, 1, lambda v: v[0] in _KIND_CODES.values()),
        (_REL_NONCE, NONCE_SIZE, lambda v: not base.provisioned or v != base.nonce),
        (_REL_CT_LENGTH, 1, lambda v: MIN_SEED_SIZE + TAG_SIZE <= v[0] <= MAX_SEED_SIZE + TAG_SIZE),
    ]
    for relative, size, ok in checks:
        value = _field(written, alg + relative, size)
        if value is not None and not ok(value):
            return False
    length = _record_length(written)
    if length is None:
        return True
    if length > SLOT_SIZE or len(written) >= length:
        return False
    body_end = length - 4
    if len(written) < body_end:
        return True
    if not _crc_prefix_matches(written, body_end):
        return False
    try:
        decode_record(written[:body_end] + zlib.crc32(written[:body_end]).to_bytes(4, "big"))
    except CorruptStateError:
        return False
    return True


def _torn_write(data: bytes, base: FlashRecord) -> bool:
    """True if ``data`` is what a write following ``base`` leaves when power is lost mid-way.

    That is a proper prefix of a record the firmware could have been writing
    (sequence number + 1), then erased bytes; see the module docstring.
    """
    written = data.rstrip(_ERASED)
    sequence = (base.sequence + 1) % SEQUENCE_MODULUS
    header = MAGIC + bytes([FORMAT_VERSION]) + _SEQUENCE_STRUCT.pack(sequence)
    if written[: len(header)] != header[: len(written)]:
        return False
    if len(written) <= _SERIAL_LENGTH_OFFSET:
        return True
    return _torn_copy_write(written, base, sequence) or (not base.locked and _torn_provisioning(written, base))


def _history_problem(older: FlashRecord, newer: FlashRecord) -> str | None:
    """Why ``newer`` cannot follow ``older`` (the lock and a seed's HOTP counter never go back), or None."""
    if older.locked and not newer.locked:
        return "the older record is factory-locked and the newer one is not"
    same_seed = older.provisioned and (older.nonce, older.ciphertext) == (newer.nonce, newer.ciphertext)
    if same_seed and older.kind is TokenKind.HOTP and older.counter > newer.counter:
        return "the older record holds a higher HOTP counter than the newer one"
    return None


# --- argument checks -----------------------------------------------------------------------


def _check_device_key(device_key: bytes) -> bytes:
    if not isinstance(device_key, (bytes, bytearray, memoryview)):
        raise InvalidKeyError(f"device key must be bytes, not {type(device_key).__name__}")
    device_key = bytes(device_key)
    if len(device_key) != DEVICE_KEY_SIZE:
        raise InvalidKeyError(f"device key must be {DEVICE_KEY_SIZE} bytes, got {len(device_key)}")
    return device_key


def _check_seed(seed: bytes) -> bytes:
    if not isinstance(seed, (bytes, bytearray, memoryview)):
        raise InvalidKeyError(f"seed must be bytes, not {type(seed).__name__}")
    seed = bytes(seed)
    if not MIN_SEED_SIZE <= len(seed) <= MAX_SEED_SIZE:
        raise InvalidKeyError(f"seed must be {MIN_SEED_SIZE} to {MAX_SEED_SIZE} bytes, got {len(seed)}")
    return seed


def _check_model(model: str) -> str:
    if not isinstance(model, str):
        raise InvalidConfigError(f"model name must be a string, not {type(model).__name__}")
    if not 1 <= len(model) <= MAX_MODEL_LENGTH or not _is_printable_ascii(model):
        raise InvalidConfigError(f"model name must be 1 to {MAX_MODEL_LENGTH} printable ASCII characters")
    return model


def _check_kind(kind: str | TokenKind) -> TokenKind:
    try:
        return TokenKind(kind.lower() if isinstance(kind, str) and not isinstance(kind, TokenKind) else kind)
    except ValueError:
        raise InvalidConfigError(f"token kind must be 'totp' or 'hotp', not {kind!r}") from None


def _check_int(value: object, name: str, low: int, high: int, error: type[InvalidInputError]) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise error(f"{name} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise error(f"{name} must be between {low} and {high}, not {value}")
    return int(value)


# --- the flash ---------------------------------------------------------------------------------


class SeedCipher:
    """The seed's encryption under one device key: the one definition, for :class:`Flash` and fleet stamping.

    AES-256-GCM under a key derived from the device key; the nonce is
    derived (SIV-style) from the record's sequence number, the serial and the
    seed, so re-encrypting the same seed in the same record gives the same
    bytes; the serial is associated data (see the module docstring).
    """

    __slots__ = ("_enc_key", "_nonce_key")

    def __init__(self, device_key: bytes) -> None:
        key = _check_device_key(device_key)
        self._enc_key = hmac.new(key, _ENC_KEY_LABEL, hashlib.sha256).digest()
        self._nonce_key = hmac.new(key, _NONCE_KEY_LABEL, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "SeedCipher(<device key>)"

    @staticmethod
    def associated_data(serial: str) -> bytes:
        """What binds a sealed seed to its serial (and to this flash format)."""
        encoded = serial.encode("ascii")
        return MAGIC + bytes([FORMAT_VERSION, len(encoded)]) + encoded

    def encrypt(self, sequence: int, serial: str, seed: bytes) -> tuple[bytes, bytes]:
        """``(nonce, ciphertext)`` of ``seed`` in the record numbered ``sequence``."""
        associated = self.associated_data(serial)
        message = _NONCE_LABEL + _SEQUENCE_STRUCT.pack(sequence) + associated + seed
        nonce = hmac.new(self._nonce_key, message, hashlib.sha256).digest()[:NONCE_SIZE]
        return nonce, AESGCM(self._enc_key).encrypt(nonce, seed, associated)

    def decrypt(self, record: FlashRecord) -> bytes:
        """The seed of ``record``; :class:`SeedAuthenticationError` if it does not authenticate."""
        try:
            return AESGCM(self._enc_key).decrypt(record.nonce, record.ciphertext, self.associated_data(record.serial))
        except InvalidTag:
            raise SeedAuthenticationError(
                "the encrypted seed does not authenticate: wrong device key or tampered flash image"
            ) from None


class Flash:
    """The token's flash: two A/B slots holding the newest and previous record.

    Make one with :meth:`blank` or :meth:`from_image`. Every change writes a
    new record (see the module docstring). The seed is encrypted under the
    device key and is used only by :meth:`code`; nothing returns it.

    A flash whose image holds damage that may hide the newest record loads in
    the fault state (:attr:`fault` is set): then every operation and state
    read raises :class:`FlashFaultError`, except :attr:`locked` (fails
    closed), :attr:`fault`, :attr:`diagnostics` and :attr:`image`.
    """

    __slots__ = (
        "_image", "_cipher", "_record", "_slot", "_power_loss_after", "_fault", "_diagnostics"
    )

    def __init__(self, image: bytes, device_key: bytes) -> None:
        """Load ``image``; prefer :meth:`from_image` and :meth:`blank`."""
        key = _check_device_key(device_key)
        if not isinstance(image, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"flash image must be bytes, not {type(image).__name__}")
        image = bytes(image)
        if len(image) != IMAGE_SIZE:
            raise CorruptStateError(f"flash image must be {IMAGE_SIZE} bytes, got {len(image)}")
        self._image = bytearray(image)
        self._cipher = SeedCipher(key)
        self._power_loss_after: int | None = None
        self._record: FlashRecord | None = None
        self._slot: int = 0
        self._fault: FlashFault | None = None
        self._diagnostics: tuple[str, ...] = ()
        self._load()

    # --- construction ---

    @classmethod
    def blank(cls, device_key: bytes) -> Flash:
        """A formatted, unprovisioned flash: a blank record (sequence 0) in slot A, slot B erased."""
        record = encode_record(FlashRecord.blank())
        image = bytearray([ERASED_BYTE]) * IMAGE_SIZE
        image[: len(record)] = record
        return cls(bytes(image), device_key)

    @classmethod
    def from_image(cls, image: bytes, device_key: bytes) -> Flash:
        """Load a raw image (``IMAGE_SIZE`` bytes).

        Raises :class:`CorruptStateError` if the size is wrong or no slot holds
        a valid or recognizable record, and :class:`SeedAuthenticationError` (a
        CorruptStateError) if the newest valid record's seed does not
        authenticate under ``device_key``. An image with damage that may hide
        the newest record loads in the fault state (check :attr:`fault`).
        """
        return cls(image, device_key)

    # --- loading ---

    def _slot_bytes(self, index: int) -> bytes:
        start = index * SLOT_SIZE
        return bytes(self._image[start : start + SLOT_SIZE])

    def _load(self) -> None:
        """Pick the newest valid record; enter the fault state if damage may hide a newer one."""
        readings = [_read_slot(self._slot_bytes(index)) for index in range(SLOT_COUNT)]
        valid = [index for index, reading in enumerate(readings) if reading.state == _VALID]
        newest: FlashRecord | None = None
        roles = ["", ""]
        fault_slot: int | None = None
        fault_detail = ""
        torn = False
        if valid:
            slot = valid[0]
            for other_slot in valid[1:]:
                if _is_newer(_record_of(readings[other_slot]).sequence, _record_of(readings[slot]).sequence):
                    slot = other_slot
            newest = _record_of(readings[slot])
            roles[slot] = "newest"
            other_index = 1 - slot
            other = readings[other_index]
            here, there = SLOT_NAMES[other_index], SLOT_NAMES[slot]
            if other.state in (_VALID, _DAMAGED):
                older = _record_of(other)
                previous = older.sequence == (newest.sequence - 1) % SEQUENCE_MODULUS
                problem = _history_problem(older, newest)
                if other.state == _DAMAGED and _is_newer(older.sequence, newest.sequence):
                    roles[other_index] = "newer than the valid record"
                    fault_slot = other_index
                    fault_detail = (
                        f"the newest record (slot {here}, sequence {older.sequence}) is damaged ({other.reason}); "
                        f"slot {there} holds only an older one (sequence {newest.sequence})"
                    )
                elif other.state == _DAMAGED and not previous:
                    roles[other_index] = "not the previous record"
                    fault_slot = other_index
                    fault_detail = (
                        f"slot {here} holds a damaged record (sequence {older.sequence}, {other.reason}) that is "
                        f"not the one before the valid record in slot {there} (sequence {newest.sequence})"
                    )
                elif problem is not None:
                    roles[other_index] = "previous"
                    fault_slot = slot
                    fault_detail = f"the two slots hold an impossible history: {problem}"
                else:
                    damaged = other.state == _DAMAGED
                    roles[other_index] = "previous; the next write replaces it" if damaged else "previous"
            elif other.state == _UNKNOWN:
                if _torn_write(other.data, newest):
                    torn = True
                else:
                    fault_slot = other_index
                    fault_detail = (
                        f"slot {here} holds a damaged record ({other.reason}) that is not an interrupted write "
                        f"and may be newer than the valid record in slot {there} (sequence {newest.sequence})"
                    )
            self._slot = slot
        else:
            damaged = [index for index, reading in enumerate(readings) if reading.state == _DAMAGED]
            if not damaged:
                reasons = "; ".join(f"slot {SLOT_NAMES[i]}: {reading.reason}" for i, reading in enumerate(readings))
                raise CorruptStateError(f"no valid record in the flash image ({reasons})")
            fault_slot = damaged[0]
            for index in damaged[1:]:
                if _is_newer(_record_of(readings[index]).sequence, _record_of(readings[fault_slot]).sequence):
                    fault_slot = index
            worst = readings[fault_slot]
            fault_detail = (
                f"no slot holds a valid record; slot {SLOT_NAMES[fault_slot]} holds a damaged record "
                f"(sequence {_record_of(worst).sequence}, {worst.reason})"
            )
        self._record = newest
        self._diagnostics = tuple(
            _describe_slot(SLOT_NAMES[i], reading, roles[i], torn and not roles[i])
            for i, reading in enumerate(readings)
        )
        self._fault = None if fault_slot is None else self._make_fault(readings, fault_slot, fault_detail, newest)
        if newest is not None and newest.provisioned:
            self._decrypt_seed(newest)  # authenticate now: a wrong key fails at load, not at first use

    @staticmethod
    def _make_fault(readings: list[_Reading], slot: int, detail: str, newest: FlashRecord | None) -> FlashFault:
        reading = readings[slot]
        known = [r.record for r in readings if r.record is not None]
        # A record nobody could read may be a lock written after the newest valid one, unless that one is not
        # even provisioned (only a provisioned token can be locked; provisioning clears the lock).
        unknown = any(r.state == _UNKNOWN for r in readings)
        may_be_locked = unknown and (newest is None or newest.provisioned)
        counters = [r.counter for r in known if r.provisioned and r.kind is TokenKind.HOTP]
        if reading.bit is not None:
            detail += f"; one flipped bit located at byte {reading.bit >> 3}"
        return FlashFault(
            slot=SLOT_NAMES[slot],
            detail=detail,
            sequence=None if reading.record is None else reading.record.sequence,
            bit=reading.bit,
            locked=any(r.locked for r in known) or may_be_locked,
            counter=max(counters) if counters else None,
        )

    # --- crypto ---

    def _decrypt_seed(self, record: FlashRecord | None = None) -> bytes:
        return self._cipher.decrypt(self._healthy() if record is None else record)

    # --- writing ---

    def arm_power_loss(self, after_bytes: int) -> None:
        """Test hook: the next write loses power after ``after_bytes`` bytes.

        A write is an erase of the target slot (``SLOT_SIZE`` bytes of 0xFF)
        followed by programming the record bytes; power loss stops it after
        ``after_bytes`` bytes of that sequence, reloads the flash from what is
        left (as a reboot would) and raises :class:`PowerLossError`. If the
        write needs no more than ``after_bytes`` bytes it completes normally.
        The hook is cleared by the next write either way.
        """
        self._power_loss_after = _check_int(after_bytes, "after_bytes", 0, 2 * IMAGE_SIZE, InvalidConfigError)

    def _commit(self, record: FlashRecord) -> None:
        """Write ``record`` with the next sequence number to the other slot (erase, then program)."""
        sequence = self._next_sequence()
        data = encode_record(dataclasses.replace(record, sequence=sequence))
        start = (1 - self._slot) * SLOT_SIZE
        steps = [(start, bytes([ERASED_BYTE]) * SLOT_SIZE), (start, data)]
        budget, self._power_loss_after = self._power_loss_after, None
        for offset, chunk in steps:
            if budget is not None and budget < len(chunk):
                self._image[offset : offset + budget] = chunk[:budget]
                self._load()
                if self._fault is None and self._healthy().sequence == sequence:
                    outcome = "the write took effect (all but its last bit was written)"
                else:
                    outcome = "the flash holds the last complete record"
                raise PowerLossError(f"power lost during a flash write; {outcome}")
            self._image[offset : offset + len(chunk)] = chunk
            if budget is not None:
                budget -= len(chunk)
        self._load()

    def _next_sequence(self) -> int:
        return (self._healthy().sequence + 1) % SEQUENCE_MODULUS

    def _healthy(self) -> FlashRecord:
        """The newest record; FlashFaultError in the fault state."""
        if self._fault is not None:
            raise FlashFaultError(self._fault)
        assert self._record is not None  # _load either finds a record, sets a fault or raises
        return self._record

    def _require_provisioned(self) -> FlashRecord:
        record = self._healthy()
        if not record.provisioned:
            raise DeviceStateError("the token is not provisioned")
        return record

    # --- public operations ---

    def ensure_healthy(self) -> None:
        """Raise :class:`FlashFaultError` if the flash is in the fault state; else do nothing."""
        self._healthy()

    def provision(
        self,
        *,
        seed: bytes,
        serial: str,
        model: str,
        kind: str | TokenKind,
        algorithm: str | Algorithm,
        digits: int,
        period: int,
        t0: int,
        counter: int = 0,
    ) -> None:
        """Store a seed and the token parameters; allowed (again) until :meth:`lock`.

        The serial is normalized (spaces and dashes removed) but its check digit
        is not required, so vendor serials work. Calibration is kept. Serial,
        model and seed must fit one slot together (see the module docstring).
        """
        current = self._healthy()
        if current.locked:
            raise DeviceLockedError("the token is factory-locked: it cannot be provisioned again")
        seed = _check_seed(seed)
        serial = serialno.normalize(serial)
        model = _check_model(model)
        size = _RECORD_OVERHEAD + len(serial) + len(model) + len(seed) + TAG_SIZE
        if size > SLOT_SIZE:
            raise InvalidConfigError(
                f"a {len(serial)}-character serial, a {len(model)}-character model name and a {len(seed)}-byte "
                f"seed make a {size}-byte flash record; a slot holds {SLOT_SIZE}"
            )
        record = FlashRecord(
            sequence=self._next_sequence(),
            serial=serial,
            model=model,
            algorithm=parse_algorithm(algorithm),
            digits=check_digits(digits),
            period=_check_int(period, "period", 1, MAX_PERIOD, InvalidPeriodError),
            t0=_check_int(t0, "T0", 0, MAX_T0, InvalidTimeError),
            counter=check_counter(counter),
            calm=current.calm,
            calp=current.calp,
            locked=False,
            kind=_check_kind(kind),
            nonce=_BLANK_NONCE,
            ciphertext=b"",
        )
        nonce, ciphertext = self._cipher.encrypt(record.sequence, serial, seed)
        self._commit(dataclasses.replace(record, nonce=nonce, ciphertext=ciphertext))

    def lock(self) -> None:
        """Factory lock: the seed and parameters can no longer be replaced.

        Idempotent: locking a locked token does nothing (and writes nothing).
        Raises :class:`DeviceStateError` on an unprovisioned token.
        """
        record = self._require_provisioned()
        if record.locked:
            return
        self._commit(dataclasses.replace(record, locked=True))

    def set_counter(self, counter: int) -> None:
        """Move the HOTP counter forward (HOTP tokens only); the same value writes nothing."""
        counter = check_counter(counter)
        record = self._require_provisioned()
        if record.kind is not TokenKind.HOTP:
            raise DeviceStateError("only an HOTP token has an event counter")
        if counter < record.counter:
            raise DeviceStateError(f"the HOTP counter only moves forward (now {record.counter}, asked {counter})")
        if counter != record.counter:
            self._commit(dataclasses.replace(record, counter=counter))

    def set_calibration(self, calm: int, calp: bool) -> None:
        """Set the RTC calibration register (allowed in every state); an unchanged value writes nothing."""
        calm = _check_int(calm, "CALM", 0, MAX_CALM, InvalidConfigError)
        if not isinstance(calp, bool):
            raise InvalidConfigError(f"CALP must be a bool, not {type(calp).__name__}")
        record = self._healthy()
        if (calm, calp) != (record.calm, record.calp):
            self._commit(dataclasses.replace(record, calm=calm, calp=calp))

    def code(self, counter: int) -> int:
        """HOTP of the stored seed at ``counter`` (TOTP callers pass the time step)."""
        counter = check_counter(counter)
        record = self._require_provisioned()
        return hotp_value(self._decrypt_seed(), counter, digits=record.digits, algorithm=record.algorithm)

    # --- read-only state ---

    @property
    def fault(self) -> FlashFault | None:
        """Why the flash refuses to operate, or None when it is healthy (see :class:`FlashFault`)."""
        return self._fault

    @property
    def diagnostics(self) -> tuple[str, ...]:
        """One line per slot saying what it holds (valid, erased, torn write, damage); never contents."""
        return self._diagnostics

    @property
    def image(self) -> bytes:
        """The full raw image, both slots: what a flash dump shows."""
        return bytes(self._image)

    @property
    def record(self) -> FlashRecord:
        """The newest valid record (the seed only in encrypted form)."""
        return self._healthy()

    @property
    def active_slot(self) -> str:
        """``"A"`` or ``"B"``: the slot holding the newest valid record."""
        self._healthy()
        return SLOT_NAMES[self._slot]

    @property
    def sequence(self) -> int:
        """Sequence number of the newest valid record."""
        return self._healthy().sequence

    @property
    def provisioned(self) -> bool:
        """True once a seed has been stored."""
        return self._healthy().provisioned

    @property
    def locked(self) -> bool:
        """True once the factory lock is set; in the fault state True if it is or may be set (never raises)."""
        if self._fault is not None:
            return self._fault.locked
        return self._healthy().locked

    @property
    def calibration(self) -> Calibration:
        """The RTC calibration register (CALM, CALP)."""
        record = self._healthy()
        return Calibration(record.calm, record.calp)

    @property
    def serial(self) -> str:
        """The normalized serial (DeviceStateError if unprovisioned)."""
        return self._require_provisioned().serial

    @property
    def model(self) -> str:
        """The model name (DeviceStateError if unprovisioned)."""
        return self._require_provisioned().model

    @property
    def kind(self) -> TokenKind:
        """TOTP or HOTP (DeviceStateError if unprovisioned)."""
        return self._require_provisioned().kind

    @property
    def algorithm(self) -> Algorithm:
        """The HMAC hash (DeviceStateError if unprovisioned)."""
        return self._require_provisioned().algorithm

    @property
    def digits(self) -> int:
        """Code length (DeviceStateError if unprovisioned)."""
        return self._require_provisioned().digits

    @property
    def period(self) -> int:
        """TOTP step in seconds (DeviceStateError if unprovisioned)."""
        return self._require_provisioned().period

    @property
    def t0(self) -> int:
        """TOTP T0 in Unix seconds (DeviceStateError if unprovisioned)."""
        return self._require_provisioned().t0

    @property
    def counter(self) -> int:
        """The stored HOTP counter (DeviceStateError if unprovisioned)."""
        return self._require_provisioned().counter

    def __repr__(self) -> str:
        if self._fault is not None:
            return f"Flash(fault=True, locked={self._fault.locked})"
        record = self._healthy()
        if not record.provisioned:
            return f"Flash(provisioned=False, locked={record.locked})"
        return f"Flash(serial={record.serial!r}, model={record.model!r}, locked={record.locked})"


def _record_of(reading: _Reading) -> FlashRecord:
    assert reading.record is not None
    return reading.record


def _describe_slot(name: str, reading: _Reading, role: str, torn: bool) -> str:
    """One diagnostic line for a slot: its state and sequence number, never its contents."""
    record = reading.record
    if reading.state == _VALID and record is not None:
        text = f"slot {name}: record {record.sequence}" + (f" ({role})" if role else "")
        return text + (f"; {reading.note}" if reading.note else "")
    if reading.state == _ERASED_SLOT:
        return f"slot {name}: erased"
    if reading.state == _ERASING:
        return f"slot {name}: partly erased (an erase was interrupted; ignored)"
    if reading.state == _DAMAGED and record is not None and reading.data[0] == ERASED_BYTE and role.startswith("prev"):
        return f"slot {name}: partly erased record {record.sequence} (an erase was interrupted; {role})"
    if reading.state == _DAMAGED and record is not None:
        where = f"one flipped bit at byte {reading.bit >> 3}" if reading.bit is not None else "damage located"
        return f"slot {name}: damaged record {record.sequence} ({reading.reason}; {where})" + (
            f" ({role})" if role else ""
        )
    if torn:
        return f"slot {name}: interrupted write (power lost before it completed; ignored)"
    return f"slot {name}: damaged ({reading.reason}); not an interrupted write"
