"""``vtoken demo``: the whole portal story in one command."""

from __future__ import annotations

import click

from host.demo import run_demo


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False),
              help="Keep the run here (a new or empty folder): database, key file, outbox, PSKC file.")
def demo(workdir: str | None) -> None:
    """Walk one user through purchase, license key, proofing, activation, registration,
    sign-ins, a lost token and its replacement, against a virtual token on a real pty.

    With --dir the run is kept as `vtoken validator` and `vtoken portal` find it:
    DIR/portal.db, its master key DIR/portal.db.key (mode 0600; $VTOKEN_MASTER_KEY
    instead when set) and the outbox DIR/portal.db.outbox.jsonl. The summary ends
    with commands that open them, such as `vtoken portal --db DIR/portal.db outbox`.

    \b
    Example:
      vtoken demo
      vtoken demo --dir demo-run/
    """
    run_demo(workdir, echo=click.echo)
