"""``vtoken portal ...``: the token portal's credential lifecycle, one step per command.

The portal's tables live beside the validator's, in the same SQLite file (``--db``,
default ``$VTOKEN_DB`` or ``vtoken.db``; create it with ``vtoken validator init`` and
import the tokens first). The master key is found as for ``vtoken validator``
(``$VTOKEN_MASTER_KEY``, else ``--key-file``, default ``<db>.key``). E-mails, SMS and
voice calls go to an outbox file (``<db>.outbox.jsonl``) that ``vtoken portal outbox``
prints. Every command that changes something takes ``--at TIME`` (default: now), so a
story can be replayed across days. A refusal prints ``refused (<code>): <why>`` on
stderr and exits 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from host.cli.exits import EXIT_REFUSED, exit_refused_json
from host.cli.jsonout import echo_json, json_option
from host.cli.options import at_option, time_or_now
from host.cli.validator_cmd import DB_ENV, DEFAULT_DB, ValidatorContext
from host.timearg import NS_SUFFIX, format_time_ns, parse_time_ns
from portal.messaging import OUTBOX_SUFFIX, OutboxSender
from portal.proofing import InstantProofingProvider, VideoAgent
from portal.records import AppPolicy, Credential, CredentialState, PaymentMethod, Product
from portal.service import ACTIVATION_CODE_TTL_NS, PHONE_OTP_TTL_NS, PortalService
from portal.store import PortalStore
from validator.service import Validator
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import PortalError

PRODUCTS = {"token": Product.TOKEN, "token-proofed": Product.TOKEN_PROOFED}
PAYMENTS = {method.value: method for method in PaymentMethod}
POLICIES = {policy.value: policy for policy in AppPolicy}
DEFAULT_VIDEO_FAIL_REASON = "the ID document could not be verified"
#: Fields never printed by ``--json`` (hashes of keys and codes).
HASH_SUFFIX = "_hash"
#: The ISO text of a ``*_ns`` time whose plain name is taken by another field: ``<name>_at``.
AT_SUFFIX = "_at"

_F = TypeVar("_F", bound=Callable[..., Any])

product_option = click.option(
    "--product", type=click.Choice(list(PRODUCTS)), required=True,
    help="token: a token with a one-year subscription; token-proofed: the same with identity proofing.",
)


def _ident(text: str) -> str:
    """Ids (ACC-1, SO-12345, PRF-2) as printed, whatever the case typed."""
    return text.strip().upper()


def record_json(record: Any) -> dict[str, Any]:
    """A portal record (account, order, credential, proofing case, ...) for ``--json``.

    Every field, by its name, but never a stored hash (``*_hash``): enums as their
    values, and each ``*_ns`` time also as ISO 8601 text under the name without
    the suffix (both None when unset). Where that name is another field's
    (``phone_otp_locked`` and ``phone_otp_locked_ns``), the text is ``<name>_at``.
    """
    names = {field.name for field in dataclasses.fields(record)}
    out: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if field.name.endswith(HASH_SUFFIX):
            continue
        if field.name.endswith(NS_SUFFIX):
            text_name = field.name[: -len(NS_SUFFIX)]
            text_name = f"{text_name}{AT_SUFFIX}" if text_name in names else text_name
            out[field.name] = value
            out[text_name] = format_time_ns(value) if value is not None else None
        else:
            out[field.name] = value.value if isinstance(value, enum.Enum) else value
    return out


def portal_json(func: _F) -> _F:
    """``--json`` on a portal command; under it a refusal prints ``"ok": false`` with its code as ``reason``."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PortalError as exc:
            if kwargs.get("as_json"):
                exit_refused_json(exc.code, str(exc))
            raise

    return json_option(run)  # type: ignore[return-value]


class PortalContext:
    """The database, master key and outbox, resolved from the group's options."""

    def __init__(self, db: str, key_file: str | None, outbox: str | None) -> None:
        self.vc = ValidatorContext(db, key_file)
        self.outbox = OutboxSender(outbox or f"{db}{OUTBOX_SUFFIX}")

    @contextlib.contextmanager
    def service(
        self,
        at: str | None = None,
        *,
        instant: InstantProofingProvider | None = None,
        agent: VideoAgent | None = None,
    ) -> Iterator[PortalService]:
        """The portal acting at ``--at`` (default now), on the validator's store."""
        clock = SimulatedClock(time_or_now(at))
        keyring = self.vc.keyring()
        with self.vc.store() as vstore, PortalStore(self.vc.db) as pstore:
            validator = Validator(vstore, keyring, clock)
            yield PortalService(pstore, validator, clock, self.outbox, instant=instant, agent=agent)


class PortalGroup(click.Group):
    """Reports a portal refusal as ``refused (<code>): <message>`` on stderr, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PortalError as exc:
            click.echo(f"refused ({exc.code}): {exc}", err=True)
            raise SystemExit(EXIT_REFUSED) from None


@click.group(cls=PortalGroup)
@click.option("--db", default=lambda: os.environ.get(DB_ENV, DEFAULT_DB), show_default=f"${DB_ENV} or {DEFAULT_DB}",
              help="The validator's SQLite database; the portal's tables live beside the validator's.")
@click.option("--key-file", default=None, help="Master key file (default: <db>.key); $VTOKEN_MASTER_KEY wins.")
@click.option("--outbox", default=None, metavar="FILE", help=f"Where messages go (default: <db>{OUTBOX_SUFFIX}).")
@click.pass_context
def portal(ctx: click.Context, db: str, key_file: str | None, outbox: str | None) -> None:
    """The token portal: orders, license keys, proofing, activation, registration, phone OTP, lost tokens.

    Uses the validator's database (run 'vtoken validator init' and 'import' first). Messages
    (license keys, SMS and voice codes) go to <db>.outbox.jsonl: read them with 'outbox'.
    Every step takes --at TIME (default now) to replay a story across days. A refusal prints
    'refused (<code>): <why>' on stderr and exits 1.

    \b
    Example (one user's story; each command's --help has more):
      vtoken portal account create dana@example.com "Dana Whitfield" --country US   # ACC-1
      vtoken portal order place ACC-1 --product token-proofed --payment card        # SO-12345
      vtoken portal key issue --at 2026-03-02T11:00:00Z        # the key job, after the card hold
      vtoken portal order ship SO-12345 1000000005
      vtoken portal order deliver SO-12345 --at 2026-03-04T12:00:00Z
      vtoken portal outbox --to dana@example.com --last        # the license key
      vtoken portal key enter ACC-1 XXXXX-XXXXX-XXXXX-XXXXX --product token-proofed \\
          --name "Dana Whitfield" --country US --legal-name "Dana Whitfield"
      vtoken portal proof book ACC-1 --session 2026-03-05T10:00:00Z
      vtoken portal proof video PRF-1 --at 2026-03-05T10:05:00Z     # prints the activation code
      vtoken portal activate ACC-1 1234567890
      vtoken portal register ACC-1 1000000005 123456 654321
      vtoken portal app add Payroll --policy hardware-only
      vtoken portal signin payroll ACC-1 --token 246810
      vtoken portal lost ACC-1
    """
    ctx.obj = PortalContext(db, key_file, outbox)


def _when(ns: int | None) -> str:
    return format_time_ns(ns) if ns is not None else "-"


def _next_step(credential: Credential) -> str:
    return {
        CredentialState.PROOFING_REQUIRED: f"next: identity proofing ('vtoken portal proof options {credential.account_id}')",
        CredentialState.AWAITING_ACTIVATION: f"next: 'vtoken portal activate {credential.account_id} CODE'",
        CredentialState.ACTIVATED: (
            f"next: 'vtoken portal register {credential.account_id} SERIAL CODE1 CODE2' "
            "(press, wait for the code to change, press again)"
        ),
    }.get(credential.state, "")


# --- accounts ------------------------------------------------------------------------------------


@portal.group()
def account() -> None:
    """Portal accounts.

    \b
    Example:
      vtoken portal account create dana@example.com "Dana Whitfield" --country US
      vtoken portal account show ACC-1
    """


@account.command("create")
@click.argument("email")
@click.argument("name")
@click.option("--country", default="", metavar="CC", help="Two-letter country code (confirmed again with the license key).")
@at_option
@portal_json
@click.pass_obj
def account_create(pc: PortalContext, email: str, name: str, country: str, at: str | None, as_json: bool) -> None:
    """Open an account for EMAIL and NAME; prints its id (ACC-1)."""
    with pc.service(at) as svc:
        acc = svc.create_account(email, name, country)
    if as_json:
        echo_json({"ok": True, "account": record_json(acc)})
        return
    click.echo(f"account {acc.id}: {acc.name} <{acc.email}>" + (f", {acc.country}" if acc.country else ""))


@account.command("show")
@click.argument("account_id", metavar="ACCOUNT")
@portal_json
@click.pass_obj
def account_show(pc: PortalContext, account_id: str, as_json: bool) -> None:
    """The account's profile, phone, orders and credentials."""
    with pc.service() as svc:
        acc = svc.account(_ident(account_id))
        orders = svc.store.by_owner("order", acc.id)
        creds = svc.store.by_owner("credential", acc.id)
    if as_json:
        echo_json({
            "ok": True,
            "account": record_json(acc),
            "orders": [record_json(o) for o in orders],
            "credentials": [record_json(c) for c in creds],
        })
        return
    click.echo(f"account:    {acc.id}: {acc.name} <{acc.email}>")
    click.echo(f"country:    {acc.country or '-'}{' (confirmed)' if acc.profile_confirmed else ''}")
    click.echo(f"legal name: {acc.legal_name or '-'}")
    click.echo(f"phone:      {acc.phone or '-'}{' (verified)' if acc.phone_verified else ' (not verified)' if acc.phone else ''}")
    for order in orders:
        extra = ""
        if order.replacement_of:
            extra = f", replaces {order.replacement_of}" + (", proofing waived" if order.proofing_waived else "")
        click.echo(f"order:      {order.id}  {order.product.value}  {order.payment.value}  {order.state.value}"
                   f"  token {order.serial or '-'}  delivered {_when(order.delivered_ns)}{extra}")
    for cred in creds:
        click.echo(f"credential: {cred.id}  {cred.state.value}  token {cred.serial or '-'}  expires {_when(cred.expires_ns)}")


# --- orders -----------------------------------------------------------------------------------------


@portal.group()
def order() -> None:
    """Sales orders: place, pay, ship, deliver.

    \b
    Example:
      vtoken portal order place ACC-1 --product token --payment invoice
      vtoken portal order pay SO-12345 --at 2026-03-20T09:00:00Z
      vtoken portal order ship SO-12345 1000000005
      vtoken portal order deliver SO-12345 --at 2026-03-22T15:00:00Z
      vtoken portal order ship-replacement SO-12346 1000000018
    """


@order.command("place")
@click.argument("account_id", metavar="ACCOUNT")
@product_option
@click.option("--payment", type=click.Choice(list(PAYMENTS)), required=True,
              help="A card is charged at once; an invoice or purchase order is paid later ('order pay').")
@at_option
@portal_json
@click.pass_obj
def order_place(
    pc: PortalContext, account_id: str, product: str, payment: str, at: str | None, as_json: bool
) -> None:
    """Order a one-year token subscription; prints the sales order number (SO-12345)."""
    with pc.service(at) as svc:
        placed = svc.place_order(_ident(account_id), PRODUCTS[product], PAYMENTS[payment])
    if as_json:
        echo_json({"ok": True, "order": record_json(placed)})
        return
    click.echo(f"sales order {placed.id}: {placed.product.title}, {placed.payment.value}")
    if placed.payment is PaymentMethod.CARD:
        click.echo("card charged; the license key is e-mailed within 24 hours ('vtoken portal key issue' runs the job)")
    else:
        click.echo(f"the license key is e-mailed once payment is recorded ('vtoken portal order pay {placed.id}')")


@order.command("pay")
@click.argument("order_id", metavar="SO")
@at_option
@portal_json
@click.pass_obj
def order_pay(pc: PortalContext, order_id: str, at: str | None, as_json: bool) -> None:
    """Record the payment of an invoice or purchase order."""
    with pc.service(at) as svc:
        paid = svc.record_payment(order_id)
    if as_json:
        echo_json({"ok": True, "order": record_json(paid)})
        return
    click.echo(f"payment recorded for {paid.id}; the key job e-mails its license key ('vtoken portal key issue')")


@order.command("ship")
@click.argument("order_id", metavar="SO")
@click.argument("serial")
@at_option
@portal_json
@click.pass_obj
def order_ship(pc: PortalContext, order_id: str, serial: str, at: str | None, as_json: bool) -> None:
    """The warehouse ships token SERIAL (imported into the validator) for the order."""
    with pc.service(at) as svc:
        shipped = svc.ship(order_id, serial)
    if as_json:
        echo_json({"ok": True, "order": record_json(shipped)})
        return
    click.echo(f"{shipped.id}: token {shipped.serial} shipped")


@order.command("deliver")
@click.argument("order_id", metavar="SO")
@at_option
@portal_json
@click.pass_obj
def order_deliver(pc: PortalContext, order_id: str, at: str | None, as_json: bool) -> None:
    """The token arrives: the license key can be entered from now on."""
    with pc.service(at) as svc:
        delivered = svc.deliver(order_id)
    if as_json:
        echo_json({"ok": True, "order": record_json(delivered)})
        return
    click.echo(f"{delivered.id}: token {delivered.serial} delivered")


@order.command("ship-replacement")
@click.argument("order_id", metavar="SO")
@click.argument("serial")
@at_option
@portal_json
@click.pass_obj
def order_ship_replacement(pc: PortalContext, order_id: str, serial: str, at: str | None, as_json: bool) -> None:
    """Ship and deliver token SERIAL for a replacement order ('vtoken portal replace'); register it next."""
    with pc.service(at) as svc:
        shipped = svc.ship_replacement(order_id, serial)
    if as_json:
        echo_json({"ok": True, "order": record_json(shipped)})
        return
    click.echo(f"{shipped.id}: replacement token {shipped.serial} shipped and delivered")
    click.echo(f"next: 'vtoken portal register {shipped.account_id} {shipped.serial} CODE1 CODE2'")


# --- license keys ---------------------------------------------------------------------------------------


@portal.group()
def key() -> None:
    """License keys: the job that e-mails them, and entering one.

    \b
    Example:
      vtoken portal key issue --at 2026-03-02T11:00:00Z
      vtoken portal key enter ACC-1 G06AH-EXGW5-XE849-DCK40 --product token-proofed \\
          --name "Dana Whitfield" --country US --legal-name "Dana Whitfield"
    """


@key.command("issue")
@at_option
@portal_json
@click.pass_obj
def key_issue(pc: PortalContext, at: str | None, as_json: bool) -> None:
    """Run the key job: e-mail a license key for every paid order whose card hold has passed."""
    with pc.service(at) as svc:
        issued = svc.issue_due_keys()
    if as_json:
        echo_json({"ok": True, "order_ids": issued})
        return
    for order_id in issued:
        click.echo(f"license key e-mailed for {order_id}")
    if not issued:
        click.echo("no license keys due")


@key.command("enter")
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("license_key", metavar="KEY")
@product_option
@click.option("--name", required=True, help="Confirm the profile's name.")
@click.option("--country", required=True, metavar="CC", help="Confirm the country (two letters: US, DE, ...).")
@click.option("--legal-name", default="", help="Your legal name (with identity proofing: must match the account's name).")
@at_option
@portal_json
@click.pass_obj
def key_enter(
    pc: PortalContext, account_id: str, license_key: str, product: str, name: str, country: str, legal_name: str,
    at: str | None, as_json: bool,
) -> None:
    """Enter the license key from the e-mail, once the token has arrived, confirming profile and country."""
    with pc.service(at) as svc:
        cred = svc.enter_license_key(
            _ident(account_id), license_key, PRODUCTS[product], name=name, country=country, legal_name=legal_name
        )
    if as_json:
        echo_json({"ok": True, "credential": record_json(cred)})
        return
    click.echo(f"license key accepted; credential {cred.id}: {cred.state.value}")
    hint = _next_step(cred)
    if hint:
        click.echo(hint)


# --- identity proofing -----------------------------------------------------------------------------------


@portal.group()
def proof() -> None:
    """Identity proofing: instant questions (US only) or a live video session.

    \b
    Example:
      vtoken portal proof options ACC-1
      vtoken portal proof instant ACC-1 --outcome fail
      vtoken portal proof book ACC-1 --session 2026-03-05T10:00:00Z
      vtoken portal proof video PRF-2 --at 2026-03-05T10:05:00Z      # the agent: prints the activation code
    """


@proof.command("options")
@click.argument("account_id", metavar="ACCOUNT")
@portal_json
@click.pass_obj
def proof_options(pc: PortalContext, account_id: str, as_json: bool) -> None:
    """The proofing methods offered (instant and video in the US, video elsewhere), and the instant questions."""
    instant = InstantProofingProvider()
    with pc.service(instant=instant) as svc:
        methods = svc.proofing_options(_ident(account_id))
    if as_json:
        offers_instant = any(m.value == "instant" for m in methods)
        questions = instant.questions(_ident(account_id)) if offers_instant else []
        echo_json({
            "ok": True,
            "account_id": _ident(account_id),
            "methods": [m.value for m in methods],
            "questions": [{"id": q.id, "text": q.text, "choices": list(q.choices)} for q in questions],
        })
        return
    click.echo(f"offered: {', '.join(m.value for m in methods)}")
    if any(m.value == "instant" for m in methods):
        for question in instant.questions(_ident(account_id)):
            click.echo(f"  {question.id}: {question.text} {' / '.join(question.choices)}")


def _answers(pairs: tuple[str, ...]) -> dict[str, str]:
    answers = {}
    for pair in pairs:
        qid, sep, choice = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: give QUESTION=CHOICE, e.g. street='Oak St'", param_hint="--answer")
        answers[qid.strip()] = choice.strip()
    return answers


@proof.command("instant")
@click.argument("account_id", metavar="ACCOUNT")
@click.option("--answer", "answer_pairs", multiple=True, metavar="QUESTION=CHOICE",
              help="An answer to one question of 'proof options' (repeat); graded against the bureau's records.")
@click.option("--outcome", type=click.Choice(["pass", "fail"]), default=None,
              help="Simulate the bureau's verdict (default without --answer: pass, answering from the records).")
@at_option
@portal_json
@click.pass_obj
def proof_instant(
    pc: PortalContext, account_id: str, answer_pairs: tuple[str, ...], outcome: str | None, at: str | None,
    as_json: bool,
) -> None:
    """Instant knowledge-based proofing (US only, once): a pass activates the credential."""
    acc = _ident(account_id)
    instant = InstantProofingProvider()
    answers = _answers(answer_pairs)
    if not answers:
        records = instant.correct_answers(acc)
        if outcome == "fail":
            answers = {q.id: next(c for c in q.choices if c != records[q.id]) for q in instant.questions(acc)}
        else:
            answers = records
    if outcome is not None:
        instant.set_outcome(acc, outcome == "pass")
    with pc.service(at, instant=instant) as svc:
        case = svc.instant_proofing(acc, answers)
        cred = svc.current_credential(acc)
    if as_json:
        echo_json({"ok": True, "proofing": record_json(case), "credential": record_json(cred)})
        return
    if case.state.value == "passed":
        click.echo(f"instant proofing {case.id}: passed; credential {cred.id}: {cred.state.value}")
        click.echo(_next_step(cred))
    else:
        click.echo(f"instant proofing {case.id}: failed ({case.reason})")
        click.echo(f"live video is still open: 'vtoken portal proof book {acc} --session TIME'")


@proof.command("book")
@click.argument("account_id", metavar="ACCOUNT")
@click.option("--session", "session", required=True, metavar="TIME", help="When the video session starts.")
@at_option
@portal_json
@click.pass_obj
def proof_book(pc: PortalContext, account_id: str, session: str, at: str | None, as_json: bool) -> None:
    """Book a live video session with an agent; prints the session id (PRF-2)."""
    session_ns = parse_time_ns(session)
    with pc.service(at) as svc:
        case = svc.book_video(_ident(account_id), session_ns)
    if as_json:
        echo_json({"ok": True, "proofing": record_json(case)})
        return
    click.echo(f"video session {case.id} booked for {format_time_ns(session_ns)}")


@proof.command("video")
@click.argument("case_id", metavar="SESSION")
@click.option("--outcome", type=click.Choice(["pass", "fail"]), default="pass", show_default=True,
              help="The agent's decision.")
@click.option("--reason", default=None, help="The agent's reason (shown to the user).")
@at_option
@portal_json
@click.pass_obj
def proof_video(
    pc: PortalContext, case_id: str, outcome: str, reason: str | None, at: str | None, as_json: bool
) -> None:
    """The agent holds the video session (at or after its time); on a pass, prints the activation code."""
    agent = VideoAgent()
    with pc.service(at, agent=agent) as svc:
        booked = svc.store.get("proofing", _ident(case_id))
        if booked is not None and (outcome == "fail" or reason is not None):
            agent.set_outcome(booked.account_id, outcome == "pass", reason or DEFAULT_VIDEO_FAIL_REASON)
        case, code = svc.run_video_session(_ident(case_id))
    if as_json:
        echo_json({"ok": True, "proofing": record_json(case), "agent": agent.name, "activation_code": code})
        return
    click.echo(f"video session {case.id} with {agent.name}: {case.state.value} ({case.reason})")
    if code is not None:
        hours = ACTIVATION_CODE_TTL_NS // (3600 * NS_PER_SECOND)
        click.echo(f"activation code: {code} (single use, valid {hours} hours)")
        click.echo(f"next: 'vtoken portal activate {case.account_id} {code}'")
    else:
        click.echo(f"book another session: 'vtoken portal proof book {case.account_id} --session TIME'")


# --- activation and registration ---------------------------------------------------------------------------


@portal.command()
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("code")
@at_option
@portal_json
@click.pass_obj
def activate(pc: PortalContext, account_id: str, code: str, at: str | None, as_json: bool) -> None:
    """Enter the activation code the video agent gave.

    \b
    Example:
      vtoken portal activate ACC-1 6953371900
    """
    with pc.service(at) as svc:
        cred = svc.activate(_ident(account_id), code)
    if as_json:
        echo_json({"ok": True, "credential": record_json(cred)})
        return
    click.echo(f"credential {cred.id}: {cred.state.value}; subscription until {_when(cred.expires_ns)}")
    click.echo(_next_step(cred))


@portal.command()
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("serial")
@click.argument("code1")
@click.argument("code2")
@at_option
@portal_json
@click.pass_obj
def register(
    pc: PortalContext, account_id: str, serial: str, code1: str, code2: str, at: str | None, as_json: bool
) -> None:
    """Register the token: SERIAL from its back, Token Code 1, wait for the code to change, Token Code 2.

    \b
    Example:
      vtoken portal register ACC-1 1000000005 186448 353836
    """
    with pc.service(at) as svc:
        cred = svc.register_token(_ident(account_id), serial, code1, code2)
    if as_json:
        echo_json({"ok": True, "credential": record_json(cred)})
        return
    click.echo(f"token {cred.serial} registered (credential {cred.id}; subscription until {_when(cred.expires_ns)})")


# --- phone OTP ----------------------------------------------------------------------------------------------


@portal.group()
def phone() -> None:
    """Phone OTP by SMS or voice call (codes go to the outbox).

    \b
    Example:
      vtoken portal phone add ACC-1 +14155550123
      vtoken portal phone verify ACC-1 633558
      vtoken portal phone send ACC-1 --voice
      vtoken portal signin wiki ACC-1 --phone 044093
      vtoken portal phone lock ACC-1 --reason "SIM swap reported"
      vtoken portal phone unlock ACC-1
    """


def _channel(voice: bool) -> str:
    return "voice" if voice else "sms"


@phone.command("add")
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("number", metavar="PHONE")
@click.option("--voice", is_flag=True, help="Send the verification code by voice call instead of SMS.")
@at_option
@portal_json
@click.pass_obj
def phone_add(pc: PortalContext, account_id: str, number: str, voice: bool, at: str | None, as_json: bool) -> None:
    """Add a phone number (international form, +14155550123); a code is sent to verify it."""
    with pc.service(at) as svc:
        svc.register_phone(_ident(account_id), number, _channel(voice))
        acc = svc.account(_ident(account_id))
    if as_json:
        echo_json({"ok": True, "account": record_json(acc), "channel": _channel(voice)})
        return
    click.echo(f"verification code sent by {_channel(voice)} to {acc.phone}; "
               f"confirm it with 'vtoken portal phone verify {acc.id} CODE'")


@phone.command("verify")
@click.argument("account_id", metavar="ACCOUNT")
@click.argument("code")
@at_option
@portal_json
@click.pass_obj
def phone_verify(pc: PortalContext, account_id: str, code: str, at: str | None, as_json: bool) -> None:
    """Confirm the phone number with the code sent to it."""
    with pc.service(at) as svc:
        acc = svc.verify_phone(_ident(account_id), code)
    if as_json:
        echo_json({"ok": True, "account": record_json(acc)})
        return
    click.echo(f"phone {acc.phone} verified")


@phone.command("send")
@click.argument("account_id", metavar="ACCOUNT")
@click.option("--voice", is_flag=True, help="By voice call instead of SMS.")
@at_option
@portal_json
@click.pass_obj
def phone_send(pc: PortalContext, account_id: str, voice: bool, at: str | None, as_json: bool) -> None:
    """Send a sign-in code (rate-limited: 30 s apart, 3 per 15 minutes; valid 5 minutes)."""
    with pc.service(at) as svc:
        svc.send_phone_otp(_ident(account_id), _channel(voice))
    if as_json:
        echo_json({"ok": True, "account_id": _ident(account_id), "channel": _channel(voice),
                   "valid_for_ns": PHONE_OTP_TTL_NS})
        return
    minutes = PHONE_OTP_TTL_NS // (60 * NS_PER_SECOND)
    click.echo(f"sign-in code sent by {_channel(voice)}; valid {minutes} minutes")


@phone.command("lock")
@click.argument("account_id", metavar="ACCOUNT")
@click.option("--reason", required=True, help="Why (a SIM swap reported, say); kept in the audit log.")
@at_option
@portal_json
@click.pass_obj
def phone_lock(pc: PortalContext, account_id: str, reason: str, at: str | None, as_json: bool) -> None:
    """Support: refuse phone OTP for ACCOUNT (checking, sending, changing the number) until unlocked.

    The hardware token keeps working. 100 wrong phone codes in a row lock an account the same way.
    """
    with pc.service(at) as svc:
        acc = svc.lock_phone_otp(_ident(account_id), reason)
    if as_json:
        echo_json({"ok": True, "account": record_json(acc)})
        return
    click.echo(f"phone OTP locked for {acc.id} ({acc.phone_otp_lock_reason}); "
               f"unlock with 'vtoken portal phone unlock {acc.id}'")


@phone.command("unlock")
@click.argument("account_id", metavar="ACCOUNT")
@at_option
@portal_json
@click.pass_obj
def phone_unlock(pc: PortalContext, account_id: str, at: str | None, as_json: bool) -> None:
    """Support, once the user is checked out of band: phone OTP works again and its failure count is cleared."""
    with pc.service(at) as svc:
        before = svc.account(_ident(account_id))
        was = before.phone_otp_lock_reason if before.phone_otp_locked else None
        acc = svc.unlock_phone_otp(_ident(account_id))
    if as_json:
        echo_json({"ok": True, "account": record_json(acc), "was_locked": was is not None})
        return
    click.echo(f"phone OTP unlocked for {acc.id} (was: {was})" if was is not None
               else f"phone OTP for {acc.id} was not locked")


# --- applications and sign-in ---------------------------------------------------------------------------------


@portal.group()
def app() -> None:
    """Applications and the second factors they accept.

    \b
    Example:
      vtoken portal app add Payroll --policy hardware-only
      vtoken portal app add Wiki --policy any-otp
      vtoken portal app list
    """


@app.command("add")
@click.argument("name")
@click.option("--policy", type=click.Choice(list(POLICIES)), required=True,
              help="hardware-only: the token's codes only; any-otp: phone OTP too.")
@at_option
@portal_json
@click.pass_obj
def app_add(pc: PortalContext, name: str, policy: str, at: str | None, as_json: bool) -> None:
    """Add (or change) an application; prints its id for 'signin'."""
    with pc.service(at) as svc:
        added = svc.add_application(name, POLICIES[policy])
    if as_json:
        echo_json({"ok": True, "application": record_json(added)})
        return
    click.echo(f"application {added.id} ({added.name}): {added.policy.value}")


@app.command("list")
@portal_json
@click.pass_obj
def app_list(pc: PortalContext, as_json: bool) -> None:
    """Every application and its policy."""
    with pc.service() as svc:
        apps = svc.store.all("application")
    if as_json:
        echo_json({"ok": True, "applications": [record_json(item) for item in apps]})
        return
    for item in apps:
        click.echo(f"{item.id}  {item.policy.value}  ({item.name})")


@portal.command()
@click.argument("app_id", metavar="APP")
@click.argument("account_id", metavar="ACCOUNT")
@click.option("--token", "token_code", metavar="CODE", help="A code from the hardware token.")
@click.option("--phone", "phone_code", metavar="CODE", help="A code sent by SMS or voice ('phone send').")
@at_option
@portal_json
@click.pass_obj
def signin(
    pc: PortalContext, app_id: str, account_id: str, token_code: str | None, phone_code: str | None, at: str | None,
    as_json: bool,
) -> None:
    """Sign in to APP with the hardware token's code or a phone OTP.

    \b
    Example:
      vtoken portal signin payroll ACC-1 --token 738667
      vtoken portal signin wiki ACC-1 --phone 044093
    """
    if (token_code is None) == (phone_code is None):
        raise click.UsageError("give exactly one of --token CODE or --phone CODE")
    factor, code = ("token", token_code) if token_code is not None else ("phone", phone_code)
    assert code is not None
    with pc.service(at) as svc:
        done = svc.sign_in(app_id.strip().lower(), _ident(account_id), factor, code)
    if as_json:
        echo_json({"ok": True, "signin": record_json(done)})
        return
    click.echo(f"signed in to {done.application} with the {'hardware token' if factor == 'token' else 'phone OTP'}")


# --- lost token and replacement ---------------------------------------------------------------------------------


@portal.command()
@click.argument("account_id", metavar="ACCOUNT")
@at_option
@portal_json
@click.pass_obj
def lost(pc: PortalContext, account_id: str, at: str | None, as_json: bool) -> None:
    """Report the token lost: it is disabled in the validator at once.

    \b
    Example:
      vtoken portal lost ACC-1
    """
    with pc.service(at) as svc:
        cred = svc.report_lost(_ident(account_id))
    if as_json:
        echo_json({"ok": True, "credential": record_json(cred)})
        return
    click.echo(f"token {cred.serial} reported lost and disabled; phone OTP still works where applications accept it")
    click.echo(f"next: 'vtoken portal replace {cred.account_id}' (sign in by phone OTP first to skip proofing again)")


@portal.command()
@click.argument("account_id", metavar="ACCOUNT")
@at_option
@portal_json
@click.pass_obj
def replace(pc: PortalContext, account_id: str, at: str | None, as_json: bool) -> None:
    """Order a replacement for a lost token; proofing is waived after a phone-OTP sign-in in the last 15 minutes.

    \b
    Example:
      vtoken portal replace ACC-1
    """
    with pc.service(at) as svc:
        placed = svc.request_replacement(_ident(account_id))
        cred = svc.current_credential(placed.account_id)
    if as_json:
        echo_json({"ok": True, "order": record_json(placed), "credential": record_json(cred)})
        return
    if not placed.product.needs_proofing:
        proofing = "no proofing needed"
    elif placed.proofing_waived:
        proofing = "proofing waived after the phone OTP sign-in"
    else:
        proofing = "proofing required again (no recent phone OTP sign-in)"
    click.echo(f"replacement order {placed.id}: {proofing}; credential {cred.id}: {cred.state.value}, "
               f"subscription until {_when(cred.expires_ns)}")
    click.echo(f"next: 'vtoken portal order ship-replacement {placed.id} SERIAL'")


# --- outbox -------------------------------------------------------------------------------------------------------


@portal.command()
@click.option("--to", "to", default=None, metavar="ADDRESS", help="Only messages to this e-mail address or phone.")
@click.option("--channel", type=click.Choice(["email", "sms", "voice"]), default=None, help="Only this channel.")
@click.option("--last", is_flag=True, help="Only the latest matching message.")
@portal_json
@click.pass_obj
def outbox(pc: PortalContext, to: str | None, channel: str | None, last: bool, as_json: bool) -> None:
    """Print the messages the portal sent (e-mails with license keys, SMS and voice codes).

    \b
    Example:
      vtoken portal outbox --to dana@example.com
      vtoken portal outbox --to +14155550123 --last
    """
    messages = [
        m for m in pc.outbox.messages()
        if (to is None or m.to == to.strip()) and (channel is None or m.channel == channel)
    ]
    if last:
        messages = messages[-1:]
    if as_json:
        echo_json({"ok": True, "messages": [record_json(m) for m in messages]})
        return
    for message in messages:
        click.echo(f"{format_time_ns(message.sent_ns)}  {message.channel}  to {message.to}: {message.subject}")
        for line in message.body.splitlines():
            click.echo(f"    {line}")
    if not messages:
        click.echo(f"no messages in {pc.outbox.path}" + (f" to {to}" if to else ""))
