"""``vtoken fleet create|export``: many tokens from one batch secret, with their PSKC file; export them again."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

import click

from firmware_sim.export import plan_qr_folder, read_fleet, render, write_qr_folder
from firmware_sim.fleet import DEFAULT_PPM_SPREAD, FleetSpec
from firmware_sim.fleetdir import STAGES, write_fleet
from firmware_sim.models import MODELS, get_model
from host.cli.options import at_option, exact_number, hex_bytes, plural, time_or_now
from host.cli.token_cmd import (
    check_export_options,
    describe_export,
    emit_export,
    force_option,
    format_option,
    out_option,
    password_option,
    psk_option,
    refuse_existing,
)
from vtoken.clock import SimulatedClock
from vtoken.errors import InvalidInputError

#: Fleets at least this large show a progress bar.
PROGRESS_THRESHOLD = 200
#: Exit status after Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


@click.group()
def fleet() -> None:
    """Make fleets of tokens, and export them."""


@fleet.command("create")
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of tokens.")
@click.option("--batch-secret", required=True, metavar="HEX", help="Batch secret (at least 16 bytes of hex).")
@click.option("--model", "model_name", default="totp30", show_default=True, help=f"One of: {', '.join(MODELS)}.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder (new or empty).")
@click.option("--psk", metavar="HEX", help="Encrypt the PSKC seeds with this AES-128 key.")
@click.option("--password", metavar="P", help="Encrypt the PSKC seeds with a key derived from this password.")
@click.option("--first-serial", type=click.IntRange(0, 10**9 - 1), default=100_000_000, show_default=True)
@click.option("--ppm-spread", default=str(DEFAULT_PPM_SPREAD), show_default=True, help="Crystal error range ± ppm.")
@at_option
def create(
    count: int,
    batch_secret: str,
    model_name: str,
    out: str,
    psk: str | None,
    password: str | None,
    first_serial: int,
    ppm_spread: str,
    at: str | None,
) -> None:
    """Create COUNT tokens in OUT: tokens.pskc and one <serial>.token per token.

    All or nothing: the fleet is written into a staging folder beside OUT,
    synced to disk, and renamed into place at the end. Interrupted (Ctrl-C,
    SIGTERM) or failed, it leaves nothing behind, and the same command can be
    run again. The progress bar counts token files written, then the PSKC
    file (when it is written), then the files synced to disk.

    \b
    Example:
      vtoken fleet create --count 100 --batch-secret 000102030405060708090a0b0c0d0e0f \\
        --model totp30 --out fleet/ --password hunter2
    """
    if psk is not None and password is not None:
        raise InvalidInputError("give --psk or --password, not both")
    spec = FleetSpec(
        batch_secret=hex_bytes(batch_secret, "--batch-secret"),
        model=get_model(model_name),
        count=count,
        first_serial=first_serial,
        ppm_spread=exact_number(ppm_spread, "--ppm-spread"),
    )
    psk_bytes = hex_bytes(psk, "--psk") if psk is not None else None
    clock = SimulatedClock(time_or_now(at))
    show = count >= PROGRESS_THRESHOLD
    try:
        with _interrupt_on_sigterm(), click.progressbar(
            length=len(STAGES) * count, label="making fleet", hidden=not show, file=sys.stderr
        ) as bar:
            last = dict.fromkeys(STAGES, 0)

            def progress(stage: str, done: int) -> None:
                bar.update(done - last[stage])
                last[stage] = done

            target = write_fleet(spec, out, clock, psk=psk_bytes, password=password, progress=progress)
    except KeyboardInterrupt:
        click.echo(f"interrupted: nothing was written to {out}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    protection = "pre-shared key" if psk else "password" if password else "plaintext"
    click.echo(f"{plural(count, 'token')} written to {out}; seeds in {target} ({protection})")


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the fleet is written, so the staging folder is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@fleet.command("export")
@click.option("--dir", "folder", required=True, type=click.Path(file_okay=False),
              help="Fleet folder: every <serial>.token in it is read (never changed).")
@format_option
@out_option
@psk_option
@password_option
@click.option("--qr-dir", "qr_dir", type=click.Path(file_okay=False),
              help="Also write each token's otpauth QR code as <serial>.png here (mode 0600).")
@force_option
def export(
    folder: str,
    fmt: str,
    out: str | None,
    psk: str | None,
    password: str | None,
    qr_dir: str | None,
    force: bool,
) -> None:
    """Export the seeds of every token file in DIR, sorted by serial.

    Reads the <serial>.token files that `vtoken fleet create` wrote (their
    current state: a HOTP token's next counter). The output holds seeds:
    files are created with mode 0600 and never replaced without --force.

    \b
    Examples:
      vtoken fleet export --dir fleet/ --format csv --out fleet.csv
      vtoken fleet export --dir fleet/ --format otpauth --out fleet.txt --qr-dir fleet-qr/
    """
    psk_bytes = check_export_options(fmt, psk, password)
    refuse_existing([out], force)
    records = read_fleet(folder)
    data = render(records, fmt, psk=psk_bytes, password=password)
    plan = plan_qr_folder(qr_dir, records, force=force) if qr_dir is not None else None  # refusals come first
    emit_export(data, out, force=force, what=describe_export(records, fmt, psk_bytes, password))
    if qr_dir is not None and plan is not None:
        write_qr_folder(qr_dir, plan, force=force)
        click.echo(f"{len(plan)} QR codes written to {qr_dir}", err=True)
