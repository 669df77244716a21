"""``--json``: every command that reports state or a result prints one object of a documented shape.

The shapes below are the README's "Scripting with --json" section as data: each
command's keys with their types. A row runs a command with ``--json``, checks that
stdout holds exactly one JSON object (one line) and that the object has exactly
the documented keys with the documented types (portal records: at least them).
Refusals that are results print ``"ok": false`` with ``reason`` and ``message`` and
exit 1; errors keep their text on stderr (stdout empty) and exit 2 or 1.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from firmware_sim.device import DeviceController
from firmware_sim.factory import manufacture
from firmware_sim.models import get_model
from host.cli.main import main
from host.client import TokenClient
from validator.sealing import ENV_VAR
from vserial import inproc
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.oath import totp
from vtoken.serialno import make_serial

BATCH = "5654f4b3e2d1c0b9a8f7e6d5c4b3a291"
SEED = bytes.fromhex("8f3ac1d27be4905a6c11fe2d93b7480c5de1a6f2")
RFC_KEY = b"12345678901234567890".hex()
DEVICE_KEY = bytes(range(32))
#: Fleets and devices are made on 2026-01-01T00:00:00Z.
MADE_S = 1_767_225_600
T_FACTORY = MADE_S * NS_PER_SECOND
#: A day later, 15 s into a step.
DAY_S = MADE_S + 86_400 + 15
HOUR, DAY = 3600, 86_400
FIRST, SECOND, THIRD = (make_serial(100_000_000 + i) for i in range(3))
DEVICE_SERIAL = "1000000005"
EMAIL, NAME, PHONE = "dana@example.com", "Dana Whitfield", "+14155550123"
_names = itertools.count()


# --- shapes ------------------------------------------------------------------------------------------


class Number:
    """A JSON number: int or float (never a bool)."""


@dataclasses.dataclass(frozen=True)
class Opt:
    """``spec`` or null."""

    spec: Any


@dataclasses.dataclass(frozen=True)
class Open:
    """An object with at least these keys (a portal record: every field of the record)."""

    keys: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class MapOf:
    """An object whose keys are free text and whose values all have ``spec``."""

    spec: Any


def conforms(value: Any, spec: Any, where: str = "$") -> None:
    """Assert that ``value`` has the shape ``spec`` (exact key sets for plain dicts)."""
    if isinstance(spec, Opt):
        if value is not None:
            conforms(value, spec.spec, where)
    elif isinstance(spec, Open):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        missing = set(spec.keys) - set(value)
        assert not missing, f"{where}: missing {sorted(missing)}"
        for key, sub in spec.keys.items():
            conforms(value[key], sub, f"{where}.{key}")
    elif isinstance(spec, dict):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        assert set(value) == set(spec), f"{where}: keys {sorted(value)} are not {sorted(spec)}"
        for key, sub in spec.items():
            conforms(value[key], sub, f"{where}.{key}")
    elif isinstance(spec, MapOf):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        for key, item in value.items():
            conforms(item, spec.spec, f"{where}.{key}")
    elif isinstance(spec, list):
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for n, item in enumerate(value):
            conforms(item, spec[0], f"{where}[{n}]")
    elif spec is Number:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is no number"
    elif spec is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r} is no integer"
    else:
        assert isinstance(value, spec), f"{where}: {value!r} is not {spec.__name__}"


def time_field(name: str, optional: bool = False) -> dict[str, Any]:
    """A time: ``{name}_ns`` (integer) and ``name`` (ISO 8601 UTC text)."""
    return {f"{name}_ns": Opt(int), name: Opt(str)} if optional else {f"{name}_ns": int, name: str}


OK = {"ok": bool}
REFUSAL = {"ok": bool, "reason": str, "message": str}
PARAMS = {"kind": str, "algorithm": str, "digits": int, "period": Opt(int), "t0": Opt(int), "counter": Opt(int)}
DISPLAY = {"screen": str, "text": str, "masks": [int], "low_battery": bool, "countdown_bars": int,
           "countdown_total": int}
RESULT = {
    **OK, "reason": str, "message": str, "serial": str, "step": Opt(int), "offset_steps": Opt(int),
    "offset_ns": Opt(int), "failures": int, "attempts_left": Opt(int), **time_field("retry_at", optional=True),
}
STORED_TOKEN = {"serial": str, **PARAMS, "state": str, "registered": bool, "locked": bool}
SEARCH = {"kind": str, "start": int, "first": int, "last": int, "match": Opt(int), "offset": Opt(int)}

ACCOUNT = Open({"id": str, "email": str, "name": str, "country": str, "legal_name": str,
                "profile_confirmed": bool, "phone": str, "phone_verified": bool})
ORDER = Open({"id": str, "account_id": str, "product": str, "payment": str, "state": str,
              **time_field("placed"), **time_field("paid", True), **time_field("key_issued", True),
              "serial": str, **time_field("delivered", True), "replacement_of": str, "proofing_waived": bool})
CREDENTIAL = Open({"id": str, "account_id": str, "order_id": str, "product": str, "state": str, "serial": str,
                   "proofing_method": Opt(str), **time_field("activated", True), **time_field("expires", True),
                   **time_field("registered", True), **time_field("lost", True), "replaced_by": str})
PROOFING = Open({"id": str, "account_id": str, "credential_id": str, "method": str, "state": str,
                 **time_field("started"), **time_field("session", True), "reason": str})
APPLICATION = Open({"id": str, "name": str, "policy": str})
SIGNIN = Open({"application": str, "account_id": str, "factor": str, **time_field("at")})
MESSAGE = Open({"channel": str, "to": str, "subject": str, "body": str, **time_field("sent")})

#: command -> the object it prints with --json (README "Scripting with --json").
SHAPES: dict[str, dict[str, Any]] = {
    "info": {**OK, "port": str, "serial": Opt(str), "model": str, "firmware_version": str, **PARAMS,
             "battery_percent": Number, "battery_low": bool, "provisioned": bool, "locked": bool,
             "sim_control": bool},
    "press": {**OK, "code": str, "text": str},
    "long-press": {**OK, "text": str},
    "display": {**OK, **DISPLAY},
    "time": {**OK, "port": str, "set": bool, **time_field("token_clock"), **time_field("host_clock"),
             "offset_ns": int},
    "provision": {**OK, "port": str, "serial": str, "model": str, "locked": bool},
    "token show": {**OK, "state": str, "serial": str, "model": str, "firmware_version": str, **PARAMS,
                   "locked": bool, **time_field("true_time"), **time_field("token_clock"), "clock_running": bool,
                   "offset_ns": int, "battery_percent": Number, "battery_low": bool, "display": DISPLAY},
    "codes": {**OK, "codes": [str], **time_field("at", optional=True)},
    "codes --validate": {**OK, **SEARCH},
    "validator import": {**OK, "file": str, "format": str, "count": int, "serials": [str], "kinds": MapOf(int),
                         "notes": [str], "skipped": [str]},
    "validator register": RESULT,
    "validator check": RESULT,
    "validator unlock": RESULT,
    "validator show": {
        **OK, **STORED_TOKEN, "lock_reason": Opt(str), "failures": int, "resync_failures": int,
        "last_step": Opt(int), **time_field("at"), "offset_steps": Opt(int), "offset_ns": Opt(int),
        "offset_sigma_ns": Opt(int), "rate_ppm": Opt(Number), "rate_sigma_ppm": Opt(Number),
        "single_window_codes": Opt(int), "next_code_window_codes": Opt(int),
        "false_accept_per_guess": Opt(Number), "false_accept_pair": Opt(Number),
        "history": [{**time_field("at"), "step": int, "event": str}],
    },
    "validator list": {**OK, "count": int, "tokens": [STORED_TOKEN]},
    "validator token list": {**OK, "count": int, "credentials": [
        {"ident": str, "kind": str, "label": str, **time_field("created"), **time_field("revoked", True)}
    ]},
    "portal account create": {**OK, "account": ACCOUNT},
    "portal account show": {**OK, "account": ACCOUNT, "orders": [ORDER], "credentials": [CREDENTIAL]},
    "portal order place": {**OK, "order": ORDER},
    "portal order pay": {**OK, "order": ORDER},
    "portal order ship": {**OK, "order": ORDER},
    "portal order deliver": {**OK, "order": ORDER},
    "portal order ship-replacement": {**OK, "order": ORDER},
    "portal key issue": {**OK, "order_ids": [str]},
    "portal key enter": {**OK, "credential": CREDENTIAL},
    "portal proof options": {**OK, "account_id": str, "methods": [str],
                             "questions": [{"id": str, "text": str, "choices": [str]}]},
    "portal proof instant": {**OK, "proofing": PROOFING, "credential": CREDENTIAL},
    "portal proof book": {**OK, "proofing": PROOFING},
    "portal proof video": {**OK, "proofing": PROOFING, "agent": str, "activation_code": Opt(str)},
    "portal activate": {**OK, "credential": CREDENTIAL},
    "portal register": {**OK, "credential": CREDENTIAL},
    "portal phone add": {**OK, "account": ACCOUNT, "channel": str},
    "portal phone verify": {**OK, "account": ACCOUNT},
    "portal phone send": {**OK, "account_id": str, "channel": str, "valid_for_ns": int},
    "portal phone lock": {**OK, "account": ACCOUNT},
    "portal phone unlock": {**OK, "account": ACCOUNT, "was_locked": bool},
    "portal app add": {**OK, "application": APPLICATION},
    "portal app list": {**OK, "applications": [APPLICATION]},
    "portal signin": {**OK, "signin": SIGNIN},
    "portal lost": {**OK, "credential": CREDENTIAL},
    "portal replace": {**OK, "order": ORDER, "credential": CREDENTIAL},
    "portal outbox": {**OK, "messages": [MESSAGE]},
}

#: Refusals that are results: "ok": false, exit 1, and these keys.
REFUSAL_SHAPES: dict[str, dict[str, Any]] = {
    "device": REFUSAL,
    "press": {**REFUSAL, "code": Opt(str), "text": str},
    "codes --validate": {**REFUSAL, **SEARCH},
    "validator": RESULT,
    "portal": REFUSAL,
}


# --- running ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("VTOKEN_DB", raising=False)


def run(*args: object, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], input=stdin)


def one_object(result: Result) -> dict[str, Any]:
    """Stdout holds exactly one JSON object on one line."""
    assert "Traceback" not in result.output
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1, result.stdout
    value = json.loads(result.stdout)
    assert isinstance(value, dict), value
    return value


def shaped(command: str, *args: object, code: int = 0, stdin: str | None = None) -> dict[str, Any]:
    """Run ``args`` with --json; check exit ``code``, one object, and the shape of ``command`` (or its refusal)."""
    result = run(*args, "--json", stdin=stdin)
    assert result.exit_code == code, result.output
    value = one_object(result)
    if code == 0:
        conforms(value, SHAPES[command])
        assert value["ok"] is True
    else:
        conforms(value, REFUSAL_SHAPES[command])
        assert value["ok"] is False and value["reason"]
    return value


def plain(*args: object) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


# --- a device, a token file, a fleet -----------------------------------------------------------------------


@dataclasses.dataclass
class World:
    """A device on vtoken://, a token file, and a fleet (token files and PSKC)."""

    port: str
    token: Any
    fleet: Path

    def token_file(self, serial: str = FIRST) -> Path:
        return self.fleet / f"{serial}.token"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = manufacture(model=get_model("totp30"), seed=SEED, serial=DEVICE_SERIAL, device_key=DEVICE_KEY,
                       clock=SimulatedClock(T_FACTORY), lock=True)
    name = f"json-test-{next(_names)}"
    port = inproc.register(name, DeviceController(made, sim_control=True))
    fleet = tmp_path / "fleet"
    plain("fleet", "create", "--count", 3, "--batch-secret", BATCH, "--model", "totp30", "--out", fleet,
          "--ppm-spread", 0, "--at", MADE_S)
    try:
        yield World(port, made, fleet)
    finally:
        inproc.unregister(name)


#: (shape, arguments): {port} and {token} are filled in from the world.
ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("info", ("info", "--port", "{port}")),
    ("press", ("press", "--port", "{port}")),
    ("long-press", ("long-press", "--port", "{port}")),
    ("display", ("display", "--port", "{port}")),
    ("time", ("time", "--port", "{port}")),
    ("time", ("time", "--port", "{port}", "--set", "2030-01-01T00:00:00Z")),
    ("time", ("time", "--port", "{port}", "--set", "now")),
    ("token show", ("token", "show", "--state", "{token}", "--at", str(DAY_S))),
    ("token show", ("token", "show", "--state", "{token}", "--at", "now")),
    ("codes", ("codes", "--state", "{token}", "--at", str(DAY_S), "--count", "3")),
    ("codes", ("codes", "--key", RFC_KEY, "--at", "59", "--digits", "8", "--algorithm", "SHA256")),
    ("codes", ("codes", "--key", RFC_KEY, "--hotp", "--counter", "5", "--count", "2")),
    ("codes --validate", ("codes", "--key", RFC_KEY, "--at", "59", "--digits", "8", "--validate", "94287082",
                          "--window", "1")),
    ("codes --validate", ("codes", "--key", RFC_KEY, "--hotp", "--validate", "755224")),
]


@pytest.mark.parametrize(("command", "args"), ROWS, ids=[" ".join(a[:3]) + f" [{n}]" for n, (_, a) in enumerate(ROWS)])
def test_json_shape(world: World, command: str, args: tuple[str, ...]) -> None:
    filled = [a.format(port=world.port, token=world.token_file()) for a in args]
    shaped(command, *filled)


def test_json_values_match_the_text(world: World) -> None:
    info = shaped("info", "info", "--port", world.port)
    assert info["serial"] == DEVICE_SERIAL and info["kind"] == "totp" and info["period"] == 30
    assert info["counter"] is None and info["locked"] is True and info["battery_percent"] == 100
    pressed = shaped("press", "press", "--port", world.port)
    assert pressed["code"] == totp(SEED, world.token.device_time_ns() // NS_PER_SECOND) == pressed["text"]
    shown = shaped("display", "display", "--port", world.port)
    assert shown["screen"] == "code" and shown["text"] == pressed["code"] and len(shown["masks"]) == 6
    clock = shaped("time", "time", "--port", world.port, "--set", "2030-01-01T00:00:00Z")
    assert clock["set"] is True and clock["token_clock"] == "2030-01-01T00:00:00Z"
    assert clock["token_clock_ns"] == 1_893_456_000 * NS_PER_SECOND
    assert clock["offset_ns"] == clock["token_clock_ns"] - clock["host_clock_ns"]
    show = shaped("token show", "token", "show", "--state", world.token_file(), "--at", "2026-01-02T00:00:15Z")
    assert show["serial"] == FIRST and show["true_time"] == "2026-01-02T00:00:15Z" and show["offset_ns"] == 0
    assert show["display"]["screen"] == "off"
    text_codes = plain("codes", "--state", world.token_file(), "--at", DAY_S, "--count", 2).split()
    assert shaped("codes", "codes", "--state", world.token_file(), "--at", DAY_S, "--count", 2)["codes"] == text_codes
    sha256 = shaped("codes", "codes", "--key", RFC_KEY, "--at", 59, "--digits", 8, "--algorithm", "Sha256")
    assert sha256["codes"] == ["32247374"] and sha256["at"] == "1970-01-01T00:00:59Z"  # RFC 6238 appendix B
    hotp = shaped("codes", "codes", "--key", RFC_KEY, "--hotp", "--count", 2)
    assert hotp["codes"] == ["755224", "287082"] and hotp["at_ns"] is None and hotp["at"] is None
    found = shaped("codes --validate", "codes", "--key", RFC_KEY, "--hotp", "--validate", "287082", "--window", 3)
    assert found == {"ok": True, "kind": "hotp", "start": 0, "first": 0, "last": 3, "match": 1, "offset": 1}


def test_json_refusals_are_results(world: World) -> None:
    missed = shaped("codes --validate", "codes", "--key", RFC_KEY, "--hotp", "--validate", "000000", code=1)
    assert missed["reason"] == "no-match" and missed["match"] is None and missed["offset"] is None
    args = ("provision", "--port", world.port, "--seed", SEED.hex(), "--serial", DEVICE_SERIAL, "--model", "totp30")
    locked = shaped("device", *args, code=1)
    assert locked["reason"] == "locked" and "PROVISION" in locked["message"]
    with TokenClient.open(world.port) as client:
        client.set_battery(0)
    blank = shaped("press", "press", "--port", world.port, code=1)
    assert blank["reason"] == "display-blank" and blank["code"] is None and blank["text"] == ""


def test_provision_json(tmp_path: Path) -> None:
    made = manufacture(model=get_model("totp30"), seed=SEED, serial=DEVICE_SERIAL, device_key=DEVICE_KEY,
                       clock=SimulatedClock(T_FACTORY), lock=False)
    port = inproc.register(f"json-test-{next(_names)}", DeviceController(made, sim_control=True))
    try:
        done = shaped("provision", "provision", "--port", port, "--seed", "-", "--serial", "2000000003",
                      "--model", "TOTP30", "--lock", stdin=SEED.hex() + "\n")
        assert done == {"ok": True, "port": port, "serial": "2000000003", "model": "totp30", "locked": True}
    finally:
        inproc.unregister(port.removeprefix("vtoken://"))


@pytest.mark.parametrize("args", [
    ("token", "show", "--state", "{missing}"),
    ("codes", "--state", "{missing}"),
    ("codes", "--key", RFC_KEY, "--at", "2026-01-01T00:00:00"),
    ("validator", "--db", "{db}", "import", "{missing}"),
    ("info", "--port", "vtoken://nobody-here"),
])
def test_json_errors_stay_on_stderr(tmp_path: Path, args: tuple[str, ...]) -> None:
    """An error is no result: its text goes to stderr, stdout stays empty, exit 2 (bad input) or 1."""
    filled = [a.format(missing=tmp_path / "missing", db=tmp_path / "v.db") for a in args]
    result = run(*filled, "--json")
    assert result.exit_code in (1, 2) and result.stdout == ""
    assert "Error" in result.stderr and "Traceback" not in result.output


# --- the validator and the portal, as stories -------------------------------------------------------------


def test_validator_json(world: World, tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    plain("validator", "--db", db, "init")
    v = ("validator", "--db", db)
    imported = shaped("validator import", *v, "import", world.fleet / "tokens.pskc", "--at", MADE_S)
    assert imported["count"] == 3 and imported["kinds"] == {"totp": 3} and imported["serials"] == [FIRST, SECOND, THIRD]
    listed = shaped("validator list", *v, "list")
    assert listed["count"] == 3 and {t["state"] for t in listed["tokens"]} == {"new"}
    c1, c2 = plain("codes", "--state", world.token_file(), "--at", DAY_S - 30, "--count", 2).split()
    registered = shaped("validator register", *v, "register", FIRST, c1, c2, "--at", DAY_S)
    assert registered["reason"] == "registered" and registered["serial"] == FIRST
    (code,) = plain("codes", "--state", world.token_file(), "--at", DAY_S + 60).split()
    accepted = shaped("validator check", *v, "check", FIRST, code, "--at", DAY_S + 60)
    assert accepted["reason"] == "accepted" and accepted["offset_ns"] == 0
    replay = shaped("validator", *v, "check", FIRST, code, "--at", DAY_S + 61, code=1)
    assert replay["reason"] == "replay"
    unknown = shaped("validator", *v, "check", "1000000006", "123456", "--at", "now", code=1)
    assert unknown["reason"] == "mistyped-serial"
    show = shaped("validator show", *v, "show", FIRST, "--at", DAY_S + 90)
    assert show["registered"] is True and show["state"] == "registered" and show["offset_ns"] is not None
    assert [h["event"] for h in show["history"]] == ["register", "accept"]
    assert show["at"] == "2026-01-02T00:01:45Z"
    new = shaped("validator show", *v, "show", SECOND, "--at", "now")
    assert new["offset_ns"] is None and new["history"] == []
    shaped("validator unlock", *v, "unlock", FIRST, "--at", DAY_S + 120)
    creds = shaped("validator token list", *v, "token", "list")
    assert creds["count"] == 1 and creds["credentials"][0]["kind"] == "admin"
    assert creds["credentials"][0]["revoked"] is None


def test_portal_json_story(world: World, tmp_path: Path) -> None:
    """Each step of a user's story, with --json; every portal shape is reached."""
    db = tmp_path / "v.db"
    plain("validator", "--db", db, "init")
    plain("validator", "--db", db, "import", world.fleet / "tokens.pskc", "--at", MADE_S)
    reached: set[str] = set()

    def p(command: str, *args: object, code: int = 0) -> dict[str, Any]:
        name = "portal" if code else f"portal {command}"
        reached.add(name)
        return shaped(name, "portal", "--db", db, *command.split(), *args, code=code)

    def codes(serial: str, at_s: int, count: int = 1) -> list[str]:
        return plain("codes", "--state", world.token_file(serial), "--at", at_s, "--count", count).split()

    def last_message(to: str) -> str:
        messages = p("outbox", "--to", to)["messages"]
        assert messages
        return str(messages[-1]["body"])

    t0 = MADE_S + 60 * DAY + 9 * HOUR
    assert p("account create", EMAIL, NAME, "--country", "US", "--at", t0)["account"]["id"] == "ACC-1"
    placed = p("order place", "ACC-1", "--product", "token-proofed", "--payment", "invoice", "--at", t0)["order"]
    assert placed["id"] == "SO-12345" and placed["state"] == "awaiting-payment" and placed["paid"] is None
    assert p("key issue", "--at", t0 + HOUR)["order_ids"] == []
    assert p("order pay", "SO-12345", "--at", t0 + HOUR)["order"]["paid_ns"] == (t0 + HOUR) * NS_PER_SECOND
    assert p("key issue", "--at", t0 + HOUR)["order_ids"] == ["SO-12345"]
    key = re.search(r"license key: (\S+)", last_message(EMAIL), re.IGNORECASE).group(1)
    refused = p("order ship", "SO-12345", "bad!serial", "--at", t0 + 2 * HOUR, code=1)
    assert refused["reason"] == "serial-malformed"
    assert p("order ship", "SO-12345", FIRST, "--at", t0 + 2 * HOUR)["order"]["serial"] == FIRST
    assert p("order deliver", "SO-12345", "--at", t0 + DAY)["order"]["delivered"] is not None
    at = t0 + DAY + HOUR
    entered = p("key enter", "ACC-1", key, "--product", "token-proofed", "--name", NAME, "--country", "US",
                "--legal-name", NAME, "--at", at)["credential"]
    assert entered["state"] == "proofing-required"
    options = p("proof options", "ACC-1")
    assert options["methods"] == ["instant", "video"] and options["questions"]
    failed = p("proof instant", "ACC-1", "--outcome", "fail", "--at", at)
    assert failed["proofing"]["state"] == "failed" and failed["credential"]["state"] == "proofing-required"
    assert p("proof instant", "ACC-1", "--at", at, code=1)["reason"] == "instant-already-tried"
    session = at + DAY
    booked = p("proof book", "ACC-1", "--session", session, "--at", at)["proofing"]
    assert booked["session_ns"] == session * NS_PER_SECOND
    video = p("proof video", booked["id"], "--at", session + 300)
    assert video["proofing"]["state"] == "passed" and re.fullmatch(r"\d{10}", video["activation_code"])
    activated = p("activate", "ACC-1", video["activation_code"], "--at", session + 600)["credential"]
    assert activated["state"] == "activated" and activated["expires"].startswith("2027-")
    reg = session + 900 + 15
    c1, c2 = codes(FIRST, reg - 30, 2)
    assert p("register", "ACC-1", FIRST, c1, c2, "--at", reg)["credential"]["state"] == "registered"
    assert p("app add", "Payroll", "--policy", "hardware-only")["application"]["id"] == "payroll"
    p("app add", "Wiki", "--policy", "any-otp")
    assert [a["policy"] for a in p("app list")["applications"]] == ["hardware-only", "any-otp"]
    day = reg + DAY
    (code,) = codes(FIRST, day)
    signed = p("signin", "payroll", "ACC-1", "--token", code, "--at", day)["signin"]
    assert signed["factor"] == "token" and signed["at_ns"] == day * NS_PER_SECOND
    assert p("signin", "payroll", "ACC-1", "--token", code, "--at", day + 1, code=1)["reason"] == "token-replay"
    added = p("phone add", "ACC-1", PHONE, "--at", day)
    assert added["channel"] == "sms" and added["account"]["phone_verified"] is False
    sms = re.sub(r"\D", "", last_message(PHONE).rsplit("is ", 1)[1])
    assert p("phone verify", "ACC-1", sms, "--at", day + 60)["account"]["phone_verified"] is True
    sent = p("phone send", "ACC-1", "--voice", "--at", day + 120)
    assert sent["channel"] == "voice" and sent["valid_for_ns"] == 300 * NS_PER_SECOND
    locked = p("phone lock", "ACC-1", "--reason", "SIM swap", "--at", day + 130)["account"]
    assert locked["phone_otp_locked"] is True and locked["phone_otp_locked_at"] is not None
    unlocked = p("phone unlock", "ACC-1", "--at", day + 140)
    assert unlocked["was_locked"] is True and unlocked["account"]["phone_otp_locked"] is False
    lost = p("lost", "ACC-1", "--at", day + DAY)["credential"]
    assert lost["state"] == "lost" and lost["lost"] is not None
    replaced = p("replace", "ACC-1", "--at", day + DAY + 60)
    assert replaced["order"]["replacement_of"] == "CRED-1"
    shipped = p("order ship-replacement", replaced["order"]["id"], SECOND, "--at", day + 2 * DAY)["order"]
    assert shipped["serial"] == SECOND
    shown = p("account show", "ACC-1")
    assert [c["state"] for c in shown["credentials"]] == ["lost", "proofing-required"] and len(shown["orders"]) == 2
    assert {m["channel"] for m in p("outbox")["messages"]} == {"email", "sms", "voice"}
    assert p("account show", "ACC-9", code=1)["reason"] == "unknown-account"
    assert reached >= {name for name in SHAPES if name.startswith("portal ")} | {"portal"}


# --- every command that reports state or a result has --json ----------------------------------------------


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from _commands(command, path + " ")
        else:
            yield path, command


def _has_json(command: click.Command) -> bool:
    return any(param.name == "as_json" and "--json" in param.opts for param in command.params)


#: Commands that change or print things other than a state or result (or print secrets once).
NO_JSON = {
    "validator init", "validator rotate-key", "validator serve", "validator token create", "validator token revoke",
}


def test_every_documented_shape_is_a_json_command() -> None:
    commands = dict(_commands(main))
    for name in SHAPES:
        command = commands[name.removesuffix(" --validate")]
        assert _has_json(command), name


@pytest.mark.parametrize("group", ["info", "press", "long-press", "display", "time", "token show", "codes",
                                   "validator", "portal"])
def test_every_reporting_command_has_json(group: str) -> None:
    """Every command of these groups that reports state or a result takes --json and has a documented shape."""
    for name, command in _commands(main):
        if (name == group or name.startswith(group + " ")) and name not in NO_JSON:
            assert _has_json(command), f"{name} has no --json"
            assert name in SHAPES, f"{name} has no documented shape"



def test_a_busy_device_is_a_refusal_under_json(capsys: pytest.CaptureFixture[str]) -> None:
    """A device serving another client refuses: under --json that is "ok": false, reason "busy", exit 1."""
    from host.cli.device_cmd import device_refusals
    from host.connection import DeviceBusyError

    with pytest.raises(SystemExit) as stopped, device_refusals(True):
        raise DeviceBusyError("device busy: another client is connected (socket://127.0.0.1:7000)")
    assert stopped.value.code == 1
    value = json.loads(capsys.readouterr().out)
    conforms(value, REFUSAL_SHAPES["device"])
    assert value["reason"] == "busy"
    with pytest.raises(DeviceBusyError), device_refusals(False):  # text mode: an error on stderr, exit 1
        raise DeviceBusyError("device busy")
