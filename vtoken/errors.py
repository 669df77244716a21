"""The one exception tree of vtoken.

Every error the project raises on purpose derives from :class:`VTokenError`.
Errors about bad arguments also derive from :class:`ValueError`, so callers
that only know the standard library can still catch them. Messages name the
problem and never contain secret material (seeds, keys, master keys).
"""

from __future__ import annotations


class VTokenError(Exception):
    """Root of every error vtoken raises on purpose."""


# --- bad input -------------------------------------------------------------


class InvalidInputError(VTokenError, ValueError):
    """An argument has a value vtoken cannot accept."""


class InvalidKeyError(InvalidInputError):
    """A key (seed) is empty or not valid hex/base32."""


class InvalidDigitsError(InvalidInputError):
    """A digit count is outside the supported range."""


class UnknownAlgorithmError(InvalidInputError):
    """A hash algorithm name is not one of sha1, sha256, sha512."""


class InvalidCounterError(InvalidInputError):
    """A counter is negative, beyond 2^64-1, or a range overflows."""


class InvalidTimeError(InvalidInputError):
    """A time is negative, before T0, malformed, or lacks a time zone."""


class InvalidPeriodError(InvalidInputError):
    """A TOTP period is not a positive number of seconds."""


class InvalidCodeError(InvalidInputError):
    """A code is not all digits or has the wrong length."""


class InvalidSerialError(InvalidInputError):
    """A serial number is malformed or fails its check digit."""


class InvalidArrayError(InvalidInputError):
    """An output array has the wrong dtype, shape, or memory layout."""


class InvalidConfigError(InvalidInputError):
    """A configuration value (model, ppm, temperature, ...) is out of range."""


# --- compute backend -----------------------------------------------------------


class BackendError(VTokenError):
    """The requested compute backend is not available."""


# --- device -----------------------------------------------------------------------


class DeviceError(VTokenError):
    """The simulated token refused an operation."""


class DeviceLockedError(DeviceError):
    """The token is factory-locked: its seed can be neither read nor replaced."""


class DeviceStateError(DeviceError):
    """The operation is not allowed in the token's current state."""


class BatteryDeadError(DeviceError):
    """The token's battery is exhausted: no display, no clock."""


class StorageError(VTokenError):
    """Persistent state (flash image, token file, database) is unusable."""


class CorruptStateError(StorageError):
    """A stored image or file failed its integrity checks."""


# --- wire protocol and transports -------------------------------------------------


class ProtocolError(VTokenError):
    """A frame could not be decoded or violates the protocol."""


class FrameError(ProtocolError):
    """A frame is malformed: bad COBS, bad CRC, bad length, unknown command."""


class NakError(ProtocolError):
    """The device answered with a NAK; ``code`` carries the reason."""

    def __init__(self, code: object, message: str | None = None) -> None:
        self.code = code
        super().__init__(message or f"device refused the request: {code}")


class TransportError(VTokenError):
    """A port could not be opened, or the peer vanished."""


class DeviceTimeoutError(TransportError):
    """The device did not answer in time (after any retries)."""


# --- validator and portal ------------------------------------------------------------


class ValidatorError(VTokenError):
    """The validator could not carry out an operation."""


class ImportFailedError(ValidatorError):
    """A token file (PSKC or CSV) could not be imported; the store is unchanged."""


class UnknownTokenError(ValidatorError):
    """No token with this serial number is known."""


class MasterKeyError(ValidatorError):
    """The validator's master key is missing, malformed, or wrong."""


class PortalError(VTokenError):
    """A credential-lifecycle step was refused; ``code`` says which rule refused it."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)

    def __reduce__(self) -> tuple[type[PortalError], tuple[str, str]]:
        return (type(self), (self.code, str(self)))


# --- validator store and import (issue 5) ----------------------------------------------


class DuplicateTokenError(ImportFailedError):
    """Tokens being added are already in the store, or appear twice in one batch; nothing was written.

    ``serials`` lists every duplicated serial number (sorted).
    """

    def __init__(self, serials: list[str] | tuple[str, ...] | set[str] | frozenset[str], message: str | None = None) -> None:
        self.serials: tuple[str, ...] = tuple(sorted(set(serials)))
        super().__init__(message or f"duplicate token serial(s): {', '.join(self.serials)}")

    def __reduce__(self) -> tuple[type[DuplicateTokenError], tuple[tuple[str, ...], str]]:
        return (type(self), (self.serials, str(self)))


class ConcurrentUpdateError(ValidatorError):
    """A compare-and-set update lost: the token's row changed since it was read."""


class SealedSeedError(MasterKeyError):
    """A sealed seed failed authentication: altered, moved to another serial, or sealed under another key."""
