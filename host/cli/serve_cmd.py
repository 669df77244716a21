"""``vtoken serve``: put a token file on a pseudo-terminal and/or a TCP port."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import click

from firmware_sim.device import DeviceController
from firmware_sim.statefile import locked, read_token_data, save_token, token_from_dict
from firmware_sim.token import Token
from host.cli.options import exact_number
from host.timearg import format_time_ns
from host.wallclock import SystemClock, WallClockToken, wall_time_ns
from vserial.ports import Port, PtyPort, TcpPort, parse_host_port
from vserial.server import DeviceServer
from vtoken.clock import NS_PER_SECOND, Clock, SimulatedClock
from vtoken.errors import InvalidInputError, TransportError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: What the token's lock file says while this command holds it.
SERVE_HOLDER = "vtoken serve"


@contextlib.contextmanager
def _stop_on_signals(server: DeviceServer) -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: server.stop())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.option("--state", required=True, type=click.Path(dir_okay=False, exists=True), help="Token file to serve.")
@click.option("--link", type=click.Path(dir_okay=False), help="Keep a stable symlink to the pty here (removed on exit).")
@click.option("--tcp", "tcp", metavar="HOST:PORT", help="Also serve over TCP (pyserial socket://HOST:PORT).")
@click.option("--no-pty", is_flag=True, help="Serve over TCP only.")
@click.option("--sim", is_flag=True, help="Simulated time, driven by the simulation commands (which it accepts).")
@click.option("--speed", default="1", show_default=True, help="Real-time mode: how much faster than the wall clock.")
def serve(state: str, link: str | None, tcp: str | None, no_pty: bool, sim: bool, speed: str) -> None:
    """Serve the token in FILE on a pty (and/or TCP) until SIGINT or SIGTERM.

    The token's state is saved after every change and on exit. While it runs,
    the token file is locked: other writers (`vtoken token new --force`, a
    second `serve`) are refused with "device busy". Without --sim the token
    runs in real time (times --speed) and refuses the simulation commands, as a
    production token would; a press there is the hold that has just ended, so
    the token's clock never runs ahead of the clock it follows.

    \b
    Examples:
      vtoken serve --state fob.token --link /tmp/vtoken0
      vtoken serve --state fob.token --sim --tcp 127.0.0.1:7777
    """
    if no_pty and tcp is None:
        raise InvalidInputError("--no-pty needs --tcp HOST:PORT, or there is nothing to serve on")
    factor = exact_number(speed, "--speed")
    if sim and factor != 1:
        raise InvalidInputError("--speed applies to real-time mode; --sim time moves only by ADVANCE_TIME")
    if link is not None:
        _check_link_folder(link)
    with locked(state, wait=False, holder=SERVE_HOLDER):
        data = read_token_data(state)  # shape and checksum verified before any field is used
        resumed = data["saved_at_ns"]
        clock: Clock
        if sim:
            clock = SimulatedClock(resumed)
        else:
            wall = wall_time_ns()
            if resumed > wall:
                click.echo(
                    f"note: {state} was saved at {format_time_ns(resumed)}, "
                    f"{(resumed - wall) / NS_PER_SECOND:.1f} s ahead of this computer's clock; "
                    "the token's clock continues from there",
                    err=True,
                )
            clock = SystemClock(factor, start_ns=max(wall, resumed))
        token = token_from_dict(data, clock, source=f"token file {state}")
        if not sim:
            token = WallClockToken.following(token)
        _serve(token, state, clock, link=link, tcp=tcp, pty=not no_pty, sim=sim, speed=factor)


def _check_link_folder(link: str) -> None:
    """Refuse (bad input) a --link whose folder does not exist, before anything is opened."""
    folder = Path(link).parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InvalidInputError(f"--link {link}: the folder {folder} {what}")


def _serve(
    token: Token, state: str, clock: Clock, *, link: str | None, tcp: str | None, pty: bool, sim: bool, speed: Fraction
) -> None:
    def persist() -> None:
        save_token(token, state)

    ports: list[Port] = []
    try:
        if pty:
            try:
                ports.append(PtyPort(DeviceController(token, sim_control=sim, on_change=persist), link=link))
            except OSError as exc:
                where = f" with the link {link}" if link is not None else ""
                raise TransportError(f"cannot open a pty{where}: {exc.strerror}") from None
        if tcp is not None:
            host, port = parse_host_port(tcp)
            try:
                ports.append(TcpPort(DeviceController(token, sim_control=sim, on_change=persist), host, port))
            except OSError as exc:
                raise TransportError(f"cannot listen on {tcp}: {exc.strerror}") from None
    except BaseException:
        for opened in ports:
            opened.close()
        raise
    mode = "simulated time (simulation commands accepted)" if sim else f"real time x{speed}"
    click.echo(f"serving token {token.serial} ({token.model.name}) in {mode}")
    for opened in ports:
        if isinstance(opened, PtyPort):
            click.echo(f"pty: {opened.path}")
            if opened.link is not None:
                click.echo(f"link: {opened.link}")
        elif isinstance(opened, TcpPort):
            click.echo(f"tcp: {opened.url}")
    server = DeviceServer(ports)
    try:
        with _stop_on_signals(server):  # before the line that tells a script it may now stop us
            click.echo("stop with Ctrl-C (SIGINT) or SIGTERM", nl=True)
            server.serve_forever()
    finally:
        server.close()
        persist()
    click.echo("stopped; token state saved")
