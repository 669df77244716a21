"""``vtoken token new|show|export``: make a token file, look at one, and export its seed."""

from __future__ import annotations

import os
from pathlib import Path

import click

from firmware_sim.display import render_art
from firmware_sim.export import (
    ExportFormat,
    ExportRecord,
    otpauth_uri,
    qr_image,
    qr_kind,
    qr_terminal,
    read_record,
    render,
    write_private,
)
from firmware_sim.factory import DEVICE_KEY_BYTES, Physics, manufacture
from firmware_sim.fleet import SEED_BYTES
from firmware_sim.models import MODELS, get_model
from firmware_sim.rtc import TemperatureProfile
from firmware_sim.statefile import load_token, save_new_token
from host.cli.device_cmd import display_json, params_json
from host.cli.jsonout import echo_json, json_option
from host.cli.options import (
    INPUT_FILE,
    allow_short_seed_option,
    at_option,
    check_seed_length,
    check_serial_option,
    exact_number,
    force_serial_option,
    hex_bytes,
    time_or_now,
)
from host.timearg import format_time_ns, time_fields
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import InvalidInputError, StorageError
from vtoken.serialno import make_serial

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
@allow_short_seed_option
@force_serial_option
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
    allow_short_seed: bool,
    force_serial: bool,
    at: str | None,
) -> None:
    """Make one token whose clock is set to TIME (default: now).

    A --secret must be at least 16 bytes (RFC 4226; 20 recommended) unless
    --allow-short-seed; a 10-digit --serial must pass its check digit unless
    --force-serial.

    \b
    Example:
      vtoken token new --state fob.token --model totp30 --ppm 20 --at 2026-01-01T00:00:00Z
    """
    path = Path(state)
    if path.exists() and not force:
        raise StorageError(f"{path} already exists; use --force to replace it")
    model = get_model(model_name)
    if secret is not None:
        seed = check_seed_length(hex_bytes(secret, "--secret"), allow_short_seed)
    else:
        seed = os.urandom(SEED_BYTES)
    if serial is None:
        serial = make_serial(int.from_bytes(os.urandom(8), "big") % SERIAL_PAYLOAD_LIMIT)
    else:
        serial = check_serial_option(serial, force_serial)
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
    save_new_token(made, path, replace=force)  # under the token's lock: refused while `vtoken serve` has it
    click.echo(f"token {made.serial} ({model.name}) written to {path}")


@token.command("show")
@click.option("--state", "state", required=True, type=INPUT_FILE, help="Token file.")
@at_option
@json_option
def show(state: str, at: str | None, as_json: bool) -> None:
    """Show serial, model, the token's clock and offset, battery, and the display.

    \b
    Example:
      vtoken token show --state fob.token --at 2027-01-01T00:00:00Z
      vtoken token show --state fob.token --json | jq .offset_ns
    """
    clock = SimulatedClock(time_or_now(at))
    fob = load_token(state, clock)
    info = fob.info()
    now = clock.now_ns()
    device = fob.device_time_ns()
    offset = device - now
    if as_json:
        indicators = fob.display.indicators(now)
        echo_json({
            "ok": True,
            "state": state,
            "serial": info.serial,
            "model": info.model,
            "firmware_version": info.firmware_version,
            **params_json(info.kind, info.algorithm, info.digits, info.period, info.t0, info.counter),
            "locked": info.locked,
            **time_fields("true_time", now),
            **time_fields("token_clock", device),
            "clock_running": fob.rtc.running,
            "offset_ns": offset,
            "battery_percent": float(info.battery_percent),
            "battery_low": info.battery_low,
            "display": display_json(
                fob.display.state(now).value, fob.display.text(now), fob.display.masks(now),
                indicators.low_battery, indicators.countdown_bars, indicators.countdown_total,
            ),
        })
        return
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


# --- export ------------------------------------------------------------------------------------

#: ``--format`` choices of the export commands.
EXPORT_FORMATS = tuple(f.value for f in ExportFormat)

format_option = click.option(
    "--format", "fmt", required=True, type=click.Choice(EXPORT_FORMATS),
    help="pskc (RFC 6030), csv (OATH CSV for privacyIDEA/LinOTP) or otpauth (one URI per line).",
)
out_option = click.option(
    "--out", "out", type=click.Path(dir_okay=False), help="Write here (mode 0600) instead of to stdout."
)
psk_option = click.option("--psk", metavar="HEX", help="PSKC only: encrypt the seeds with this AES-128 key.")
password_option = click.option(
    "--password", metavar="P", help="PSKC only: encrypt the seeds with a key derived from this password."
)
force_option = click.option("--force", is_flag=True, help="Replace existing output files.")


def check_export_options(fmt: str, psk: str | None, password: str | None) -> bytes | None:
    """Refuse --psk/--password outside PSKC and together; return the pre-shared key's bytes."""
    if (psk is not None or password is not None) and fmt != ExportFormat.PSKC.value:
        raise InvalidInputError(f"--psk and --password apply to --format pskc only, not {fmt}")
    if psk is not None and password is not None:
        raise InvalidInputError("give --psk or --password, not both")
    return hex_bytes(psk, "--psk") if psk is not None else None


def refuse_existing(paths: list[str | None], force: bool) -> None:
    """Refuse before writing anything if an output file exists (without --force) or is named twice."""
    named = [Path(p) for p in paths if p is not None]
    if len({p.resolve() for p in named}) != len(named):
        raise InvalidInputError("the same file is named for two outputs")
    for path in named:
        if not force and (path.exists() or path.is_symlink()):
            raise StorageError(f"{path} already exists; use --force to replace it")


def emit_export(data: bytes, out: str | None, *, force: bool, what: str) -> None:
    """Write the export to ``out`` (0600, no overwrite without --force) or to stdout."""
    if out is None:
        click.echo(data, nl=False)
        return
    write_private(out, data, force=force)
    click.echo(f"{what} written to {out}", err=True)


def describe_export(records: list[ExportRecord], fmt: str, psk: bytes | None, password: str | None) -> str:
    """``3 tokens (pskc, password)``: what an export holds, for the status line."""
    count = f"token {records[0].serial}" if len(records) == 1 else f"{len(records)} tokens"
    protection = ", pre-shared key" if psk is not None else ", password" if password is not None else ""
    return f"{count} ({fmt}{protection})"


@token.command("export")
@click.option("--state", "state", required=True, type=click.Path(dir_okay=False), help="Token file (read, never changed).")
@format_option
@out_option
@psk_option
@password_option
@click.option("--qr", is_flag=True, help="Also print the token's otpauth URI as a QR code on the terminal.")
@click.option("--qr-file", "qr_file", type=click.Path(dir_okay=False),
              help="Also write the otpauth URI's QR code to this .png or .svg file (mode 0600).")
@force_option
def export(
    state: str,
    fmt: str,
    out: str | None,
    psk: str | None,
    password: str | None,
    qr: bool,
    qr_file: str | None,
    force: bool,
) -> None:
    """Export the seed and parameters of the token in a token file.

    The output holds the seed: files are created with mode 0600 and an
    existing file is replaced only with --force. --qr and --qr-file show the
    otpauth URI (issuer vtoken, account = serial) as a QR code, whatever
    --format is; --qr goes to stdout, so with pskc or csv it needs --out.

    \b
    Examples:
      vtoken token export --state fob.token --format otpauth --qr
      vtoken token export --state fob.token --format pskc --out fob.pskc --psk 00112233445566778899aabbccddeeff
    """
    psk_bytes = check_export_options(fmt, psk, password)
    if qr and out is None and fmt != ExportFormat.OTPAUTH.value:
        raise InvalidInputError(f"--qr prints to stdout, where the {fmt} export would go too; give --out FILE")
    image_kind = qr_kind(qr_file) if qr_file is not None else None
    refuse_existing([out, qr_file], force)
    record = read_record(state)
    data = render([record], fmt, psk=psk_bytes, password=password)
    uri = otpauth_uri(record) if qr or qr_file is not None else None
    emit_export(data, out, force=force, what=describe_export([record], fmt, psk_bytes, password))
    if qr_file is not None and image_kind is not None and uri is not None:
        write_private(qr_file, qr_image(uri, image_kind), force=force)
        click.echo(f"QR code of token {record.serial} written to {qr_file}", err=True)
    if qr and uri is not None:
        click.echo(qr_terminal(uri), nl=False)
