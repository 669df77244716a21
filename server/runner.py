"""Assemble and run the service: store, writer, app, uvicorn on a socket bound here.

``uvicorn`` (with ``httptools`` and ``uvloop``) serves the Starlette app; the
socket is bound before the server starts so ``--listen 127.0.0.1:0`` works and
the real port is reported to whoever started us.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn

from server.app import Service, ServiceConfig, create_app
from server.groupcommit import DEFAULT_MAX_BATCH, GroupCommitter
from server.metrics import Metrics
from validator.kernel import get_backend
from validator.policy import Policy
from validator.sealing import Keyring
from validator.service import Validator
from validator.store import TokenStore
from vtoken.clock import Clock
from vtoken.errors import InvalidConfigError

#: Seconds uvicorn waits for open requests when asked to stop.
GRACEFUL_S = 5


@dataclasses.dataclass
class ServeOptions:
    """What ``vtoken validator serve`` needs (resolved by the CLI)."""

    open_store: Callable[[], TokenStore]
    keyring: Keyring
    clock: Clock
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    config: ServiceConfig = dataclasses.field(default_factory=ServiceConfig)
    max_batch: int = DEFAULT_MAX_BATCH
    portal_db: Path | None = None
    policy: Policy | None = None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535 or not host:
        raise InvalidConfigError(f"--listen must be HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def portal_resolver(path: Path) -> Callable[[Validator, str, str], str | None]:
    """``user`` (account e-mail or id) → the serial of the account's current token, from the portal tables."""
    from portal.records import CredentialState
    from portal.store import PortalStore

    local = threading.local()  # runs on the writer thread: one connection there

    def resolve(validator: Validator, user: str, realm: str) -> str | None:
        store = getattr(local, "store", None)
        if store is None:
            store = local.store = PortalStore(path)
        for account in store.all("account"):
            if user in (account.email, account.id):
                credentials = store.by_owner("credential", account.id)
                usable = [c for c in credentials if c.serial and c.state is not CredentialState.LOST]
                return usable[-1].serial if usable else None
        return None

    return resolve


def build(options: ServeOptions) -> tuple[Service, GroupCommitter]:
    """The service and its writer (not started)."""
    metrics = Metrics()
    backend = get_backend()
    committer = GroupCommitter(
        options.open_store,
        lambda store: Validator(store, options.keyring, options.clock, policy=options.policy, backend=backend),
        max_batch=options.max_batch,
        on_batch=metrics.observe_batch,
    )
    resolver = portal_resolver(options.portal_db) if options.portal_db is not None else None
    service = Service(committer, options.config, metrics, kernel=backend.name, resolve_user=resolver)
    return service, committer


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv4 or IPv6 by the host's form)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(options: ServeOptions, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM: bind, start the writer, serve, drain, stop the writer."""
    if (options.tls_cert is None) != (options.tls_key is None):
        raise InvalidConfigError("give both --tls-cert and --tls-key, or neither")
    service, committer = build(options)
    sock = bind(options.host, options.port)
    try:
        committer.start()
    except BaseException:
        sock.close()
        raise
    try:
        config = uvicorn.Config(
            create_app(service),
            log_level="warning",
            access_log=False,  # paths carry serials; bodies (codes) are never logged either way
            ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
            ssl_keyfile=str(options.tls_key) if options.tls_key else None,
            timeout_graceful_shutdown=GRACEFUL_S,
            lifespan="off",
            server_header=False,
        )
        server = uvicorn.Server(config)
        scheme = "https" if options.tls_cert else "http"
        host, port = sock.getsockname()[:2]
        url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"
        if on_ready is not None:
            # uvicorn starts accepting on our socket as soon as it runs; announce just before.
            on_ready(url)
        server.run(sockets=[sock])
    finally:
        sock.close()
        committer.stop()


__all__ = ["ServeOptions", "build", "parse_listen", "portal_resolver", "serve"]
