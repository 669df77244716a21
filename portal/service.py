"""The credential lifecycle a token portal runs: purchase, license key, proofing, activation, registration.

Rules enforced here (each has a test):

- An order gets a sales order number (``SO-12345``). A card is charged at once and
  its license key e-mailed after a fraud-screening hold (well within 24 hours); an
  invoice or purchase order gets its key only after payment is recorded.
- A license key is entered only after the token arrives; it is single use,
  checksummed (a typo is caught), and bound to the product bought. The user confirms
  profile and country; if proofing was bought, the account's name must match the
  legal name.
- Proofing: users in the United States may take instant knowledge-based proofing or
  book a live video session; users elsewhere must take video. Failing instant
  proofing leaves video open. After video proofing the agent gives an activation
  code (single use, expiring) which the user enters to activate. Issuing a code
  revokes every earlier code of the credential, and the wrong code that uses up the
  guesses revokes the live one, so a new session never revives an old code. Codes are
  stored as HMAC-SHA256 under a pepper derived (HKDF) from the validator's master
  key, which the database does not hold.
- Registration: the serial from the back of the token and two consecutive codes,
  checked by the validator; the serial must be the token shipped for the order.
- The subscription runs one year from activation.
- Phone OTP by SMS or voice through a pluggable sender: codes expire, are single
  use, and sending is rate-limited. Wrong codes in a row are counted per account,
  over every code sent; at the limit phone OTP is locked for the account until an
  administrator unlocks it. Each application accepts either the hardware token only,
  or any OTP.
- A lost token is disabled at once. While it is replaced, phone OTP keeps working
  where applications accept it. A lost token that needed proofing is replaced
  without proofing again if the user has just authenticated by phone OTP.

Every operation runs in one portal transaction; calls into the validator are made
outside it (the validator has its own transactions on the same database file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from portal.licensekey import PAYLOAD_BYTES, format_key, normalize_key
from portal.messaging import Message, Sender
from portal.proofing import InstantProofingProvider, VideoAgent
from portal.records import (
    Account,
    ActivationCode,
    Application,
    AppPolicy,
    CodeRevocation,
    Credential,
    CredentialState,
    LicenseKey,
    Order,
    OrderState,
    PaymentMethod,
    PhoneOtp,
    Product,
    ProofingCase,
    ProofingMethod,
    ProofingState,
)
from portal.store import PortalStore
from validator.sealing import SecretBytes
from validator.service import Reason, Validator
from vtoken.clock import NS_PER_DAY, NS_PER_HOUR, NS_PER_SECOND, Clock
from vtoken.errors import InvalidSerialError, MasterKeyError, PortalError
from vtoken.serialno import has_valid_check_digit, normalize

FIRST_ORDER_NUMBER = 12345
#: Card payments are screened for fraud this long before the key is e-mailed (the promise is 24 hours).
CARD_HOLD_NS = NS_PER_HOUR
KEY_PROMISE_NS = 24 * NS_PER_HOUR
SUBSCRIPTION_NS = 365 * NS_PER_DAY
ACTIVATION_CODE_TTL_NS = 72 * NS_PER_HOUR
ACTIVATION_CODE_DIGITS = 10
#: Wrong activation codes allowed before a new video session is needed.
MAX_ACTIVATION_FAILURES = 5
#: HKDF-SHA256 ``info`` deriving the code pepper from a master key. The pepper keys
#: HMAC-SHA256(pepper, domain, record id, code) for activation codes and phone OTPs: the database holds
#: neither pepper nor key, so a copy of it cannot confirm a guessed code. (The label predates phone
#: OTPs; changing it revokes every live code.)
CODE_PEPPER_INFO = b"vtoken-portal-activation-code-pepper-v1"
CODE_PEPPER_BYTES = 32
#: First field of the HMAC'd message, so one pepper keys each kind of code without crossing over.
ACTIVATION_HASH_DOMAIN = b"activation"
PHONE_OTP_HASH_DOMAIN = b"phone"
#: What to tell the user when a code's master key is not loaded, by hash domain.
_CODE_REMEDIES = {
    ACTIVATION_HASH_DOMAIN: "have the user book a new video session",
    PHONE_OTP_HASH_DOMAIN: "have the user ask for a new code",
}
PHONE_OTP_DIGITS = 6
PHONE_OTP_TTL_NS = 5 * 60 * NS_PER_SECOND
PHONE_OTP_MAX_ATTEMPTS = 3
#: Wrong phone codes in a row per account, over every code sent to it (any purpose), after which phone
#: OTP is locked for the account until an administrator unlocks it. NIST SP 800-63B §5.2.2 allows at
#: most 100 consecutive failures; at that ceiling an attacker's chance before the lock is at most
#: 100 / 10**6 = 0.01 % for 6-digit codes (without it: 864 guesses a day, ≈ 27 % a year). A user who
#: types a right code resets the count, so 100 in a row is no one's typing; a lower limit would only
#: make it cheaper for a stranger who knows the account id to lock its phone OTP.
PHONE_OTP_MAX_CONSECUTIVE_FAILURES = 100
#: The lock reason the failure limit sets (an administrator lock gives its own).
PHONE_OTP_FAILURES_LOCK_REASON = "too many wrong codes in a row"
#: Rate limit: at most this many codes per phone in the window, and this long between two.
PHONE_OTP_MAX_PER_WINDOW = 3
PHONE_OTP_WINDOW_NS = 15 * 60 * NS_PER_SECOND
PHONE_OTP_MIN_GAP_NS = 30 * NS_PER_SECOND
#: A phone-OTP sign-in this recent lets a lost token be replaced without proofing again.
FRESH_PHONE_AUTH_NS = 15 * 60 * NS_PER_SECOND
INSTANT_PROOFING_COUNTRY = "US"
PHONE_CHANNELS = ("sms", "voice")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclasses.dataclass(frozen=True)
class SignIn:
    """A successful sign-in to an application."""

    application: str
    account_id: str
    factor: str
    at_ns: int


def _refuse(code: str, message: str) -> PortalError:
    return PortalError(code, message)


def _typed_serial(text: str) -> str:
    """A serial a person typed, normalized; a malformed one is a refusal (``serial-malformed``), not an error."""
    try:
        return normalize(text)
    except InvalidSerialError as exc:
        raise _refuse("serial-malformed", str(exc)) from None


def _same_name(a: str, b: str) -> bool:
    squash = lambda s: " ".join(s.split()).casefold()  # noqa: E731
    return squash(a) == squash(b)


class PortalService:
    """The portal's operations. Inject the store, validator, clock, sender, providers and randomness."""

    def __init__(
        self,
        store: PortalStore,
        validator: Validator,
        clock: Clock,
        sender: Sender,
        *,
        instant: InstantProofingProvider | None = None,
        agent: VideoAgent | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.validator = validator
        self.clock = clock
        self.sender = sender
        self.instant = instant or InstantProofingProvider()
        self.agent = agent or VideoAgent()
        self._random = random_bytes
        self._peppers: dict[str, SecretBytes] = {}  # key id -> activation-code pepper (never in a repr)

    # --- helpers --------------------------------------------------------------------------

    def _now(self) -> int:
        return self.clock.now_ns()

    def _digits(self, count: int) -> str:
        return str(int.from_bytes(self._random(8), "big") % 10**count).zfill(count)

    @staticmethod
    def _hash(purpose: str, ident: str, secret: str) -> str:
        return hashlib.sha256(f"{purpose}\0{ident}\0{secret}".encode()).hexdigest()

    def _code_pepper(self, key_id: str, remedy: str) -> SecretBytes:
        """HKDF-SHA256 of master key ``key_id`` (current or older, from the validator's keyring)."""
        pepper = self._peppers.get(key_id)
        if pepper is None:
            try:
                key = self.validator.keyring.get(key_id)
            except MasterKeyError:
                raise MasterKeyError(
                    f"the code was issued under master key {key_id!r}, which this portal was not given: "
                    f"load it as an older key, or {remedy}"
                ) from None
            hkdf = HKDF(algorithm=hashes.SHA256(), length=CODE_PEPPER_BYTES, salt=None, info=CODE_PEPPER_INFO)
            pepper = self._peppers[key_id] = SecretBytes(hkdf.derive(bytes.fromhex(key.to_hex())))
        return pepper

    def _code_hash(self, domain: bytes, key_id: str, ident: str, code: str) -> str:
        """HMAC-SHA256 under master key ``key_id``'s pepper of (``domain``, record ``ident``, ``code``)."""
        remedy = _CODE_REMEDIES[domain]
        message = b"\0".join((domain, ident.encode(), code.encode()))
        return hmac.new(self._code_pepper(key_id, remedy), message, hashlib.sha256).hexdigest()

    def _activation_hash(self, key_id: str, credential_id: str, code: str) -> str:
        return self._code_hash(ACTIVATION_HASH_DOMAIN, key_id, credential_id, code)

    def _phone_otp_hash(self, key_id: str, otp_id: str, code: str) -> str:
        return self._code_hash(PHONE_OTP_HASH_DOMAIN, key_id, otp_id, code)

    def _account(self, account_id: str) -> Account:
        account = self.store.get("account", account_id)
        if account is None:
            raise _refuse("unknown-account", f"no account {account_id}")
        return account

    def _order(self, order_id: str) -> Order:
        order = self.store.get("order", order_id.strip().upper())
        if order is None:
            raise _refuse("unknown-order", f"no sales order {order_id}")
        return order

    def _mail(self, to: str, subject: str, body: str) -> None:
        self.sender.send(Message("email", to, subject, body, self._now()))

    def account(self, account_id: str) -> Account:
        """The account ``account_id`` as stored; refused with ``unknown-account`` if there is none."""
        return self._account(account_id)

    def current_credential(self, account_id: str) -> Credential:
        """The account's current hardware-token credential (the newest one)."""
        creds = self.store.by_owner("credential", account_id)
        if not creds:
            raise _refuse("no-credential", "enter the license key from your e-mail first")
        return creds[-1]

    # --- 1. purchase -------------------------------------------------------------------------

    def create_account(self, email: str, name: str, country: str = "") -> Account:
        """Open an account."""
        if "@" not in email or not name.strip():
            raise _refuse("bad-profile", "an account needs an e-mail address and a name")
        country = country.strip().upper()
        if country and not _COUNTRY.match(country):
            raise _refuse("bad-country", "give the country as a two-letter code, e.g. US or DE")
        with self.store.transaction():
            number = self.store.next_number("account", 1)
            account = Account(id=f"ACC-{number}", email=email.strip(), name=" ".join(name.split()), country=country)
            self.store.put("account", account)
            self.store.log(self._now(), account.id, "account-created")
        return account

    def place_order(self, account_id: str, product: Product, payment: PaymentMethod) -> Order:
        """Order a one-year token subscription; a card is charged at once."""
        now = self._now()
        with self.store.transaction():
            account = self._account(account_id)
            number = self.store.next_number("sales_order", FIRST_ORDER_NUMBER)
            paid = payment is PaymentMethod.CARD
            order = Order(
                id=f"SO-{number}",
                account_id=account.id,
                product=product,
                payment=payment,
                state=OrderState.PAID if paid else OrderState.AWAITING_PAYMENT,
                placed_ns=now,
                paid_ns=now if paid else None,
            )
            self.store.put("order", order, owner=account.id)
            self.store.log(now, account.id, "order-placed", f"{order.id} {product.value} {payment.value}")
        self._mail(account.email, f"Your order {order.id}", f"Thank you for ordering a {product.title}.")
        return order

    def record_payment(self, order_id: str) -> Order:
        """Payment received for an invoice or purchase order."""
        now = self._now()
        with self.store.transaction():
            order = self._order(order_id)
            if order.state is not OrderState.AWAITING_PAYMENT:
                raise _refuse("already-paid", f"{order.id} is already paid")
            order.state, order.paid_ns = OrderState.PAID, now
            self.store.put("order", order, owner=order.account_id)
            self.store.log(now, order.account_id, "payment-recorded", order.id)
        return order

    def issue_due_keys(self) -> list[str]:
        """The key-issuing job: e-mail a license key for every paid order whose hold has passed."""
        now = self._now()
        issued: list[tuple[Account, Order, str]] = []
        with self.store.transaction():
            for order in self.store.all("order"):
                if order.state is not OrderState.PAID or order.replacement_of:
                    continue
                hold = CARD_HOLD_NS if order.payment is PaymentMethod.CARD else 0
                if order.paid_ns is None or now < order.paid_ns + hold:
                    continue
                key = format_key(self._random(PAYLOAD_BYTES))
                self.store.put(
                    "license_key",
                    LicenseKey(key_hash=self._hash("license", "", key), order_id=order.id, product=order.product,
                               issued_ns=now),
                )
                order.state, order.key_issued_ns = OrderState.KEY_ISSUED, now
                self.store.put("order", order, owner=order.account_id)
                self.store.log(now, order.account_id, "key-issued", order.id)
                issued.append((self._account(order.account_id), order, key))
        for account, order, key in issued:
            self._mail(
                account.email,
                f"License key for {order.id}",
                f"Your license key: {key}\nEnter it at the portal once your token has arrived.",
            )
        return [order.id for _, order, _ in issued]

    def ship(self, order_id: str, serial: str) -> Order:
        """The warehouse ships token ``serial`` for the order."""
        now = self._now()
        serial = _typed_serial(serial)
        if self.validator.store.get(serial) is None:
            raise _refuse("unknown-serial", f"token {serial} is not in the validator's store")
        with self.store.transaction():
            order = self._order(order_id)
            if order.serial:
                raise _refuse("already-shipped", f"{order.id} has already shipped token {order.serial}")
            if any(o.serial == serial for o in self.store.all("order")):
                raise _refuse("serial-taken", f"token {serial} was already shipped")
            order.serial = serial
            self.store.put("order", order, owner=order.account_id)
            if order.replacement_of:  # the replacement credential takes the new token's serial
                for credential in self.store.by_owner("credential", order.account_id):
                    if credential.order_id == order.id:
                        credential.serial = serial
                        self.store.put("credential", credential, owner=order.account_id)
            self.store.log(now, order.account_id, "shipped", f"{order.id} token {serial}")
        return order

    def deliver(self, order_id: str) -> Order:
        """The token arrives at the user's door."""
        now = self._now()
        with self.store.transaction():
            order = self._order(order_id)
            if not order.serial:
                raise _refuse("not-shipped", f"{order.id} has not shipped yet")
            order.delivered_ns = now
            self.store.put("order", order, owner=order.account_id)
            self.store.log(now, order.account_id, "delivered", order.id)
        return order

    # --- 2. license key ----------------------------------------------------------------------

    def enter_license_key(
        self, account_id: str, key_text: str, product: Product, *, name: str, country: str, legal_name: str = ""
    ) -> Credential:
        """Enter the license key (after the token arrived), confirming profile and country."""
        now = self._now()
        key = normalize_key(key_text)
        country = country.strip().upper()
        if not _COUNTRY.match(country):
            raise _refuse("bad-country", "give the country as a two-letter code, e.g. US or DE")
        with self.store.transaction():
            account = self._account(account_id)
            record = self.store.get("license_key", self._hash("license", "", key))
            if record is None:
                raise _refuse("key-unknown", "this license key is not valid: check the e-mail with your key")
            if record.used_ns is not None:
                raise _refuse("key-used", "this license key has already been used")
            if record.product is not product:
                raise _refuse("key-wrong-product", f"this license key is for a {record.product.title}, not a {product.title}")
            order = self._order(record.order_id)
            if order.account_id != account.id:
                raise _refuse("key-other-account", "this license key belongs to another account's order")
            if order.delivered_ns is None:
                raise _refuse("token-not-arrived", "enter the license key once your token has arrived")
            if not _same_name(name, account.name):
                raise _refuse("profile-mismatch", "the confirmed name differs from the account's profile; update the profile first")
            if product.needs_proofing and not _same_name(account.name, legal_name):
                raise _refuse("name-mismatch", "identity proofing needs the account's name to match your legal name exactly")
            record.used_ns = now
            self.store.put("license_key", record)
            account.country, account.profile_confirmed = country, True
            account.legal_name = legal_name.strip() or account.legal_name
            self.store.put("account", account)
            number = self.store.next_number("credential", 1)
            credential = Credential(
                id=f"CRED-{number}", account_id=account.id, order_id=order.id, product=product,
                state=CredentialState.KEY_ENTERED, serial=order.serial,
            )
            if product.needs_proofing:
                credential.state = CredentialState.PROOFING_REQUIRED
            else:
                self._activate(credential, now)
            self.store.put("credential", credential, owner=account.id)
            self.store.log(now, account.id, "key-entered", f"{order.id} -> {credential.state.value}")
        return credential

    @staticmethod
    def _activate(credential: Credential, now: int) -> None:
        credential.state = CredentialState.ACTIVATED
        credential.activated_ns = now
        if credential.expires_ns is None:
            credential.expires_ns = now + SUBSCRIPTION_NS

    # --- 3. identity proofing ----------------------------------------------------------------

    def proofing_options(self, account_id: str) -> list[ProofingMethod]:
        """Instant and video in the United States; video elsewhere."""
        account = self._account(account_id)
        if account.country == INSTANT_PROOFING_COUNTRY:
            return [ProofingMethod.INSTANT, ProofingMethod.VIDEO]
        return [ProofingMethod.VIDEO]

    def _proofing_credential(self, account_id: str) -> Credential:
        credential = self.current_credential(account_id)
        if credential.state is not CredentialState.PROOFING_REQUIRED:
            raise _refuse("proofing-not-needed", f"no proofing is pending (the credential is {credential.state.value})")
        return credential

    def instant_proofing(self, account_id: str, answers: dict[str, str]) -> ProofingCase:
        """Answer the credit-bureau questions; a pass activates the credential."""
        now = self._now()
        with self.store.transaction():
            account = self._account(account_id)
            credential = self._proofing_credential(account_id)
            if ProofingMethod.INSTANT not in self.proofing_options(account_id):
                raise _refuse("instant-not-available", "instant proofing is only for users in the United States: book a video session")
            cases = [c for c in self.store.by_owner("proofing", account.id) if c.credential_id == credential.id]
            if any(c.method is ProofingMethod.INSTANT for c in cases):
                raise _refuse("instant-already-tried", "instant proofing can be taken once: book a live video session")
            passed = self.instant.grade(account.id, answers)
            number = self.store.next_number("proofing", 1)
            case = ProofingCase(
                id=f"PRF-{number}", account_id=account.id, credential_id=credential.id, method=ProofingMethod.INSTANT,
                state=ProofingState.PASSED if passed else ProofingState.FAILED, started_ns=now,
                reason="" if passed else "answers did not match the credit bureau's records",
            )
            self.store.put("proofing", case, owner=account.id)
            if passed:
                credential.proofing_method = ProofingMethod.INSTANT
                self._activate(credential, now)
                self.store.put("credential", credential, owner=account.id)
            self.store.log(now, account.id, "instant-proofing", case.state.value)
        return case

    def _video_credential(self, account_id: str, now: int) -> Credential:
        """The credential a video session is for: proofing pending, or passed but its activation code expired unused."""
        credential = self.current_credential(account_id)
        if credential.state is CredentialState.AWAITING_ACTIVATION and (
            credential.activation_failures >= MAX_ACTIVATION_FAILURES
        ):
            return credential
        if credential.state is CredentialState.AWAITING_ACTIVATION and not any(
            self._is_live(a, now) for a in self.store.by_owner("activation", credential.id)
        ):
            return credential
        return self._proofing_credential(account_id)

    def book_video(self, account_id: str, session_ns: int) -> ProofingCase:
        """Book a live video session with an agent (again, if the last activation code expired unused)."""
        now = self._now()
        with self.store.transaction():
            account = self._account(account_id)
            credential = self._video_credential(account_id, now)
            if session_ns < now:
                raise _refuse("session-in-past", "choose a session time in the future")
            number = self.store.next_number("proofing", 1)
            case = ProofingCase(
                id=f"PRF-{number}", account_id=account.id, credential_id=credential.id, method=ProofingMethod.VIDEO,
                state=ProofingState.BOOKED, started_ns=now, session_ns=session_ns,
            )
            self.store.put("proofing", case, owner=account.id)
            self.store.log(now, account.id, "video-booked", case.id)
        return case

    def run_video_session(self, case_id: str) -> tuple[ProofingCase, str | None]:
        """The agent holds the session; on a pass, returns the activation code the agent reads out."""
        now = self._now()
        with self.store.transaction():
            case = self.store.get("proofing", case_id)
            if case is None or case.method is not ProofingMethod.VIDEO:
                raise _refuse("unknown-session", f"no video session {case_id}")
            if case.state is not ProofingState.BOOKED:
                raise _refuse("session-over", f"session {case_id} has already taken place")
            if case.session_ns is not None and now < case.session_ns:
                raise _refuse("session-not-started", "the video session has not started yet")
            credential = self.store.get("credential", case.credential_id)
            assert credential is not None
            if credential.state not in (CredentialState.PROOFING_REQUIRED, CredentialState.AWAITING_ACTIVATION):
                # a second booking left over after proofing passed must not reset an activated credential
                raise _refuse("proofing-not-needed", f"no proofing is pending (the credential is {credential.state.value})")
            passed, reason = self.agent.decide(case.account_id)
            case.state, case.reason = (ProofingState.PASSED if passed else ProofingState.FAILED), reason
            self.store.put("proofing", case, owner=case.account_id)
            code = None
            if passed:
                code = self._digits(ACTIVATION_CODE_DIGITS)
                # only the newest code is ever live: resetting the failure count below revives nothing
                self._revoke_activation_codes(credential.id, CodeRevocation.SUPERSEDED, now)
                key_id = self.validator.keyring.current.key_id
                self.store.put("activation", ActivationCode(
                    code_hash=self._activation_hash(key_id, credential.id, code), credential_id=credential.id,
                    issued_ns=now, expires_ns=now + ACTIVATION_CODE_TTL_NS, key_id=key_id,
                ), owner=credential.id)
                credential.state, credential.proofing_method = CredentialState.AWAITING_ACTIVATION, ProofingMethod.VIDEO
                credential.activation_failures = 0
                self.store.put("credential", credential, owner=credential.account_id)
            self.store.log(now, case.account_id, "video-proofing", f"{case.id} {case.state.value} by {self.agent.name}")
        return case, code

    # --- 4. activation -----------------------------------------------------------------------

    def activate(self, account_id: str, code: str) -> Credential:
        """Enter the activation code the video agent gave (wrong guesses are counted and limited).

        Only the credential's newest code can activate it; an older (revoked) code counts as a wrong one.
        """
        now = self._now()
        refusal: PortalError | None = None
        with self.store.transaction():
            credential = self.current_credential(account_id)
            if credential.activation_failures >= MAX_ACTIVATION_FAILURES:
                raise _refuse(
                    "activation-attempts", "too many wrong activation codes: book a new video session with an agent"
                )
            code = code.strip().replace(" ", "").replace("-", "")
            codes = self.store.by_owner("activation", credential.id)
            record = self._matching_activation(credential.id, codes, code, now)
            if record is None and codes and codes[-1].revoked is CodeRevocation.LEGACY_HASH:
                # nothing can match: the newest code's unkeyed hash was erased by the upgrade (schema 2)
                raise _refuse(
                    "activation-invalidated",
                    "activation codes issued before the portal's security upgrade no longer work: "
                    "book a new video session with an agent for a new code",
                )
            if record is None or record.revoked is not None:
                refusal = self._activation_failure(credential, record, now)  # committed before it is raised
            else:
                if record.used_ns is not None:
                    raise _refuse("activation-used", "this activation code has already been used")
                if now >= record.expires_ns:
                    raise _refuse("activation-expired", "this activation code has expired: book a new video session")
                if credential.state is not CredentialState.AWAITING_ACTIVATION:
                    raise _refuse(
                        "not-awaiting-activation", f"nothing to activate (the credential is {credential.state.value})"
                    )
                record.used_ns = now
                self.store.put("activation", record, owner=credential.id)
                credential.activation_failures = 0
                self._activate(credential, now)
                self.store.put("credential", credential, owner=account_id)
                self.store.log(now, account_id, "activated", credential.id)
        if refusal is not None:
            raise refusal
        return credential

    @staticmethod
    def _is_live(record: ActivationCode, now: int) -> bool:
        return record.used_ns is None and record.revoked is None and now < record.expires_ns

    def _matching_activation(
        self, credential_id: str, codes: Sequence[ActivationCode], code: str, now: int
    ) -> ActivationCode | None:
        """The record ``code`` opens, compared in constant time with every keyed code of the credential."""
        if len(code) != ACTIVATION_CODE_DIGITS or not (code.isascii() and code.isdigit()):
            return None  # cannot match: arbitrary input is never hashed
        found = None
        for record in codes:
            if not record.key_id:
                continue  # an unkeyed hash, erased by schema migration 2
            if record.key_id not in self.validator.keyring and not self._is_live(record, now):
                continue  # a dead code under a retired master key
            if hmac.compare_digest(record.code_hash, self._activation_hash(record.key_id, credential_id, code)):
                found = record
        return found

    def _revoke_activation_codes(self, credential_id: str, reason: CodeRevocation, now: int) -> None:
        for record in self.store.by_owner("activation", credential_id):
            if record.used_ns is None and record.revoked is None:
                record.revoked, record.revoked_ns = reason, now
                self.store.put("activation", record, owner=credential_id)

    def _activation_failure(self, credential: Credential, record: ActivationCode | None, now: int) -> PortalError:
        """Count a wrong (or revoked) code; the one that uses up the guesses revokes the live code too."""
        credential.activation_failures += 1
        if credential.activation_failures >= MAX_ACTIVATION_FAILURES:
            self._revoke_activation_codes(credential.id, CodeRevocation.LOCKOUT, now)
            self.store.log(
                now, credential.account_id, "activation-locked",
                f"{credential.id} after {credential.activation_failures} wrong codes",
            )
        self.store.put("credential", credential, owner=credential.account_id)
        if record is None:
            return _refuse("activation-wrong", "this activation code is not right: check what the agent gave you")
        if record.revoked is CodeRevocation.SUPERSEDED:
            why = "was replaced by the code from your latest video session"
        else:
            why = "was withdrawn after too many wrong codes"
        return _refuse("activation-revoked", f"this activation code {why}: enter the newest code an agent gave you")

    # --- 5. registration ---------------------------------------------------------------------

    def register_token(self, account_id: str, serial_text: str, code1: str, code2: str) -> Credential:
        """Serial from the back of the token, Token Code 1, and Token Code 2 after the code changed."""
        credential = self.current_credential(account_id)
        if credential.state is CredentialState.PROOFING_REQUIRED:
            raise _refuse("proofing-not-done", "complete identity proofing before registering the token")
        if credential.state is CredentialState.AWAITING_ACTIVATION:
            raise _refuse("not-activated", "enter the activation code from your video session first")
        if credential.state is not CredentialState.ACTIVATED:
            raise _refuse("not-activated", f"nothing to register (the credential is {credential.state.value})")
        serial = _typed_serial(serial_text)
        if serial != credential.serial:
            if len(serial) == 10 and not has_valid_check_digit(serial):
                raise _refuse("serial-mistyped", f"serial number {serial} is probably mistyped: check the back of the token")
            raise _refuse("serial-not-yours", f"token {serial} is not the token shipped to you")
        result = self.validator.register(serial, code1, code2, self._now())
        if not result.accepted:
            code = {
                Reason.NO_PAIR: "codes-wrong", Reason.SAME_CODE: "same-code", Reason.BAD_FORMAT: "code-malformed",
            }.get(result.reason, f"register-{result.reason.value}")
            message = result.message
            if result.reason is Reason.NO_PAIR:
                message = f"these codes are not two consecutive codes of token {serial}: " + result.message
            raise _refuse(code, message)
        now = self._now()
        with self.store.transaction():
            credential.state, credential.registered_ns = CredentialState.REGISTERED, now
            self.store.put("credential", credential, owner=account_id)
            self.store.log(now, account_id, "registered", f"{credential.id} token {serial}")
        return credential

    # --- phone OTP --------------------------------------------------------------------------

    def register_phone(self, account_id: str, phone: str, channel: str = "sms") -> None:
        """Add a phone number; a code is sent to verify it."""
        phone = phone.replace(" ", "").replace("-", "")
        if not _E164.match(phone):
            raise _refuse("bad-phone", "give the phone number in international form, e.g. +14155550123")
        with self.store.transaction():
            account = self._account(account_id)
            self._check_phone_otp_open(account)  # a new number is no way around the lock
            account.phone, account.phone_verified = phone, False
            self.store.put("account", account)
        self.send_phone_otp(account_id, channel, purpose="verify-phone")

    def send_phone_otp(self, account_id: str, channel: str = "sms", *, purpose: str = "sign-in") -> None:
        """Send a one-time code by SMS or voice (rate-limited)."""
        if channel not in PHONE_CHANNELS:
            raise _refuse("bad-channel", f"phone codes go by {' or '.join(PHONE_CHANNELS)}")
        now = self._now()
        with self.store.transaction():
            account = self._account(account_id)
            if not account.phone:
                raise _refuse("no-phone", "register a phone number first")
            self._check_phone_otp_open(account)
            if purpose != "verify-phone" and not account.phone_verified:
                raise _refuse("phone-not-verified", "verify your phone number first")
            recent = [o for o in self.store.by_owner("phone_otp", account.id) if o.phone == account.phone]
            if recent and now - recent[-1].sent_ns < PHONE_OTP_MIN_GAP_NS:
                raise _refuse("otp-rate-limited", "a code was just sent: wait 30 seconds before asking again")
            if sum(1 for o in recent if now - o.sent_ns < PHONE_OTP_WINDOW_NS) >= PHONE_OTP_MAX_PER_WINDOW:
                raise _refuse("otp-rate-limited", "too many codes requested: try again in 15 minutes")
            code = self._digits(PHONE_OTP_DIGITS)
            otp_id = f"OTP-{self.store.next_number('phone_otp', 1)}"
            key_id = self.validator.keyring.current.key_id
            otp = PhoneOtp(
                id=otp_id, account_id=account.id, phone=account.phone, channel=channel,
                code_hash=self._phone_otp_hash(key_id, otp_id, code), sent_ns=now,
                expires_ns=now + PHONE_OTP_TTL_NS, purpose=purpose, key_id=key_id,
            )
            self.store.put("phone_otp", otp, owner=account.id)
            self.store.log(now, account.id, "phone-otp-sent", f"{otp.id} {channel} {purpose}")
        spoken = " ".join(code) if channel == "voice" else code
        self.sender.send(Message(channel, account.phone, "vtoken portal code", f"Your code is {spoken}", now))

    @staticmethod
    def _check_phone_otp_open(account: Account) -> None:
        if account.phone_otp_locked:
            raise _refuse(
                "otp-locked",
                "phone codes are locked for this account: ask support to unlock them; the hardware token still "
                "works",  # not the reason: support's note is not for whoever holds the account id
            )

    def _use_phone_otp(self, account_id: str, code: str, purpose: str, now: int) -> Account:
        """Check a phone code (constant time), single use; raise a refusal otherwise.

        Runs inside the caller's transaction, which commits the counts even when this refuses. Every
        wrong code counts towards the account's limit; the one that reaches it locks phone OTP.
        """
        account = self._account(account_id)  # read in this transaction: the count is per account
        self._check_phone_otp_open(account)
        candidates = [o for o in self.store.by_owner("phone_otp", account.id) if o.purpose == purpose and o.phone == account.phone]
        if not candidates:
            raise _refuse("otp-none", "ask for a code first")
        otp = candidates[-1]
        if otp.used_ns is not None:
            raise _refuse("otp-used", "this code was already used: ask for a new one")
        if now >= otp.expires_ns or not otp.key_id:  # (an unkeyed code from before schema 3 was expired by it)
            raise _refuse("otp-expired", "this code has expired: ask for a new one")
        if otp.attempts >= PHONE_OTP_MAX_ATTEMPTS:
            raise _refuse("otp-attempts", "too many wrong codes: ask for a new one")
        if not hmac.compare_digest(otp.code_hash, self._phone_otp_hash(otp.key_id, otp.id, code.strip())):
            otp.attempts += 1
            self.store.put("phone_otp", otp, owner=account.id)
            account.phone_otp_failures += 1
            locking = account.phone_otp_failures >= PHONE_OTP_MAX_CONSECUTIVE_FAILURES
            if locking:
                self._lock_phone_otp(account, PHONE_OTP_FAILURES_LOCK_REASON, now, by="the failure limit")
            self.store.put("account", account)
            if locking:
                raise _refuse(
                    "otp-locked",
                    f"wrong code; after {account.phone_otp_failures} wrong codes in a row phone codes are locked "
                    "for this account: ask support to unlock them; the hardware token still works",
                )
            raise _refuse("otp-wrong", "wrong code")
        otp.used_ns = now
        self.store.put("phone_otp", otp, owner=account.id)
        if account.phone_otp_failures:
            account.phone_otp_failures = 0
            self.store.put("account", account)
        return account

    def _lock_phone_otp(self, account: Account, reason: str, now: int, *, by: str) -> None:
        account.phone_otp_locked, account.phone_otp_lock_reason, account.phone_otp_locked_ns = True, reason, now
        self.store.log(
            now, account.id, "phone-otp-locked", f"{reason} (by {by}; {account.phone_otp_failures} wrong in a row)"
        )

    def lock_phone_otp(self, account_id: str, reason: str, *, by: str = "administrator") -> Account:
        """Administrator lock (a SIM swap reported, say): phone OTP is refused until :meth:`unlock_phone_otp`."""
        reason = " ".join(reason.split())
        if not reason:
            raise _refuse("lock-reason-missing", "say why phone OTP is being locked")
        now = self._now()
        with self.store.transaction():
            account = self._account(account_id)
            self._lock_phone_otp(account, reason, now, by=by)
            self.store.put("account", account)
        return account

    def unlock_phone_otp(self, account_id: str, *, by: str = "administrator") -> Account:
        """Administrator unlock, once the user is checked out of band: clears the lock and the failure count."""
        now = self._now()
        with self.store.transaction():
            account = self._account(account_id)
            was = account.phone_otp_lock_reason if account.phone_otp_locked else "not locked"
            account.phone_otp_locked, account.phone_otp_lock_reason, account.phone_otp_locked_ns = False, "", None
            account.phone_otp_failures = 0
            self.store.put("account", account)
            self.store.log(now, account.id, "phone-otp-unlocked", f"by {by} (was: {was})")
        return account

    def verify_phone(self, account_id: str, code: str) -> Account:
        """Confirm the phone number with the code sent to it."""
        now = self._now()
        refusal: PortalError | None = None
        with self.store.transaction():
            try:
                account = self._use_phone_otp(account_id, code, "verify-phone", now)
            except PortalError as exc:
                refusal = exc  # the attempt counter must be committed, so raise after the transaction
            else:
                account.phone_verified = True
                self.store.put("account", account)
                self.store.log(now, account.id, "phone-verified", account.phone[-4:])
        if refusal is not None:
            raise refusal
        return account

    # --- applications and sign-in --------------------------------------------------------------

    def add_application(self, name: str, policy: AppPolicy) -> Application:
        """A relying application and the factors it accepts."""
        with self.store.transaction():
            app = Application(id=name.strip().lower().replace(" ", "-"), name=name.strip(), policy=policy)
            self.store.put("application", app)
        return app

    def sign_in(self, app_id: str, account_id: str, factor: str, code: str) -> SignIn:
        """Sign in to an application with the hardware token (``token``) or a phone OTP (``phone``)."""
        now = self._now()
        app = self.store.get("application", app_id)
        if app is None:
            raise _refuse("unknown-application", f"no application {app_id}")
        account = self._account(account_id)
        if factor not in ("token", "phone"):
            raise _refuse("bad-factor", "sign in with 'token' or 'phone'")
        if factor == "phone" and app.policy is AppPolicy.HARDWARE_ONLY:
            raise _refuse("app-requires-hardware-token", f"{app.name} accepts only the hardware token")
        credential = self.current_credential(account.id)
        expires = credential.expires_ns
        if expires is not None and now >= expires:
            raise _refuse("subscription-expired", "the one-year subscription has expired: renew it to sign in")
        if factor == "token":
            if credential.state is CredentialState.LOST:
                raise _refuse("token-lost", "this token was reported lost; sign in by phone where the application allows it")
            if credential.state is not CredentialState.REGISTERED:
                raise _refuse("token-not-registered", "register your token first")
            result = self.validator.check(credential.serial, code, now)
            if not result.accepted:
                raise _refuse(f"token-{result.reason.value}", result.message)
        else:
            if not account.phone_verified:
                raise _refuse("phone-not-verified", "register and verify a phone number first")
            refusal: PortalError | None = None
            with self.store.transaction():
                try:
                    self._use_phone_otp(account.id, code, "sign-in", now)
                except PortalError as exc:
                    refusal = exc
            if refusal is not None:
                raise refusal
        with self.store.transaction():
            self.store.log(now, account.id, f"sign-in-{factor}", app.id)
        return SignIn(app.id, account.id, factor, now)

    def _fresh_phone_sign_in(self, account_id: str, now: int) -> bool:
        return any(
            at >= now - FRESH_PHONE_AUTH_NS and event == "sign-in-phone"
            for at, _, event, _ in self.store.audit(account_id)
        )

    # --- lost token and replacement ----------------------------------------------------------

    def report_lost(self, account_id: str) -> Credential:
        """Report the token lost: it is disabled in the validator at once."""
        now = self._now()
        credential = self.current_credential(account_id)
        if credential.state is not CredentialState.REGISTERED:
            raise _refuse("nothing-to-report", f"no registered token to report lost (the credential is {credential.state.value})")
        self.validator.lock(credential.serial, "reported lost", now)
        with self.store.transaction():
            credential.state, credential.lost_ns = CredentialState.LOST, now
            self.store.put("credential", credential, owner=account_id)
            self.store.log(now, account_id, "token-lost", credential.serial)
        return credential

    def request_replacement(self, account_id: str) -> Order:
        """Order a replacement for a lost token. Proofing is waived after a fresh phone-OTP sign-in."""
        now = self._now()
        with self.store.transaction():
            account = self._account(account_id)
            lost = self.current_credential(account_id)
            if lost.state is not CredentialState.LOST:
                raise _refuse("not-lost", "report the token lost before asking for a replacement")
            waived = lost.product.needs_proofing and self._fresh_phone_sign_in(account_id, now)
            number = self.store.next_number("sales_order", FIRST_ORDER_NUMBER)
            order = Order(
                id=f"SO-{number}", account_id=account.id, product=lost.product, payment=PaymentMethod.CARD,
                state=OrderState.PAID, placed_ns=now, paid_ns=now, replacement_of=lost.id, proofing_waived=waived,
            )
            self.store.put("order", order, owner=account.id)
            number = self.store.next_number("credential", 1)
            replacement = Credential(
                id=f"CRED-{number}", account_id=account.id, order_id=order.id, product=lost.product,
                state=CredentialState.PROOFING_REQUIRED, expires_ns=lost.expires_ns,
            )
            if not lost.product.needs_proofing or waived:
                self._activate(replacement, now)
                replacement.proofing_method = lost.proofing_method
            lost.replaced_by = replacement.id
            self.store.put("credential", lost, owner=account.id)
            self.store.put("credential", replacement, owner=account.id)
            detail = "proofing waived after phone OTP sign-in" if waived else "proofing required" if lost.product.needs_proofing else ""
            self.store.log(now, account.id, "replacement-ordered", f"{order.id} {detail}".strip())
        return order

    def ship_replacement(self, order_id: str, serial: str) -> Order:
        """Ship the replacement token and hand it over (ship, then deliver)."""
        self.ship(order_id, serial)
        return self.deliver(order_id)
