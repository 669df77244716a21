"""``vtoken info|press|long-press|display|time|provision --port URL`` through click's runner."""

from __future__ import annotations

import itertools
import os
import tty
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from firmware_sim.device import DeviceController
from firmware_sim.display import DIGIT_MASKS, Indicators, render_art
from firmware_sim.factory import manufacture
from firmware_sim.models import get_model
from firmware_sim.token import Token
from host.cli.main import main
from host.client import TokenClient
from host.timearg import parse_time_ns
from vserial import inproc
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.oath import hotp, totp

SEED = bytes.fromhex("8f3ac1d27be4905a6c11fe2d93b7480c5de1a6f2")
NEW_SEED_HEX = "c0ffee00" + "5ec12e70" * 3 + "feedface"
DEVICE_KEY = bytes(range(32))
T_FACTORY = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z
SERIAL = "1000000005"
#: A serial with a correct check digit for provisioning tests.
NEW_SERIAL = "2000000003"
_names = itertools.count()


@pytest.fixture
def device() -> Iterator[Callable[..., tuple[str, Token]]]:
    """Register in-process devices; returns (url, token)."""
    names: list[str] = []

    def make(model: str = "totp30", *, lock: bool = True, sim_control: bool = True) -> tuple[str, Token]:
        token = manufacture(model=get_model(model), seed=SEED, serial=SERIAL, device_key=DEVICE_KEY,
                            clock=SimulatedClock(T_FACTORY), lock=lock)
        name = f"cli-test-{next(_names)}"
        names.append(name)
        return inproc.register(name, DeviceController(token, sim_control=sim_control)), token

    yield make
    for name in names:
        inproc.unregister(name)


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def ok(*args: str, stdin: str | None = None) -> Result:
    result = run(*args, stdin=stdin)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    return result


def assert_clean_error(result: Result, words: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert words in result.stderr, result.stderr


def assert_no_secret(result: Result) -> None:
    text = result.output.lower()
    assert SEED.hex() not in text and NEW_SEED_HEX not in text


def test_info(device: Any) -> None:
    url, _ = device()
    out = ok("info", "--port", url).output
    assert f"port:          {url}" in out
    assert f"serial:        {SERIAL}" in out
    assert "model:         totp30 (totp, sha1, 6 digits, 30 s, T0 0)" in out
    assert "firmware:      1.2.0, locked" in out
    assert "battery:       100 %" in out


def test_press_prints_the_code(device: Any) -> None:
    url, token = device()
    result = ok("press", "--port", url)
    assert result.output == totp(SEED, token.device_time_ns() // NS_PER_SECOND) + "\n"


def test_press_on_a_hotp_token_counts(device: Any) -> None:
    url, token = device("hotp")
    codes = [ok("press", "--port", url).output.strip() for _ in range(3)]
    assert codes == [hotp(SEED, c) for c in range(3)]
    assert token.flash.counter == 3
    assert "next counter 3" in ok("info", "--port", url).output


def test_long_press(device: Any) -> None:
    url, _ = device()
    assert ok("long-press", "--port", url).output == SERIAL[-6:] + "\n"


def test_display_art(device: Any) -> None:
    url, token = device()
    assert ok("display", "--port", url).output == "(display off)\n"
    code = ok("press", "--port", url).output.strip()
    out = ok("display", "--port", url).output
    now = token.now_ns()
    assert out == render_art(token.display.masks(now), token.display.indicators(now)) + "\n"
    assert " --- " in out and "|" in out
    assert out == render_art([DIGIT_MASKS[int(c)] for c in code], Indicators(countdown_bars=6, countdown_total=6)) + "\n"


def test_time_get_and_set(device: Any) -> None:
    url, token = device()
    out = ok("time", "--port", url).output
    assert "token clock:   2026-01-01T00:00:00Z" in out
    assert "offset:        " in out and " s (token minus this computer's clock)" in out
    out = ok("time", "--port", url, "--set", "2030-06-01T12:00:00+02:00").output
    assert "token clock set to 2030-06-01T10:00:00Z" in out
    assert "token clock:   2030-06-01T10:00:00Z" in out
    assert token.device_time_ns() == parse_time_ns("2030-06-01T10:00:00Z")
    ok("time", "--port", url, "--set", "now")
    assert abs(token.device_time_ns() - T_FACTORY) > 86_400 * NS_PER_SECOND  # now is not 2026-01-01 any more


def test_time_set_refuses_a_time_without_zone(device: Any) -> None:
    url, _ = device()
    assert_clean_error(run("time", "--port", url, "--set", "2030-06-01T12:00:00"), "no time zone", code=2)


def test_provision_lock_and_refusal(device: Any) -> None:
    url, token = device("totp30", lock=False)
    args = ("provision", "--port", url, "--seed", NEW_SEED_HEX, "--serial", NEW_SERIAL, "--model", "totp30")
    result = ok(*args)
    assert result.output == f"token {NEW_SERIAL} provisioned (totp30)\n"
    assert_no_secret(result)
    code = ok("press", "--port", url).output.strip()
    assert code == totp(bytes.fromhex(NEW_SEED_HEX), token.device_time_ns() // NS_PER_SECOND)
    result = ok(*args, "--lock")
    assert result.output == f"token {NEW_SERIAL} provisioned (totp30)\ntoken {NEW_SERIAL} locked\n"
    assert "locked" in ok("info", "--port", url).output
    refused = run(*args)
    assert_clean_error(refused, "device refused PROVISION: locked (")
    assert_no_secret(refused)


def test_provision_reads_the_seed_from_stdin(device: Any) -> None:
    url, token = device("hotp", lock=False)
    ok("provision", "--port", url, "--seed", "-", "--serial", NEW_SERIAL, "--model", "hotp", "--counter", "7",
       stdin=NEW_SEED_HEX + "\n")
    assert ok("press", "--port", url).output.strip() == hotp(bytes.fromhex(NEW_SEED_HEX), 7)


def test_provision_refuses_bad_input_before_talking(device: Any) -> None:
    url, token = device(lock=False)
    bad_seed = run("provision", "--port", url, "--seed", "zz" + NEW_SEED_HEX, "--serial", NEW_SERIAL,
                   "--model", "totp30")
    assert_clean_error(bad_seed, "--seed", code=2)
    assert_no_secret(bad_seed)
    too_wide = run("provision", "--port", url, "--seed", NEW_SEED_HEX, "--serial", NEW_SERIAL,
                   "--model", "totp30-8")  # an 8-digit model on a 6-digit display
    assert_clean_error(too_wide, "device refused PROVISION: bad value (")
    assert_no_secret(too_wide)
    assert token.serial == SERIAL


def test_press_on_a_dead_token_is_a_clean_error(device: Any) -> None:
    url, _ = device()
    with TokenClient.open(url) as client:
        client.set_battery(0)
    assert_clean_error(run("press", "--port", url), "the token shows nothing (is its battery dead?)")


def test_sim_free_production_token_still_answers(device: Any) -> None:
    url, _ = device(sim_control=False)
    assert "sim control:   no" in ok("info", "--port", url).output


@pytest.mark.parametrize("command", ["info", "press", "long-press", "display", "time"])
@pytest.mark.parametrize(("port", "words"), [
    ("/dev/pts/9999", "cannot open /dev/pts/9999: no such port"),
    ("socket://127.0.0.1:1", "cannot open socket://127.0.0.1:1: connection refused"),
    ("vtoken://nobody-here", "cannot open vtoken://nobody-here: no in-process device"),
])
def test_ports_that_do_not_exist(command: str, port: str, words: str) -> None:
    assert_clean_error(run(command, "--port", port, "--timeout", "0.05"), words)


def test_provision_on_a_missing_port() -> None:
    result = run("provision", "--port", "/dev/pts/9999", "--seed", NEW_SEED_HEX, "--serial", NEW_SERIAL,
                 "--model", "totp30")
    assert_clean_error(result, "cannot open /dev/pts/9999: no such port")
    assert_no_secret(result)


def test_a_port_that_does_not_answer() -> None:
    master, slave = os.openpty()
    try:
        tty.setraw(master)
        path = os.ttyname(slave)
        result = run("info", "--port", path, "--timeout", "0.05", "--retries", "1")
    finally:
        os.close(master)
        os.close(slave)
    assert_clean_error(result, f"no answer from {path} after 2 tries")


def test_port_is_required() -> None:
    result = run("press")
    assert result.exit_code == 2
    assert "--port" in result.output


# --- provision: RFC 4226 seed length and the serial's check digit ------------------------------------------

SHORT_SEED_HEX = "c0ffee00" * 3 + "5ec1"  # 14 bytes: below RFC 4226's 128 bits
MISTYPED_SERIAL = "2000000030"  # NEW_SERIAL with its last two digits swapped


@pytest.mark.parametrize("seed_hex", ["ab", SHORT_SEED_HEX])
def test_provision_refuses_a_short_seed(device: Any, seed_hex: str) -> None:
    url, token = device(lock=False)
    result = run("provision", "--port", url, "--seed", seed_hex, "--serial", NEW_SERIAL, "--model", "totp30")
    assert_clean_error(result, "RFC 4226 requires at least 16", code=2)
    assert "--allow-short-seed" in result.stderr and SHORT_SEED_HEX not in result.output
    assert token.serial == SERIAL  # nothing was sent


def test_provision_takes_a_short_seed_when_told(device: Any) -> None:
    url, token = device(lock=False)
    ok("provision", "--port", url, "--seed", "ab", "--serial", NEW_SERIAL, "--model", "totp30", "--allow-short-seed")
    assert ok("press", "--port", url).output.strip() == totp(b"\xab", token.device_time_ns() // NS_PER_SECOND)


def test_provision_takes_16_bytes_without_a_word(device: Any) -> None:
    url, _ = device(lock=False)
    result = ok("provision", "--port", url, "--seed", NEW_SEED_HEX[:32], "--serial", NEW_SERIAL, "--model", "totp30")
    assert result.stderr == ""


def test_provision_refuses_a_mistyped_serial(device: Any) -> None:
    url, token = device(lock=False)
    result = run("provision", "--port", url, "--seed", NEW_SEED_HEX, "--serial", MISTYPED_SERIAL, "--model", "totp30")
    assert_clean_error(result, f"serial {MISTYPED_SERIAL} fails its check digit: probably mistyped", code=2)
    assert "--force-serial" in result.stderr
    assert token.serial == SERIAL


def test_provision_takes_a_mistyped_serial_with_force_and_warns(device: Any) -> None:
    url, token = device(lock=False)
    result = ok("provision", "--port", url, "--seed", NEW_SEED_HEX, "--serial", "200-000-003-0", "--model", "totp30",
                "--force-serial")
    assert result.stdout == f"token {MISTYPED_SERIAL} provisioned (totp30)\n"
    assert result.stderr.startswith(f"warning: serial {MISTYPED_SERIAL} fails its check digit: probably mistyped")
    assert token.serial == MISTYPED_SERIAL


@pytest.mark.parametrize("serial", ["ZZ8000000001", "306EUO4-00960", "9876543210123", "987654321"])
def test_provision_takes_vendor_serials(device: Any, serial: str) -> None:
    """Vendor serials (letters, or another length) carry no check digit: no warning."""
    url, token = device(lock=False)
    result = ok("provision", "--port", url, "--seed", NEW_SEED_HEX, "--serial", serial, "--model", "TOTP30")
    assert result.stderr == "" and token.serial == serial


def test_time_set_now_in_any_case(device: Any) -> None:
    url, token = device()
    ok("time", "--port", url, "--set", " NOW ")
    assert abs(token.device_time_ns() - T_FACTORY) > 86_400 * NS_PER_SECOND
