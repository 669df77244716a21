"""A real vtoken validator service for tests: uvicorn on a free 127.0.0.1 port, in a thread.

The validator's clock is a :class:`~vtoken.clock.SimulatedClock` the test drives;
the store is a real SQLite file in the test's folder. ``stop()`` (or leaving the
context) shuts uvicorn down and stops the writer.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from server.app import Service, ServiceConfig, create_app
from server.auth import make_credential
from server.groupcommit import GroupCommitter
from server.runner import ServeOptions, bind, build
from validator.records import TokenParams
from validator.sealing import Keyring, generate_master_key, seal
from validator.store import SQLiteStore, TokenStore
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.oath import TokenKind, hotp
from vtoken.serialno import make_serial

#: 2026-01-01T00:00:15Z: 15 s into a 30 s step.
START_NS = (1_767_225_600 + 15) * NS_PER_SECOND
SEED = b"12345678901234567890"
START_TIMEOUT_S = 10.0


@dataclasses.dataclass
class LiveServer:
    """What a test needs: the URL, the clock, credentials, and the token seeds."""

    url: str
    clock: SimulatedClock
    keyring: Keyring
    db: Path
    admin_token: str
    client_token: str
    service: Service
    committer: GroupCommitter
    server: uvicorn.Server
    thread: threading.Thread
    serials: list[str]

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kw)  # type: ignore[arg-type]

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def step(self) -> int:
        """The step an exact token shows now."""
        return self.clock.now_ns() // NS_PER_SECOND // 30

    @staticmethod
    def code(step: int) -> str:
        return hotp(SEED, step)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.committer.stop()


def add_tokens(store: TokenStore, keyring: Keyring, count: int, first: int = 1) -> list[str]:
    serials = [make_serial(n) for n in range(first, first + count)]
    store.add_tokens(
        [(TokenParams(serial=s, kind=TokenKind.TOTP, has_check_digit=True), seal(keyring, s, SEED)) for s in serials],
        at_ns=START_NS,
    )
    return serials


@contextmanager
def live_server(
    folder: Path,
    *,
    tokens: int = 4,
    config: ServiceConfig | None = None,
    open_store: Callable[[], TokenStore] | None = None,
    tls: tuple[Path, Path] | None = None,
    portal_db: Path | None = None,
) -> Iterator[LiveServer]:
    db = folder / "validator.db"
    keyring = Keyring(generate_master_key())
    admin, admin_text = make_credential("admin", "test admin", START_NS)
    client, client_text = make_credential("client", "test client", START_NS)
    with SQLiteStore(db) as store:
        serials = add_tokens(store, keyring, tokens)
        store.add_credential(admin)
        store.add_credential(client)
    clock = SimulatedClock(START_NS)
    options = ServeOptions(
        open_store=open_store or (lambda: SQLiteStore(db)),
        keyring=keyring,
        clock=clock,
        config=config or ServiceConfig(credential_refresh_s=0.0),
        portal_db=portal_db,
    )
    service, committer = build(options)
    sock = bind("127.0.0.1", 0)
    committer.start()
    uconfig = uvicorn.Config(
        create_app(service), log_level="warning", access_log=False, lifespan="off",
        ssl_certfile=str(tls[0]) if tls else None, ssl_keyfile=str(tls[1]) if tls else None,
    )
    server = uvicorn.Server(uconfig)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = sock.getsockname()[1]
    live = LiveServer(
        url=f"{'https' if tls else 'http'}://127.0.0.1:{port}", clock=clock, keyring=keyring, db=db,
        admin_token=admin_text, client_token=client_text, service=service, committer=committer, server=server,
        thread=thread, serials=serials,
    )
    try:
        yield live
    finally:
        live.stop()
        sock.close()
