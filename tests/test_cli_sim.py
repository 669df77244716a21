"""``vtoken sim advance|temperature|crystal|battery|power-cycle`` on a served token (--port) and a file (--state)."""

from __future__ import annotations

import itertools
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from firmware_sim.device import DeviceController
from firmware_sim.factory import Physics, manufacture
from firmware_sim.models import get_model
from firmware_sim.statefile import load_token, locked, save_token
from firmware_sim.token import Token
from host.cli import sim_cmd
from host.cli.main import main
from host.cli.sim_cmd import MAX_ADVANCE_NS, parse_duration_ns
from vserial import inproc
from vserial.ports import TcpPort
from vserial.server import BackgroundServer, DeviceServer
from vtoken.clock import NS_PER_DAY, NS_PER_HOUR, NS_PER_SECOND, NS_PER_YEAR, SimulatedClock
from vtoken.errors import InvalidInputError
from vtoken.oath import hotp, totp

SEED = b"12345678901234567890"
DEVICE_KEY = bytes(range(32))
T0 = 1_767_225_600 * NS_PER_SECOND  # 2026-01-01T00:00:00Z
SERIAL = "1000000005"
_names = itertools.count()

JSON_KEYS = {
    "ok", "action", "port", "state", "serial", "true_time_ns", "true_time", "device_time_ns", "device_time",
    "offset_ns", "battery_per_mille", "battery_percent", "battery_low",
}
NOT_ALLOWED = ("Error: the token refuses simulation controls: it is served as a production token "
               "(serve it with 'vtoken serve --sim' to drive its simulation)\n")
SERVED = "device busy: the token is served by another process; use --port"


def make_token(model: str = "totp30", ppm: int = 0) -> Token:
    return manufacture(model=get_model(model), seed=SEED, serial=SERIAL, device_key=DEVICE_KEY,
                       clock=SimulatedClock(T0), physics=Physics(ppm=ppm))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "fob.token"
    save_token(make_token(), path)
    return path


@pytest.fixture
def device() -> Iterator[Callable[..., tuple[str, Token]]]:
    """In-process tokens at vtoken://NAME; returns (url, token)."""
    names: list[str] = []

    def make(*, sim_control: bool = True, model: str = "totp30") -> tuple[str, Token]:
        token = make_token(model)
        name = f"sim-test-{next(_names)}"
        names.append(name)
        return inproc.register(name, DeviceController(token, sim_control=sim_control)), token

    yield make
    for name in names:
        inproc.unregister(name)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.exception is None and result.stderr == ""
    return result


def ok_json(*args: str) -> dict[str, Any]:
    data = json.loads(ok(*args, "--json").stdout)
    assert isinstance(data, dict) and data["ok"] is True
    return data


# --- durations ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "ns"), [
    ("30s", 30 * NS_PER_SECOND), ("5m", 300 * NS_PER_SECOND), ("5min", 300 * NS_PER_SECOND),
    ("1.5h", 3 * NS_PER_HOUR // 2), ("1d", NS_PER_DAY), ("2w", 14 * NS_PER_DAY), ("1y", 365 * NS_PER_DAY),
    ("250ms", NS_PER_SECOND // 4), ("90", 90 * NS_PER_SECOND), ("0.000000001", 1), ("0", 0), (" 1Y ", NS_PER_YEAR),
    ("100y", MAX_ADVANCE_NS),
])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(("text", "words"), [
    ("101y", "more than 100 years"), ("-1d", "time only moves forward"), ("1 fortnight", "unknown unit"),
    ("soon", "cannot read"), ("0.0000000001s", "whole number of nanoseconds"), ("", "cannot read"),
])
def test_bad_durations(text: str, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        parse_duration_ns(text)


def test_a_year_is_365_days() -> None:
    assert sim_cmd.DURATION_UNITS["y"] == NS_PER_YEAR == 365 * NS_PER_DAY


# --- on a token file ----------------------------------------------------------------------------------------


def test_advance_a_token_file_a_year_with_a_fast_crystal(token_file: Path) -> None:
    ok("sim", "crystal", "20", "--state", str(token_file))
    result = ok("sim", "advance", "1y", "--state", str(token_file))
    assert result.stdout == (
        "token 1000000005: advanced 1 y\n"
        "true time:     2027-01-01T00:00:00Z\n"
        "token clock:   2027-01-01T00:10:30.72Z\n"
        "offset:        +630.720 s (token clock minus true time)\n"
        "battery:       80 %\n"
    )
    saved = load_token(token_file, SimulatedClock(T0 + NS_PER_YEAR))
    assert saved.offset_ns() == 630_720 * 10**6  # the file kept the year and the drift


def test_json_shape_of_every_command(token_file: Path) -> None:
    state = str(token_file)
    advanced = ok_json("sim", "advance", "90s", "--state", state)
    assert set(advanced) == JSON_KEYS | {"advanced_ns"}
    assert (advanced["action"], advanced["state"], advanced["port"], advanced["serial"]) == (
        "advance", state, None, SERIAL)
    assert advanced["advanced_ns"] == 90 * NS_PER_SECOND
    assert advanced["true_time_ns"] == T0 + 90 * NS_PER_SECOND and advanced["true_time"] == "2026-01-01T00:01:30Z"
    assert advanced["device_time_ns"] - advanced["true_time_ns"] == advanced["offset_ns"] == 0
    temperature = ok_json("sim", "temperature", "-5.5", "--state", state)
    assert set(temperature) == JSON_KEYS | {"temperature_c"} and temperature["temperature_c"] == -5.5
    crystal = ok_json("sim", "crystal", "-15.5", "--state", state)
    assert set(crystal) == JSON_KEYS | {"crystal_ppm"} and crystal["crystal_ppm"] == -15.5
    battery = ok_json("sim", "battery", "8", "--state", state)
    assert set(battery) == JSON_KEYS
    assert (battery["battery_per_mille"], battery["battery_percent"], battery["battery_low"]) == (80, 8.0, True)
    cycled = ok_json("sim", "power-cycle", "--state", state)
    assert set(cycled) == JSON_KEYS and cycled["action"] == "power-cycle"


def test_temperature_and_battery_act_on_the_file(token_file: Path) -> None:
    ok("sim", "temperature", "-20", "--state", str(token_file))  # a negative argument, not an option
    ok("sim", "advance", "1d", "--state", str(token_file))
    offset = ok_json("sim", "advance", "0", "--state", str(token_file))["offset_ns"]
    assert offset == -int(0.034 * 45**2 * 86_400 * 1000)  # -0.034 ppm/°C² × (25 − −20)² over a day, in ns
    assert ok("sim", "battery", "0", "--state", str(token_file)).stdout.endswith("battery:       0 % (LOW)\n")
    fob = load_token(token_file, SimulatedClock(T0 + NS_PER_DAY))
    assert fob.battery.is_dead(fob.now_ns())
    ok("sim", "battery", "100%", "--state", str(token_file))  # revived
    fob = load_token(token_file, SimulatedClock(T0 + NS_PER_DAY))
    assert fob.rtc.running and fob.press() == totp(SEED, fob.device_time_ns() // NS_PER_SECOND)


def test_a_token_file_being_served_is_refused(token_file: Path) -> None:
    before = token_file.read_bytes()
    with locked(token_file, wait=False):  # what 'vtoken serve --state' holds while it runs
        refused = run("sim", "advance", "1d", "--state", str(token_file))
        refused_json = run("sim", "advance", "1d", "--state", str(token_file), "--json")
    assert (refused.exit_code, refused.stdout, refused.stderr) == (1, "", f"Error: {SERVED}\n")
    assert refused_json.exit_code == 1
    assert json.loads(refused_json.stdout) == {
        "ok": False, "reason": "busy", "message": SERVED, "action": "advance", "port": None,
        "state": str(token_file),
    }
    assert token_file.read_bytes() == before


@pytest.mark.parametrize(("args", "words"), [
    (("sim", "advance", "1d"), "give --port URL (a served token) or --state FILE"),
    (("sim", "advance", "1d", "--port", "vtoken://x", "--state", "STATE"), "not both"),
    (("sim", "advance", "101y", "--state", "STATE"), "more than 100 years"),
    (("sim", "temperature", "250", "--state", "STATE"), "temperature must be between -100 and 200 °C, not 250"),
    (("sim", "crystal", "-1001", "--state", "STATE"), "crystal error must be between -1000 and 1000 ppm"),
    (("sim", "battery", "101", "--state", "STATE"), "battery must be between 0 and 100 %, not 101"),
    (("sim", "battery", "lots", "--state", "STATE"), "battery must be a number"),
])
def test_bad_input_exits_2_and_changes_nothing(token_file: Path, args: tuple[str, ...], words: str) -> None:
    before = token_file.read_bytes()
    result = run(*(str(token_file) if arg == "STATE" else arg for arg in args))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: ") and words in result.stderr and "Traceback" not in result.output
    assert token_file.read_bytes() == before


# --- over the wire ------------------------------------------------------------------------------------------


def test_every_command_over_the_wire(device: Any) -> None:
    url, token = device()
    assert ok_json("sim", "crystal", "20", "--port", url)["port"] == url
    advanced = ok_json("sim", "advance", "1y", "--port", url)
    assert advanced["true_time_ns"] == token.now_ns() == T0 + NS_PER_YEAR
    assert advanced["offset_ns"] == token.offset_ns() == 630_720 * 10**6
    ok("sim", "temperature", "-20", "--port", url)
    assert token.rtc.to_dict() != make_token().rtc.to_dict()
    assert ok_json("sim", "battery", "50", "--port", url)["battery_per_mille"] == 500
    token.press()
    assert token.display.state(token.now_ns()).value == "code"
    ok("sim", "power-cycle", "--port", url)
    assert token.display.state(token.now_ns()).value == "off"


def test_a_production_token_refuses_clearly(device: Any) -> None:
    url, token = device(sim_control=False)
    for args in (("advance", "1d"), ("temperature", "30"), ("crystal", "5"), ("battery", "50"), ("power-cycle",)):
        result = run("sim", *args, "--port", url)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", NOT_ALLOWED), result.output
    as_json = run("sim", "advance", "1d", "--port", url, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == {
        "ok": False, "reason": "not-allowed", "message": NOT_ALLOWED[len("Error: "):-1], "action": "advance",
        "port": url, "state": None,
    }
    assert token.now_ns() == T0


def test_the_docstring_examples_work(tmp_path: Path) -> None:
    """Every ``vtoken sim`` line in the help texts runs: the port one against a served token, the file one on a file."""
    token = make_token()
    port = TcpPort(DeviceController(token, sim_control=True), "127.0.0.1", 0)
    examples = [line.strip() for command in (sim_cmd.sim, *sim_cmd.sim.commands.values())
                for line in (command.help or "").splitlines() if line.strip().startswith("vtoken sim ")]
    assert len(examples) == 2 + 2 * len(sim_cmd.sim.commands)
    save_token(make_token(), tmp_path / "fob.token")
    with BackgroundServer(DeviceServer([port])):
        for example in examples:
            args = shlex.split(example.replace("socket://127.0.0.1:7777", port.url)
                               .replace("fob.token", str(tmp_path / "fob.token")))[1:]
            ok(*args)
    assert token.clock.now_ns() == T0 + 2 * NS_PER_YEAR  # 'sim' and 'sim advance' each show 'advance 1y'
    assert token.battery.level(token.now_ns()) == Fraction(8, 100)  # then temperature, crystal, battery 8 ...


def test_a_shell_session_serve_advance_a_year_press(tmp_path: Path) -> None:
    """The issue's script: make a token, serve it, advance its clock a year, press it; --state is refused meanwhile."""
    from tests.test_serve import start_serve

    state = tmp_path / "t.token"
    cli = [sys.executable, "-m", "host.cli.main"]
    subprocess.run([*cli, "token", "new", "--state", str(state), "--model", "hotp", "--secret", SEED.hex(),
                    "--serial", SERIAL, "--at", "2026-01-01T00:00:00Z"], check=True, capture_output=True)
    served = start_serve(state, "--sim", "--no-pty", "--tcp", "127.0.0.1:0")
    url = served.lines["tcp"]
    try:
        advanced = subprocess.run([*cli, "sim", "advance", "1y", "--port", url, "--json"],
                                  capture_output=True, text=True, timeout=60)
        assert advanced.returncode == 0, advanced.stderr
        assert json.loads(advanced.stdout)["true_time"] == "2027-01-01T00:00:00Z"
        busy = subprocess.run([*cli, "sim", "advance", "1y", "--state", str(state)],
                              capture_output=True, text=True, timeout=60)
        assert (busy.returncode, busy.stderr) == (1, f"Error: {SERVED}\n")
        pressed = subprocess.run([*cli, "press", "--port", url], capture_output=True, text=True, timeout=60)
        assert pressed.stdout.strip() == hotp(SEED, 0)
    finally:
        served.stop()
    assert load_token(state, SimulatedClock(T0 + NS_PER_YEAR)).clock.now_ns() == T0 + NS_PER_YEAR
