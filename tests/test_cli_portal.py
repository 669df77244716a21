"""``vtoken portal ...`` through click's runner: the whole story, and the refusals the issue names.

Set up as a QA engineer would: ``vtoken fleet create`` (exact crystals), ``vtoken validator
init`` and ``import``; token codes from ``vtoken codes --state <token file> --at TIME``;
messages from ``vtoken portal outbox``; and ``--at`` on every step to move through the days.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from host.cli.main import main
from portal.licensekey import format_key
from portal.proofing import InstantProofingProvider
from validator.sealing import ENV_VAR
from vtoken.serialno import make_serial

BATCH = "5654f4b3e2d1c0b9a8f7e6d5c4b3a291"
#: The fleet is made on 2026-01-01T00:00:00Z.
MADE_S = 1_767_225_600
#: The story starts on 2026-03-02T09:00:00Z (a multiple of 30 s).
T0 = MADE_S + 60 * 86_400 + 9 * 3600
HOUR, DAY = 3600, 86_400
FIRST, SECOND, THIRD = (make_serial(100_000_000 + i) for i in range(3))
EMAIL, NAME, PHONE = "dana@example.com", "Dana Whitfield", "+14155550123"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("VTOKEN_DB", raising=False)


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: object) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.exception is None, repr(result.exception)
    return result.output


def refused(*args: object, code: str) -> Result:
    """Exit 1 with 'refused (<code>): why' on stderr, and no traceback."""
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.startswith(f"refused ({code}): "), result.output
    assert "Traceback" not in result.output and "Error" not in result.output
    assert result.stdout == ""
    return result


class Portal:
    """A fleet made and imported into a validator database, and ``vtoken portal --db`` on it."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "v.db"
        self.fleet = tmp_path / "fleet"
        ok("fleet", "create", "--count", 3, "--batch-secret", BATCH, "--model", "totp30", "--out", self.fleet,
           "--ppm-spread", 0, "--at", MADE_S)
        ok("validator", "--db", self.db, "init")
        ok("validator", "--db", self.db, "import", self.fleet / "tokens.pskc", "--at", MADE_S)

    def p(self, *args: object) -> list[object]:
        return ["portal", "--db", self.db, *args]

    def ok(self, *args: object) -> str:
        return ok(*self.p(*args))

    def refused(self, *args: object, code: str) -> Result:
        return refused(*self.p(*args), code=code)

    def codes(self, serial: str, at_s: int, count: int = 1) -> list[str]:
        return ok("codes", "--state", self.fleet / f"{serial}.token", "--at", at_s, "--count", count).split()

    def last_message(self, to: str) -> str:
        return self.ok("outbox", "--to", to, "--last")

    def key(self) -> str:
        match = re.search(r"license key: (\S+)", self.last_message(EMAIL))
        assert match, self.last_message(EMAIL)
        return match.group(1)

    def phone_code(self, channel: str) -> str:
        text = self.ok("outbox", "--to", PHONE, "--channel", channel, "--last")
        return text.rsplit("is ", 1)[1].replace(" ", "").strip()

    def enter_key(self, key: str, *extra: object, product: str = "token-proofed", at: int) -> list[object]:
        return ["key", "enter", "ACC-1", key, "--product", product, "--name", NAME, "--country", "US",
                "--legal-name", NAME, "--at", at, *extra]


@pytest.fixture
def cli(tmp_path: Path) -> Portal:
    return Portal(tmp_path)


def test_the_whole_story_through_the_cli(cli: Portal) -> None:
    assert "ACC-1" in cli.ok("account", "create", EMAIL, NAME, "--country", "US", "--at", T0)
    placed = cli.ok("order", "place", "acc-1", "--product", "token-proofed", "--payment", "card", "--at", T0)
    assert re.search(r"sales order SO-12345\b", placed), placed

    # 1. the key job: nothing during the card hold, the key two hours later
    assert "no license keys due" in cli.ok("key", "issue", "--at", T0 + 600)
    assert "license key e-mailed for SO-12345" in cli.ok("key", "issue", "--at", T0 + 2 * HOUR)
    key = cli.key()

    # 2. the key, once the token arrived; wrong, typo'd, other product, reused
    cli.refused(*cli.enter_key(key, at=T0 + 2 * HOUR), code="token-not-arrived")
    assert f"token {FIRST} shipped" in cli.ok("order", "ship", "SO-12345", FIRST, "--at", T0 + 3 * HOUR)
    assert "delivered" in cli.ok("order", "deliver", "SO-12345", "--at", T0 + 2 * DAY)
    at = T0 + 2 * DAY + HOUR
    cli.refused(*cli.enter_key(format_key(bytes(12)), at=at), code="key-unknown")
    typo = key[:-1] + ("1" if key[-1] != "1" else "2")
    cli.refused(*cli.enter_key(typo, at=at), code="key-typo")
    cli.refused(*cli.enter_key(key, product="token", at=at), code="key-wrong-product")
    entered = cli.ok(*cli.enter_key(key.lower(), at=at))
    assert "credential CRED-1: proofing-required" in entered and "proof options ACC-1" in entered
    cli.refused(*cli.enter_key(key, at=at), code="key-used")

    # 3. proofing: registering first is refused; instant fails; video passes
    c1, c2 = cli.codes(FIRST, at, 2)
    cli.refused("register", "ACC-1", FIRST, c1, c2, "--at", at + 30, code="proofing-not-done")
    options = cli.ok("proof", "options", "ACC-1")
    assert "offered: instant, video" in options and "street:" in options
    failed = cli.ok("proof", "instant", "ACC-1", "--outcome", "fail", "--at", at)
    assert "failed" in failed and "video is still open" in failed
    cli.refused("proof", "instant", "ACC-1", "--at", at, code="instant-already-tried")
    session = T0 + 3 * DAY
    assert "video session PRF-2 booked" in cli.ok("proof", "book", "ACC-1", "--session", session, "--at", at)
    cli.refused("proof", "video", "PRF-2", "--at", session - HOUR, code="session-not-started")
    video = cli.ok("proof", "video", "prf-2", "--at", session + 300)
    code = re.search(r"activation code: (\d{10})", video).group(1)

    # 4. activation: the code expires after 72 hours; a new session gives a new one
    cli.refused("activate", "ACC-1", code, "--at", session + 300 + 72 * HOUR, code="activation-expired")
    later = session + 4 * DAY
    cli.ok("proof", "book", "ACC-1", "--session", later, "--at", session + 3 * DAY + HOUR)
    video = cli.ok("proof", "video", "PRF-3", "--at", later)
    code = re.search(r"activation code: (\d{10})", video).group(1)
    activated = cli.ok("activate", "ACC-1", code, "--at", later + 600)
    assert "credential CRED-1: activated; subscription until 2027-03-" in activated
    cli.refused("activate", "ACC-1", code, "--at", later + 700, code="activation-used")

    # 5. registration: mistyped serial, another token's codes, then the right ones
    reg = later + 900 + 15
    c1, c2 = cli.codes(FIRST, reg - 30, 2)
    mistyped = FIRST[:-2] + FIRST[-1] + FIRST[-2]
    cli.refused("register", "ACC-1", mistyped, c1, c2, "--at", reg, code="serial-mistyped")
    cli.refused("register", "ACC-1", FIRST, *cli.codes(SECOND, reg - 30, 2), "--at", reg, code="codes-wrong")
    assert f"token {FIRST} registered" in cli.ok("register", "ACC-1", FIRST, c1, c2, "--at", reg)

    # sign-ins: a hardware-only and an any-OTP application
    assert "payroll" in cli.ok("app", "add", "Payroll", "--policy", "hardware-only")
    assert "wiki" in cli.ok("app", "add", "Wiki", "--policy", "any-otp")
    assert "payroll  hardware-only" in cli.ok("app", "list")
    day = reg + DAY
    (token_code,) = cli.codes(FIRST, day)
    assert "signed in to payroll with the hardware token" in cli.ok(
        "signin", "payroll", "ACC-1", "--token", token_code, "--at", day
    )
    cli.refused("signin", "payroll", "ACC-1", "--token", token_code, "--at", day + 1, code="token-replay")
    cli.ok("phone", "add", "ACC-1", PHONE, "--at", day)
    assert "verified" in cli.ok("phone", "verify", "ACC-1", cli.phone_code("sms"), "--at", day + 60)
    cli.ok("phone", "send", "ACC-1", "--voice", "--at", day + 120)
    cli.refused("phone", "send", "ACC-1", "--at", day + 130, code="otp-rate-limited")
    voice = cli.phone_code("voice")
    cli.refused("signin", "payroll", "ACC-1", "--phone", voice, "--at", day + 150, code="app-requires-hardware-token")
    assert "with the phone OTP" in cli.ok("signin", "wiki", "ACC-1", "--phone", voice, "--at", day + 150)

    # the token is lost: disabled at once; phone OTP still works; replacement without proofing
    lost_at = day + 10 * DAY
    assert "disabled" in cli.ok("lost", "ACC-1", "--at", lost_at)
    (found_code,) = cli.codes(FIRST, lost_at + 60)
    cli.refused("signin", "payroll", "ACC-1", "--token", found_code, "--at", lost_at + 60, code="token-lost")
    check = run("validator", "--db", cli.db, "check", FIRST, found_code, "--at", lost_at + 60)
    assert check.exit_code == 1 and "refused (locked)" in check.output
    cli.ok("phone", "send", "ACC-1", "--at", lost_at + 120)
    cli.ok("signin", "wiki", "ACC-1", "--phone", cli.phone_code("sms"), "--at", lost_at + 180)
    replaced = cli.ok("replace", "ACC-1", "--at", lost_at + 240)
    assert "replacement order SO-12346: proofing waived" in replaced and "activated" in replaced
    assert "subscription until 2027-03-" in replaced  # the original year, not a new one
    shipped = cli.ok("order", "ship-replacement", "SO-12346", SECOND, "--at", lost_at + 2 * DAY)
    assert f"replacement token {SECOND} shipped and delivered" in shipped
    reg2 = lost_at + 2 * DAY + 3615
    c1, c2 = cli.codes(SECOND, reg2 - 30, 2)
    cli.ok("register", "ACC-1", SECOND, c1, c2, "--at", reg2)
    (new_code,) = cli.codes(SECOND, reg2 + HOUR)
    cli.ok("signin", "payroll", "ACC-1", "--token", new_code, "--at", reg2 + HOUR)

    shown = cli.ok("account", "show", "ACC-1")
    assert re.search(r"credential: CRED-1\s+lost\s+token " + FIRST, shown), shown
    assert re.search(r"credential: CRED-2\s+registered\s+token " + SECOND, shown), shown
    assert "replaces CRED-1, proofing waived" in shown and "(verified)" in shown

    # the outbox is a JSON Lines file next to the database
    lines = [json.loads(line) for line in Path(f"{cli.db}.outbox.jsonl").read_text().splitlines()]
    assert {m["channel"] for m in lines} == {"email", "sms", "voice"}
    everything = cli.ok("outbox")
    assert "License key for SO-12345" in everything and key in everything


def test_cli_refusals_of_a_second_user(cli: Portal) -> None:
    """Refusals the issue names that the main story does not reach: invoice gating, another account's key."""
    cli.ok("account", "create", EMAIL, NAME, "--country", "US", "--at", T0)
    cli.ok("account", "create", "eve@example.com", "Eve Example", "--country", "DE", "--at", T0)
    assert "order pay SO-12345" in cli.ok(
        "order", "place", "ACC-1", "--product", "token", "--payment", "invoice", "--at", T0
    )
    assert "no license keys due" in cli.ok("key", "issue", "--at", T0 + 5 * DAY)
    cli.ok("order", "pay", "SO-12345", "--at", T0 + 6 * DAY)
    cli.refused("order", "pay", "SO-12345", "--at", T0 + 6 * DAY, code="already-paid")
    assert "SO-12345" in cli.ok("key", "issue", "--at", T0 + 6 * DAY)
    key = cli.key()
    cli.ok("order", "ship", "SO-12345", FIRST, "--at", T0 + 6 * DAY)
    cli.ok("order", "deliver", "SO-12345", "--at", T0 + 7 * DAY)
    cli.refused("key", "enter", "ACC-2", key, "--product", "token", "--name", "Eve Example", "--country", "DE",
                "--at", T0 + 7 * DAY, code="key-other-account")
    cli.refused("key", "enter", "ACC-1", key, "--product", "token", "--name", NAME, "--country", "USA",
                "--at", T0 + 7 * DAY, code="bad-country")
    activated = cli.ok("key", "enter", "ACC-1", key, "--product", "token", "--name", NAME, "--country", "US",
                       "--at", T0 + 7 * DAY)
    assert "credential CRED-1: activated" in activated and "register ACC-1" in activated
    cli.refused("register", "ACC-1", "1000000099", "123456", "654321", "--at", T0 + 7 * DAY, code="serial-mistyped")
    cli.refused("register", "ACC-1", SECOND, *cli.codes(SECOND, T0 + 7 * DAY, 2), "--at", T0 + 7 * DAY + 30,
                code="serial-not-yours")
    cli.refused("proof", "instant", "ACC-1", "--at", T0 + 7 * DAY, code="proofing-not-needed")
    cli.refused("signin", "nowhere", "ACC-1", "--token", "123456", "--at", T0 + 7 * DAY, code="unknown-application")
    cli.refused("account", "show", "ACC-9", code="unknown-account")


def test_cli_video_fail_and_non_us_proofing(cli: Portal) -> None:
    cli.ok("account", "create", EMAIL, NAME, "--country", "DE", "--at", T0)
    cli.ok("order", "place", "ACC-1", "--product", "token-proofed", "--payment", "purchase-order", "--at", T0)
    cli.ok("order", "pay", "SO-12345", "--at", T0 + DAY)
    cli.ok("key", "issue", "--at", T0 + DAY)
    cli.ok("order", "ship", "SO-12345", FIRST, "--at", T0 + DAY)
    cli.ok("order", "deliver", "SO-12345", "--at", T0 + 2 * DAY)
    at = T0 + 2 * DAY
    cli.refused("key", "enter", "ACC-1", cli.key(), "--product", "token-proofed", "--name", NAME, "--country", "DE",
                "--legal-name", "Dana W. Smith", "--at", at, code="name-mismatch")
    cli.ok("key", "enter", "ACC-1", cli.key(), "--product", "token-proofed", "--name", NAME, "--country", "DE",
           "--legal-name", NAME, "--at", at)
    assert "offered: video" in cli.ok("proof", "options", "ACC-1")
    cli.refused("proof", "instant", "ACC-1", "--at", at, code="instant-not-available")
    cli.ok("proof", "book", "ACC-1", "--session", at + HOUR, "--at", at)
    failed = cli.ok("proof", "video", "PRF-1", "--outcome", "fail", "--reason", "document expired", "--at", at + HOUR)
    assert "failed (document expired)" in failed and "activation code" not in failed
    cli.refused("proof", "video", "PRF-1", "--at", at + HOUR, code="session-over")
    cli.refused("proof", "book", "ACC-1", "--session", at, "--at", at + HOUR, code="session-in-past")
    cli.ok("proof", "book", "ACC-1", "--session", at + DAY, "--at", at + HOUR)
    assert "activation code:" in cli.ok("proof", "video", "PRF-2", "--at", at + DAY)
    c1, c2 = cli.codes(FIRST, at + DAY + 15, 2)
    cli.refused("register", "ACC-1", FIRST, c1, c2, "--at", at + DAY + 45, code="not-activated")


def test_cli_usage_and_setup_errors(cli: Portal, tmp_path: Path) -> None:
    cli.ok("account", "create", EMAIL, NAME, "--at", T0)
    both = run(*cli.p("signin", "wiki", "ACC-1", "--token", "123456", "--phone", "654321"))
    neither = run(*cli.p("signin", "wiki", "ACC-1"))
    for result in (both, neither):
        assert result.exit_code == 2 and "exactly one of --token CODE or --phone CODE" in result.output
    bad_time = run(*cli.p("account", "create", "x@example.com", "X", "--at", "2026-01-01T00:00:00"))
    assert bad_time.exit_code == 2 and "Error" in bad_time.output and "Traceback" not in bad_time.output
    missing = run("portal", "--db", tmp_path / "nope.db", "account", "create", EMAIL, NAME)
    assert missing.exit_code == 1 and "vtoken validator --db" in missing.output and "init" in missing.output
    assert not (tmp_path / "nope.db").exists()
    assert "no messages" in cli.ok("outbox", "--to", "nobody@example.com")


def test_cli_help_lists_every_step_with_examples() -> None:
    text = ok("portal", "--help")
    for command in ("account", "order", "key", "proof", "activate", "register", "phone", "app", "signin", "lost",
                    "replace", "outbox"):
        assert re.search(rf"^\s+{command}\s", text, re.MULTILINE), command
    for group, subcommands in {
        "order": ("place", "pay", "ship", "deliver", "ship-replacement"),
        "key": ("issue", "enter"),
        "proof": ("options", "instant", "book", "video"),
        "phone": ("add", "verify", "send", "lock", "unlock"),
    }.items():
        sub = ok("portal", group, "--help")
        assert "Example" in sub
        for name in subcommands:
            assert re.search(rf"^\s+{name}\s", sub, re.MULTILINE), (group, name)


def test_cli_instant_proofing_with_typed_answers(cli: Portal) -> None:
    cli.ok("account", "create", EMAIL, NAME, "--country", "US", "--at", T0)
    cli.ok("order", "place", "ACC-1", "--product", "token-proofed", "--payment", "card", "--at", T0)
    cli.ok("key", "issue", "--at", T0 + DAY)
    cli.ok("order", "ship", "SO-12345", FIRST, "--at", T0 + DAY)
    cli.ok("order", "deliver", "SO-12345", "--at", T0 + DAY)
    cli.ok(*cli.enter_key(cli.key(), at=T0 + DAY))
    malformed = run(*cli.p("proof", "instant", "ACC-1", "--answer", "street", "--at", T0 + DAY))
    assert malformed.exit_code == 2 and "QUESTION=CHOICE" in malformed.output
    answers = InstantProofingProvider().correct_answers("ACC-1")
    typed = [arg for qid, choice in answers.items() for arg in ("--answer", f"{qid}={choice}")]
    passed = cli.ok("proof", "instant", "ACC-1", *typed, "--at", T0 + DAY)
    assert "passed; credential CRED-1: activated" in passed and "register ACC-1" in passed
    c1, c2 = cli.codes(FIRST, T0 + DAY + 15, 2)
    cli.ok("register", "ACC-1", FIRST, c1, c2, "--at", T0 + DAY + 45)


def test_cli_every_refusal_exits_1(cli: Portal) -> None:
    """A portal refusal exits 1 like a validator refusal; a malformed serial at shipping is one too."""
    cli.ok("account", "create", EMAIL, NAME, "--at", T0)
    cli.ok("order", "place", "ACC-1", "--product", "token", "--payment", "card", "--at", T0)
    for bad in ("bad!serial", "x" * 80):
        cli.refused("order", "ship", "SO-12345", bad, "--at", T0, code="serial-malformed")
    cli.refused("order", "ship", "SO-12345", "1000000099", "--at", T0, code="unknown-serial")
    cli.refused("order", "ship-replacement", "SO-12345", "bad!serial", "--at", T0, code="serial-malformed")
    cli.refused("order", "pay", "SO-12345", "--at", T0, code="already-paid")


def test_cli_at_now(cli: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    """--at takes 'now' (any case) on every portal step, as 'time --set now' does."""
    monkeypatch.setattr("host.cli.options.wall_time_ns", lambda: T0 * 10**9)
    cli.ok("account", "create", EMAIL, NAME, "--country", "US", "--at", "now")
    cli.ok("order", "place", "ACC-1", "--product", "token", "--payment", "card", "--at", "NOW")
    shown = cli.ok("account", "show", "ACC-1")
    assert "card  paid" in shown, shown
    placed = json.loads(cli.ok("account", "show", "ACC-1", "--json"))["orders"][0]
    assert placed["placed_ns"] == T0 * 10**9 and placed["placed"] == "2026-03-02T09:00:00Z"


def test_cli_support_locks_and_unlocks_phone_otp(cli: Portal) -> None:
    """The refusal says 'ask support to unlock them': support can, from the command line."""
    cli.ok("account", "create", EMAIL, NAME, "--country", "US", "--at", T0)
    cli.ok("phone", "add", "ACC-1", PHONE, "--at", T0)
    cli.ok("phone", "verify", "ACC-1", cli.phone_code("sms"), "--at", T0 + 60)
    cli.refused("phone", "lock", "ACC-1", "--reason", "  ", "--at", T0 + 90, code="lock-reason-missing")
    locked = cli.ok("phone", "lock", "ACC-1", "--reason", "SIM swap  reported", "--at", T0 + 90)
    assert locked == "phone OTP locked for ACC-1 (SIM swap reported); unlock with 'vtoken portal phone unlock ACC-1'\n"
    refusal = cli.refused("phone", "send", "ACC-1", "--at", T0 + 120, code="otp-locked")
    assert "ask support to unlock them" in refusal.output
    assert "SIM swap" not in refusal.output  # support's note is for support, not whoever asks for a code
    shown = json.loads(cli.ok("account", "show", "ACC-1", "--json"))["account"]
    assert shown["phone_otp_locked"] is True and shown["phone_otp_lock_reason"] == "SIM swap reported"
    unlocked = json.loads(cli.ok("phone", "unlock", "ACC-1", "--json", "--at", T0 + 150))
    assert unlocked["ok"] is True and unlocked["was_locked"] is True
    assert unlocked["account"]["phone_otp_locked"] is False and unlocked["account"]["phone_otp_failures"] == 0
    assert cli.ok("phone", "unlock", "ACC-1", "--at", T0 + 160) == "phone OTP for ACC-1 was not locked\n"
    cli.ok("phone", "send", "ACC-1", "--at", T0 + 180)  # codes flow again
    assert cli.phone_code("sms").isdigit()
    cli.refused("phone", "unlock", "ACC-9", code="unknown-account")
