"""``vtoken demo``: one user's whole story, against a virtual token on a real pty.

A fleet is made and imported into a fresh validator; one token is served on a
pseudo-terminal in simulated time; a user buys it, waits for the license key,
fails instant proofing, passes a video session, activates, and registers the
token with two codes read over the serial protocol 30 simulated seconds apart.
Then the user signs in to a hardware-only and a phone-OTP application, loses the
token, signs in by phone, gets a replacement without proofing again, and
registers it. Every step is printed as it happens.

With a folder (``vtoken demo --dir D``) the run is kept the way the CLI finds
it: the validator's and portal's database ``D/portal.db``, its master key in
``D/portal.db.key`` (mode 0600; ``$VTOKEN_MASTER_KEY`` instead when set), the
outbox ``D/portal.db.outbox.jsonl`` and the PSKC file; the summary prints
commands that open them.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from firmware_sim.device import DeviceController
from firmware_sim.fleet import FleetSpec, build_pskc, make_fleet
from firmware_sim.models import get_model
from firmware_sim.token import Token
from host.cli.validator_cmd import KEY_SUFFIX
from host.client import TokenClient
from portal.messaging import OutboxSender, outbox_path
from portal.proofing import InstantProofingProvider, VideoAgent
from portal.records import AppPolicy, PaymentMethod, Product
from portal.service import PortalService
from portal.store import PortalStore
from validator.importer import import_file
from validator.sealing import ENV_VAR, Keyring, generate_master_key, master_key_from_env, write_key_file
from validator.service import Validator
from validator.store import SQLiteStore
from vserial.ports import PtyPort
from vserial.server import BackgroundServer, DeviceServer
from vtoken.clock import NS_PER_DAY, NS_PER_HOUR, NS_PER_SECOND, SimulatedClock
from vtoken.errors import PortalError, StorageError
from vtoken.safefile import PRIVATE_FILE_MODE, open_new_private

#: The story starts on 2026-03-02 at 09:00 UTC.
START_NS = 1_772_442_000 * NS_PER_SECOND
FLEET_SIZE = 4
BATCH_SECRET = bytes.fromhex("5654f4b3e2d1c0b9a8f7e6d5c4b3a2910f1e2d3c4b5a69788796a5b4c3d2e1f0")
PSKC_PASSWORD = "demo-import"
PHONE = "+14155550123"
PSKC_NAME = "tokens.pskc"
#: The validator's and the portal's tables share this database, as with ``vtoken portal --db``.
DB_NAME = "portal.db"
#: Files that hold seeds or keys.
PRIVATE_MODE = PRIVATE_FILE_MODE


def demo_files(folder: Path) -> tuple[Path, Path, Path, Path]:
    """The PSKC file, database, key file and outbox a run leaves in ``folder``, named as the CLI expects."""
    db = folder / DB_NAME
    return folder / PSKC_NAME, db, Path(f"{db}{KEY_SUFFIX}"), outbox_path(db)


@dataclasses.dataclass
class DemoResult:
    """What the demo did, for its summary and for tests."""

    steps: list[str] = dataclasses.field(default_factory=list)
    refusals: list[str] = dataclasses.field(default_factory=list)
    sign_ins: list[str] = dataclasses.field(default_factory=list)
    order: str = ""
    replacement_order: str = ""
    serials: list[str] = dataclasses.field(default_factory=list)
    ptys: list[str] = dataclasses.field(default_factory=list)
    elapsed_s: float = 0.0
    workdir: str = ""
    kept: bool = True
    account: str = ""
    #: Commands (one line each, shell-quoted) that open what a kept run left behind.
    follow_up: list[str] = dataclasses.field(default_factory=list)


class Story:
    """Runs the steps and prints them."""

    def __init__(self, workdir: Path, echo: Callable[[str], None]) -> None:
        self.dir = workdir
        self.echo = echo
        self.result = DemoResult(workdir=str(workdir))
        self.clock = SimulatedClock(START_NS)
        self._step = 0

    def step(self, title: str) -> None:
        self._step += 1
        line = f"[{self._step:2d}] {title}"
        self.result.steps.append(title)
        self.echo("")
        self.echo(line)

    def say(self, text: str) -> None:
        self.echo(f"     {text}")

    def refused(self, what: str, exc: PortalError) -> None:
        self.result.refusals.append(exc.code)
        self.say(f"refused as it should be ({what}): {exc.code}: {exc}")


@contextmanager
def _served(token: Token, clock: SimulatedClock, link: Path) -> Iterator[tuple[PtyPort, TokenClient]]:
    """The token on a real pty in simulated time, and a host client connected to it."""
    port = PtyPort(DeviceController(token, sim_control=True), link=link)
    with BackgroundServer(DeviceServer([port])):
        client = TokenClient.open(str(link))
        try:
            yield port, client
        finally:
            client.close()


def _two_codes(client: TokenClient, story: Story) -> tuple[str, str]:
    """Press, wait 30 s (simulated, through the protocol), press again; as the portal asks."""
    code1 = client.press()
    story.say(f"press 1 over the serial port: token shows {code1}")
    client.advance_time(30 * NS_PER_SECOND)
    code2 = client.press()
    while code2 == code1:  # a slow crystal may still show the old code: wait for it to change
        client.advance_time(NS_PER_SECOND)
        code2 = client.press()
    story.say(f"30 simulated seconds later, press 2: token shows {code2}")
    return code1, code2


def run_demo(workdir: str | os.PathLike[str] | None = None, echo: Callable[[str], None] = print) -> DemoResult:
    """Run the whole story; return what happened. Raises if any step misbehaves."""
    started = time.perf_counter()
    with ExitStack() as stack:
        kept = workdir is not None
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="vtoken-demo-"))
        folder = Path(workdir)
        _check_folder(folder)
        story = Story(folder, echo)
        story.result.kept = kept
        _run(story, stack)
        story.result.elapsed_s = time.perf_counter() - started
        _summary(story)
        return story.result


def _check_folder(folder: Path) -> None:
    """Create the folder; refuse one that already holds a run (its database would be imported into twice)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {folder}: {exc.strerror}") from None
    if not folder.is_dir():
        raise StorageError(f"{folder} is not a folder")
    taken = [p.name for p in demo_files(folder) if p.exists() or p.is_symlink()]
    if taken:
        raise StorageError(f"{folder} already holds a demo run ({taken[0]}); choose a new or empty folder")


def _write_private(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create ``path`` with mode 0600 (it holds seeds, even if encrypted) and let ``write`` fill it."""
    try:
        with open_new_private(path, mode=PRIVATE_MODE) as output:
            write(output)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None


def _keyring(key_file: Path) -> tuple[Keyring, str]:
    """The master key as ``vtoken validator``/``portal`` will find it: ``$VTOKEN_MASTER_KEY``, else a new key file."""
    env = master_key_from_env()
    if env is not None:
        return Keyring(env), f"master key from ${ENV_VAR}"
    key = generate_master_key()
    write_key_file(key_file, key)
    return Keyring(key), f"master key in {key_file.name} (mode 0600)"


def _run(story: Story, stack: ExitStack) -> None:
    clock, folder = story.clock, story.dir
    pskc_path, db, key_file, outbox_file = demo_files(folder)
    story.step("The factory makes a batch of tokens and ships their seeds as PSKC")
    spec = FleetSpec(batch_secret=BATCH_SECRET, model=get_model("totp30"), count=FLEET_SIZE)
    tokens = list(make_fleet(spec, clock))
    _write_private(pskc_path, build_pskc(spec, created_ns=clock.now_ns(), password=PSKC_PASSWORD).write)
    story.say(f"{FLEET_SIZE} TOTP tokens, serials {', '.join(t.serial for t in tokens)}; seeds in {pskc_path.name}")

    story.step("The portal's validator is set up and imports the PSKC file")
    keyring, key_source = _keyring(key_file)
    vstore = stack.enter_context(SQLiteStore(db))
    report = import_file(vstore, keyring, pskc_path, password=PSKC_PASSWORD)
    validator = Validator(vstore, keyring, clock)
    pstore = stack.enter_context(PortalStore(db))
    outbox = OutboxSender(outbox_file)
    instant, agent = InstantProofingProvider(), VideoAgent()
    portal = PortalService(pstore, validator, clock, outbox, instant=instant, agent=agent)
    payroll = portal.add_application("Payroll", AppPolicy.HARDWARE_ONLY)
    wiki = portal.add_application("Wiki", AppPolicy.ANY_OTP)
    story.say(f"imported {report.count} tokens into {db.name} (seeds sealed with AES-256-GCM; {key_source})")
    story.say(f"applications: {payroll.name} (hardware token only), {wiki.name} (any OTP)")

    first = tokens[0]
    link = folder / "token0"
    port, client = stack.enter_context(_served(first, clock, link))
    story.result.ptys.append(port.path)
    story.result.serials.append(first.serial)
    story.say(f"token {first.serial} is on the serial port {port.path} (link {link.name})")

    story.step("1. Purchase: Dana orders a token with identity proofing, paying by card")
    account = portal.create_account("dana@example.com", "Dana Whitfield", "US")
    story.result.account = account.id
    order = portal.place_order(account.id, Product.TOKEN_PROOFED, PaymentMethod.CARD)
    story.result.order = order.id
    story.say(f"sales order {order.id}: {order.product.title}, paid by card")
    assert portal.issue_due_keys() == [], "a card key must wait for the fraud screen"
    story.say("the key-issuing job runs at once: nothing yet (card payments are screened first)")
    client.advance_time(2 * NS_PER_HOUR)
    issued = portal.issue_due_keys()
    key = _last_key(outbox, account.email)
    story.say(f"two hours later the job e-mails the license key for {', '.join(issued)}: {key}")

    story.step("2. License key: entered once the token has arrived")
    try:
        portal.enter_license_key(account.id, key, Product.TOKEN_PROOFED, name=account.name, country="US", legal_name=account.name)
    except PortalError as exc:
        story.refused("before delivery", exc)
    portal.ship(order.id, first.serial)
    client.advance_time(2 * NS_PER_DAY)
    portal.deliver(order.id)
    story.say(f"token {first.serial} shipped and delivered two days later")
    typo = key[:-1] + ("0" if key[-1] != "0" else "1")
    try:
        portal.enter_license_key(account.id, typo, Product.TOKEN_PROOFED, name=account.name, country="US", legal_name=account.name)
    except PortalError as exc:
        story.refused("a typo in the key", exc)
    try:
        portal.enter_license_key(account.id, key, Product.TOKEN_PROOFED, name=account.name, country="US", legal_name="Dana W. Smith")
    except PortalError as exc:
        story.refused("legal name differs from the account", exc)
    credential = portal.enter_license_key(
        account.id, key, Product.TOKEN_PROOFED, name=account.name, country="US", legal_name="Dana  Whitfield"
    )
    story.say(f"profile confirmed (US); credential {credential.id}: {credential.state.value}")

    story.step("3. Identity proofing: instant questions fail, live video passes")
    options = portal.proofing_options(account.id)
    story.say(f"offered in the US: {', '.join(o.value for o in options)}")
    instant.set_outcome(account.id, False)
    case = portal.instant_proofing(account.id, {q.id: q.choices[0] for q in instant.questions(account.id)})
    story.say(f"instant proofing {case.id}: {case.state.value} ({case.reason}); video stays open")
    try:
        portal.register_token(account.id, first.serial, "000000", "111111")
    except PortalError as exc:
        story.refused("registering before proofing", exc)
    session = clock.now_ns() + NS_PER_DAY
    booked = portal.book_video(account.id, session)
    story.say(f"video session {booked.id} booked for tomorrow")
    client.advance_time(NS_PER_DAY)
    case, activation_code = portal.run_video_session(booked.id)
    assert activation_code is not None
    story.say(f"{agent.name}: {case.state.value} ({case.reason}); activation code {activation_code}")

    story.step("4. Activation with the agent's code")
    credential = portal.activate(account.id, activation_code)
    story.say(f"credential {credential.id}: {credential.state.value}; subscription for one year")
    try:
        portal.activate(account.id, activation_code)
    except PortalError as exc:
        story.refused("the same activation code again", exc)

    story.step("5. Registration: serial from the back, Token Code 1, wait 30 s, Token Code 2")
    code1, code2 = _two_codes(client, story)
    mistyped = first.serial[:-2] + first.serial[-1] + first.serial[-2]
    if mistyped != first.serial:
        try:
            portal.register_token(account.id, mistyped, code1, code2)
        except PortalError as exc:
            story.refused("serial with two digits swapped", exc)
    credential = portal.register_token(account.id, first.serial, code1, code2)
    status = validator.status(first.serial, clock.now_ns())
    story.say(f"registered token {first.serial}; its clock is {status.offset_ns / NS_PER_SECOND:+.1f} s off")

    story.step("Phone OTP: Dana adds a phone number for SMS codes")
    portal.register_phone(account.id, PHONE, "sms")
    sms = _last_code(outbox, "sms", PHONE)
    portal.verify_phone(account.id, sms)
    story.say(f"SMS to {PHONE}: {sms}; phone verified")

    story.step("Sign in to Payroll (hardware token only) and to Wiki (any OTP)")
    client.advance_time(3 * NS_PER_DAY)
    code = client.press()
    portal.sign_in(payroll.id, account.id, "token", code)
    story.result.sign_ins.append(f"{payroll.id}:token")
    story.say(f"Payroll with token code {code}: signed in")
    try:
        portal.sign_in(payroll.id, account.id, "token", code)
    except PortalError as exc:
        story.refused("the same code replayed", exc)
    client.advance_time(60 * NS_PER_SECOND)
    portal.send_phone_otp(account.id, "voice")
    voice = _last_code(outbox, "voice", PHONE)
    portal.sign_in(wiki.id, account.id, "phone", voice)
    story.result.sign_ins.append(f"{wiki.id}:phone")
    story.say(f"Wiki with a voice-call code {voice}: signed in")

    story.step("Dana loses the token")
    client.advance_time(10 * NS_PER_DAY)
    portal.report_lost(account.id)
    story.say(f"token {first.serial} reported lost and disabled in the validator at once")
    code = client.press()  # whoever finds it presses the button
    try:
        portal.sign_in(payroll.id, account.id, "token", code)
    except PortalError as exc:
        story.refused("the lost token's code", exc)
    portal.send_phone_otp(account.id, "sms")
    try:
        portal.sign_in(payroll.id, account.id, "phone", _last_code(outbox, "sms", PHONE))
    except PortalError as exc:
        story.refused("phone OTP at a hardware-only application", exc)
    client.advance_time(60 * NS_PER_SECOND)
    portal.send_phone_otp(account.id, "sms")
    sms = _last_code(outbox, "sms", PHONE)
    portal.sign_in(wiki.id, account.id, "phone", sms)
    story.result.sign_ins.append(f"{wiki.id}:phone")
    story.say(f"Wiki by SMS code {sms} while the token is replaced: signed in")

    story.step("Replacement: no second proofing after the phone OTP sign-in")
    replacement = portal.request_replacement(account.id)
    story.result.replacement_order = replacement.id
    story.say(f"replacement order {replacement.id}: proofing {'waived' if replacement.proofing_waived else 'required'}")
    second = tokens[1]
    link2 = folder / "token1"
    port2, client2 = stack.enter_context(_served(second, clock, link2))
    story.result.ptys.append(port2.path)
    story.result.serials.append(second.serial)
    client2.advance_time(2 * NS_PER_DAY)
    portal.ship_replacement(replacement.id, second.serial)
    story.say(f"token {second.serial} delivered, on the serial port {port2.path}")
    code1, code2 = _two_codes(client2, story)
    portal.register_token(account.id, second.serial, code1, code2)
    story.say(f"replacement token {second.serial} registered")
    client2.advance_time(NS_PER_HOUR)
    code = client2.press()
    portal.sign_in(payroll.id, account.id, "token", code)
    story.result.sign_ins.append(f"{payroll.id}:token")
    story.say(f"Payroll with the new token's code {code}: signed in")


def _last_key(outbox: OutboxSender, email: str) -> str:
    for message in reversed(outbox.messages()):
        if message.channel == "email" and message.to == email and "license key:" in message.body:
            return message.body.split("license key:")[1].split()[0]
    raise AssertionError("no license key e-mail")


def _last_code(outbox: OutboxSender, channel: str, phone: str) -> str:
    for message in reversed(outbox.messages()):
        if message.channel == channel and message.to == phone:
            return message.body.rsplit("is ", 1)[1].replace(" ", "")
    raise AssertionError(f"no {channel} message")


def _summary(story: Story) -> None:
    r = story.result
    story.echo("")
    story.echo("Summary")
    story.echo(f"  order {r.order}, replacement {r.replacement_order}; tokens {', '.join(r.serials)}")
    story.echo(f"  served on {', '.join(r.ptys)}")
    story.echo(f"  sign-ins: {', '.join(r.sign_ins)}")
    story.echo(f"  refused as the rules require: {', '.join(r.refusals)}")
    if not r.kept:
        story.echo(f"  {len(r.steps)} steps in {r.elapsed_s:.1f} s; temporary files removed (--dir keeps them)")
        return
    story.echo(f"  {len(r.steps)} steps in {r.elapsed_s:.1f} s; database, key file, outbox and PSKC file kept in {r.workdir}")
    r.follow_up = _follow_up(story.dir, r)
    story.echo("")
    story.echo("Look around (each command opens what this run left behind):")
    for line in r.follow_up:
        story.echo(f"  {line}")


def _follow_up(folder: Path, r: DemoResult) -> list[str]:
    """Commands that open the kept run: the validator's tokens, the account, the outbox, the applications."""
    _, db, _, _ = demo_files(folder)
    validator = f"vtoken validator --db {shlex.quote(str(db))}"
    portal = f"vtoken portal --db {shlex.quote(str(db))}"
    lines = [f"{validator} list"]
    lines += [f"{validator} show {serial}" for serial in r.serials[:1]]
    if r.account:
        lines.append(f"{portal} account show {r.account}")
    lines += [f"{portal} outbox --to {shlex.quote(PHONE)} --last", f"{portal} app list"]
    if master_key_from_env() is not None:
        lines.insert(0, f"# with ${ENV_VAR} still set to the key this run used")
    return lines
