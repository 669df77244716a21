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

With S <= 20, M <= 32 and a seed of at most 128 bytes (C <= 144) a record is at
most 251 bytes, so it fits a 256-byte slot.

**Writes.** Every change writes a whole new record, with sequence number + 1,
to the slot that does *not* hold the newest valid record: first that slot is
erased (all ``0xFF``), then the record is programmed (the rest stays ``0xFF``).
On load both slots are parsed; a slot is valid if magic, version, CRC, enum
values, field ranges and erased padding are all right, and the valid slot with
the newer sequence number wins. A write torn at any byte therefore leaves the
previous record intact in the other slot. Sequence numbers compare in serial
number arithmetic (RFC 1982), so the uint32 may wrap (the two slots always
differ by one); in any case 2^32 writes is far beyond a flash page's endurance.

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
    "FlashRecord",
    "PowerLossError",
    "SeedAuthenticationError",
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


# --- errors -----------------------------------------------------------------------


class SeedAuthenticationError(CorruptStateError):
    """The encrypted seed does not authenticate: wrong device key, or a tampered image."""


class PowerLossError(StorageError):
    """A simulated power loss tore a flash write; the flash reloaded what survived."""


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


class Flash:
    """The token's flash: two A/B slots holding the newest and previous record.

    Make one with :meth:`blank` or :meth:`from_image`. Every change writes a
    new record (see the module docstring). The seed is encrypted under the
    device key and is used only by :meth:`code`; nothing returns it.
    """

    __slots__ = ("_image", "_enc_key", "_nonce_key", "_record", "_slot", "_power_loss_after")

    def __init__(self, image: bytes, device_key: bytes) -> None:
        """Load ``image``; prefer :meth:`from_image` and :meth:`blank`."""
        key = _check_device_key(device_key)
        if not isinstance(image, (bytes, bytearray, memoryview)):
            raise InvalidInputError(f"flash image must be bytes, not {type(image).__name__}")
        image = bytes(image)
        if len(image) != IMAGE_SIZE:
            raise CorruptStateError(f"flash image must be {IMAGE_SIZE} bytes, got {len(image)}")
        self._image = bytearray(image)
        self._enc_key = hmac.new(key, _ENC_KEY_LABEL, hashlib.sha256).digest()
        self._nonce_key = hmac.new(key, _NONCE_KEY_LABEL, hashlib.sha256).digest()
        self._power_loss_after: int | None = None
        self._record: FlashRecord
        self._slot: int
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
        a valid record, and :class:`SeedAuthenticationError` (a
        CorruptStateError) if the seed does not authenticate under ``device_key``.
        """
        return cls(image, device_key)

    # --- loading ---

    def _slot_bytes(self, index: int) -> bytes:
        start = index * SLOT_SIZE
        return bytes(self._image[start : start + SLOT_SIZE])

    def _load(self) -> None:
        """Pick the newest valid record of the two slots and check its seed authenticates."""
        found: list[tuple[int, FlashRecord]] = []
        reasons: list[str] = []
        for index in range(SLOT_COUNT):
            try:
                found.append((index, decode_record(self._slot_bytes(index))))
            except CorruptStateError as exc:
                reasons.append(f"slot {SLOT_NAMES[index]}: {exc}")
        if not found:
            raise CorruptStateError("no valid record in the flash image (" + "; ".join(reasons) + ")")
        slot, record = found[0]
        for other_slot, other in found[1:]:
            if _is_newer(other.sequence, record.sequence):
                slot, record = other_slot, other
        self._slot, self._record = slot, record
        if record.provisioned:
            self._decrypt_seed()  # authenticate now: a wrong key fails at load, not at first use

    # --- crypto ---

    @staticmethod
    def _associated_data(serial: str) -> bytes:
        encoded = serial.encode("ascii")
        return MAGIC + bytes([FORMAT_VERSION, len(encoded)]) + encoded

    def _derive_nonce(self, sequence: int, serial: str, seed: bytes) -> bytes:
        message = _NONCE_LABEL + _SEQUENCE_STRUCT.pack(sequence) + self._associated_data(serial) + seed
        return hmac.new(self._nonce_key, message, hashlib.sha256).digest()[:NONCE_SIZE]

    def _decrypt_seed(self) -> bytes:
        record = self._record
        try:
            return AESGCM(self._enc_key).decrypt(
                record.nonce, record.ciphertext, self._associated_data(record.serial)
            )
        except InvalidTag:
            raise SeedAuthenticationError(
                "the encrypted seed does not authenticate: wrong device key or tampered flash image"
            ) from None

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
        data = encode_record(dataclasses.replace(record, sequence=self._next_sequence()))
        start = (1 - self._slot) * SLOT_SIZE
        steps = [(start, bytes([ERASED_BYTE]) * SLOT_SIZE), (start, data)]
        budget, self._power_loss_after = self._power_loss_after, None
        for offset, chunk in steps:
            if budget is not None and budget < len(chunk):
                self._image[offset : offset + budget] = chunk[:budget]
                self._load()
                raise PowerLossError("power lost during a flash write; the flash holds the last complete record")
            self._image[offset : offset + len(chunk)] = chunk
            if budget is not None:
                budget -= len(chunk)
        self._load()

    def _next_sequence(self) -> int:
        return (self._record.sequence + 1) % SEQUENCE_MODULUS

    def _require_provisioned(self) -> FlashRecord:
        if not self._record.provisioned:
            raise DeviceStateError("the token is not provisioned")
        return self._record

    # --- public operations ---

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
        is not required, so vendor serials work. Calibration is kept.
        """
        if self._record.locked:
            raise DeviceLockedError("the token is factory-locked: it cannot be provisioned again")
        seed = _check_seed(seed)
        serial = serialno.normalize(serial)
        record = FlashRecord(
            sequence=self._next_sequence(),
            serial=serial,
            model=_check_model(model),
            algorithm=parse_algorithm(algorithm),
            digits=check_digits(digits),
            period=_check_int(period, "period", 1, MAX_PERIOD, InvalidPeriodError),
            t0=_check_int(t0, "T0", 0, MAX_T0, InvalidTimeError),
            counter=check_counter(counter),
            calm=self._record.calm,
            calp=self._record.calp,
            locked=False,
            kind=_check_kind(kind),
            nonce=_BLANK_NONCE,
            ciphertext=b"",
        )
        nonce = self._derive_nonce(record.sequence, serial, seed)
        ciphertext = AESGCM(self._enc_key).encrypt(nonce, seed, self._associated_data(serial))
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
        if (calm, calp) != (self._record.calm, self._record.calp):
            self._commit(dataclasses.replace(self._record, calm=calm, calp=calp))

    def code(self, counter: int) -> int:
        """HOTP of the stored seed at ``counter`` (TOTP callers pass the time step)."""
        counter = check_counter(counter)
        record = self._require_provisioned()
        return hotp_value(self._decrypt_seed(), counter, digits=record.digits, algorithm=record.algorithm)

    # --- read-only state ---

    @property
    def image(self) -> bytes:
        """The full raw image, both slots: what a flash dump shows."""
        return bytes(self._image)

    @property
    def record(self) -> FlashRecord:
        """The newest valid record (the seed only in encrypted form)."""
        return self._record

    @property
    def active_slot(self) -> str:
        """``"A"`` or ``"B"``: the slot holding the newest valid record."""
        return SLOT_NAMES[self._slot]

    @property
    def sequence(self) -> int:
        """Sequence number of the newest valid record."""
        return self._record.sequence

    @property
    def provisioned(self) -> bool:
        """True once a seed has been stored."""
        return self._record.provisioned

    @property
    def locked(self) -> bool:
        """True once the factory lock is set."""
        return self._record.locked

    @property
    def calibration(self) -> Calibration:
        """The RTC calibration register (CALM, CALP)."""
        return Calibration(self._record.calm, self._record.calp)

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
        record = self._record
        if not record.provisioned:
            return f"Flash(provisioned=False, locked={record.locked})"
        return f"Flash(serial={record.serial!r}, model={record.model!r}, locked={record.locked})"
