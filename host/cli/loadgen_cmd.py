"""``vtoken loadgen``: benchmark a validator over HTTP with a fleet of virtual tokens.

Thin: turn the options into a :class:`loadgen.LoadConfig`, run it, print the report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from host.cli.exits import EXIT_REFUSED
from host.cli.options import hex_bytes
from loadgen.config import (
    APIS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_RANDOM,
    DEFAULT_REPLAYS,
    DEFAULT_TIMEOUT_S,
    STATE_FILENAME,
)

#: Environment variables for the credentials, so they need not appear on a command line.
ADMIN_TOKEN_ENV = "VTOKEN_ADMIN_TOKEN"
API_KEY_ENV = "VTOKEN_API_KEY"
PASSWORD_ENV = "VTOKEN_PSKC_PASSWORD"


@click.command("loadgen")
@click.argument("url")
@click.option("--fleet", "fleet", required=True, type=click.Path(file_okay=False),
              help="Fleet folder made by 'vtoken fleet create' (tokens.pskc + <serial>.token files).")
@click.option("--api", type=click.Choice(APIS), default="vtoken", show_default=True,
              help="vtoken's /v1 API, or privacyIDEA's /validate/check.")
@click.option("--concurrency", type=click.IntRange(1), help="Closed loop: this many clients (default 16).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Open loop: requests per second.")
@click.option("--max-in-flight", type=click.IntRange(1), default=DEFAULT_MAX_IN_FLIGHT, show_default=True,
              help="Open loop: at most this many requests outstanding.")
@click.option("--requests", type=click.IntRange(1), help="Stop after this many checks (default 10,000).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after this many seconds.")
@click.option("--replays", type=click.FloatRange(0, 1), default=DEFAULT_REPLAYS, show_default=True,
              help="Share of replayed codes (must be refused).")
@click.option("--random", "random_share", type=click.FloatRange(0, 1), default=DEFAULT_RANDOM, show_default=True,
              help="Share of random codes, sent to decoy tokens (must be refused).")
@click.option("--decoys", type=click.IntRange(0), help="Tokens set aside for random codes (default: 1 per 20, at most 16).")
@click.option("--admin-token", envvar=ADMIN_TOKEN_ENV, metavar="T",
              help=f"Administrator bearer token, for --import and privacyIDEA registration (or ${ADMIN_TOKEN_ENV}).")
@click.option("--api-key", envvar=API_KEY_ENV, metavar="K",
              help=f"Sent as 'Authorization: Bearer K' on checks and registrations (or ${API_KEY_ENV}).")
@click.option("--password", envvar=PASSWORD_ENV, metavar="P",
              help=f"Password of the fleet's PSKC file (or ${PASSWORD_ENV}).")
@click.option("--psk", metavar="HEX", help="Pre-shared AES key of the fleet's PSKC file.")
@click.option("--import", "import_fleet", is_flag=True, help="Upload the fleet's PSKC file first (POST /v1/import).")
@click.option("--no-register", is_flag=True, help="The fleet is registered already: skip the two-code registration.")
@click.option("--state", "state", type=click.Path(dir_okay=False),
              help=f"Run state: counters and steps used so far, per validator (default: FLEET/{STATE_FILENAME}).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="Seconds before a request counts as an HTTP error.")
@click.option("--seed", type=int, help="Seed the choice of random codes (repeatable runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def loadgen(
    url: str, fleet: str, api: str, concurrency: int | None, rate: float | None, max_in_flight: int,
    requests: int | None, duration: float | None, replays: float, random_share: float, decoys: int | None,
    admin_token: str | None, api_key: str | None, password: str | None, psk: str | None, import_fleet: bool,
    no_register: bool, state: str | None, timeout: float, seed: int | None, as_json: bool, quiet: bool,
) -> None:
    """Benchmark the validator at URL with the fleet's tokens, checking every answer.

    Registers every token by two codes, then sends genuine codes (each token's
    own drifting clock, at real time), replays and random codes in the given
    proportions, and checks each answer: genuine accepted, replay and random
    refused. Prints throughput, latency percentiles and every wrong answer;
    exits 1 if there was any.

    \b
      vtoken fleet create --count 2000 --model hotp --batch-secret 000102030405060708090a0b0c0d0e0f --out fleet/
      vtoken validator --db v.db init            # prints an administrator token
      vtoken validator --db v.db serve --listen 127.0.0.1:8080 &
      vtoken loadgen http://127.0.0.1:8080 --fleet fleet/ --import --admin-token vtk_admin_... \\
          --concurrency 64 --requests 1000000 --replays 0.10 --random 0.05
    """
    from loadgen import LoadConfig, run_load  # aiohttp and the driver: only when a load runs

    config = LoadConfig(
        url=url,
        fleet=Path(fleet),
        api=api,
        concurrency=concurrency,
        rate=rate,
        requests=requests,
        duration_s=duration,
        replays=replays,
        random=random_share,
        admin_token=admin_token,
        api_key=api_key,
        register=not no_register,
        import_fleet=import_fleet,
        password=password,
        psk=hex_bytes(psk, "--psk") if psk is not None else None,
        decoys=decoys,
        max_in_flight=max_in_flight,
        state_path=Path(state) if state else None,
        timeout_s=timeout,
        seed=seed,
    )
    report = run_load(config, progress=None if quiet else sys.stderr)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.render())
    if not report.ok:
        sys.exit(EXIT_REFUSED)


__all__ = ["loadgen"]
