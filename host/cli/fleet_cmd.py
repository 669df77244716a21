"""``vtoken fleet create``: many tokens from one batch secret, with their PSKC file."""

from __future__ import annotations

import sys

import click

from firmware_sim.fleet import DEFAULT_PPM_SPREAD, FleetSpec
from firmware_sim.fleetdir import write_fleet
from firmware_sim.models import MODELS, get_model
from host.cli.options import at_option, exact_number, hex_bytes, time_or_now
from vtoken.clock import SimulatedClock
from vtoken.errors import InvalidInputError

#: Fleets at least this large show a progress bar.
PROGRESS_THRESHOLD = 200


@click.group()
def fleet() -> None:
    """Make fleets of tokens."""


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
    with click.progressbar(length=2 * count, label="making fleet", hidden=not show, file=sys.stderr) as bar:
        last = {"tokens": 0, "pskc": 0}

        def progress(stage: str, done: int) -> None:
            bar.update(done - last[stage])
            last[stage] = done

        target = write_fleet(spec, out, clock, psk=psk_bytes, password=password, progress=progress)
    protection = "pre-shared key" if psk else "password" if password else "plaintext"
    click.echo(f"{count} tokens written to {out}; seeds in {target} ({protection})")

