"""``vtoken demo``: the whole portal story in one command."""

from __future__ import annotations

import click

from host.demo import run_demo


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False), help="Keep the database, PSKC and outbox here.")
def demo(workdir: str | None) -> None:
    """Walk one user through purchase, license key, proofing, activation, registration,
    sign-ins, a lost token and its replacement, against a virtual token on a real pty.

    \b
    Example:
      vtoken demo
      vtoken demo --dir demo-run/
    """
    run_demo(workdir, echo=click.echo)
