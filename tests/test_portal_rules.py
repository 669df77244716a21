"""Every rule of the portal (``portal/service.py``) and every refusal it can give.

A fresh world per test: a SQLite database holding the validator's and the portal's tables,
a fleet of tokens imported from PSKC (as ``vtoken demo`` does), one SimulatedClock shared by
the validator, the portal and the tokens, a MemorySender, and deterministic randomness.
Each refusal is asserted by its code, so dropping the rule fails its test; and
``test_every_refusal_code_has_a_test`` fails when a new refusal appears without one.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from firmware_sim.fleet import FleetSpec, build_pskc, make_fleet
from firmware_sim.models import get_model
from firmware_sim.token import Token
from portal.licensekey import ALPHABET, check_char, format_key, normalize_key
from portal.messaging import MemorySender
from portal.proofing import InstantProofingProvider, VideoAgent
from portal.records import (
    Account,
    AppPolicy,
    CodeRevocation,
    Credential,
    CredentialState,
    Order,
    OrderState,
    PaymentMethod,
    ProofingMethod,
    ProofingState,
    Product,
)
from portal.service import (
    ACTIVATION_CODE_TTL_NS,
    CODE_PEPPER_INFO,
    MAX_ACTIVATION_FAILURES,
    CARD_HOLD_NS,
    FRESH_PHONE_AUTH_NS,
    KEY_PROMISE_NS,
    PHONE_OTP_MAX_ATTEMPTS,
    PHONE_OTP_MAX_CONSECUTIVE_FAILURES,
    PHONE_OTP_MAX_PER_WINDOW,
    PHONE_OTP_MIN_GAP_NS,
    PHONE_OTP_TTL_NS,
    PHONE_OTP_WINDOW_NS,
    SUBSCRIPTION_NS,
    PortalService,
)
from portal.store import SCHEMA_VERSION, PortalStore
from validator.importer import import_file
from validator.sealing import Keyring, MasterKey, generate_master_key
from validator.service import Reason, Validator
from validator.store import SQLiteStore
from vtoken.clock import NS_PER_DAY, NS_PER_HOUR, NS_PER_SECOND, SimulatedClock
from vtoken.errors import MasterKeyError, PortalError, StorageError

ROOT = Path(__file__).resolve().parents[1]
#: 2026-03-02T09:00:00Z, as in the demo.
START_NS = 1_772_442_000 * NS_PER_SECOND
BATCH = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f05654f4b3e2d1c0b9a8f7e6d5c4b3a291")
FLEET_SIZE = 6
NAME = "Dana Whitfield"
PHONE = "+14155550123"
MINUTE = 60 * NS_PER_SECOND
#: As often as the phone-OTP rate limit allows a code to be sent, all day long (288 a day).
OTP_SEND_INTERVAL_NS = PHONE_OTP_WINDOW_NS // PHONE_OTP_MAX_PER_WINDOW


def another_code(code: str) -> str:
    """A code of the same length that is certainly wrong."""
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))


def counter_random() -> Callable[[int], bytes]:
    """Deterministic 'random' bytes: SHA-256 of a counter."""
    counter = itertools.count()

    def random_bytes(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(f"vtoken-portal-test-{next(counter)}".encode()).digest()
        return out[:n]

    return random_bytes


@contextlib.contextmanager
def refused(code: str) -> Iterator[pytest.ExceptionInfo[PortalError]]:
    """The block must be refused with exactly this code."""
    with pytest.raises(PortalError) as info:
        yield info
    assert info.value.code == code, f"refused with {info.value.code!r} ({info.value}), expected {code!r}"


@dataclasses.dataclass
class Case:
    """One user's purchase, as far as a helper took it."""

    account: Account
    order: Order
    key: str
    serial: str
    credential: Credential | None = None


class World:
    """The validator and the portal on one database, a fleet of tokens, one clock."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = SimulatedClock(START_NS)
        spec = FleetSpec(batch_secret=BATCH, model=get_model("totp30"), count=FLEET_SIZE, ppm_spread=0)
        self.tokens: dict[str, Token] = {t.serial: t for t in make_fleet(spec, self.clock)}
        self.free_serials = list(self.tokens)
        pskc_path = tmp_path / "tokens.pskc"
        build_pskc(spec, created_ns=START_NS).write(str(pskc_path))
        self.db = db = tmp_path / "portal.db"
        self.keyring = keyring = Keyring(generate_master_key())
        self.vstore = SQLiteStore(db)
        import_file(self.vstore, keyring, pskc_path, now_ns=START_NS)
        self.validator = Validator(self.vstore, keyring, self.clock)
        self.pstore = PortalStore(db)
        self.sender = MemorySender()
        self.instant, self.agent = InstantProofingProvider(), VideoAgent()
        self.random = counter_random()
        self.portal = self.portal_with(self.validator)
        self.payroll = self.portal.add_application("Payroll", AppPolicy.HARDWARE_ONLY).id
        self.wiki = self.portal.add_application("Wiki", AppPolicy.ANY_OTP).id
        self._users = 0

    def portal_with(self, validator: Validator) -> PortalService:
        """A portal on this world's store, with ``validator`` (and so its master keys)."""
        return PortalService(
            self.pstore, validator, self.clock, self.sender, instant=self.instant, agent=self.agent,
            random_bytes=self.random,
        )

    def reopen(self) -> None:
        """Restart the portal: close its store and open the database file again (migrating it if needed)."""
        self.pstore.close()
        self.pstore = PortalStore(self.db)
        self.portal = self.portal_with(self.validator)

    def close(self) -> None:
        self.pstore.close()
        self.vstore.close()

    def now(self) -> int:
        return self.clock.now_ns()

    def advance(self, ns: int) -> None:
        self.clock.advance(ns)

    # --- purchase and key ---

    def account(self, country: str = "US", name: str = NAME) -> Account:
        self._users += 1
        return self.portal.create_account(f"user{self._users}@example.com", name, country)

    def mailed_key(self, account: Account) -> str:
        body = self.sender.last("email", account.email).body
        assert "license key:" in body, body
        return body.split("license key:")[1].split()[0]

    def bought(
        self, account: Account, product: Product = Product.TOKEN, payment: PaymentMethod = PaymentMethod.CARD
    ) -> tuple[Order, str]:
        order = self.portal.place_order(account.id, product, payment)
        if payment is not PaymentMethod.CARD:
            self.portal.record_payment(order.id)
        self.advance(CARD_HOLD_NS)
        assert order.id in self.portal.issue_due_keys()
        return order, self.mailed_key(account)

    def delivered(self, order: Order) -> str:
        serial = self.free_serials.pop(0)
        self.portal.ship(order.id, serial)
        self.advance(NS_PER_DAY)
        self.portal.deliver(order.id)
        return serial

    def keyed(self, product: Product = Product.TOKEN, country: str = "US") -> Case:
        account = self.account(country)
        order, key = self.bought(account, product)
        serial = self.delivered(order)
        credential = self.portal.enter_license_key(
            account.id, key, product, name=account.name, country=country, legal_name=account.name
        )
        return Case(account, order, key, serial, credential)

    # --- proofing and activation ---

    def video_code(self, account: Account) -> str:
        case = self.portal.book_video(account.id, self.now() + NS_PER_HOUR)
        self.advance(NS_PER_HOUR)
        _, code = self.portal.run_video_session(case.id)
        assert code is not None
        return code

    def activated(self, product: Product = Product.TOKEN_PROOFED, country: str = "US") -> Case:
        case = self.keyed(product, country)
        if product.needs_proofing:
            case.credential = self.portal.activate(case.account.id, self.video_code(case.account))
        assert case.credential is not None and case.credential.state is CredentialState.ACTIVATED
        return case

    # --- tokens ---

    def press(self, serial: str) -> str:
        """Wait for the next code (30 s), then press."""
        self.advance(30 * NS_PER_SECOND)
        return self.tokens[serial].press()

    def two_codes(self, serial: str) -> tuple[str, str]:
        code1 = self.tokens[serial].press()
        return code1, self.press(serial)

    def registered(self, product: Product = Product.TOKEN, country: str = "US") -> Case:
        case = self.activated(product, country)
        case.credential = self.portal.register_token(case.account.id, case.serial, *self.two_codes(case.serial))
        assert case.credential.state is CredentialState.REGISTERED
        return case

    # --- phone ---

    def last_code(self, channel: str = "sms", phone: str = PHONE) -> str:
        return self.sender.last(channel, phone).body.rsplit("is ", 1)[1].replace(" ", "")

    def verified_phone(self, account: Account, channel: str = "sms") -> None:
        self.portal.register_phone(account.id, PHONE, channel)
        self.portal.verify_phone(account.id, self.last_code(channel))

    def phone_code(self, account: Account, channel: str = "sms") -> str:
        self.advance(PHONE_OTP_MIN_GAP_NS)
        self.portal.send_phone_otp(account.id, channel)
        return self.last_code(channel)

    def phone_sign_in(self, account: Account, app: str | None = None, channel: str = "sms") -> None:
        self.portal.sign_in(app or self.wiki, account.id, "phone", self.phone_code(account, channel))

    def spaced_phone_code(self, account: Account) -> str:
        """A sign-in code sent as often as the rate limit allows all day (every 5 minutes)."""
        self.advance(OTP_SEND_INTERVAL_NS)
        self.portal.send_phone_otp(account.id)
        return self.last_code()

    def wrong_phone_guesses(self, account: Account, count: int) -> None:
        """``count`` wrong sign-in codes, three on each code sent, each refused as merely wrong."""
        while count > 0:
            wrong = another_code(self.spaced_phone_code(account))
            for _ in range(min(count, PHONE_OTP_MAX_ATTEMPTS)):
                with refused("otp-wrong"):
                    self.portal.sign_in(self.wiki, account.id, "phone", wrong)
                count -= 1

    def phone_failures(self, account: Account) -> int:
        return self.pstore.get("account", account.id).phone_otp_failures

    def activation_codes(self, account: Account) -> list:
        return self.pstore.by_owner("activation", self.portal.current_credential(account.id).id)

    def edit_row(self, kind: str, ident: str, **changes: object) -> None:
        """Change a stored entity behind the portal's back (as a damaged or older database would have it)."""
        (text,) = self.pstore._conn.execute(
            "SELECT data FROM portal_entities WHERE kind = ? AND id = ?", (kind, ident)
        ).fetchone()
        raw = json.loads(text)
        raw.update(changes)
        self.pstore._conn.execute(
            "UPDATE portal_entities SET data = ? WHERE kind = ? AND id = ?", (json.dumps(raw), kind, ident)
        )


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.close()


# --- refusal coverage --------------------------------------------------------------------------


def _source_codes() -> set[str]:
    codes: set[str] = set()
    for name in ("portal/service.py", "portal/licensekey.py"):
        text = (ROOT / name).read_text("utf-8")
        codes |= set(re.findall(r'_refuse\(\s*"([a-z0-9-]+)"', text))
        codes |= set(re.findall(r'PortalError\(\s*"([a-z0-9-]+)"', text))
        # the validator's registration refusals, as register_token renames them
        codes |= set(re.findall(r'Reason\.[A-Z_]+: "([a-z0-9-]+)"', text))
    return codes


def test_every_refusal_code_has_a_test() -> None:
    source = _source_codes()
    assert len(source) > 40, sorted(source)
    tested = set(re.findall(r'refused\("([a-z0-9-]+)"\)', Path(__file__).read_text("utf-8")))
    # codes made from a validator reason: token-<reason> (sign-in), register-<reason> (registration)
    dynamic = {f"{prefix}-{reason.value}" for prefix in ("token", "register") for reason in Reason}
    assert source - tested == set(), f"refusals without a test: {sorted(source - tested)}"
    assert tested - source - dynamic == set(), f"tests for refusals that do not exist: {sorted(tested - source - dynamic)}"


# --- 1. purchase ---------------------------------------------------------------------------------


def test_accounts_need_an_email_and_a_name(w: World) -> None:
    with refused("bad-profile"):
        w.portal.create_account("no-at-sign", NAME)
    with refused("bad-profile"):
        w.portal.create_account("dana@example.com", "   ")
    with refused("bad-country"):
        w.portal.create_account("dana@example.com", NAME, "USA")
    account = w.portal.create_account(" dana@example.com ", "  Dana   Whitfield ", "us")
    assert (account.id, account.email, account.name, account.country) == ("ACC-1", "dana@example.com", NAME, "US")


def test_sales_orders_are_numbered_from_SO_12345(w: World) -> None:
    a, b = w.account(), w.account()
    first = w.portal.place_order(a.id, Product.TOKEN, PaymentMethod.CARD)
    second = w.portal.place_order(b.id, Product.TOKEN_PROOFED, PaymentMethod.INVOICE)
    third = w.portal.place_order(a.id, Product.TOKEN, PaymentMethod.PURCHASE_ORDER)
    assert [first.id, second.id, third.id] == ["SO-12345", "SO-12346", "SO-12347"]
    assert first.state is OrderState.PAID and first.paid_ns == w.now()
    assert second.state is third.state is OrderState.AWAITING_PAYMENT
    assert [m.subject for m in w.sender.sent if m.to == a.email] == ["Your order SO-12345", "Your order SO-12347"]
    with refused("unknown-account"):
        w.portal.place_order("ACC-99", Product.TOKEN, PaymentMethod.CARD)


def test_card_key_is_mailed_after_the_fraud_hold_and_within_24_hours(w: World) -> None:
    account = w.account()
    order = w.portal.place_order(account.id, Product.TOKEN, PaymentMethod.CARD)
    assert 0 < CARD_HOLD_NS <= KEY_PROMISE_NS == 24 * NS_PER_HOUR
    assert w.portal.issue_due_keys() == []
    w.advance(CARD_HOLD_NS - NS_PER_SECOND)
    assert w.portal.issue_due_keys() == []
    assert w.pstore.all("license_key") == []
    w.advance(NS_PER_SECOND)
    assert w.portal.issue_due_keys() == [order.id]
    issued = w.pstore.get("order", order.id)
    assert issued.state is OrderState.KEY_ISSUED
    assert issued.key_issued_ns - issued.paid_ns <= KEY_PROMISE_NS
    mail = w.sender.last("email", account.email)
    key = w.mailed_key(account)
    assert order.id in mail.subject and normalize_key(key) == key
    assert w.portal.issue_due_keys() == []  # one key per order


@pytest.mark.parametrize("payment", [PaymentMethod.INVOICE, PaymentMethod.PURCHASE_ORDER])
def test_invoice_and_purchase_order_get_a_key_only_after_payment(w: World, payment: PaymentMethod) -> None:
    account = w.account()
    order = w.portal.place_order(account.id, Product.TOKEN_PROOFED, payment)
    for wait in (0, NS_PER_HOUR, NS_PER_DAY, 5 * NS_PER_DAY):
        w.advance(wait)
        assert w.portal.issue_due_keys() == [], "no key before payment, however long"
    assert w.pstore.get("order", order.id).state is OrderState.AWAITING_PAYMENT
    assert not any("license key" in m.body for m in w.sender.sent)
    paid = w.portal.record_payment(order.id.lower())
    assert paid.state is OrderState.PAID and paid.paid_ns == w.now()
    assert w.portal.issue_due_keys() == [order.id]  # no fraud hold after payment
    assert w.mailed_key(account)
    with refused("already-paid"):
        w.portal.record_payment(order.id)


def test_payment_refusals(w: World) -> None:
    account = w.account()
    card = w.portal.place_order(account.id, Product.TOKEN, PaymentMethod.CARD)
    with refused("already-paid"):
        w.portal.record_payment(card.id)
    with refused("unknown-order"):
        w.portal.record_payment("SO-99999")


def test_shipping_refusals(w: World) -> None:
    account = w.account()
    a = w.portal.place_order(account.id, Product.TOKEN, PaymentMethod.CARD)
    b = w.portal.place_order(account.id, Product.TOKEN, PaymentMethod.CARD)
    serial = w.free_serials[0]
    with refused("not-shipped"):
        w.portal.deliver(a.id)
    with refused("unknown-serial"):
        w.portal.ship(a.id, "1234567890")
    with refused("unknown-order"):
        w.portal.ship("SO-1", serial)
    w.portal.ship(a.id, serial)
    with refused("serial-taken"):
        w.portal.ship(b.id, serial)
    with refused("already-shipped"):
        w.portal.ship(a.id, w.free_serials[1])
    assert w.portal.deliver(a.id).delivered_ns == w.now()


# --- 2. license key ------------------------------------------------------------------------------


def test_key_only_after_the_token_arrived(w: World) -> None:
    account = w.account()
    order, key = w.bought(account)
    with refused("token-not-arrived"):
        w.portal.enter_license_key(account.id, key, Product.TOKEN, name=NAME, country="US")
    w.portal.ship(order.id, w.free_serials[0])
    with refused("token-not-arrived"):  # shipped is not arrived
        w.portal.enter_license_key(account.id, key, Product.TOKEN, name=NAME, country="US")
    w.portal.deliver(order.id)
    credential = w.portal.enter_license_key(account.id, key, Product.TOKEN, name=NAME, country="US")
    assert credential.serial == w.free_serials[0]


def test_key_is_single_use(w: World) -> None:
    case = w.keyed()
    assert w.pstore.get("license_key", w.portal._hash("license", "", case.key)).used_ns is not None
    with refused("key-used"):
        w.portal.enter_license_key(case.account.id, case.key, Product.TOKEN, name=NAME, country="US")
    other = w.account()
    with refused("key-used"):
        w.portal.enter_license_key(other.id, case.key, Product.TOKEN, name=NAME, country="US")


def test_key_is_bound_to_the_product_bought(w: World) -> None:
    plain, proofed = w.account(), w.account()
    order1, key1 = w.bought(plain, Product.TOKEN)
    order2, key2 = w.bought(proofed, Product.TOKEN_PROOFED)
    w.delivered(order1), w.delivered(order2)
    with refused("key-wrong-product"):
        w.portal.enter_license_key(plain.id, key1, Product.TOKEN_PROOFED, name=NAME, country="US", legal_name=NAME)
    with refused("key-wrong-product"):
        w.portal.enter_license_key(proofed.id, key2, Product.TOKEN, name=NAME, country="US")
    assert w.portal.enter_license_key(plain.id, key1, Product.TOKEN, name=NAME, country="US").product is Product.TOKEN


def test_key_of_another_account_is_refused(w: World) -> None:
    owner, thief = w.account(), w.account()
    order, key = w.bought(owner)
    w.delivered(order)
    with refused("key-other-account"):
        w.portal.enter_license_key(thief.id, key, Product.TOKEN, name=NAME, country="US")
    w.portal.enter_license_key(owner.id, key, Product.TOKEN, name=NAME, country="US")


def test_unknown_and_malformed_keys(w: World) -> None:
    account = w.account()
    order, key = w.bought(account)
    w.delivered(order)
    with refused("key-unknown"):  # well formed, checksum right, never issued
        w.portal.enter_license_key(account.id, format_key(bytes(12)), Product.TOKEN, name=NAME, country="US")
    for bad in ("12345", key + "0", "ABCDE-FGHJK-MNPQR-STVWU", ""):
        with refused("key-malformed"):
            w.portal.enter_license_key(account.id, bad, Product.TOKEN, name=NAME, country="US")
    with refused("unknown-account"):
        w.portal.enter_license_key("ACC-404", key, Product.TOKEN, name=NAME, country="US")


def _substitutions(key: str) -> Iterator[str]:
    raw = key.replace("-", "")
    for i, old in enumerate(raw):
        for new in ALPHABET:
            if new != old:
                yield raw[:i] + new + raw[i + 1:]


def _transpositions(key: str) -> Iterator[str]:
    raw = key.replace("-", "")
    for i in range(len(raw) - 1):
        if raw[i] != raw[i + 1]:
            yield raw[:i] + raw[i + 1] + raw[i] + raw[i + 2:]


def test_a_typo_in_the_key_is_caught_by_the_service(w: World) -> None:
    account = w.account()
    order, key = w.bought(account)
    w.delivered(order)
    typo = next(_substitutions(key))
    swapped = next(_transpositions(key))
    for bad in (typo, swapped):
        with refused("key-typo"):
            w.portal.enter_license_key(account.id, bad, Product.TOKEN, name=NAME, country="US")
    # forgiving typing: lower case, spaces for dashes, I/L for 1 and O for 0
    sloppy = key.lower().replace("-", " ").replace("1", "l").replace("0", "o")
    assert w.portal.enter_license_key(account.id, sloppy, Product.TOKEN, name=NAME, country="US")


def test_every_single_substitution_and_adjacent_swap_is_caught() -> None:
    random_bytes = counter_random()
    keys = [format_key(random_bytes(12)) for _ in range(12)]
    # Luhn mod 32 misses a swap of 0 and Z (values 0 and 31): keys made to contain such pairs
    for payload in ("0Z" + "7" * 17, "Z0" * 9 + "K", "AB0Z0ZCDEFGHJKMNPQR"):
        keys.append(payload + check_char(payload))
    for key in keys:
        assert normalize_key(key) == "-".join(key.replace("-", "")[i:i + 5] for i in range(0, 20, 5))
        for bad in itertools.chain(_substitutions(key), _transpositions(key)):
            with refused("key-typo"):
                normalize_key(bad)


def test_profile_and_country_are_confirmed(w: World) -> None:
    account = w.account()
    order, key = w.bought(account)
    w.delivered(order)
    with refused("profile-mismatch"):
        w.portal.enter_license_key(account.id, key, Product.TOKEN, name="Dana Smith", country="US")
    for country in ("USA", "U", "1A", ""):
        with refused("bad-country"):
            w.portal.enter_license_key(account.id, key, Product.TOKEN, name=NAME, country=country)
    credential = w.portal.enter_license_key(account.id, key, Product.TOKEN, name=" dana  whitfield", country="de")
    stored = w.pstore.get("account", account.id)
    assert stored.country == "DE" and stored.profile_confirmed
    assert credential.state is CredentialState.ACTIVATED  # no proofing bought: activated at once


def test_legal_name_must_match_only_when_proofing_was_bought(w: World) -> None:
    proofed, plain = w.account(), w.account()
    order1, key1 = w.bought(proofed, Product.TOKEN_PROOFED)
    order2, key2 = w.bought(plain, Product.TOKEN)
    w.delivered(order1), w.delivered(order2)
    for legal in ("Dana W. Smith", ""):
        with refused("name-mismatch"):
            w.portal.enter_license_key(
                proofed.id, key1, Product.TOKEN_PROOFED, name=NAME, country="US", legal_name=legal
            )
    assert w.pstore.get("license_key", w.portal._hash("license", "", key1)).used_ns is None  # a refusal does not use it up
    credential = w.portal.enter_license_key(
        proofed.id, key1, Product.TOKEN_PROOFED, name=NAME, country="US", legal_name="DANA  WHITFIELD"
    )
    assert credential.state is CredentialState.PROOFING_REQUIRED
    plain_cred = w.portal.enter_license_key(
        plain.id, key2, Product.TOKEN, name=NAME, country="US", legal_name="Dana W. Smith"
    )
    assert plain_cred.state is CredentialState.ACTIVATED


# --- 3. identity proofing ---------------------------------------------------------------------------


def test_us_users_may_take_instant_proofing_and_pass(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "US")
    assert w.portal.proofing_options(case.account.id) == [ProofingMethod.INSTANT, ProofingMethod.VIDEO]
    answers = w.instant.correct_answers(case.account.id)
    result = w.portal.instant_proofing(case.account.id, answers)
    assert result.state is ProofingState.PASSED
    credential = w.portal.current_credential(case.account.id)
    assert credential.state is CredentialState.ACTIVATED and credential.proofing_method is ProofingMethod.INSTANT
    assert credential.expires_ns == w.now() + SUBSCRIPTION_NS
    with refused("proofing-not-needed"):
        w.portal.instant_proofing(case.account.id, answers)
    with refused("proofing-not-needed"):
        w.portal.book_video(case.account.id, w.now() + NS_PER_HOUR)
    w.portal.register_token(case.account.id, case.serial, *w.two_codes(case.serial))


def test_users_elsewhere_must_take_video(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    assert w.portal.proofing_options(case.account.id) == [ProofingMethod.VIDEO]
    with refused("instant-not-available"):
        w.portal.instant_proofing(case.account.id, w.instant.correct_answers(case.account.id))
    credential = w.portal.activate(case.account.id, w.video_code(case.account))
    assert credential.state is CredentialState.ACTIVATED and credential.proofing_method is ProofingMethod.VIDEO


def test_failing_instant_leaves_video_open_and_instant_is_taken_once(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "US")
    wrong = {q: "nowhere" for q in w.instant.correct_answers(case.account.id)}
    failed = w.portal.instant_proofing(case.account.id, wrong)  # graded against the bureau's records
    assert failed.state is ProofingState.FAILED and failed.reason
    assert w.portal.current_credential(case.account.id).state is CredentialState.PROOFING_REQUIRED
    with refused("instant-already-tried"):
        w.portal.instant_proofing(case.account.id, w.instant.correct_answers(case.account.id))
    with refused("proofing-not-done"):
        w.portal.register_token(case.account.id, case.serial, *w.two_codes(case.serial))
    assert ProofingMethod.VIDEO in w.portal.proofing_options(case.account.id)
    credential = w.portal.activate(case.account.id, w.video_code(case.account))
    assert credential.state is CredentialState.ACTIVATED


def test_injected_instant_outcome_wins_over_the_answers(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "US")
    w.instant.set_outcome(case.account.id, False)
    result = w.portal.instant_proofing(case.account.id, w.instant.correct_answers(case.account.id))
    assert result.state is ProofingState.FAILED


def test_video_failure_then_rebook_and_pass(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    first = w.portal.book_video(case.account.id, w.now() + NS_PER_HOUR)
    w.advance(NS_PER_HOUR)
    w.agent.set_outcome(case.account.id, False, "ID document expired")
    failed, code = w.portal.run_video_session(first.id)
    assert (failed.state, failed.reason, code) == (ProofingState.FAILED, "ID document expired", None)
    assert w.portal.current_credential(case.account.id).state is CredentialState.PROOFING_REQUIRED
    with refused("session-over"):
        w.portal.run_video_session(first.id)
    credential = w.portal.activate(case.account.id, w.video_code(case.account))  # retry passes
    assert credential.state is CredentialState.ACTIVATED


def test_video_session_refusals(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "US")
    with refused("session-in-past"):
        w.portal.book_video(case.account.id, w.now() - NS_PER_SECOND)
    booked = w.portal.book_video(case.account.id, w.now() + NS_PER_DAY)
    w.advance(NS_PER_HOUR)
    with refused("session-not-started"):
        w.portal.run_video_session(booked.id)
    with refused("unknown-session"):
        w.portal.run_video_session("PRF-99")
    w.instant.set_outcome(case.account.id, False)
    instant = w.portal.instant_proofing(case.account.id, {})
    with refused("unknown-session"):  # an instant case is no video session
        w.portal.run_video_session(instant.id)
    w.advance(NS_PER_DAY)
    passed, code = w.portal.run_video_session(booked.id)
    assert passed.state is ProofingState.PASSED and code is not None and len(code) == 10
    with refused("session-over"):
        w.portal.run_video_session(booked.id)


def test_a_leftover_booking_cannot_reset_a_registered_credential(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "US")
    spare = w.portal.book_video(case.account.id, w.now() + 2 * NS_PER_HOUR)
    w.portal.activate(case.account.id, w.video_code(case.account))
    w.portal.register_token(case.account.id, case.serial, *w.two_codes(case.serial))
    w.advance(2 * NS_PER_HOUR)
    with refused("proofing-not-needed"):
        w.portal.run_video_session(spare.id)
    assert w.portal.current_credential(case.account.id).state is CredentialState.REGISTERED


def test_proofing_is_only_for_pending_credentials(w: World) -> None:
    case = w.keyed(Product.TOKEN, "US")
    with refused("proofing-not-needed"):
        w.portal.instant_proofing(case.account.id, {})
    fresh = w.account()
    with refused("no-credential"):
        w.portal.book_video(fresh.id, w.now() + NS_PER_HOUR)


# --- 4. activation -----------------------------------------------------------------------------------


def test_activation_code_is_single_use_and_must_be_right(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    code = w.video_code(case.account)
    assert w.portal.current_credential(case.account.id).state is CredentialState.AWAITING_ACTIVATION
    with refused("activation-wrong"):
        w.portal.activate(case.account.id, str((int(code) + 1) % 10**10).zfill(10))
    credential = w.portal.activate(case.account.id, code[:3] + " " + code[3:6] + "-" + code[6:])
    assert credential.state is CredentialState.ACTIVATED
    assert credential.expires_ns == w.now() + SUBSCRIPTION_NS
    with refused("activation-used"):
        w.portal.activate(case.account.id, code)


def test_activation_guesses_are_limited_and_a_new_session_resets_them(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    code = w.video_code(case.account)
    wrong = str((int(code) + 1) % 10**10).zfill(10)
    for _ in range(MAX_ACTIVATION_FAILURES):
        with refused("activation-wrong"):
            w.portal.activate(case.account.id, wrong)
    with refused("activation-attempts"):
        w.portal.activate(case.account.id, code)  # even the right code, once the guesses are used up
    fresh = w.video_code(case.account)  # booking is open again, and a passed session resets the count
    assert w.portal.activate(case.account.id, fresh).state is CredentialState.ACTIVATED


def test_license_keys_are_stored_only_as_hashes(w: World) -> None:
    case = w.keyed(Product.TOKEN, "US")
    rows = w.pstore._conn.execute("SELECT id, data FROM portal_entities WHERE kind = 'license_key'").fetchall()
    assert rows and all(case.key not in ident and case.key not in data for ident, data in rows)


def test_activation_code_expires_after_72_hours_and_a_new_session_gives_a_new_one(w: World) -> None:
    assert ACTIVATION_CODE_TTL_NS == 72 * NS_PER_HOUR
    on_time = w.keyed(Product.TOKEN_PROOFED, "DE")
    code = w.video_code(on_time.account)
    w.advance(ACTIVATION_CODE_TTL_NS - NS_PER_SECOND)
    assert w.portal.activate(on_time.account.id, code).state is CredentialState.ACTIVATED

    late = w.keyed(Product.TOKEN_PROOFED, "DE")
    code = w.video_code(late.account)
    w.advance(ACTIVATION_CODE_TTL_NS)
    with refused("activation-expired"):
        w.portal.activate(late.account.id, code)
    # as the refusal says: book a new video session, which gives a new code
    new_code = w.video_code(late.account)
    assert new_code != code
    assert w.portal.activate(late.account.id, new_code).state is CredentialState.ACTIVATED


def test_a_live_activation_code_blocks_a_new_booking(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    w.video_code(case.account)
    with refused("proofing-not-needed"):
        w.portal.book_video(case.account.id, w.now() + NS_PER_HOUR)


def test_a_new_code_revokes_every_earlier_one(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    first = w.portal.book_video(case.account.id, w.now() + NS_PER_HOUR)
    second = w.portal.book_video(case.account.id, w.now() + NS_PER_HOUR)
    w.advance(NS_PER_HOUR)
    _, code1 = w.portal.run_video_session(first.id)
    _, code2 = w.portal.run_video_session(second.id)
    assert code1 and code2 and code1 != code2
    with refused("activation-revoked") as info:  # the first session's code died when the second gave one
        w.portal.activate(case.account.id, code1)
    assert "replaced by the code from your latest video session" in str(info.value)
    assert w.portal.current_credential(case.account.id).activation_failures == 1  # an old code is a wrong code
    assert w.portal.activate(case.account.id, code2).state is CredentialState.ACTIVATED
    with refused("activation-used"):
        w.portal.activate(case.account.id, code2)
    with refused("activation-revoked"):
        w.portal.activate(case.account.id, code1)
    assert [c.revoked for c in w.activation_codes(case.account)] == [CodeRevocation.SUPERSEDED, None]


def test_a_lockout_and_a_new_session_do_not_revive_the_old_code(w: World) -> None:
    """Issue 15 #8: five wrong codes, a new video session, a new code; the old code was still accepted."""
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    old = w.video_code(case.account)
    for _ in range(MAX_ACTIVATION_FAILURES):
        with refused("activation-wrong"):
            w.portal.activate(case.account.id, another_code(old))
    with refused("activation-attempts"):
        w.portal.activate(case.account.id, old)
    [record] = w.activation_codes(case.account)
    assert record.revoked is CodeRevocation.LOCKOUT and record.revoked_ns == w.now()  # dead at the lockout
    assert any(event == "activation-locked" for _, _, event, _ in w.pstore.audit(case.account.id))

    new = w.video_code(case.account)  # the new session resets the count ...
    assert w.portal.current_credential(case.account.id).activation_failures == 0
    with refused("activation-revoked") as info:  # ... and the old code stays dead
        w.portal.activate(case.account.id, old)
    assert "withdrawn after too many wrong codes" in str(info.value)
    assert w.portal.current_credential(case.account.id).state is CredentialState.AWAITING_ACTIVATION
    assert w.portal.activate(case.account.id, new).state is CredentialState.ACTIVATED


def test_a_live_code_does_not_activate_a_credential_in_another_state(w: World) -> None:
    """Every way of changing state revokes or uses the code; a credential changed behind the portal's back."""
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    code = w.video_code(case.account)
    credential = w.portal.current_credential(case.account.id)
    w.edit_row("credential", credential.id, state=CredentialState.PROOFING_REQUIRED.value)
    with refused("not-awaiting-activation"):
        w.portal.activate(case.account.id, code)


def _pepper(key: MasterKey) -> bytes:
    """The code pepper (activation codes, phone OTPs), derived independently of the portal's code."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=CODE_PEPPER_INFO).derive(
        bytes.fromhex(key.to_hex())
    )


def test_a_read_database_cannot_confirm_an_activation_code(w: World) -> None:
    """Issue 15 #10: SHA-256 keyed by the credential id gave 10-digit codes away within their 72 hours."""
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    code = w.video_code(case.account)
    credential = w.portal.current_credential(case.account.id)
    [record] = w.activation_codes(case.account)
    # not any unkeyed hash of what the database holds and the code
    texts = [code, f"activation\0{credential.id}\0{code}", f"{credential.id}\0{code}", credential.id + code,
             code + credential.id, f"activation:{credential.id}:{code}"]
    unkeyed = {
        hashlib.new(name, text.encode()).hexdigest()
        for name in ("md5", "sha1", "sha256", "sha512", "sha3_256", "blake2b", "blake2s") for text in texts
    }
    assert record.code_hash not in unkeyed
    # it is HMAC-SHA256 under a pepper from the master key, which lives in the key file, not the database
    pepper = _pepper(w.keyring.current)
    message = b"activation\0" + credential.id.encode() + b"\0" + code.encode()
    assert record.code_hash == hmac.new(pepper, message, hashlib.sha256).hexdigest()
    assert record.key_id == w.keyring.current.key_id
    on_disk = b"".join(path.read_bytes() for path in w.db.parent.glob(w.db.name + "*"))
    for secret in (pepper, pepper.hex().encode(), w.keyring.current.to_hex().encode(), code.encode()):
        assert secret not in on_disk
    # the same database with any other master key cannot check a guess, not even the right code
    stranger = w.portal_with(Validator(w.vstore, Keyring(generate_master_key()), w.clock))
    with pytest.raises(MasterKeyError) as info:
        stranger.activate(case.account.id, code)
    assert record.key_id in str(info.value) and w.keyring.current.to_hex() not in str(info.value)
    assert w.portal.current_credential(case.account.id).activation_failures == 0  # nothing was counted
    # with the key, the right code works
    assert w.portal.activate(case.account.id, code).state is CredentialState.ACTIVATED


def test_an_activation_code_survives_a_master_key_rotation(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    code = w.video_code(case.account)
    rotated = w.keyring.rotated(generate_master_key())
    portal = w.portal_with(Validator(w.vstore, rotated, w.clock))
    with refused("activation-wrong"):
        portal.activate(case.account.id, another_code(code))
    for malformed in ("12345", "x" * 10, "1" * 10_000):  # never hashed, still counted
        with refused("activation-wrong"):
            portal.activate(case.account.id, malformed)
    assert portal.activate(case.account.id, code).state is CredentialState.ACTIVATED  # under the older key
    later = w.keyed(Product.TOKEN_PROOFED, "DE")
    w.portal = portal
    w.video_code(later.account)
    assert [c.key_id for c in w.activation_codes(later.account)] == [rotated.current.key_id]


def _as_schema_1(w: World) -> None:
    """Turn the world's database into what schema 1 wrote: unkeyed activation hashes, no new fields."""
    conn = w.pstore._conn
    for rowid, text in conn.execute("SELECT rowid, data FROM portal_entities WHERE kind = 'activation'").fetchall():
        raw = json.loads(text)
        for field in ("key_id", "revoked", "revoked_ns"):
            del raw[field]
        conn.execute("UPDATE portal_entities SET data = ? WHERE rowid = ?", (json.dumps(raw), rowid))
    for rowid, text in conn.execute("SELECT rowid, data FROM portal_entities WHERE kind = 'account'").fetchall():
        raw = {k: v for k, v in json.loads(text).items() if not k.startswith("phone_otp_")}
        conn.execute("UPDATE portal_entities SET data = ? WHERE rowid = ?", (json.dumps(raw), rowid))
    conn.execute("UPDATE portal_counters SET value = 1 WHERE name = 'schema_version'")


def test_migration_revokes_unkeyed_activation_codes_with_a_clear_refusal(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    code = w.video_code(case.account)
    credential = w.portal.current_credential(case.account.id)
    [record] = w.activation_codes(case.account)
    legacy = hashlib.sha256(f"activation\0{credential.id}\0{code}".encode()).hexdigest()  # as schema 1 stored it
    w.pstore._conn.execute(
        "UPDATE portal_entities SET id = ?, data = replace(data, ?, ?) WHERE kind = 'activation' AND id = ?",
        (legacy, record.code_hash, legacy, record.code_hash),
    )
    _as_schema_1(w)
    w.reopen()
    assert w.pstore.schema_version() == SCHEMA_VERSION == 3
    stored = " ".join(row[0] for row in w.pstore._conn.execute("SELECT id || data FROM portal_entities"))
    assert legacy not in stored  # the guessable hash is gone
    [migrated] = w.activation_codes(case.account)
    assert migrated.revoked is CodeRevocation.LEGACY_HASH and migrated.key_id == ""
    with refused("activation-invalidated") as info:
        w.portal.activate(case.account.id, code)
    assert "book a new video session" in str(info.value)
    assert w.portal.current_credential(case.account.id).activation_failures == 0
    w.reopen()  # migrating again changes nothing
    assert w.activation_codes(case.account) == [migrated]
    fresh = w.video_code(case.account)  # booking is open: the credential has no live code
    assert w.portal.activate(case.account.id, fresh).state is CredentialState.ACTIVATED
    assert w.pstore.get("account", case.account.id).phone_otp_failures == 0  # an old account row loads


def test_a_read_database_cannot_confirm_a_phone_code(w: World) -> None:
    """Issue 15 #10, for phone OTPs: an unkeyed SHA-256 of a 6-digit code falls to a million guesses."""
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    w.verified_phone(case.account)
    code = w.phone_code(case.account)
    otp = w.pstore.by_owner("phone_otp", case.account.id)[-1]
    assert hashlib.sha256(f"phone\0{otp.id}\0{code}".encode()).hexdigest() != otp.code_hash  # the old scheme
    pepper = _pepper(w.keyring.current)
    message = b"phone\0" + otp.id.encode() + b"\0" + code.encode()
    assert otp.code_hash == hmac.new(pepper, message, hashlib.sha256).hexdigest()
    assert otp.key_id == w.keyring.current.key_id
    on_disk = b"".join(path.read_bytes() for path in w.db.parent.glob(w.db.name + "*"))
    assert pepper not in on_disk and pepper.hex().encode() not in on_disk
    assert w.keyring.current.to_hex().encode() not in on_disk
    # the same database with another master key cannot check a guess, and counts nothing
    stranger = w.portal_with(Validator(w.vstore, Keyring(generate_master_key()), w.clock))
    with pytest.raises(MasterKeyError, match="ask for a new code") as info:
        stranger.sign_in(w.wiki, case.account.id, "phone", code)
    assert otp.key_id in str(info.value) and w.keyring.current.to_hex() not in str(info.value)
    assert w.phone_failures(case.account) == 0
    assert w.portal.sign_in(w.wiki, case.account.id, "phone", code).factor == "phone"


def test_migration_expires_unkeyed_phone_codes_with_a_clear_refusal(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    w.verified_phone(case.account)
    code = w.phone_code(case.account)
    otp = w.pstore.by_owner("phone_otp", case.account.id)[-1]
    legacy = hashlib.sha256(f"phone\0{otp.id}\0{code}".encode()).hexdigest()  # as schema 2 stored it
    conn = w.pstore._conn
    for rowid, text in conn.execute("SELECT rowid, data FROM portal_entities WHERE kind = 'phone_otp'").fetchall():
        raw = json.loads(text)
        del raw["key_id"]
        if raw["id"] == otp.id:
            raw["code_hash"] = legacy
        conn.execute("UPDATE portal_entities SET data = ? WHERE rowid = ?", (json.dumps(raw), rowid))
    conn.execute("UPDATE portal_counters SET value = 2 WHERE name = 'schema_version'")
    w.reopen()
    assert w.pstore.schema_version() == SCHEMA_VERSION == 3
    stored = " ".join(row[0] for row in w.pstore._conn.execute("SELECT id || data FROM portal_entities"))
    assert legacy not in stored  # the guessable hash is gone
    with refused("otp-expired") as info:  # well inside its five minutes, but it cannot be checked any more
        w.portal.sign_in(w.wiki, case.account.id, "phone", code)
    assert "ask for a new one" in str(info.value)
    assert w.phone_failures(case.account) == 0
    w.reopen()  # migrating again changes nothing
    assert w.pstore.by_owner("phone_otp", case.account.id)[-1].expires_ns == otp.sent_ns
    w.advance(30 * NS_PER_SECOND)  # the send rate limit
    w.phone_sign_in(case.account)  # a new code works


def test_a_database_from_a_newer_portal_is_refused(w: World) -> None:
    w.pstore._conn.execute("UPDATE portal_counters SET value = ? WHERE name = 'schema_version'", (SCHEMA_VERSION + 1,))
    with pytest.raises(StorageError, match="newer than this vtoken understands"):
        PortalStore(w.db)


def test_negative_or_non_numeric_failure_counts_are_refused(w: World) -> None:
    """A negative count would give extra guesses (issue 15 #10, for the portal's own counters)."""
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    credential = w.portal.current_credential(case.account.id)
    for bad in (-1000, "0", 1.5, True, None):
        w.edit_row("credential", credential.id, activation_failures=bad)
        with pytest.raises(StorageError, match="activation_failures"):
            w.portal.activate(case.account.id, "0123456789")
        w.edit_row("account", case.account.id, phone_otp_failures=bad)
        with pytest.raises(StorageError, match="phone_otp_failures"):
            w.portal.send_phone_otp(case.account.id)
        w.edit_row("account", case.account.id, phone_otp_failures=0)
    w.edit_row("credential", credential.id, activation_failures=0)


# --- 5. registration --------------------------------------------------------------------------------


def test_register_before_proofing_or_activation_is_refused(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    with refused("proofing-not-done"):
        w.portal.register_token(case.account.id, case.serial, *w.two_codes(case.serial))
    code = w.video_code(case.account)
    with refused("not-activated"):
        w.portal.register_token(case.account.id, case.serial, *w.two_codes(case.serial))
    w.portal.activate(case.account.id, code)
    credential = w.portal.register_token(case.account.id, case.serial, *w.two_codes(case.serial))
    assert credential.state is CredentialState.REGISTERED and credential.registered_ns == w.now()
    assert w.validator.status(case.serial).record.registered
    with refused("no-credential"):
        w.portal.register_token(w.account().id, case.serial, "123456", "654321")


def test_register_serial_refusals(w: World) -> None:
    case = w.activated(Product.TOKEN)
    serial, other = case.serial, w.free_serials[0]
    code1, code2 = w.two_codes(serial)
    for bad in ("12 ab", "ZZ#1", ""):
        with refused("serial-malformed"):
            w.portal.register_token(case.account.id, bad, code1, code2)
    mistyped = [serial[:i] + d + serial[i + 1:] for i in range(len(serial)) for d in "0123456789" if d != serial[i]]
    mistyped += [serial[:i] + serial[i + 1] + serial[i] + serial[i + 2:] for i in range(len(serial) - 1)
                 if serial[i] != serial[i + 1]]
    for bad in mistyped:
        with refused("serial-mistyped"):
            w.portal.register_token(case.account.id, bad, code1, code2)
    with refused("serial-not-yours"):
        w.portal.register_token(case.account.id, other, *w.two_codes(other))
    formatted = "-".join([serial[:3], serial[3:6], serial[6:9], serial[9:]])
    assert w.portal.register_token(case.account.id, formatted, code1, code2).state is CredentialState.REGISTERED


def test_register_code_refusals(w: World) -> None:
    case = w.activated(Product.TOKEN)
    other = w.free_serials[0]
    with refused("codes-wrong"):  # codes from another token
        w.portal.register_token(case.account.id, case.serial, *w.two_codes(other))
    code1, code2 = w.two_codes(case.serial)
    with refused("same-code"):
        w.portal.register_token(case.account.id, case.serial, code1, code1)
    with refused("code-malformed"):
        w.portal.register_token(case.account.id, case.serial, "12a456", code2)
    with refused("code-malformed"):
        w.portal.register_token(case.account.id, case.serial, code1, "12345")
    with refused("codes-wrong"):  # the pair the wrong way round
        w.portal.register_token(case.account.id, case.serial, code2, code1)
    assert w.portal.register_token(case.account.id, case.serial, code1, code2).state is CredentialState.REGISTERED


# --- subscription and sign-in -----------------------------------------------------------------------


def test_subscription_expires_after_one_year(w: World) -> None:
    case = w.registered()
    expires = case.credential.expires_ns
    assert expires == case.credential.activated_ns + SUBSCRIPTION_NS == case.credential.activated_ns + 365 * NS_PER_DAY
    w.verified_phone(case.account)
    w.advance(expires - w.now() - 2 * MINUTE)
    w.portal.sign_in(w.payroll, case.account.id, "token", w.press(case.serial))
    w.phone_sign_in(case.account)  # just before the end
    code = w.phone_code(case.account)
    w.advance(expires - w.now())
    token_code = w.tokens[case.serial].press()
    with refused("subscription-expired"):
        w.portal.sign_in(w.payroll, case.account.id, "token", token_code)
    with refused("subscription-expired"):
        w.portal.sign_in(w.wiki, case.account.id, "phone", code)


def test_sign_in_refusals(w: World) -> None:
    case = w.activated(Product.TOKEN)
    with refused("unknown-application"):
        w.portal.sign_in("mail", case.account.id, "token", "123456")
    with refused("unknown-account"):
        w.portal.sign_in(w.wiki, "ACC-404", "token", "123456")
    with refused("bad-factor"):
        w.portal.sign_in(w.wiki, case.account.id, "sms", "123456")
    with refused("token-not-registered"):
        w.portal.sign_in(w.payroll, case.account.id, "token", w.press(case.serial))
    with refused("no-credential"):
        w.portal.sign_in(w.wiki, w.account().id, "token", "123456")
    w.portal.register_token(case.account.id, case.serial, *w.two_codes(case.serial))
    code = w.press(case.serial)
    done = w.portal.sign_in(w.payroll, case.account.id, "token", code)
    assert (done.application, done.factor) == (w.payroll, "token")
    with refused("token-replay"):
        w.portal.sign_in(w.payroll, case.account.id, "token", code)
    other_code = w.press(w.free_serials[0])
    with refused("token-wrong-code"):
        w.portal.sign_in(w.payroll, case.account.id, "token", other_code)


def test_hardware_only_application_refuses_phone_otp(w: World) -> None:
    case = w.registered()
    w.verified_phone(case.account)
    code = w.phone_code(case.account)
    with refused("app-requires-hardware-token"):
        w.portal.sign_in(w.payroll, case.account.id, "phone", code)
    assert w.portal.sign_in(w.payroll, case.account.id, "token", w.press(case.serial)).factor == "token"
    # the code was not used up by the refusal: the any-OTP application takes it
    assert w.portal.sign_in(w.wiki, case.account.id, "phone", code).factor == "phone"
    assert w.portal.sign_in(w.wiki, case.account.id, "token", w.press(case.serial)).factor == "token"


# --- phone OTP ---------------------------------------------------------------------------------------


def test_phone_number_must_be_international(w: World) -> None:
    account = w.account()
    for bad in ("4155550123", "+0155550123", "+1415", "+1 415 555 0123 x9", "phone"):
        with refused("bad-phone"):
            w.portal.register_phone(account.id, bad)
    w.portal.register_phone(account.id, "+1 415-555-0123")
    assert w.pstore.get("account", account.id).phone == PHONE


def test_phone_refusals_before_verification(w: World) -> None:
    case = w.registered()
    account = case.account
    with refused("no-phone"):
        w.portal.send_phone_otp(account.id)
    with refused("bad-channel"):
        w.portal.send_phone_otp(account.id, "fax")
    with refused("phone-not-verified"):
        w.portal.sign_in(w.wiki, account.id, "phone", "123456")
    w.portal.register_phone(account.id, PHONE)
    w.advance(PHONE_OTP_MIN_GAP_NS)
    with refused("phone-not-verified"):
        w.portal.send_phone_otp(account.id)
    w.portal.verify_phone(account.id, w.last_code())
    assert w.pstore.get("account", account.id).phone_verified
    with refused("otp-none"):  # verified, but no sign-in code asked for
        w.portal.sign_in(w.wiki, account.id, "phone", "123456")


def test_verification_code_attempts_are_counted(w: World) -> None:
    account = w.account()
    w.portal.register_phone(account.id, PHONE)
    code = w.last_code()
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    for _ in range(3):
        with refused("otp-wrong"):
            w.portal.verify_phone(account.id, wrong)
    with refused("otp-attempts"):
        w.portal.verify_phone(account.id, code)
    assert not w.pstore.get("account", account.id).phone_verified


def test_phone_otp_expires_after_5_minutes(w: World) -> None:
    assert PHONE_OTP_TTL_NS == 5 * MINUTE
    case = w.registered()
    w.verified_phone(case.account)
    code = w.phone_code(case.account)
    w.advance(PHONE_OTP_TTL_NS - NS_PER_SECOND)
    w.portal.sign_in(w.wiki, case.account.id, "phone", code)
    code = w.phone_code(case.account)
    w.advance(PHONE_OTP_TTL_NS)
    with refused("otp-expired"):
        w.portal.sign_in(w.wiki, case.account.id, "phone", code)


def test_phone_otp_is_single_use(w: World) -> None:
    case = w.registered()
    w.verified_phone(case.account)
    code = w.phone_code(case.account)
    w.portal.sign_in(w.wiki, case.account.id, "phone", code)
    with refused("otp-used"):
        w.portal.sign_in(w.wiki, case.account.id, "phone", code)


def test_three_wrong_phone_codes_burn_the_code(w: World) -> None:
    case = w.registered()
    w.verified_phone(case.account)
    code = w.phone_code(case.account)
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    for _ in range(3):
        with refused("otp-wrong"):
            w.portal.sign_in(w.wiki, case.account.id, "phone", wrong)
    with refused("otp-attempts"):  # even the right code now
        w.portal.sign_in(w.wiki, case.account.id, "phone", code)
    w.phone_sign_in(case.account)  # a new code works


def test_phone_otp_sending_is_rate_limited(w: World) -> None:
    case = w.registered()
    w.verified_phone(case.account)
    w.advance(PHONE_OTP_WINDOW_NS)  # the verification code is out of the window
    account = case.account.id
    start = w.now()
    w.portal.send_phone_otp(account)
    w.advance(PHONE_OTP_MIN_GAP_NS - NS_PER_SECOND)
    with refused("otp-rate-limited"):  # less than 30 s after the last one
        w.portal.send_phone_otp(account)
    w.advance(NS_PER_SECOND)
    w.portal.send_phone_otp(account)
    w.advance(PHONE_OTP_MIN_GAP_NS)
    w.portal.send_phone_otp(account)
    w.advance(5 * MINUTE)
    with refused("otp-rate-limited"):  # a fourth within 15 minutes
        w.portal.send_phone_otp(account, "voice")
    assert sum(1 for m in w.sender.sent if m.channel in ("sms", "voice") and m.sent_ns >= start) == 3
    w.advance(start + PHONE_OTP_WINDOW_NS - w.now())  # the first one leaves the window
    w.portal.send_phone_otp(account, "voice")


def test_a_day_of_phone_otp_guessing_locks_phone_otp_and_the_lock_survives_a_restart(w: World) -> None:
    """Issue 15 #9: one simulated day, 288 codes sent and 864 wrong guesses evaluated, no lockout (≈ 27 %/year)."""
    assert PHONE_OTP_MAX_CONSECUTIVE_FAILURES == 100  # NIST SP 800-63B §5.2.2: at most 100
    case = w.registered()
    account = case.account
    w.verified_phone(account)
    outcomes: collections.Counter[str] = collections.Counter()
    day_start = w.now()
    while w.now() + OTP_SEND_INTERVAL_NS <= day_start + NS_PER_DAY:  # 288 sends, each as early as allowed
        try:
            code = w.spaced_phone_code(account)
        except PortalError as exc:
            outcomes[f"send {exc.code}"] += 1
            continue
        outcomes["sent"] += 1
        for _ in range(PHONE_OTP_MAX_ATTEMPTS):
            try:
                w.portal.sign_in(w.wiki, account.id, "phone", another_code(code))
            except PortalError as exc:
                outcomes[exc.code] += 1
    assert sum(outcomes[k] for k in ("sent", "send otp-locked")) == 288
    evaluated = sum(o.attempts for o in w.pstore.by_owner("phone_otp", account.id))
    assert evaluated == PHONE_OTP_MAX_CONSECUTIVE_FAILURES  # not 864
    assert outcomes["otp-wrong"] == PHONE_OTP_MAX_CONSECUTIVE_FAILURES - 1
    assert outcomes["sent"] == -(-PHONE_OTP_MAX_CONSECUTIVE_FAILURES // PHONE_OTP_MAX_ATTEMPTS)  # 34 SMS, then none
    assert outcomes["otp-locked"] == PHONE_OTP_MAX_ATTEMPTS  # the guess that locked, then the code's last two
    assert any(event == "phone-otp-locked" for _, _, event, _ in w.pstore.audit(account.id))

    w.reopen()  # a restart of the portal: the lock is in the database
    stored = w.pstore.get("account", account.id)
    assert stored.phone_otp_locked and stored.phone_otp_failures == PHONE_OTP_MAX_CONSECUTIVE_FAILURES
    with refused("otp-locked") as info:
        w.portal.send_phone_otp(account.id)
    assert "ask support to unlock" in str(info.value)
    with refused("otp-locked"):
        w.portal.sign_in(w.wiki, account.id, "phone", "123456")
    with refused("otp-locked"):  # another number is no way around it
        w.portal.register_phone(account.id, "+14155550199")
    assert w.pstore.get("account", account.id).phone == PHONE
    w.portal.sign_in(w.payroll, account.id, "token", w.press(case.serial))  # the hardware token still works

    w.portal.unlock_phone_otp(account.id, by="support agent Kim")
    assert any(event == "phone-otp-unlocked" and "Kim" in detail for _, _, event, detail in w.pstore.audit(account.id))
    w.advance(PHONE_OTP_WINDOW_NS)
    w.phone_sign_in(account)


def test_phone_otp_failures_count_in_a_row_per_account_and_persist(w: World) -> None:
    case = w.registered()
    account = case.account
    w.verified_phone(account)
    w.wrong_phone_guesses(account, PHONE_OTP_MAX_CONSECUTIVE_FAILURES - 1)
    w.reopen()  # the count survives a restart
    assert w.phone_failures(account) == PHONE_OTP_MAX_CONSECUTIVE_FAILURES - 1
    w.portal.sign_in(w.wiki, account.id, "phone", w.spaced_phone_code(account))  # a right code resets it
    assert w.phone_failures(account) == 0
    w.wrong_phone_guesses(account, PHONE_OTP_MAX_CONSECUTIVE_FAILURES - 1)
    w.reopen()
    with refused("otp-locked") as info:  # the 100th wrong one in a row
        w.portal.sign_in(w.wiki, account.id, "phone", another_code(w.spaced_phone_code(account)))
    assert "after 100 wrong codes in a row" in str(info.value)


def test_wrong_verification_codes_count_towards_the_account_limit(w: World) -> None:
    account = w.account()
    w.portal.register_phone(account.id, PHONE)
    for _ in range(PHONE_OTP_MAX_ATTEMPTS):
        with refused("otp-wrong"):
            w.portal.verify_phone(account.id, another_code(w.last_code()))
    assert w.phone_failures(account) == PHONE_OTP_MAX_ATTEMPTS
    w.edit_row("account", account.id, phone_otp_failures=PHONE_OTP_MAX_CONSECUTIVE_FAILURES - 1)
    w.advance(PHONE_OTP_MIN_GAP_NS)
    w.portal.register_phone(account.id, PHONE)  # a new code, but the count is the account's
    with refused("otp-locked"):
        w.portal.verify_phone(account.id, another_code(w.last_code()))
    with refused("otp-locked"):
        w.portal.verify_phone(account.id, w.last_code())  # not even the right one now
    assert not w.pstore.get("account", account.id).phone_verified


def test_an_administrator_can_lock_phone_otp_and_must_say_why(w: World) -> None:
    case = w.registered()
    w.verified_phone(case.account)
    with refused("lock-reason-missing"):
        w.portal.lock_phone_otp(case.account.id, "  ")
    w.portal.lock_phone_otp(case.account.id, "SIM swap reported")
    with refused("otp-locked") as info:
        w.portal.send_phone_otp(case.account.id)
    assert "SIM swap" not in str(info.value)  # the note is for support (the account record, the audit log)
    assert w.pstore.get("account", case.account.id).phone_otp_lock_reason == "SIM swap reported"
    assert any("SIM swap reported" in detail for _, _, _, detail in w.pstore.audit(case.account.id))
    w.portal.unlock_phone_otp(case.account.id)
    w.phone_sign_in(case.account)


def test_voice_channel_speaks_the_code(w: World) -> None:
    case = w.registered()
    w.portal.register_phone(case.account.id, PHONE, "voice")
    spoken = w.sender.last("voice", PHONE).body
    assert re.search(r"is \d( \d){5}$", spoken), spoken
    w.portal.verify_phone(case.account.id, w.last_code("voice"))
    w.phone_sign_in(case.account, channel="voice")


# --- lost token and replacement ----------------------------------------------------------------------


def test_lost_token_is_disabled_at_once_and_phone_otp_keeps_working(w: World) -> None:
    case = w.registered(Product.TOKEN_PROOFED)
    w.verified_phone(case.account)
    with refused("not-lost"):
        w.portal.request_replacement(case.account.id)
    lost = w.portal.report_lost(case.account.id)
    assert lost.state is CredentialState.LOST and lost.lost_ns == w.now()
    genuine = w.press(case.serial)
    check = w.validator.check(case.serial, genuine)
    assert not check.accepted and check.reason is Reason.LOCKED
    with refused("token-lost"):
        w.portal.sign_in(w.payroll, case.account.id, "token", genuine)
    with refused("token-lost"):
        w.portal.sign_in(w.wiki, case.account.id, "token", genuine)
    with refused("nothing-to-report"):
        w.portal.report_lost(case.account.id)
    code = w.phone_code(case.account)
    with refused("app-requires-hardware-token"):
        w.portal.sign_in(w.payroll, case.account.id, "phone", code)
    assert w.portal.sign_in(w.wiki, case.account.id, "phone", code).factor == "phone"


def test_only_a_registered_token_can_be_reported_lost(w: World) -> None:
    case = w.activated(Product.TOKEN)
    with refused("nothing-to-report"):
        w.portal.report_lost(case.account.id)
    with refused("no-credential"):
        w.portal.report_lost(w.account().id)


def test_replacement_without_proofing_after_a_phone_otp_sign_in(w: World) -> None:
    case = w.registered(Product.TOKEN_PROOFED)
    expires = case.credential.expires_ns
    w.verified_phone(case.account)
    w.advance(30 * NS_PER_DAY)
    w.portal.report_lost(case.account.id)
    w.phone_sign_in(case.account)
    w.advance(15 * MINUTE)  # still fresh, just
    order = w.portal.request_replacement(case.account.id)
    assert order.id == "SO-12346" and order.replacement_of == case.credential.id and order.proofing_waived
    replacement = w.portal.current_credential(case.account.id)
    assert replacement.state is CredentialState.ACTIVATED and replacement.expires_ns == expires
    with refused("not-lost"):
        w.portal.request_replacement(case.account.id)
    new_serial = w.free_serials.pop(0)
    w.advance(2 * NS_PER_DAY)
    w.portal.ship_replacement(order.id, new_serial)
    with refused("serial-not-yours"):  # the lost token is not the new one
        w.portal.register_token(case.account.id, case.serial, *w.two_codes(case.serial))
    registered = w.portal.register_token(case.account.id, new_serial, *w.two_codes(new_serial))
    assert registered.serial == new_serial and registered.state is CredentialState.REGISTERED
    w.portal.sign_in(w.payroll, case.account.id, "token", w.press(new_serial))
    old = w.validator.check(case.serial, w.press(case.serial))
    assert old.reason is Reason.LOCKED  # the lost token stays disabled
    assert w.pstore.get("order", order.id).state is OrderState.PAID  # no license key for a replacement
    assert w.portal.issue_due_keys() == []


@pytest.mark.parametrize("phone_sign_in", [False, True], ids=["no-phone-sign-in", "phone-sign-in-too-old"])
def test_replacement_needs_proofing_again_without_a_fresh_phone_sign_in(w: World, phone_sign_in: bool) -> None:
    case = w.registered(Product.TOKEN_PROOFED)
    expires = case.credential.expires_ns
    w.verified_phone(case.account)
    w.portal.report_lost(case.account.id)
    if phone_sign_in:
        w.phone_sign_in(case.account)
        assert FRESH_PHONE_AUTH_NS == 15 * MINUTE
        w.advance(15 * MINUTE + NS_PER_SECOND)
    order = w.portal.request_replacement(case.account.id)
    assert not order.proofing_waived
    replacement = w.portal.current_credential(case.account.id)
    assert replacement.state is CredentialState.PROOFING_REQUIRED
    new_serial = w.free_serials.pop(0)
    w.portal.ship_replacement(order.id, new_serial)
    with refused("proofing-not-done"):
        w.portal.register_token(case.account.id, new_serial, *w.two_codes(new_serial))
    activated = w.portal.activate(case.account.id, w.video_code(case.account))
    assert activated.expires_ns == expires  # the original subscription, not a new year
    w.portal.register_token(case.account.id, new_serial, *w.two_codes(new_serial))


def test_replacement_of_a_token_without_proofing_needs_none(w: World) -> None:
    case = w.registered(Product.TOKEN)
    w.portal.report_lost(case.account.id)
    order = w.portal.request_replacement(case.account.id)
    assert not order.proofing_waived
    replacement = w.portal.current_credential(case.account.id)
    assert replacement.state is CredentialState.ACTIVATED


def test_replacement_keeps_the_original_subscription_expiry(w: World) -> None:
    case = w.registered(Product.TOKEN)
    expires = case.credential.expires_ns
    w.advance(200 * NS_PER_DAY)
    w.portal.report_lost(case.account.id)
    order = w.portal.request_replacement(case.account.id)
    new_serial = w.free_serials.pop(0)
    w.portal.ship_replacement(order.id, new_serial)
    registered = w.portal.register_token(case.account.id, new_serial, *w.two_codes(new_serial))
    assert registered.expires_ns == expires
    w.advance(expires - w.now() - MINUTE)
    w.portal.sign_in(w.payroll, case.account.id, "token", w.press(new_serial))
    w.advance(MINUTE)
    with refused("subscription-expired"):
        w.portal.sign_in(w.payroll, case.account.id, "token", w.tokens[new_serial].press())


# --- audit --------------------------------------------------------------------------------------------


def test_audit_logs_never_contain_keys_or_codes(w: World) -> None:
    case = w.keyed(Product.TOKEN_PROOFED, "DE")
    activation = w.video_code(case.account)
    w.portal.activate(case.account.id, activation)
    with refused("activation-used"):
        w.portal.activate(case.account.id, activation)
    token_codes = list(w.two_codes(case.serial))
    w.portal.register_token(case.account.id, case.serial, *token_codes)
    w.verified_phone(case.account)
    token_codes.append(w.press(case.serial))
    w.portal.sign_in(w.payroll, case.account.id, "token", token_codes[-1])
    w.phone_sign_in(case.account)
    w.portal.report_lost(case.account.id)
    w.phone_sign_in(case.account, channel="voice")
    w.portal.request_replacement(case.account.id)

    phone_codes = [m.body.rsplit("is ", 1)[1].replace(" ", "") for m in w.sender.sent if m.channel in ("sms", "voice")]
    assert len(phone_codes) == 3
    long_secrets = [case.key, case.key.replace("-", ""), activation]
    short_secrets = phone_codes + token_codes
    portal_log = [" ".join(map(str, row)) for row in w.pstore.audit()]
    validator_log = [f"{e.serial} {e.event} {e.detail}" for e in w.vstore.events()]
    assert len(portal_log) > 10 and len(validator_log) > 5
    for line in portal_log + validator_log:
        for secret in long_secrets:
            assert secret not in line, line
        for secret in short_secrets:
            assert not re.search(rf"(?<!\d){secret}(?!\d)", line), line
    # and the portal keeps only hashes of activation and phone codes
    stored = " ".join(row[0] for row in w.pstore._conn.execute(
        "SELECT data FROM portal_entities WHERE kind IN ('activation', 'phone_otp')"
    ))
    assert activation not in stored
    for secret in phone_codes:
        assert f'"{secret}"' not in stored


def test_store_keeps_insertion_order_when_an_entity_is_updated(w: World) -> None:
    """by_owner lists in insertion order, which current_credential and the OTP rate limit rely on."""
    case = w.registered(Product.TOKEN)
    w.portal.report_lost(case.account.id)
    w.portal.request_replacement(case.account.id)
    lost, replacement = w.pstore.by_owner("credential", case.account.id)
    lost.replaced_by = replacement.id + "-touched"
    w.pstore.put("credential", lost, owner=case.account.id)  # an update of the older one
    assert [c.id for c in w.pstore.by_owner("credential", case.account.id)] == [lost.id, replacement.id]
    assert w.portal.current_credential(case.account.id).id == replacement.id
