"""The ``vtoken`` command group and its error handling.

Library code raises :class:`~vtoken.errors.VTokenError`; this is the one place
that turns it into a message on stderr and a non-zero exit code (2 for bad
input, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from host.cli.exits import EXIT_BAD_INPUT, EXIT_REFUSED
from vtoken import __version__
from vtoken.errors import InvalidInputError, VTokenError


class VTokenGroup(click.Group):
    """A click group that reports vtoken errors cleanly."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidInputError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except VTokenError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(EXIT_REFUSED)


@click.group(cls=VTokenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vtoken")
def main() -> None:
    """vtoken: a virtual OATH hardware token, its serial port, and its validator."""


def _register() -> None:
    from host.cli import backend_cmd, codes_cmd, device_cmd, fleet_cmd, serve_cmd, token_cmd, validator_cmd
    from host.cli import demo_cmd, portal_cmd, validator_service_cmd  # noqa: F401 (adds 'validator serve', 'token')
    from host.cli import loadgen_cmd, sim_cmd

    main.add_command(codes_cmd.codes)
    main.add_command(backend_cmd.backend)
    main.add_command(token_cmd.token)
    main.add_command(fleet_cmd.fleet)
    main.add_command(validator_cmd.validator)
    main.add_command(serve_cmd.serve)
    main.add_command(demo_cmd.demo)
    main.add_command(portal_cmd.portal)
    main.add_command(device_cmd.info)
    main.add_command(device_cmd.press)
    main.add_command(device_cmd.long_press)
    main.add_command(device_cmd.display)
    main.add_command(device_cmd.time_cmd)
    main.add_command(device_cmd.provision)
    main.add_command(loadgen_cmd.loadgen)
    main.add_command(sim_cmd.sim)


_register()

if __name__ == "__main__":  # pragma: no cover
    main()
