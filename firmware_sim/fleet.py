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
from vtoken.errors import InvalidConfigError, InvalidInputError
from vtoken.oath import Algorithm
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


def make_token(spec: FleetSpec, serial: str, clock: Clock) -> Token:
    """Manufacture token ``serial`` of the batch at the clock's current time."""
    return manufacture(
        model=spec.model,
        seed=derive_seed(spec.batch_secret, serial),
        serial=serial,
        device_key=derive_device_key(spec.batch_secret, serial),
        clock=clock,
        physics=Physics(ppm=draw_ppm(spec.batch_secret, serial, spec.ppm_spread)),
    )


def make_fleet(spec: FleetSpec, clock: Clock) -> Iterator[Token]:
    """Manufacture every token of the batch at the clock's current time."""
    for serial in spec.serials():
        yield make_token(spec, serial, clock)


def check_protection(psk: bytes | None, password: str | None) -> None:
    """Refuse a bad PSKC protection choice (before anything is written)."""
    if psk is not None and password is not None:
        raise InvalidConfigError("give a pre-shared key or a password, not both")
    if psk is not None and len(psk) != PSK_BYTES:
        raise InvalidConfigError(f"pre-shared key must be {PSK_BYTES} bytes (AES-128), not {len(psk)}")
    if password is not None and not password:
        raise InvalidConfigError("password must not be empty")


#: The ``<Suite>`` text of each hash. python-pskc passes it through as ``Key.algorithm_suite``, and
#: privacyIDEA lower-cases it and needs exactly ``sha1``/``sha256``/``sha512`` (anything else, such as
#: ``sha-256``, silently becomes SHA-1 there). SHA-1, the RFC 4226/6238 default, is left unnamed.
PSKC_SUITES: dict[Algorithm, str | None] = {Algorithm.SHA1: None, Algorithm.SHA256: "SHA256", Algorithm.SHA512: "SHA512"}


def pskc_suite(algorithm: Algorithm) -> str | None:
    """The ``<Suite>`` text for ``algorithm`` (None: write no Suite, which means SHA-1)."""
    return PSKC_SUITES[algorithm]


def new_pskc_container(
    *, psk: bytes | None = None, password: str | None = None, salt: bytes | None = None
) -> pskc.PSKC:
    """An empty PSKC container: plaintext, under a pre-shared AES-128 key, or under a password.

    ``salt`` is the PBKDF2 salt (python-pskc draws a random one when None).
    """
    check_protection(psk, password)
    container = pskc.PSKC()
    if psk is not None:
        container.encryption.setup_preshared_key(key=psk, key_name="Pre-shared-key")
    elif password is not None:
        container.encryption.setup_pbkdf2(password, key_name="Passphrase", iterations=PBKDF2_ITERATIONS, salt=salt)
    return container


def add_pskc_key(
    container: pskc.PSKC,
    *,
    serial: str,
    model: str,
    kind: TokenKind,
    algorithm: Algorithm,
    digits: int,
    period: int,
    t0: int,
    counter: int,
    secret: bytes,
    start_date: _dt.datetime | None = None,
) -> None:
    """Add one token's KeyPackage: the one layout of a vtoken PSKC key (fleet file and export alike).

    TOTP: TimeInterval = period, Time = T0 in periods (so T0 must be a whole
    number of periods), TimeDrift 0. HOTP: Counter = the next counter.
    """
    if kind is TokenKind.TOTP and t0 % period:
        raise InvalidInputError(f"token {serial}: T0 {t0} is not a whole number of {period} s periods; PSKC cannot carry it")
    key = container.add_key(
        id=serial,
        serial=serial,
        manufacturer=PSKC_MANUFACTURER,
        model=model,
        secret=secret,
        algorithm=PSKC_TOTP if kind is TokenKind.TOTP else PSKC_HOTP,
        response_encoding="DECIMAL",
        response_length=digits,
    )
    suite = pskc_suite(algorithm)
    if suite is not None:
        key.algorithm_suite = suite
    if kind is TokenKind.TOTP:
        key.time_offset = t0 // period
        key.time_interval = period
        key.time_drift = 0
        if start_date is not None:
            key.start_date = start_date
    else:
        key.counter = counter


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
    container = new_pskc_container(
        psk=psk,
        password=password,
        salt=_hkdf(spec.batch_secret, b"pskc-salt", 16) if password is not None else None,
    )
    created = _dt.datetime.fromtimestamp(created_ns // NS_PER_SECOND, tz=_dt.timezone.utc)
    model = spec.model
    for i, serial in enumerate(spec.serials(), start=1):
        add_pskc_key(
            container,
            serial=serial,
            model=model.name,
            kind=model.kind,
            algorithm=model.algorithm,
            digits=model.digits,
            period=model.period,
            t0=model.t0,
            counter=0,
            secret=derive_seed(spec.batch_secret, serial),
            start_date=created,
        )
        if progress is not None:
            progress(i)
    return container
