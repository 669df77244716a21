"""One file per token: everything needed to restore it exactly.

The file is JSON: the raw flash image (the seed inside is AES-GCM encrypted),
the device key the MCU holds in its fuses, and the physical state (RTC
reference and crystal, temperature profile, battery, button, display). A
SHA-256 checksum over the content catches corruption.

Writes are atomic (temporary file, fsync, rename, fsync of the folder), so a
crash or a full disk never leaves a truncated token file. Two processes that
change one token serialise on an advisory lock (``<file>.lock``).

The file holds the device key, so it is as sensitive as the token itself: it is
created with mode 0600.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from firmware_sim.battery import Battery
from firmware_sim.button import Button
from firmware_sim.display import Display
from firmware_sim.flash import Flash
from firmware_sim.models import get_model
from firmware_sim.rtc import RTC
from firmware_sim.token import MenuItem, Token
from vtoken.clock import Clock
from vtoken.errors import CorruptStateError, StorageError, VTokenError

FILE_FORMAT = "vtoken-token"
FILE_VERSION = 1
FILE_MODE = 0o600
TOKEN_SUFFIX = ".token"


class TokenBusyError(StorageError):
    """Another process holds this token (for example ``vtoken serve``)."""


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(canonical).hexdigest()


def token_to_dict(token: Token) -> dict[str, Any]:
    """The token's complete state as JSON-safe data."""
    body: dict[str, Any] = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "model": token.model.name,
        "device_key": base64.b64encode(token.device_key).decode("ascii"),
        "flash": base64.b64encode(token.flash.image).decode("ascii"),
        "rtc": token.rtc.to_dict(),
        "battery": token.battery.to_dict(),
        "button": token.button.to_dict(),
        "display": token.display.to_dict(),
        "menu_item": None if token.menu_item is None else int(token.menu_item),
        "saved_at_ns": token.clock.now_ns(),
    }
    body["checksum"] = _checksum(body)
    return body


def token_from_dict(data: Any, clock: Clock, *, source: str = "token data") -> Token:
    """Rebuild a token from :func:`token_to_dict` output; CorruptStateError if damaged."""
    if not isinstance(data, dict):
        raise CorruptStateError(f"{source} is not a vtoken token file")
    if data.get("format") != FILE_FORMAT:
        raise CorruptStateError(f"{source} is not a vtoken token file (format {data.get('format')!r})")
    if data.get("version") != FILE_VERSION:
        raise CorruptStateError(f"{source} has unsupported version {data.get('version')!r}")
    body = {k: v for k, v in data.items() if k != "checksum"}
    if data.get("checksum") != _checksum(body):
        raise CorruptStateError(f"{source} is corrupt: checksum mismatch")
    try:
        device_key = base64.b64decode(data["device_key"], validate=True)
        flash = Flash.from_image(base64.b64decode(data["flash"], validate=True), device_key)
        menu = data.get("menu_item")
        return Token(
            model=get_model(data["model"]),
            flash=flash,
            device_key=device_key,
            rtc=RTC.from_dict(data["rtc"]),
            battery=Battery.from_dict(data["battery"]),
            button=Button.from_dict(data["button"]),
            display=Display.from_dict(data["display"]),
            menu_item=None if menu is None else MenuItem(menu),
            clock=clock,
        )
    except CorruptStateError:
        raise
    except (VTokenError, KeyError, TypeError, ValueError) as exc:
        raise CorruptStateError(f"{source} is corrupt: {type(exc).__name__}") from None


def saved_time_ns(path: str | os.PathLike[str]) -> int:
    """The true time recorded when the token file was last saved."""
    return int(_read_json(Path(path))["saved_at_ns"])


def _read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StorageError(f"token file {path} does not exist") from None
    except OSError as exc:
        raise StorageError(f"cannot read token file {path}: {exc.strerror}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptStateError(f"token file {path} is corrupt: not valid JSON") from None


def load_token(path: str | os.PathLike[str], clock: Clock) -> Token:
    """Read a token file and restore the token, reading time from ``clock``."""
    path = Path(path)
    return token_from_dict(_read_json(path), clock, source=f"token file {path}")


def save_token(token: Token, path: str | os.PathLike[str]) -> None:
    """Write the token file atomically (temp file, fsync, rename, fsync folder), mode 0600."""
    path = Path(path)
    payload = (json.dumps(token_to_dict(token), indent=1, sort_keys=True) + "\n").encode("utf-8")
    folder = path.parent if str(path.parent) else Path(".")
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(f"cannot write token file {path}: {exc.strerror}; the previous file is intact") from None


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], *, wait: bool = True) -> Iterator[None]:
    """Hold the token's advisory lock; with ``wait=False`` fail at once if it is taken."""
    lock_path = Path(f"{os.fspath(path)}.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise StorageError(f"cannot open lock file {lock_path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise TokenBusyError(f"token {path} is in use by another process") from None
            raise
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_token(path: str | os.PathLike[str], clock: Clock, *, save: bool = True) -> Iterator[Token]:
    """Load a token under its lock, yield it, and save it back (unless ``save=False``)."""
    with locked(path):
        token = load_token(path, clock)
        yield token
        if save:
            save_token(token, path)
