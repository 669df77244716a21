"""``vtoken sim advance|temperature|crystal|battery|power-cycle``: a simulated token's controls from a shell.

Two targets, one behaviour:

* ``--port URL``: a token served with ``vtoken serve --sim`` (the port forms of
  the other device commands: a pty path or its link, ``socket://HOST:PORT``,
  ``vtoken://NAME``). The commands go over the wire as the simulation controls
  of docs/protocol.md; a production token (served without ``--sim``) refuses
  them (NOT_ALLOWED), reported as such, exit 1.
* ``--state FILE``: a token file nobody serves. It is loaded under its lock
  (:func:`firmware_sim.statefile.locked`, not waiting), read once, driven through the same device
  handler in process, with a simulated clock resuming at the file's saved time
  (exactly as ``vtoken serve --sim`` would), and saved back. A file being served
  is refused: "device busy: ...; use --port".

Each command then prints the token's state: true time, token clock, their
offset, battery. With ``--json``: one object (``"ok": true``; times as ``*_ns``
plus ISO text); a refusal (production token, busy device) is an object with
``"ok": false``, a ``reason`` (``not-allowed``, ``busy``) and a ``message``, exit 1.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any, TypeVar

import click

from firmware_sim.device import DeviceController
from firmware_sim.rtc import MAX_ABS_PPM_25, MAX_CELSIUS, MIN_CELSIUS
from firmware_sim.statefile import TokenBusyError, locked, read_token_data, save_token, token_from_dict
from host.cli.device_cmd import port_options
from host.cli.exits import exit_refused_json
from host.cli.jsonout import echo_json, json_option
from host.cli.options import exact_number
from host.client import TokenClient
from host.connection import DeviceBusyError, LoopbackConnection
from host.timearg import format_time_ns, time_fields
from vtoken.clock import NS_PER_DAY, NS_PER_HOUR, NS_PER_SECOND, NS_PER_YEAR, SimulatedClock
from vtoken.errors import DeviceStateError, InvalidInputError, NakError
from vtoken.wire import PER_MILLE_FULL, Status

__all__ = ["MAX_ADVANCE_NS", "parse_duration_ns", "sim"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: The longest single ``advance`` (the wire carries times up to 2^64 ns, about the year 2554).
MAX_ADVANCE_YEARS = 100
MAX_ADVANCE_NS = MAX_ADVANCE_YEARS * NS_PER_YEAR
NS_PER_MS = NS_PER_SECOND // 1000
NS_PER_MINUTE = 60 * NS_PER_SECOND
NS_PER_WEEK = 7 * NS_PER_DAY
#: Duration units of ``advance``; a year is 365 days (vtoken.clock), ``m`` is minutes.
DURATION_UNITS: dict[str, int] = {
    "ms": NS_PER_MS, "s": NS_PER_SECOND, "m": NS_PER_MINUTE, "min": NS_PER_MINUTE, "h": NS_PER_HOUR,
    "d": NS_PER_DAY, "w": NS_PER_WEEK, "y": NS_PER_YEAR,
}
_DURATION = re.compile(r"^(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[a-z]*)$")
_PERCENT = 100
_PER_MILLE_PER_PERCENT = PER_MILLE_FULL // _PERCENT
_CENTI = 100
_PPB_PER_PPM = 1000

#: ``reason`` values of a refusal under ``--json``.
REASON_NOT_ALLOWED = "not-allowed"
REASON_BUSY = "busy"
NOT_ALLOWED_MESSAGE = (
    "the token refuses simulation controls: it is served as a production token "
    "(serve it with 'vtoken serve --sim' to drive its simulation)"
)
SERVED_MESSAGE = "device busy: the token is served by another process; use --port"
#: Who holds a token file's lock while ``vtoken sim --state`` works on it.
LOCK_HOLDER = "vtoken sim"

# Negative numbers (temperature -20, crystal -15) are arguments, not options.
_ARGS_MAY_BE_NEGATIVE = {"ignore_unknown_options": True}


def parse_duration_ns(text: str) -> int:
    """``30s``, ``5m``, ``2h``, ``1d``, ``2w``, ``1y`` (365 days), ``250ms`` or plain seconds, as ns.

    Decimals are fine (``1.5h``) if they are whole nanoseconds; at most
    :data:`MAX_ADVANCE_NS` (100 years). InvalidInputError otherwise.
    """
    usage = (f"give a duration such as 30s, 5m, 2h, 1d, 1y (365 days) or plain seconds, "
             f"at most {MAX_ADVANCE_YEARS}y")
    match = _DURATION.match(text.strip().lower())
    if match is None:
        what = "time only moves forward" if text.strip().startswith("-") else f"cannot read {text!r}"
        raise InvalidInputError(f"advance: {what}; {usage}")
    unit = match.group("unit") or "s"
    if unit not in DURATION_UNITS:
        raise InvalidInputError(f"advance: unknown unit {unit!r}; {usage}")
    ns = Fraction(match.group("number")) * DURATION_UNITS[unit]
    if ns.denominator != 1:
        raise InvalidInputError(f"advance: {text!r} is not a whole number of nanoseconds")
    if ns > MAX_ADVANCE_NS:
        raise InvalidInputError(f"advance: {text!r} is more than {MAX_ADVANCE_YEARS} years; {usage}")
    return int(ns)


def _describe_duration(ns: int) -> str:
    """``ns`` in the largest unit that divides it exactly (``1 y``, ``90 min``), else in seconds (``0.25 s``)."""
    for name, size in (("y", NS_PER_YEAR), ("d", NS_PER_DAY), ("h", NS_PER_HOUR), ("min", NS_PER_MINUTE),
                       ("s", NS_PER_SECOND)):
        if ns >= size and ns % size == 0:
            return f"{ns // size} {name}"
    return f"{ns / NS_PER_SECOND:g} s"


def _bounded_number(text: str, what: str, low: Fraction, high: Fraction, unit: str) -> Fraction:
    value = exact_number(text.rstrip("%").strip() if unit == "%" else text, what)
    if not low <= value <= high:
        raise InvalidInputError(f"{what} must be between {low} and {high} {unit}, not {text}")
    return value


# --- the target: a port or a token file ----------------------------------------------------------


def target_options(func: _F) -> _F:
    """``--port URL`` / ``--timeout`` / ``--retries`` (device_cmd's, --port made optional), ``--state``, ``--json``."""
    func = json_option(func)
    func = click.option(
        "--state", "state", metavar="FILE", type=click.Path(dir_okay=False, exists=True),
        help="Or act on this token file directly (load, apply, save); it must not be being served.",
    )(func)
    func = port_options(func)
    for param in getattr(func, "__click_params__", []):
        if param.name == "port":  # one of --port / --state, checked in _session
            param.required = False
            param.help = f"{param.help} A token served with 'vtoken serve --sim'."
    return func


@contextlib.contextmanager
def _file_session(path: str) -> Iterator[TokenClient]:
    """A client wired to the token in ``path``, in process; the file is saved if all went well."""
    try:
        with locked(path, wait=False, holder=LOCK_HOLDER):
            data = read_token_data(path)  # read once; shape and checksum verified before any field is used
            clock = SimulatedClock(data["saved_at_ns"])  # resume where the file stopped, as 'vtoken serve --sim' does
            token = token_from_dict(data, clock, source=f"token file {path}")
            client = TokenClient(LoopbackConnection(DeviceController(token, sim_control=True), url=path))
            client.hello()
            yield client
            save_token(token, path)
    except TokenBusyError:  # only taking the lock raises it: 'vtoken serve' holds it for as long as it runs
        raise TokenBusyError(SERVED_MESSAGE) from None


@contextlib.contextmanager
def _session(port: str | None, state: str | None, timeout: float, retries: int) -> Iterator[TokenClient]:
    if port is None and state is None:
        raise InvalidInputError("give --port URL (a served token) or --state FILE (a token file)")
    if port is not None and state is not None:
        raise InvalidInputError("give --port URL or --state FILE, not both")
    if port is not None:
        with TokenClient.open(port, timeout=timeout, retries=retries) as client:
            yield client
    else:
        assert state is not None
        with _file_session(state) as client:
            yield client


def _run(
    action: str, port: str | None, state: str | None, timeout: float, retries: int, as_json: bool,
    apply: Callable[[TokenClient], tuple[str, dict[str, Any]]],
) -> None:
    """Apply one control, then report the state; refusals as the module docstring says."""
    target: dict[str, Any] = {"action": action, "port": port, "state": state}
    try:
        with _session(port, state, timeout, retries) as client:
            done, fields = apply(client)
            clock = client.advance_time(0)
            info = client.info()
    except NakError as exc:
        if exc.code is not Status.NOT_ALLOWED:
            raise
        if as_json:
            exit_refused_json(REASON_NOT_ALLOWED, NOT_ALLOWED_MESSAGE, **target)
        raise DeviceStateError(NOT_ALLOWED_MESSAGE) from None
    except (DeviceBusyError, TokenBusyError) as exc:
        if as_json:
            exit_refused_json(REASON_BUSY, str(exc), **target)
        raise
    offset = clock.device_time_ns - clock.true_time_ns
    battery_percent = info.battery_per_mille / _PER_MILLE_PER_PERCENT
    if as_json:
        echo_json({
            "ok": True, **target, "serial": info.serial or None, **fields,
            **time_fields("true_time", clock.true_time_ns), **time_fields("device_time", clock.device_time_ns),
            "offset_ns": offset, "battery_per_mille": info.battery_per_mille, "battery_percent": battery_percent,
            "battery_low": info.battery_low,
        })
        return
    click.echo(f"token {info.serial or '(not provisioned)'}: {done}")
    click.echo(f"true time:     {format_time_ns(clock.true_time_ns)}")
    click.echo(f"token clock:   {format_time_ns(clock.device_time_ns)}")
    click.echo(f"offset:        {offset / NS_PER_SECOND:+.3f} s (token clock minus true time)")
    click.echo(f"battery:       {battery_percent:g} %" + (" (LOW)" if info.battery_low else ""))


# --- the commands --------------------------------------------------------------------------------


@click.group("sim")
def sim() -> None:
    """Drive a simulated token: its time, temperature, crystal error, battery, power.

    Target a token served with 'vtoken serve --sim' (--port URL) or a token
    file nobody serves (--state FILE; its simulated time resumes where the file
    was last saved, as 'vtoken serve --sim' would). Each command prints the
    token's true time, its own clock, their offset and its battery; --json
    prints one object.

    \b
    Examples:
      vtoken sim advance 1y --port socket://127.0.0.1:7777
      vtoken sim temperature -20 --state fob.token --json
    """


@sim.command("advance")
@click.argument("duration")
@target_options
def advance(duration: str, port: str | None, state: str | None, timeout: float, retries: int,
            as_json: bool) -> None:
    """Move the simulated time forward by DURATION: 30s, 5m, 2h, 1d, 1y (365 days) or plain seconds.

    At most 100y at a time; 0 just reports the state. The token's clock
    follows with its drift (crystal error, temperature, aging).

    \b
    Examples:
      vtoken sim advance 1y --port socket://127.0.0.1:7777
      vtoken sim advance 90s --state fob.token --json
    """
    ns = parse_duration_ns(duration)

    def apply(client: TokenClient) -> tuple[str, dict[str, Any]]:
        client.advance_time(ns)
        return f"advanced {_describe_duration(ns)}" if ns else "time not moved", {"advanced_ns": ns}

    _run("advance", port, state, timeout, retries, as_json, apply)


@sim.command("temperature", context_settings=_ARGS_MAY_BE_NEGATIVE)
@click.argument("celsius")
@target_options
def temperature(celsius: str, port: str | None, state: str | None, timeout: float, retries: int,
                as_json: bool) -> None:
    """From now on the token sits at CELSIUS (-100 to 200, to 0.01 °C); its crystal slows away from 25 °C.

    \b
    Examples:
      vtoken sim temperature -20 --port socket://127.0.0.1:7777
      vtoken sim temperature 37.5 --state fob.token
    """
    value = _bounded_number(celsius, "temperature", Fraction(MIN_CELSIUS), Fraction(MAX_CELSIUS), "°C")
    centi = round(value * _CENTI)

    def apply(client: TokenClient) -> tuple[str, dict[str, Any]]:
        client.set_temperature(Fraction(centi, _CENTI))
        return f"temperature set to {centi / _CENTI:g} °C", {"temperature_c": centi / _CENTI}

    _run("temperature", port, state, timeout, retries, as_json, apply)


@sim.command("crystal", context_settings=_ARGS_MAY_BE_NEGATIVE)
@click.argument("ppm")
@target_options
def crystal(ppm: str, port: str | None, state: str | None, timeout: float, retries: int, as_json: bool) -> None:
    """From now on the crystal's error at 25 °C is PPM (+ runs fast, -1000 to 1000, to 0.001 ppm).

    Drift so far is kept. 20 ppm is about 10.5 minutes fast per year.

    \b
    Examples:
      vtoken sim crystal 20 --port socket://127.0.0.1:7777
      vtoken sim crystal -15.5 --state fob.token --json
    """
    value = _bounded_number(ppm, "crystal error", Fraction(-MAX_ABS_PPM_25), Fraction(MAX_ABS_PPM_25), "ppm")
    ppb = round(value * _PPB_PER_PPM)

    def apply(client: TokenClient) -> tuple[str, dict[str, Any]]:
        client.set_crystal_ppm(Fraction(ppb, _PPB_PER_PPM))
        return f"crystal error set to {ppb / _PPB_PER_PPM:+g} ppm at 25 °C", {"crystal_ppm": ppb / _PPB_PER_PPM}

    _run("crystal", port, state, timeout, retries, as_json, apply)


@sim.command("battery")
@click.argument("percent")
@target_options
def battery(percent: str, port: str | None, state: str | None, timeout: float, retries: int,
            as_json: bool) -> None:
    """Set the battery to PERCENT (0 to 100, to 0.1 %). 0 kills the token; more revives a dead one.

    At 10 % or less the token shows its low-battery sign. A revived token's
    clock resumes from the time it stopped at.

    \b
    Examples:
      vtoken sim battery 8 --port socket://127.0.0.1:7777
      vtoken sim battery 100% --state fob.token
    """
    value = _bounded_number(percent, "battery", Fraction(0), Fraction(_PERCENT), "%")
    per_mille = round(value * _PER_MILLE_PER_PERCENT)

    def apply(client: TokenClient) -> tuple[str, dict[str, Any]]:
        client.set_battery(Fraction(per_mille, PER_MILLE_FULL))
        return f"battery set to {per_mille / _PER_MILLE_PER_PERCENT:g} %", {}

    _run("battery", port, state, timeout, retries, as_json, apply)


@sim.command("power-cycle")
@target_options
def power_cycle(port: str | None, state: str | None, timeout: float, retries: int, as_json: bool) -> None:
    """Remove and restore power: the display blanks and the menu closes; seed, counter and clock stay.

    \b
    Examples:
      vtoken sim power-cycle --port socket://127.0.0.1:7777
      vtoken sim power-cycle --state fob.token --json
    """

    def apply(client: TokenClient) -> tuple[str, dict[str, Any]]:
        client.power_cycle()
        return "power-cycled", {}

    _run("power-cycle", port, state, timeout, retries, as_json, apply)
