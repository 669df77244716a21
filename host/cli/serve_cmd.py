"""``vtoken serve``: put a token file on a pseudo-terminal and/or a TCP port."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from fractions import Fraction

import click

from firmware_sim.device import DeviceController
from firmware_sim.statefile import load_token, locked, save_token, saved_time_ns
from firmware_sim.token import Token
from host.cli.options import exact_number
from host.wallclock import SystemClock, wall_time_ns
from vserial.ports import Port, PtyPort, TcpPort, parse_host_port
from vserial.server import DeviceServer
from vtoken.clock import Clock, SimulatedClock
from vtoken.errors import InvalidInputError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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

    The token's state is saved after every change and on exit. Without --sim
    the token runs in real time (times --speed) and refuses the simulation
    commands, as a production token would.

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
    with locked(state, wait=False):
        resumed = saved_time_ns(state)
        clock: Clock = SimulatedClock(resumed) if sim else SystemClock(factor, start_ns=max(wall_time_ns(), resumed))
        token = load_token(state, clock)
        _serve(token, state, clock, link=link, tcp=tcp, pty=not no_pty, sim=sim, speed=factor)


def _serve(
    token: Token, state: str, clock: Clock, *, link: str | None, tcp: str | None, pty: bool, sim: bool, speed: Fraction
) -> None:
    def persist() -> None:
        save_token(token, state)

    ports: list[Port] = []
    try:
        if pty:
            ports.append(PtyPort(DeviceController(token, sim_control=sim, on_change=persist), link=link))
        if tcp is not None:
            host, port = parse_host_port(tcp)
            ports.append(TcpPort(DeviceController(token, sim_control=sim, on_change=persist), host, port))
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
    click.echo("stop with Ctrl-C (SIGINT) or SIGTERM", nl=True)
    server = DeviceServer(ports)
    try:
        with _stop_on_signals(server):
            server.serve_forever()
    finally:
        server.close()
        persist()
    click.echo("stopped; token state saved")
