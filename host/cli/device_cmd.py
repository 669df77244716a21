"""``vtoken info|press|long-press|display|time|provision --port URL``: talk to a token on a port.

URL is a device path (``/dev/pts/3``, or a symlink to one), ``socket://HOST:PORT``,
or ``vtoken://NAME`` for a device registered in process (tests). Errors (no
such port, no answer, a refusal) are reported by :class:`host.cli.main.VTokenGroup`:
one line on stderr and exit code 1 (2 for bad input).

With ``--json`` each command prints one object (README "Scripting with --json");
a device's refusal (a NAK such as ``locked``, a device busy with another
client, a press that shows no code) is then an object with ``"ok": false`` and
a ``reason``, exit 1. Port errors (no such port, no answer) stay errors on stderr.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from firmware_sim.display import Indicators, render_art
from firmware_sim.models import MODELS, get_model
from host.cli.exits import exit_refused_json
from host.cli.jsonout import echo_json, json_option
from host.cli.options import (
    allow_short_seed_option,
    check_seed_length,
    check_serial_option,
    force_serial_option,
    hex_bytes,
    time_or_now,
)
from host.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT, TokenClient
from host.connection import DeviceBusyError
from host.timearg import format_time_ns, time_fields
from host.wallclock import wall_time_ns
from vtoken.clock import NS_PER_SECOND
from vtoken.errors import DeviceError, DeviceStateError, NakError
from vtoken.oath import TokenKind
from vtoken.wire import PER_MILLE_FULL, DisplayResponse, InfoResponse

__all__ = [
    "device_refusals", "display", "display_json", "info", "long_press", "params_json", "press", "provision",
    "time_cmd",
]

_F = TypeVar("_F", bound=Callable[..., Any])
#: ``--seed -``.
STDIN = "-"
_PERCENT = 100
_ERR_TEXT = "Err"

#: ``reason`` of a press that shows no code (``--json``): blank, ``Err`` (not provisioned), or other text.
REASON_BLANK = "display-blank"
REASON_NOT_PROVISIONED = "not-provisioned"
REASON_NOT_A_CODE = "not-a-code"
#: ``reason`` of a device refusal that is no NAK (:class:`~vtoken.errors.DeviceError`).
REASON_DEVICE_REFUSED = "device-refused"
#: ``reason`` of a device serving another client (NAK BUSY): a refusal, not an error.
REASON_BUSY = "busy"


def port_options(func: _F) -> _F:
    """``--port URL`` (required), ``--timeout S`` and ``--retries N``."""
    func = click.option(
        "--retries", type=click.IntRange(0, 10), default=DEFAULT_RETRIES, show_default=True,
        help="Resends after a timeout or a damaged frame.",
    )(func)
    func = click.option(
        "--timeout", type=click.FloatRange(0, 60, min_open=True), default=DEFAULT_TIMEOUT, show_default=True,
        help="Seconds to wait for each reply.",
    )(func)
    func = click.option(
        "--port", "port", required=True, metavar="URL",
        help="Device path (/dev/pts/N or a symlink), socket://HOST:PORT, or vtoken://NAME.",
    )(func)
    return func


def _client(port: str, timeout: float, retries: int) -> TokenClient:
    return TokenClient.open(port, timeout=timeout, retries=retries)


def _nak_reason(exc: NakError) -> str:
    """A NAK's status as a ``--json`` reason: ``LOCKED`` -> ``locked``, ``WRONG_STATE`` -> ``wrong-state``."""
    name = getattr(exc.code, "name", str(exc.code))
    return name.lower().replace("_", "-")


@contextlib.contextmanager
def device_refusals(as_json: bool) -> Iterator[None]:
    """Under ``--json``, report a device's refusal (a NAK, busy, a :class:`DeviceError`) as ``"ok": false``, exit 1."""
    try:
        yield
    except DeviceBusyError as exc:
        if not as_json:
            raise
        exit_refused_json(REASON_BUSY, str(exc))
    except NakError as exc:
        if not as_json:
            raise
        exit_refused_json(_nak_reason(exc), str(exc))
    except DeviceError as exc:
        if not as_json:
            raise
        exit_refused_json(REASON_DEVICE_REFUSED, str(exc))


def params_json(kind: str, algorithm: str, digits: int, period: int, t0: int, counter: int | None) -> dict[str, Any]:
    """A token's OATH parameters for ``--json``: ``period`` and ``t0`` are None for HOTP, ``counter`` for TOTP."""
    totp = kind == TokenKind.TOTP.value
    return {
        "kind": kind,
        "algorithm": algorithm,
        "digits": digits,
        "period": period if totp else None,
        "t0": t0 if totp else None,
        "counter": None if totp else counter,
    }


def display_json(
    screen: str, text: str, masks: tuple[int, ...], low_battery: bool, countdown_bars: int, countdown_total: int
) -> dict[str, Any]:
    """What an LCD shows, for ``--json`` (``screen`` is off, code, menu, low_battery or error)."""
    return {
        "screen": screen,
        "text": text,
        "masks": list(masks),
        "low_battery": low_battery,
        "countdown_bars": countdown_bars,
        "countdown_total": countdown_total,
    }


def _battery_percent(info: InfoResponse) -> float:
    return info.battery_per_mille * _PERCENT / PER_MILLE_FULL


def _info_json(port: str, info: InfoResponse) -> dict[str, Any]:
    return {
        "ok": True,
        "port": port,
        "serial": info.serial or None,
        "model": info.model,
        "firmware_version": info.firmware_version,
        **params_json(info.kind.value, info.algorithm.value, info.digits, info.period, info.t0, info.counter),
        "battery_percent": _battery_percent(info),
        "battery_low": info.battery_low,
        "provisioned": info.provisioned,
        "locked": info.locked,
        "sim_control": info.sim_control,
    }


def _describe_info(info: InfoResponse) -> list[str]:
    params = f"{info.kind.value}, {info.algorithm.value}, {info.digits} digits"
    params += f", {info.period} s, T0 {info.t0}" if info.kind is TokenKind.TOTP else f", next counter {info.counter}"
    battery = f"{_battery_percent(info):g} %" + (" (LOW)" if info.battery_low else "")
    return [
        f"serial:        {info.serial or '(none: not provisioned)'}",
        f"model:         {info.model} ({params})",
        f"firmware:      {info.firmware_version}, {'locked' if info.locked else 'UNLOCKED'}",
        f"battery:       {battery}",
        f"provisioned:   {'yes' if info.provisioned else 'no'}",
        f"sim control:   {'yes' if info.sim_control else 'no'}",
    ]


@click.command("info")
@port_options
@json_option
def info(port: str, timeout: float, retries: int, as_json: bool) -> None:
    """Show the token's serial, model, parameters, battery and lock state.

    \b
    Example:
      vtoken info --port /dev/pts/3
      vtoken info --port /dev/pts/3 --json | jq -r .serial
    """
    with device_refusals(as_json), _client(port, timeout, retries) as client:
        details = client.info()
    if as_json:
        echo_json(_info_json(port, details))
        return
    click.echo(f"port:          {port}")
    for line in _describe_info(details):
        click.echo(line)


def _not_a_code(text: str) -> tuple[str, str] | None:
    """Why what a press displayed is no code (reason, message), or None when it is one."""
    if text.isdigit():
        return None
    if not text:
        return REASON_BLANK, "the token shows nothing (is its battery dead?)"
    if text == _ERR_TEXT:
        return REASON_NOT_PROVISIONED, "the token shows Err: it is not provisioned"
    return REASON_NOT_A_CODE, f"the token shows {text!r}, not a code"


@click.command("press")
@port_options
@json_option
def press(port: str, timeout: float, retries: int, as_json: bool) -> None:
    """Press the token's button and print the code it shows.

    \b
    Example:
      vtoken press --port socket://localhost:7000
      vtoken press --port socket://localhost:7000 --json | jq -r .code
    """
    with device_refusals(as_json), _client(port, timeout, retries) as client:
        text = client.press()
    problem = _not_a_code(text)
    if problem is not None:
        reason, message = problem
        if as_json:
            exit_refused_json(reason, message, code=None, text=text)
        raise DeviceStateError(message)
    if as_json:
        echo_json({"ok": True, "code": text, "text": text})
        return
    click.echo(text)


@click.command("long-press")
@port_options
@json_option
def long_press(port: str, timeout: float, retries: int, as_json: bool) -> None:
    """Hold the button for 6 s and print the info-menu item shown (serial, battery, time).

    \b
    Example:
      vtoken long-press --port /dev/pts/3
    """
    with device_refusals(as_json), _client(port, timeout, retries) as client:
        text = client.long_press()
    if as_json:
        echo_json({"ok": True, "text": text})
        return
    click.echo(text)


def _display_response_json(shown: DisplayResponse) -> dict[str, Any]:
    return display_json(
        shown.screen.value, shown.text, shown.masks, shown.low_battery, shown.countdown_bars, shown.countdown_total
    )


@click.command("display")
@port_options
@json_option
def display(port: str, timeout: float, retries: int, as_json: bool) -> None:
    """Print what the token's LCD shows now, as seven-segment art.

    \b
    Example:
      vtoken display --port /dev/pts/3
    """
    with device_refusals(as_json), _client(port, timeout, retries) as client:
        shown = client.display()
    if as_json:
        echo_json({"ok": True, **_display_response_json(shown)})
        return
    if not shown.on:
        click.echo("(display off)")
        return
    indicators = Indicators(
        low_battery=shown.low_battery, countdown_bars=shown.countdown_bars, countdown_total=shown.countdown_total
    )
    click.echo(render_art(shown.masks, indicators))


def _offset_text(device_ns: int, host_ns: int) -> str:
    return f"{(device_ns - host_ns) / NS_PER_SECOND:+.3f} s"


@click.command("time")
@port_options
@click.option("--set", "set_to", metavar="TIME",
              help="Set the token's clock: Unix seconds, ISO 8601 with a zone, or 'now' (this computer's clock).")
@json_option
def time_cmd(port: str, timeout: float, retries: int, set_to: str | None, as_json: bool) -> None:
    """Show the token's clock and its offset from this computer's clock; or set it.

    \b
    Examples:
      vtoken time --port /dev/pts/3
      vtoken time --port /dev/pts/3 --set now
      vtoken time --port /dev/pts/3 --set 2026-01-01T00:00:00Z
    """
    target = time_or_now(set_to) if set_to is not None else None
    with device_refusals(as_json), _client(port, timeout, retries) as client:
        device_ns = client.time_get() if target is None else client.time_set(target)
    host_ns = wall_time_ns()
    if as_json:
        echo_json({
            "ok": True,
            "port": port,
            "set": target is not None,
            **time_fields("token_clock", device_ns),
            **time_fields("host_clock", host_ns),
            "offset_ns": device_ns - host_ns,
        })
        return
    if target is not None:
        click.echo(f"token clock set to {format_time_ns(target)}")
    click.echo(f"token clock:   {format_time_ns(device_ns)}")
    click.echo(f"offset:        {_offset_text(device_ns, host_ns)} (token minus this computer's clock)")


def _read_seed(text: str) -> bytes:
    if text == STDIN:
        text = sys.stdin.readline().strip()
    return hex_bytes(text, "--seed")


@click.command("provision")
@port_options
@click.option("--seed", "seed_hex", required=True, metavar="HEX",
              help="The seed as hex; '-' reads it from stdin (keeps it out of the process list).")
@click.option("--serial", "serial", required=True, metavar="S",
              help="Serial number: vtoken's 10 digits with a check digit, or a vendor's serial.")
@click.option("--model", "model_name", required=True, type=click.Choice(list(MODELS), case_sensitive=False),
              help="Model preset: kind, algorithm, digits and period.")
@click.option("--counter", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True,
              help="HOTP starting counter.")
@click.option("--lock", "lock_after", is_flag=True, help="Factory-lock the token afterwards (for good).")
@allow_short_seed_option
@force_serial_option
@json_option
def provision(
    port: str, timeout: float, retries: int, seed_hex: str, serial: str, model_name: str, counter: int,
    lock_after: bool, allow_short_seed: bool, force_serial: bool, as_json: bool,
) -> None:
    """Store a seed and parameters in an unlocked token; optionally lock it.

    The seed must be at least 16 bytes (RFC 4226; 20 recommended) unless
    --allow-short-seed; a 10-digit serial must pass its check digit unless
    --force-serial.

    \b
    Example:
      vtoken provision --port /dev/pts/3 --seed 3132333435363738393031323334353637383930 \\
          --serial 1000000013 --model totp30 --lock
    """
    seed = check_seed_length(_read_seed(seed_hex), allow_short_seed)
    serial = check_serial_option(serial, force_serial)
    model = get_model(model_name)
    with device_refusals(as_json), _client(port, timeout, retries) as client:
        client.provision(
            seed=seed, serial=serial, model=model.name, kind=model.kind, algorithm=model.algorithm,
            digits=model.digits, period=model.period, t0=model.t0, counter=counter,
        )
        if not as_json:
            click.echo(f"token {serial} provisioned ({model.name})")
        if lock_after:
            client.lock()
            if not as_json:
                click.echo(f"token {serial} locked")
    if as_json:
        echo_json({"ok": True, "port": port, "serial": serial, "model": model.name, "locked": lock_after})
