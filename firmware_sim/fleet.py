"""Fleets: many tokens made deterministically from one batch secret, exported as PSKC.

Each token's seed and device key are derived with HKDF-SHA256 from the batch
secret and the token's serial number, and its crystal error is drawn from a
distribution seeded the same way, so one batch secret always gives the same
fleet on any machine. The seeds are exported as a PSKC (RFC 6030) file with
python-pskc: plaintext, under a pre-shared AES key, or under a password.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable, Iterator
from fractions import Fraction

import pskc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from firmware_sim.factory import DEVICE_KEY_BYTES, Physics, manufacture
from firmware_sim.models import TokenKind, TokenModel
from firmware_sim.rtc import MAX_ABS_PPM_25
from firmware_sim.token import Token
from vtoken.clock import NS_PER_SECOND, Clock, exact_fraction
from vtoken.errors import InvalidConfigError
from vtoken.serialno import make_serial

HKDF_SALT = b"vtoken fleet v1"
SEED_BYTES = 20
MIN_BATCH_SECRET_BYTES = 16
#: Datasheet tolerance of a 32.768 kHz crystal at 25 °C.
DEFAULT_PPM_SPREAD = 20
#: Crystal errors are drawn in steps of this many ppm.
PPM_RESOLUTION = Fraction(1, 100)
PSKC_MANUFACTURER = "vtoken"
PSKC_HOTP = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
PSKC_TOTP = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
PBKDF2_ITERATIONS = 12_000
PSK_BYTES = 16


def _hkdf(batch_secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=HKDF_SALT, info=info).derive(batch_secret)


def derive_seed(batch_secret: bytes, serial: str, length: int = SEED_BYTES) -> bytes:
    """The seed of token ``serial`` in the batch."""
    return _hkdf(batch_secret, b"seed:" + serial.encode("ascii"), length)


def derive_device_key(batch_secret: bytes, serial: str) -> bytes:
    """The device key (flash encryption key) of token ``serial`` in the batch."""
    return _hkdf(batch_secret, b"device-key:" + serial.encode("ascii"), DEVICE_KEY_BYTES)


def draw_ppm(batch_secret: bytes, serial: str, spread: Fraction | int) -> Fraction:
    """A crystal error uniform in ``[-spread, +spread]`` ppm, in 0.01 ppm steps, from the batch secret.

    Integer arithmetic on HKDF output, so it is the same on every machine and
    every version of every library.
    """
    steps = int(Fraction(spread) / PPM_RESOLUTION)
    if steps == 0:
        return Fraction(0)
    raw = int.from_bytes(_hkdf(batch_secret, b"ppm:" + serial.encode("ascii"), 8), "big")
    return (raw % (2 * steps + 1) - steps) * PPM_RESOLUTION


@dataclasses.dataclass(frozen=True)
class FleetSpec:
    """What a batch is made of."""

    batch_secret: bytes = dataclasses.field(repr=False)
    model: TokenModel
    count: int
    first_serial: int = 100_000_000
    ppm_spread: Fraction | int = DEFAULT_PPM_SPREAD

    def __post_init__(self) -> None:
        if len(self.batch_secret) < MIN_BATCH_SECRET_BYTES:
            raise InvalidConfigError(f"batch secret must be at least {MIN_BATCH_SECRET_BYTES} bytes")
        if self.count < 1:
            raise InvalidConfigError(f"fleet size must be at least 1, not {self.count}")
        if self.first_serial < 0 or self.first_serial + self.count > 10**9:
            raise InvalidConfigError("serial payloads must stay within 9 digits")
        spread = exact_fraction(self.ppm_spread, "ppm spread")
        if not 0 <= spread <= MAX_ABS_PPM_25:
            raise InvalidConfigError(f"ppm spread must be between 0 and {MAX_ABS_PPM_25}, not {spread}")

    def serials(self) -> Iterator[str]:
        """The fleet's serial numbers (with check digits), unique by construction."""
        for i in range(self.count):
            yield make_serial(self.first_serial + i)


def make_fleet(spec: FleetSpec, clock: Clock) -> Iterator[Token]:
    """Manufacture every token of the batch at the clock's current time."""
    for serial in spec.serials():
        yield manufacture(
            model=spec.model,
            seed=derive_seed(spec.batch_secret, serial),
            serial=serial,
            device_key=derive_device_key(spec.batch_secret, serial),
            clock=clock,
            physics=Physics(ppm=draw_ppm(spec.batch_secret, serial, spec.ppm_spread)),
        )


def check_protection(psk: bytes | None, password: str | None) -> None:
    """Refuse a bad PSKC protection choice (before anything is written)."""
    if psk is not None and password is not None:
        raise InvalidConfigError("give a pre-shared key or a password, not both")
    if psk is not None and len(psk) != PSK_BYTES:
        raise InvalidConfigError(f"pre-shared key must be {PSK_BYTES} bytes (AES-128), not {len(psk)}")
    if password is not None and not password:
        raise InvalidConfigError("password must not be empty")


def build_pskc(
    spec: FleetSpec,
    *,
    created_ns: int,
    psk: bytes | None = None,
    password: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> pskc.PSKC:
    """A PSKC container holding the seed of every token in the batch.

    ``psk`` encrypts the seeds with AES-128-CBC and an HMAC-SHA1 ValueMAC;
    ``password`` derives the key with PBKDF2. Without either the file is
    plaintext. ``progress`` is called with the number of keys written so far.
    """
    check_protection(psk, password)
    container = pskc.PSKC()
    if psk is not None:
        container.encryption.setup_preshared_key(key=psk, key_name="Pre-shared-key")
    elif password is not None:
        container.encryption.setup_pbkdf2(
            password,
            key_name="Passphrase",
            iterations=PBKDF2_ITERATIONS,
            salt=_hkdf(spec.batch_secret, b"pskc-salt", 16),
        )
    created = _dt.datetime.fromtimestamp(created_ns // NS_PER_SECOND, tz=_dt.timezone.utc)
    model = spec.model
    for i, serial in enumerate(spec.serials(), start=1):
        key = container.add_key(
            id=serial,
            serial=serial,
            manufacturer=PSKC_MANUFACTURER,
            model=model.name,
            secret=derive_seed(spec.batch_secret, serial),
            algorithm=PSKC_TOTP if model.kind is TokenKind.TOTP else PSKC_HOTP,
            response_encoding="DECIMAL",
            response_length=model.digits,
        )
        if model.algorithm.value != "sha1":
            key.algorithm_suite = model.algorithm.value.upper().replace("SHA", "SHA-")
        if model.kind is TokenKind.TOTP:
            key.time_offset = model.t0 // model.period if model.t0 else 0
            key.time_interval = model.period
            key.time_drift = 0
            key.start_date = created
        else:
            key.counter = 0
        if progress is not None:
            progress(i)
    return container
