"""``vtoken info|press|long-press|display|time|provision --port URL``: talk to a token on a port.

URL is a device path (``/dev/pts/3``, or a symlink to one), ``socket://HOST:PORT``,
or ``vtoken://NAME`` for a device registered in process (tests). Errors (no
such port, no answer, a refusal) are reported by :class:`host.cli.main.VTokenGroup`:
one line on stderr and exit code 1 (2 for bad input).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from firmware_sim.display import Indicators, render_art
from firmware_sim.models import MODELS, get_model
from host.cli.options import hex_bytes
from host.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT, TokenClient
from host.timearg import format_time_ns, parse_time_ns
from host.wallclock import wall_time_ns
from vtoken.clock import NS_PER_SECOND
from vtoken.errors import DeviceStateError
from vtoken.oath import TokenKind
from vtoken.serialno import check_serial
from vtoken.wire import PER_MILLE_FULL, InfoResponse

__all__ = ["display", "info", "long_press", "press", "provision", "time_cmd"]

_F = TypeVar("_F", bound=Callable[..., Any])
#: ``--set now`` / ``--seed -``.
NOW = "now"
STDIN = "-"
_PERCENT = 100
_ERR_TEXT = "Err"


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


def _describe_info(info: InfoResponse) -> list[str]:
    params = f"{info.kind.value}, {info.algorithm.value}, {info.digits} digits"
    params += f", {info.period} s, T0 {info.t0}" if info.kind is TokenKind.TOTP else f", next counter {info.counter}"
    battery = f"{info.battery_per_mille * _PERCENT / PER_MILLE_FULL:g} %" + (" (LOW)" if info.battery_low else "")
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
def info(port: str, timeout: float, retries: int) -> None:
    """Show the token's serial, model, parameters, battery and lock state.

    \b
    Example:
      vtoken info --port /dev/pts/3
    """
    with _client(port, timeout, retries) as client:
        details = client.info()
    click.echo(f"port:          {port}")
    for line in _describe_info(details):
        click.echo(line)


def _shown_code(text: str) -> str:
    """The code a press displayed; DeviceStateError when the token shows something else."""
    if text.isdigit():
        return text
    if not text:
        raise DeviceStateError("the token shows nothing (is its battery dead?)")
    if text == _ERR_TEXT:
        raise DeviceStateError("the token shows Err: it is not provisioned")
    raise DeviceStateError(f"the token shows {text!r}, not a code")


@click.command("press")
@port_options
def press(port: str, timeout: float, retries: int) -> None:
    """Press the token's button and print the code it shows.

    \b
    Example:
      vtoken press --port socket://localhost:7000
    """
    with _client(port, timeout, retries) as client:
        text = client.press()
    click.echo(_shown_code(text))


@click.command("long-press")
@port_options
def long_press(port: str, timeout: float, retries: int) -> None:
    """Hold the button for 6 s and print the info-menu item shown (serial, battery, time).

    \b
    Example:
      vtoken long-press --port /dev/pts/3
    """
    with _client(port, timeout, retries) as client:
        text = client.long_press()
    click.echo(text)


@click.command("display")
@port_options
def display(port: str, timeout: float, retries: int) -> None:
    """Print what the token's LCD shows now, as seven-segment art.

    \b
    Example:
      vtoken display --port /dev/pts/3
    """
    with _client(port, timeout, retries) as client:
        shown = client.display()
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
def time_cmd(port: str, timeout: float, retries: int, set_to: str | None) -> None:
    """Show the token's clock and its offset from this computer's clock; or set it.

    \b
    Examples:
      vtoken time --port /dev/pts/3
      vtoken time --port /dev/pts/3 --set now
      vtoken time --port /dev/pts/3 --set 2026-01-01T00:00:00Z
    """
    target = None
    if set_to is not None:
        target = wall_time_ns() if set_to.strip().lower() == NOW else parse_time_ns(set_to)
    with _client(port, timeout, retries) as client:
        device_ns = client.time_get() if target is None else client.time_set(target)
    host_ns = wall_time_ns()
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
@click.option("--serial", "serial", required=True, metavar="S", help="Serial number (6-20 digits).")
@click.option("--model", "model_name", required=True, type=click.Choice(list(MODELS)),
              help="Model preset: kind, algorithm, digits and period.")
@click.option("--counter", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True,
              help="HOTP starting counter.")
@click.option("--lock", "lock_after", is_flag=True, help="Factory-lock the token afterwards (for good).")
def provision(
    port: str, timeout: float, retries: int, seed_hex: str, serial: str, model_name: str, counter: int,
    lock_after: bool,
) -> None:
    """Store a seed and parameters in an unlocked token; optionally lock it.

    \b
    Example:
      vtoken provision --port /dev/pts/3 --seed 3132333435363738393031323334353637383930 \\
          --serial 1000000013 --model totp30 --lock
    """
    seed = _read_seed(seed_hex)
    serial = check_serial(serial, require_check_digit=False)
    model = get_model(model_name)
    with _client(port, timeout, retries) as client:
        client.provision(
            seed=seed, serial=serial, model=model.name, kind=model.kind, algorithm=model.algorithm,
            digits=model.digits, period=model.period, t0=model.t0, counter=counter,
        )
        click.echo(f"token {serial} provisioned ({model.name})")
        if lock_after:
            client.lock()
            click.echo(f"token {serial} locked")
