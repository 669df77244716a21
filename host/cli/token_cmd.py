"""``vtoken token new|show``: make a token file, and look at one."""

from __future__ import annotations

import os
from pathlib import Path

import click

from firmware_sim.display import render_art
from firmware_sim.factory import DEVICE_KEY_BYTES, Physics, manufacture
from firmware_sim.fleet import SEED_BYTES
from firmware_sim.models import MODELS, get_model
from firmware_sim.rtc import TemperatureProfile
from firmware_sim.statefile import load_token, save_token
from host.cli.options import at_option, exact_number, hex_bytes, time_or_now
from host.timearg import format_time_ns
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import StorageError
from vtoken.serialno import check_serial, make_serial

SERIAL_PAYLOAD_LIMIT = 10**9


@click.group()
def token() -> None:
    """Make and inspect simulated token files."""


@token.command("new")
@click.option("--state", "state", required=True, type=click.Path(dir_okay=False), help="Token file to create.")
@click.option("--model", "model_name", default="totp30", show_default=True, help=f"One of: {', '.join(MODELS)}.")
@click.option("--secret", metavar="HEX", help="Seed as hex (default: 20 random bytes).")
@click.option("--serial", metavar="S", help="Serial number (default: random, with a check digit).")
@click.option("--ppm", default="0", show_default=True, help="Crystal error at 25 °C in ppm (+ runs fast).")
@click.option("--temperature", default="25", show_default=True, help="Constant temperature, °C.")
@click.option("--aging", default="0", show_default=True, help="Crystal aging, ppm per year.")
@click.option("--unlocked", is_flag=True, help="Skip the factory lock (the seed can still be re-provisioned).")
@click.option("--force", is_flag=True, help="Overwrite an existing token file.")
@at_option
def new(
    state: str,
    model_name: str,
    secret: str | None,
    serial: str | None,
    ppm: str,
    temperature: str,
    aging: str,
    unlocked: bool,
    force: bool,
    at: str | None,
) -> None:
    """Make one token whose clock is set to TIME (default: now).

    \b
    Example:
      vtoken token new --state fob.token --model totp30 --ppm 20 --at 2026-01-01T00:00:00Z
    """
    path = Path(state)
    if path.exists() and not force:
        raise StorageError(f"{path} already exists; use --force to replace it")
    model = get_model(model_name)
    seed = hex_bytes(secret, "--secret") if secret is not None else os.urandom(SEED_BYTES)
    if serial is None:
        serial = make_serial(int.from_bytes(os.urandom(8), "big") % SERIAL_PAYLOAD_LIMIT)
    else:
        serial = check_serial(serial, require_check_digit=False)
    clock = SimulatedClock(time_or_now(at))
    physics = Physics(
        ppm=exact_number(ppm, "--ppm"),
        temperature=TemperatureProfile.constant(exact_number(temperature, "--temperature")),
        aging_ppm_per_year=exact_number(aging, "--aging"),
    )
    made = manufacture(
        model=model,
        seed=seed,
        serial=serial,
        device_key=os.urandom(DEVICE_KEY_BYTES),
        clock=clock,
        physics=physics,
        lock=not unlocked,
    )
    save_token(made, path)
    click.echo(f"token {made.serial} ({model.name}) written to {path}")


@token.command("show")
@click.option("--state", "state", required=True, type=click.Path(dir_okay=False), help="Token file.")
@at_option
def show(state: str, at: str | None) -> None:
    """Show serial, model, the token's clock and offset, battery, and the display.

    \b
    Example:
      vtoken token show --state fob.token --at 2027-01-01T00:00:00Z
    """
    clock = SimulatedClock(time_or_now(at))
    fob = load_token(state, clock)
    info = fob.info()
    now = clock.now_ns()
    device = fob.device_time_ns()
    offset = device - now
    click.echo(f"serial:        {info.serial}")
    click.echo(f"model:         {info.model} ({info.kind}, {info.algorithm}, {info.digits} digits"
               + (f", {info.period} s)" if info.kind == "totp" else f", counter {info.counter})"))
    click.echo(f"firmware:      {info.firmware_version}, {'locked' if info.locked else 'UNLOCKED'}")
    click.echo(f"true time:     {format_time_ns(now)}")
    click.echo(f"token clock:   {format_time_ns(device)}" + ("" if fob.rtc.running else " (stopped: battery dead)"))
    click.echo(f"offset:        {offset / NS_PER_SECOND:+.3f} s")
    click.echo(f"battery:       {info.battery_percent} %" + (" (LOW)" if info.battery_low else ""))
    click.echo("display:")
    click.echo(render_art(fob.display.masks(now), fob.display.indicators(now)))
