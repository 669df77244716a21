"""``vtoken backend``: which check-kernel backend and CPU path are in use."""

from __future__ import annotations

import os

import click

from validator.kernel import BACKEND_ENV, CPU_PATH_ENV, get_backend


@click.command()
def backend() -> None:
    """Print the check-kernel backend and CPU path in use.

    \b
    Example:
      VTOKEN_BACKEND=python vtoken backend
      VTOKEN_CPU_PATH=portable vtoken backend
    """
    chosen = get_backend()
    click.echo(f"backend: {chosen.name}")
    click.echo(f"cpu path: {chosen.cpu_path}")
    click.echo(f"available paths: {', '.join(chosen.available_paths())}")
    click.echo(
        f"selected by: {BACKEND_ENV}={os.environ.get(BACKEND_ENV, 'auto')} "
        f"{CPU_PATH_ENV}={os.environ.get(CPU_PATH_ENV, 'auto')}"
    )
