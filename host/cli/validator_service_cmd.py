"""``vtoken validator serve`` and ``vtoken validator token``: the validator as a network service.

Thin: resolve the options, then hand over to :mod:`server` (imported when serving, so the
other commands do not pay for the HTTP stack at start-up).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from host.cli.jsonout import echo_json, json_option
from host.cli.options import INPUT_FILE
from host.cli.validator_cmd import ValidatorContext, validator
from host.timearg import format_time_ns, time_fields
from host.wallclock import SystemClock, wall_time_ns
from server.auth import make_credential
from server.groupcommit import DEFAULT_MAX_BATCH
from validator.policy import Policy
from validator.store import CREDENTIAL_KINDS
from vtoken.errors import InvalidInputError, StorageError


def create_token(vc: ValidatorContext, kind: str, label: str) -> str:
    """Store a new credential of ``kind``; return its text (shown once)."""
    credential, text = make_credential(kind, label, wall_time_ns())
    with vc.store() as store:
        store.add_credential(credential)
    return text


@validator.command("serve")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Address to listen on (port 0: any free port, printed on start).")
@click.option("--tls-cert", type=INPUT_FILE, help="TLS certificate (PEM).")
@click.option("--tls-key", type=INPUT_FILE, help="TLS private key (PEM).")
@click.option("--require-api-key", is_flag=True,
              help="Validation endpoints need 'Authorization: Bearer <client key>' (see 'token create --client').")
@click.option("--portal-db", type=INPUT_FILE,
              help="Resolve privacyIDEA 'user' parameters through this portal database.")
@click.option("--max-batch", type=click.IntRange(1, 10_000), default=DEFAULT_MAX_BATCH, show_default=True,
              help="Most decisions committed together.")
@click.option("--throttle-ms", type=click.IntRange(0, 3_600_000), default=1000, show_default=True,
              help="After the n-th consecutive failure a token is refused for n times this (RFC 4226 §7.3).")
@click.pass_obj
def serve_cmd(
    vc: ValidatorContext, listen: str, tls_cert: str | None, tls_key: str | None, require_api_key: bool,
    portal_db: str | None, max_batch: int, throttle_ms: int,
) -> None:
    """Serve the validator over HTTP/JSON (and privacyIDEA's /validate/check) until Ctrl-C or SIGTERM.

    \b
      vtoken validator --db v.db serve --listen 127.0.0.1:8080
      curl -s -X POST localhost:8080/v1/tokens/1000000005/check -d '{"code": "123456"}'
    """
    # The HTTP stack (Starlette, uvicorn) is imported here, not at every start of the CLI.
    from server.app import ServiceConfig
    from server.runner import ServeOptions, parse_listen, serve

    host, port = parse_listen(listen)
    keyring = vc.keyring()
    vc.open_store().close()  # a missing file or an unreachable database is reported now, not in the writer
    db = vc.name

    options = ServeOptions(
        open_store=vc.open_store,
        keyring=keyring,
        clock=SystemClock(),
        host=host,
        port=port,
        tls_cert=Path(tls_cert) if tls_cert else None,
        tls_key=Path(tls_key) if tls_key else None,
        config=ServiceConfig(require_api_key=require_api_key),
        max_batch=max_batch,
        portal_db=Path(portal_db) if portal_db else None,
        policy=Policy(failure_delay_ns=throttle_ms * 1_000_000),
    )

    def ready(url: str) -> None:
        click.echo(f"vtoken validator listening on {url} (database {db}); Ctrl-C stops")
        sys.stdout.flush()

    try:
        serve(options, on_ready=ready)
    except OSError as exc:
        raise StorageError(f"cannot listen on {listen}: {exc.strerror or exc}") from None


@validator.group("token")
def token_group() -> None:
    """Bearer tokens of the service: administrators and client API keys (stored hashed)."""


@token_group.command("create")
@click.option("--client", "kind", flag_value="client", help="A client API key (check and register only).")
@click.option("--admin", "kind", flag_value="admin", default=True, help="An administrator token (the default).")
@click.option("--label", default="", help="What the token is for (shown by 'token list').")
@click.pass_obj
def token_create(vc: ValidatorContext, kind: str, label: str) -> None:
    """Create a bearer token and print it (once: only its hash is stored)."""
    click.echo(create_token(vc, kind, label))


@token_group.command("revoke")
@click.argument("ident")
@click.pass_obj
def token_revoke(vc: ValidatorContext, ident: str) -> None:
    """Revoke the token IDENT (the hex part after vtk_KIND_); a running service stops accepting it within 2 s."""
    with vc.store() as store:
        if not store.revoke_credential(ident, wall_time_ns()):
            raise InvalidInputError(f"no active token {ident}")
    click.echo(f"revoked {ident}")


@token_group.command("list")
@json_option
@click.pass_obj
def token_list(vc: ValidatorContext, as_json: bool) -> None:
    """Every token: ident, kind, created, revoked, label (never the secret)."""
    with vc.store() as store:
        found = store.credentials()
    if as_json:
        echo_json({
            "ok": True,
            "count": len(found),
            "credentials": [
                {"ident": c.ident, "kind": c.kind, "label": c.label, **time_fields("created", c.created_ns),
                 **time_fields("revoked", c.revoked_ns)}
                for c in found
            ],
        })
        return
    for c in found:
        revoked = format_time_ns(c.revoked_ns) if c.revoked_ns is not None else "-"
        click.echo(f"{c.ident}  {c.kind:<6}  created {format_time_ns(c.created_ns)}  revoked {revoked}  {c.label}")


__all__ = ["CREDENTIAL_KINDS", "create_token", "serve_cmd", "token_group"]
