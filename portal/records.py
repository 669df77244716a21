"""The portal's entities and their states, as plain dataclasses.

Each entity moves through explicit states; :mod:`portal.service` is the only
code that changes them, and it checks every transition.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from vtoken.errors import StorageError


def _check_count(owner: object, field: str) -> None:
    """A stored counter of wrong guesses must be a non-negative int: a negative one would give extra tries."""
    value = getattr(owner, field)
    if type(value) is not int or value < 0:
        raise StorageError(f"{type(owner).__name__}.{field} must be a non-negative integer, not {value!r}")


class Product(str, enum.Enum):
    """What can be bought."""

    TOKEN = "token-1y"
    TOKEN_PROOFED = "token-1y-proofed"

    @property
    def needs_proofing(self) -> bool:
        """Whether identity proofing is part of the product."""
        return self is Product.TOKEN_PROOFED

    @property
    def title(self) -> str:
        """What the order confirmation calls it."""
        return {
            Product.TOKEN: "hardware token, 1-year subscription",
            Product.TOKEN_PROOFED: "hardware token with identity proofing, 1-year subscription",
        }[self]


class PaymentMethod(str, enum.Enum):
    """How an order is paid: a card is charged at once; an invoice or PO is paid later."""

    CARD = "card"
    INVOICE = "invoice"
    PURCHASE_ORDER = "purchase-order"


class OrderState(str, enum.Enum):
    """An order's life."""

    AWAITING_PAYMENT = "awaiting-payment"
    PAID = "paid"
    KEY_ISSUED = "key-issued"


class CredentialState(str, enum.Enum):
    """A hardware-token credential's life, from license key to registration and beyond."""

    KEY_ENTERED = "key-entered"
    PROOFING_REQUIRED = "proofing-required"
    AWAITING_ACTIVATION = "awaiting-activation"
    ACTIVATED = "activated"
    REGISTERED = "registered"
    LOST = "lost"


class ProofingMethod(str, enum.Enum):
    """Instant knowledge-based (US only) or live video with an agent."""

    INSTANT = "instant"
    VIDEO = "video"


class ProofingState(str, enum.Enum):
    """A proofing attempt's outcome."""

    BOOKED = "booked"
    PASSED = "passed"
    FAILED = "failed"


class AppPolicy(str, enum.Enum):
    """Which second factors an application accepts."""

    HARDWARE_ONLY = "hardware-only"
    ANY_OTP = "any-otp"


@dataclasses.dataclass
class Account:
    """A portal user."""

    id: str
    email: str
    name: str
    country: str = ""
    legal_name: str = ""
    profile_confirmed: bool = False
    phone: str = ""
    phone_verified: bool = False
    #: Wrong phone codes in a row, over every code sent to this account (any purpose); a right code resets it.
    phone_otp_failures: int = 0
    #: Phone OTP refused for this account until an administrator unlocks it (as the validator locks a token).
    phone_otp_locked: bool = False
    phone_otp_lock_reason: str = ""
    phone_otp_locked_ns: int | None = None

    def __post_init__(self) -> None:
        _check_count(self, "phone_otp_failures")


@dataclasses.dataclass
class Order:
    """A sales order (``SO-12345``)."""

    id: str
    account_id: str
    product: Product
    payment: PaymentMethod
    state: OrderState
    placed_ns: int
    paid_ns: int | None = None
    key_issued_ns: int | None = None
    #: The token shipped for this order, and when it arrived.
    serial: str = ""
    delivered_ns: int | None = None
    #: A replacement for a lost token: no payment, and proofing waived when the user signed in by phone OTP.
    replacement_of: str = ""
    proofing_waived: bool = False


@dataclasses.dataclass
class LicenseKey:
    """A license key, bound to an order and its product; single use.

    Only a hash of the key is stored: the key itself exists in the customer's e-mail.
    """

    key_hash: str
    order_id: str
    product: Product
    issued_ns: int
    used_ns: int | None = None


@dataclasses.dataclass
class Credential:
    """An account's hardware-token credential."""

    id: str
    account_id: str
    order_id: str
    product: Product
    state: CredentialState
    serial: str = ""
    proofing_method: ProofingMethod | None = None
    activated_ns: int | None = None
    expires_ns: int | None = None
    registered_ns: int | None = None
    lost_ns: int | None = None
    replaced_by: str = ""
    #: Wrong activation codes typed since the last code was issued (a new code revokes every earlier one).
    activation_failures: int = 0

    def __post_init__(self) -> None:
        _check_count(self, "activation_failures")


@dataclasses.dataclass
class ProofingCase:
    """One proofing attempt."""

    id: str
    account_id: str
    credential_id: str
    method: ProofingMethod
    state: ProofingState
    started_ns: int
    session_ns: int | None = None
    reason: str = ""


class CodeRevocation(str, enum.Enum):
    """Why an unused activation code no longer works."""

    #: A later video session issued a newer code: only the newest code of a credential is ever live.
    SUPERSEDED = "superseded"
    #: Too many wrong codes: the credential needs a new video session (and gets a new code).
    LOCKOUT = "lockout"
    #: Stored as an unkeyed hash before schema 2; the migration erased the hash and revoked the code.
    LEGACY_HASH = "legacy-hash"


@dataclasses.dataclass
class ActivationCode:
    """The code a video agent gives after proofing: single use, expiring, revoked by the next one.

    ``code_hash`` is HMAC-SHA256 under a pepper derived from master key ``key_id`` (which the
    database does not hold), so a copy of the database cannot confirm a guessed code.
    """

    code_hash: str
    credential_id: str
    issued_ns: int
    expires_ns: int
    used_ns: int | None = None
    #: The master key whose derived pepper keyed ``code_hash``; "" for a code from before schema 2.
    key_id: str = ""
    revoked: CodeRevocation | None = None
    revoked_ns: int | None = None


@dataclasses.dataclass
class PhoneOtp:
    """A one-time code sent by SMS or voice: single use, expiring, rate-limited per phone.

    ``code_hash`` is HMAC-SHA256 under the pepper derived from master key ``key_id``, as for
    :class:`ActivationCode`: a copy of the database cannot confirm a guessed code.
    """

    id: str
    account_id: str
    phone: str
    channel: str
    code_hash: str
    sent_ns: int
    expires_ns: int
    purpose: str
    used_ns: int | None = None
    attempts: int = 0
    #: The master key whose derived pepper keyed ``code_hash``; "" for a code from before schema 3.
    key_id: str = ""

    def __post_init__(self) -> None:
        _check_count(self, "attempts")


@dataclasses.dataclass
class Application:
    """A relying application and the factors it accepts."""

    id: str
    name: str
    policy: AppPolicy


ENTITY_TYPES: dict[str, type[Any]] = {
    "account": Account,
    "order": Order,
    "license_key": LicenseKey,
    "credential": Credential,
    "proofing": ProofingCase,
    "activation": ActivationCode,
    "phone_otp": PhoneOtp,
    "application": Application,
}
