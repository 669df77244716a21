"""``vtoken validator ...``: the server side from the command line.

The store is a SQLite file (``--db``, default ``$VTOKEN_DB`` or ``vtoken.db``);
the master key that encrypts seeds at rest comes from ``$VTOKEN_MASTER_KEY``
or from a key file (``--key-file``, default ``<db>.key``) made by ``init``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from host.cli.device_cmd import params_json
from host.cli.exits import EXIT_REFUSED
from host.cli.jsonout import echo_json, json_option
from host.cli.options import INPUT_FILE, at_option, hex_bytes, plural, time_or_now
from host.timearg import format_time_ns, time_fields
from validator.importer import FORMATS, ImportOptions, import_file
from validator.sealing import (
    ENV_VAR,
    Keyring,
    generate_master_key,
    load_key_file,
    master_key_from_env,
    write_key_file,
)
from validator.records import TokenRecord
from validator.service import Result, TokenStatus, Validator
from validator.store import SQLiteStore, TokenStore, describe_db, is_postgres_url
from vtoken.clock import NS_PER_SECOND, SimulatedClock
from vtoken.errors import InvalidInputError, MasterKeyError, StorageError
from vtoken.safefile import FileTooLargeError, read_regular_file

DB_ENV = "VTOKEN_DB"
DEFAULT_DB = "vtoken.db"
KEY_SUFFIX = ".key"
NEW_KEY_SUFFIX = ".key.new"


class ValidatorContext:
    """Where the store and its master key live, resolved from the options.

    ``--db`` is an SQLite file, or a ``postgresql://`` URL shared by several nodes;
    a PostgreSQL deployment keeps its master key in ``--key-file`` or
    ``$VTOKEN_MASTER_KEY`` (the same key on every node).
    """

    def __init__(self, db: str, key_file: str | None) -> None:
        self.url = db if is_postgres_url(db) else None
        self.db = Path(db)
        self.key_file = Path(key_file) if key_file else Path(f"{db}{KEY_SUFFIX}")
        self._explicit_key_file = key_file is not None

    @property
    def name(self) -> str:
        """The database as messages name it (never with a password)."""
        return str(self.db) if self.url is None else describe_db(self.url)

    def open_store(self) -> TokenStore:
        """Open the store (any thread may call this: the service's writer does)."""
        if self.url is not None:
            from validator.pgstore import PostgresStore

            return PostgresStore(self.url)
        if not self.db.exists():
            raise StorageError(f"no validator database at {self.db}: run 'vtoken validator --db {self.db} init'")
        return SQLiteStore(self.db)

    @property
    def pending_key_file(self) -> Path:
        """A rotated key not yet moved into place (a rotation interrupted after its commit)."""
        return self.key_file.with_name(self.key_file.name + ".new")

    def keyring(self) -> Keyring:
        """The master key (from the environment, else the key file), plus a pending rotated key."""
        env = master_key_from_env()
        if env is not None:
            return Keyring(env)
        if self.url is not None and not self._explicit_key_file:
            raise MasterKeyError(
                f"a PostgreSQL database needs --key-file or ${ENV_VAR}: the same master key on every node"
            )
        if not self.key_file.exists():
            raise MasterKeyError(
                f"no master key: set {ENV_VAR} or run 'vtoken validator --db {self.db} init' "
                f"(expected key file {self.key_file})"
            )
        current = load_key_file(self.key_file)
        older = [load_key_file(self.pending_key_file)] if self.pending_key_file.exists() else []
        return Keyring(current, older)

    @contextlib.contextmanager
    def store(self) -> Iterator[TokenStore]:
        """The opened store; refuses an SQLite file that was never initialised."""
        with self.open_store() as store:
            yield store

    @contextlib.contextmanager
    def validator(self, at_ns: int) -> Iterator[Validator]:
        """A validator acting at true time ``at_ns``."""
        keyring = self.keyring()
        with self.store() as store:
            yield Validator(store, keyring, SimulatedClock(at_ns))


@click.group()
@click.option("--db", default=lambda: os.environ.get(DB_ENV, DEFAULT_DB), show_default=f"${DB_ENV} or {DEFAULT_DB}",
              help="The validator's SQLite file, or a postgresql:// URL (shared by several nodes).")
@click.option("--key-file", default=None, help="Master key file (default: <db>.key); $VTOKEN_MASTER_KEY wins.")
@click.pass_context
def validator(ctx: click.Context, db: str, key_file: str | None) -> None:
    """The validator: token store, PSKC import, registration, verification.

    \b
    Example:
      vtoken validator --db v.db init
      vtoken validator --db v.db import fleet/tokens.pskc --password hunter2
      vtoken validator --db v.db register 1000000005 123456 654321
      vtoken validator --db v.db check 1000000005 246810
    """
    ctx.obj = ValidatorContext(db, key_file)


@validator.command()
@click.pass_obj
def init(vc: ValidatorContext) -> None:
    """Create the database and (unless $VTOKEN_MASTER_KEY is set) a master key file, mode 0600."""
    if vc.url is None and vc.db.exists():
        raise StorageError(f"{vc.db} already exists")
    if vc.url is not None and master_key_from_env() is None and not vc._explicit_key_file:
        raise MasterKeyError(f"a PostgreSQL database needs --key-file or ${ENV_VAR}: the same master key on every node")
    if master_key_from_env() is None and not (vc.url is not None and vc.key_file.exists()):
        write_key_file(vc.key_file, generate_master_key())
        where = f"master key in {vc.key_file} (mode 0600): back it up; without it the seeds are lost"
    elif master_key_from_env() is None:
        where = f"master key in {vc.key_file} (kept: another node made it)"
    else:
        where = f"master key from ${ENV_VAR}"
    if vc.url is None:
        SQLiteStore(vc.db).close()
    else:
        vc.open_store().close()  # creates or migrates the schema under an advisory lock
    click.echo(f"validator database {vc.name} {'created' if vc.url is None else 'ready'}; {where}")
    from host.cli.validator_service_cmd import create_token  # the service's edge, imported only here

    token = create_token(vc, "admin", "made by init")
    click.echo(f"administrator token for 'validator serve' (shown once, stored hashed): {token}")


@validator.command("import")
@click.argument("file", type=INPUT_FILE)
@click.option("--psk", metavar="HEX", help="Pre-shared AES key of an encrypted PSKC file.")
@click.option("--password", metavar="P", help="Password of a PBKDF2-protected PSKC file.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="pskc, csv (OATH CSV, with or without a header) or otpauth (one URI per line).")
@click.option("--certificate", type=INPUT_FILE, help="Verify a signed PSKC file against this PEM "
              "certificate (the signer's).")
@click.option("--ignore-signature", is_flag=True, help="Import a signed PSKC file without checking its signature.")
@click.option("--skip-unsupported", is_flag=True, help="Import the HOTP and TOTP keys of a file that also holds "
              "keys of other kinds (OCRA, PIN, password, Yubikey, SecurID), and list what was skipped.")
@at_option
@json_option
@click.pass_obj
def import_cmd(
    vc: ValidatorContext,
    file: str,
    psk: str | None,
    password: str | None,
    fmt: str,
    certificate: str | None,
    ignore_signature: bool,
    skip_unsupported: bool,
    at: str | None,
    as_json: bool,
) -> None:
    """Import every token of a PSKC, OATH CSV or otpauth file, all or nothing.

    \b
    Examples:
      vtoken validator --db v.db import fleet/tokens.pskc --password hunter2
      vtoken validator --db v.db import vendor.xml --psk 12345678901234567890123456789012 --skip-unsupported
      vtoken validator --db v.db import signed.xml --certificate vendor-cert.pem
    """
    if certificate is not None and ignore_signature:
        raise InvalidInputError("give --certificate or --ignore-signature, not both")
    options = ImportOptions(
        psk=hex_bytes(psk, "--psk") if psk else None,
        password=password,
        certificate=_read_certificate(certificate) if certificate is not None else None,
        ignore_signature=ignore_signature,
        skip_unsupported=skip_unsupported,
    )
    keyring = vc.keyring()
    with vc.store() as store:
        report = import_file(store, keyring, file, format=fmt, now_ns=time_or_now(at), options=options)
    if as_json:
        echo_json({
            "ok": True,
            "file": file,
            "format": report.format,
            "count": report.count,
            "serials": list(report.serials),
            "kinds": {kind.value: n for kind, n in report.kinds.items()},
            "notes": list(report.notes),
            "skipped": list(report.skipped),
        })
        return
    kinds = ", ".join(f"{n} {kind.value}" for kind, n in report.kinds.items())
    click.echo(f"imported {plural(report.count, 'token')} from {file} ({kinds})")
    for note in report.notes:
        click.echo(f"note: {note}")
    for skipped in report.skipped:
        click.echo(f"skipped: {skipped}")


#: Largest certificate file read (a PEM certificate is a few KiB).
MAX_CERTIFICATE_BYTES = 256 * 1024


def _read_certificate(path: str) -> str:
    try:
        data = read_regular_file(path, MAX_CERTIFICATE_BYTES)  # a FIFO or device is refused, never waited on
    except FileTooLargeError:
        data = b""  # far larger than any certificate: not one
    except OSError as exc:
        raise InvalidInputError(f"--certificate {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InvalidInputError(f"--certificate {path}: not a PEM certificate")
    return data.decode("ascii", "replace")


def result_json(result: Result) -> dict[str, Any]:
    """A check, registration or unlock for ``--json``: ``ok`` is whether it was accepted."""
    return {
        "ok": result.accepted,
        "reason": result.reason.value,
        "message": result.message,
        "serial": result.serial,
        "step": result.step,
        "offset_steps": result.offset_steps,
        "offset_ns": result.offset_ns,
        "failures": result.failures,
        "attempts_left": result.attempts_left,
        **time_fields("retry_at", result.retry_at_ns),
    }


def _report(result: Result, as_json: bool) -> None:
    """Print the result (text or ``--json``); exit 1 when it was refused."""
    if as_json:
        echo_json(result_json(result))
        if not result.accepted:
            raise SystemExit(EXIT_REFUSED)
        return
    if result.accepted:
        extra = ""
        if result.offset_ns is not None:
            extra = f" (step {result.step}, token offset {result.offset_ns / NS_PER_SECOND:+.1f} s)"
        elif result.step is not None:
            extra = f" (counter {result.step})"
        click.echo(f"{result.message}{extra}")
        return
    click.echo(f"refused ({result.reason.value}): {result.message}")
    raise SystemExit(EXIT_REFUSED)


@validator.command()
@click.argument("serial")
@click.argument("code1")
@click.argument("code2")
@at_option
@json_option
@click.pass_obj
def register(vc: ValidatorContext, serial: str, code1: str, code2: str, at: str | None, as_json: bool) -> None:
    """Register (or resync) SERIAL with two consecutive codes. Exit 0 on success, 1 on refusal."""
    with vc.validator(time_or_now(at)) as v:
        _report(v.register(serial, code1, code2), as_json)


@validator.command()
@click.argument("serial")
@click.argument("code")
@at_option
@json_option
@click.pass_obj
def check(vc: ValidatorContext, serial: str, code: str, at: str | None, as_json: bool) -> None:
    """Verify one code. Exit 0 when accepted, 1 when refused (the reason is printed)."""
    with vc.validator(time_or_now(at)) as v:
        _report(v.check(serial, code), as_json)


def _state(rec: TokenRecord) -> str:
    """``locked``, ``registered`` or ``new``: a token's state as 'list' prints it."""
    return "locked" if rec.locked else "registered" if rec.registered else "new"


def _token_json(rec: TokenRecord) -> dict[str, Any]:
    """A stored token for ``--json``: serial, parameters and state (as 'list' prints them)."""
    p = rec.params
    return {
        "serial": rec.serial,
        **params_json(p.kind.value, p.algorithm.value, p.digits, p.period, p.t0, p.counter),
        "state": _state(rec),
        "registered": rec.registered,
        "locked": rec.locked,
    }


def _sigma_ns(sigma_s: float | None) -> int | None:
    return None if sigma_s is None else round(sigma_s * NS_PER_SECOND)


def status_json(status: TokenStatus, now: int) -> dict[str, Any]:
    """What 'show' prints, for ``--json``: the drift fields are None for HOTP and unregistered tokens."""
    rec = status.record
    return {
        "ok": True,
        **_token_json(rec),
        "lock_reason": rec.lock_reason or None,
        "failures": rec.failures,
        "resync_failures": rec.resync_failures,
        "last_step": rec.last_step,
        **time_fields("at", now),
        "offset_steps": status.offset_steps,
        "offset_ns": status.offset_ns,
        "offset_sigma_ns": _sigma_ns(status.offset_sigma_s),
        "rate_ppm": status.rate_ppm,
        "rate_sigma_ppm": status.rate_sigma_ppm,
        "single_window_codes": status.single_window_codes,
        "next_code_window_codes": status.next_code_window_codes,
        "false_accept_per_guess": status.false_accept_per_guess,
        "false_accept_pair": status.false_accept_pair,
        "history": [{**time_fields("at", h.at_ns), "step": h.step, "event": h.event} for h in status.history],
    }


@validator.command()
@click.argument("serial")
@at_option
@json_option
@click.pass_obj
def show(vc: ValidatorContext, serial: str, at: str | None, as_json: bool) -> None:
    """Offset and drift rate with their uncertainty, windows, false-accept chance, failures, lock, history of SERIAL."""
    now = time_or_now(at)
    with vc.validator(now) as v:
        status = v.status(serial)
    if as_json:
        echo_json(status_json(status, now))
        return
    rec = status.record
    p = rec.params
    click.echo(f"serial:       {rec.serial}")
    click.echo(f"type:         {p.kind.value}, {p.algorithm.value}, {p.digits} digits"
               + (f", {p.period} s, T0 {p.t0}" if p.kind.value == "totp" else f", imported counter {p.counter}"))
    click.echo(f"registered:   {'yes' if rec.registered else 'no'}")
    if status.offset_ns is not None:
        click.echo(f"offset:       {plural(status.offset_steps, 'step', signed=True)} "
                   f"({status.offset_ns / NS_PER_SECOND:+.1f} s "
                   f"± {status.offset_sigma_s:.1f} s) at {format_time_ns(now)}")
        click.echo(f"rate:         {status.rate_ppm:+.2f} ppm ± {status.rate_sigma_ppm:.2f} ppm")
        click.echo(f"windows:      {plural(status.single_window_codes or 0, 'code')} alone, "
                   f"{plural(status.next_code_window_codes or 0, 'code')} with the next code")
        click.echo(f"false accept: {status.false_accept_per_guess:.1e} per guess alone, "
                   f"{status.false_accept_pair:.1e} per guessed next-code pair")
    elif status.single_window_codes is not None and rec.registered:
        click.echo(f"window:       {plural(status.single_window_codes, 'counter')} ahead")
        click.echo(f"false accept: {status.false_accept_per_guess:.1e} per guess")
    click.echo(f"last step:    {rec.last_step if rec.last_step is not None else '-'}")
    click.echo(f"failures:     {rec.failures} (resync {rec.resync_failures})")
    click.echo(f"locked:       {'yes (' + rec.lock_reason + ')' if rec.locked else 'no'}")
    click.echo(f"history:      {plural(len(status.history), 'matched code')}")
    for entry in status.history[-10:]:
        click.echo(f"  {format_time_ns(entry.at_ns)}  step {entry.step}  {entry.event}")


@validator.command("list")
@json_option
@click.pass_obj
def list_cmd(vc: ValidatorContext, as_json: bool) -> None:
    """Every token in the store, one per line."""
    with vc.store() as store:
        records = store.list_tokens()
    if as_json:
        echo_json({
            "ok": True,
            "count": len(records),
            "tokens": [_token_json(rec) for rec in records],
        })
        return
    for rec in records:
        click.echo(f"{rec.serial}  {rec.params.kind.value}  {rec.params.digits} digits  {_state(rec)}")
    click.echo(plural(len(records), "token"))


@validator.command()
@click.argument("serial")
@at_option
@json_option
@click.pass_obj
def unlock(vc: ValidatorContext, serial: str, at: str | None, as_json: bool) -> None:
    """Administrator unlock of SERIAL: clears failures and any lock."""
    with vc.validator(time_or_now(at)) as v:
        _report(v.unlock(serial), as_json)


@validator.command("rotate-key")
@click.pass_obj
def rotate_key(vc: ValidatorContext) -> None:
    """Re-encrypt every seed under a new master key, then replace the key file."""
    if master_key_from_env() is not None:
        raise MasterKeyError(
            f"the master key comes from ${ENV_VAR}; rotate it by moving to a key file "
            "(unset the variable and use --key-file) or re-import"
        )
    pending = vc.pending_key_file
    with vc.store() as store:
        if pending.exists():
            if load_key_file(pending).key_id in store.sealed_key_ids():
                os.replace(pending, vc.key_file)  # an earlier rotation committed but stopped before this step
            else:
                pending.unlink()  # an earlier rotation failed before its commit; the store never used it
        keyring = vc.keyring()
        new_key = generate_master_key()
        write_key_file(pending, new_key)
        count = store.rekey(keyring, new_key)
    os.replace(pending, vc.key_file)
    click.echo(f"{plural(count, 'seed')} re-encrypted under key {new_key.key_id}; {vc.key_file} replaced")
