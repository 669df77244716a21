"""One file per token: everything needed to restore it exactly.

The file is JSON: the raw flash image (the seed inside is AES-GCM encrypted),
the device key the MCU holds in its fuses, and the physical state (RTC
reference and crystal, temperature profile, battery, button, display). A
SHA-256 checksum over the content catches corruption.

Writes are atomic (temporary file, fsync, rename, fsync of the folder), so a
crash or a full disk never leaves a truncated token file. Two processes that
change one token serialise on an advisory lock (``<file>.lock``), which also
records who holds it (``vtoken serve``, pid), so a writer that finds the token
busy says by whom. Every writer takes that lock: :func:`open_token` to change
a token, :func:`save_new_token` to make or replace one; only the lock holder
calls :func:`save_token`.

A file is trusted only after its shape and checksum are verified
(:func:`read_token_data`); any damage, whatever its form, is a
:class:`CorruptStateError` naming the file. Reading is bounded: a token file is
a regular file of at most :data:`MAX_TOKEN_FILE_BYTES`.

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
from vtoken.safefile import (
    PRIVATE_FILE_MODE,
    FileTooLargeError,
    FolderSyncError,
    NotRegularFileError,
    read_regular_file,
    replace_private,
)
from vtoken.clock import Clock
from vtoken.errors import CorruptStateError, StorageError, VTokenError

FILE_FORMAT = "vtoken-token"
FILE_VERSION = 1
FILE_MODE = PRIVATE_FILE_MODE
TOKEN_SUFFIX = ".token"
LOCK_SUFFIX = ".lock"
#: A token file is about 2 KB; anything larger is refused before it is read.
MAX_TOKEN_FILE_BYTES = 1 << 20
#: The lock file holds ``<pid> <holder>``; at most this much of it is read back.
MAX_LOCK_INFO_BYTES = 256
#: Who holds the lock when the caller does not say.
DEFAULT_HOLDER = "vtoken"
#: The latest save time a file may record: the largest time the wire protocol carries (uint64 ns).
MAX_SAVED_AT_NS = 2**64 - 1

#: Every top-level field of a token file and the JSON type it must have (checked after the checksum).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,),
    "version": (int,),
    "model": (str,),
    "device_key": (str,),
    "flash": (str,),
    "rtc": (dict,),
    "battery": (dict,),
    "button": (dict,),
    "display": (dict,),
    "menu_item": (int, type(None)),
    "saved_at_ns": (int,),
    "checksum": (str,),
}
_JSON_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object", type(None): "null"}
#: Foreign values quoted in messages are cut to this many characters.
_SHORT_REPR = 40


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
        # The token's own true time: never before its last button event, so nothing in the file is later.
        "saved_at_ns": token.now_ns(),
    }
    body["checksum"] = _checksum(body)
    return body


def verify_token_data(data: Any, *, source: str = "token data") -> dict[str, Any]:
    """Check that ``data`` is a whole, undamaged token file; return it. CorruptStateError if not.

    Order matters: kind and version first, then the checksum over everything,
    then the type of every field, so that no value is used before it is trusted.
    """
    if not isinstance(data, dict):
        raise CorruptStateError(f"{source} is not a vtoken token file (not a JSON object)")
    if data.get("format") != FILE_FORMAT:
        raise CorruptStateError(f"{source} is not a vtoken token file (format {_short(data.get('format'))})")
    version = data.get("version")
    if isinstance(version, bool) or version != FILE_VERSION:
        raise CorruptStateError(f"{source} has unsupported version {_short(version)}")
    if not isinstance(data.get("checksum"), str):
        raise CorruptStateError(f"{source} is corrupt: no checksum")
    body = {k: v for k, v in data.items() if k != "checksum"}
    try:
        expected = _checksum(body)
    except (TypeError, ValueError, RecursionError):
        raise CorruptStateError(f"{source} is corrupt: checksum mismatch") from None
    if data["checksum"] != expected:
        raise CorruptStateError(f"{source} is corrupt: checksum mismatch")
    for field, types in _FIELD_TYPES.items():
        if field not in data:
            raise CorruptStateError(f"{source} is corrupt: field {field!r} is missing")
        value = data[field]
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join(_JSON_TYPE_NAMES[t] for t in types)
            raise CorruptStateError(f"{source} is corrupt: field {field!r} must be {wanted}")
    if not 0 <= data["saved_at_ns"] <= MAX_SAVED_AT_NS:
        raise CorruptStateError(f"{source} is corrupt: field 'saved_at_ns' is out of range")
    return data


def _short(value: Any) -> str:
    """A value for a message about a file that is not ours: its repr, cut short."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= _SHORT_REPR else text[: _SHORT_REPR - 3] + "..."


def token_from_dict(data: Any, clock: Clock, *, source: str = "token data") -> Token:
    """Rebuild a token from :func:`token_to_dict` output; CorruptStateError if damaged."""
    data = verify_token_data(data, source=source)
    try:
        device_key = base64.b64decode(data["device_key"], validate=True)
        flash = Flash.from_image(base64.b64decode(data["flash"], validate=True), device_key)
        menu = data["menu_item"]
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
    except (
        VTokenError, KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError
    ) as exc:
        # Checksum-valid but inconsistent content (written by hand, or by another program).
        raise CorruptStateError(f"{source} is corrupt: {type(exc).__name__}") from None


def read_token_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The verified content of a token file (shape and checksum checked); CorruptStateError if damaged."""
    path = Path(path)
    return verify_token_data(_read_json(path), source=f"token file {path}")


def saved_time_ns(path: str | os.PathLike[str]) -> int:
    """The true time recorded when the token file was last saved (read only after verifying the file)."""
    return int(read_token_data(path)["saved_at_ns"])


def _read_json(path: Path) -> Any:
    """Parse a token file: a regular file of bounded size (never blocks on a FIFO, :mod:`vtoken.safefile`)."""
    try:
        raw = read_regular_file(path, MAX_TOKEN_FILE_BYTES)
    except FileNotFoundError:
        raise StorageError(f"token file {path} does not exist") from None
    except NotRegularFileError:
        raise StorageError(f"token file {path} is not a regular file") from None
    except FileTooLargeError as exc:
        raise CorruptStateError(
            f"token file {path} is corrupt: {exc.size} bytes, more than a token file's {MAX_TOKEN_FILE_BYTES}"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot read token file {path}: {exc.strerror}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers bad JSON and an integer beyond Python's digit limit.
        raise CorruptStateError(f"token file {path} is corrupt: not valid JSON") from None


def load_token(path: str | os.PathLike[str], clock: Clock) -> Token:
    """Read a token file and restore the token, reading time from ``clock``."""
    path = Path(path)
    return token_from_dict(_read_json(path), clock, source=f"token file {path}")


def token_file_bytes(data: dict[str, Any]) -> bytes:
    """The bytes of a token file holding ``data`` (:func:`token_to_dict` output): the one file layout."""
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8")


def save_token(token: Token, path: str | os.PathLike[str]) -> None:
    """Write the token file atomically (temp file, fsync, rename, fsync folder), mode 0600.

    Call it only while holding the token's lock (:func:`locked`, :func:`open_token`),
    or use :func:`save_new_token`.
    """
    path = Path(path)
    payload = token_file_bytes(token_to_dict(token))
    try:
        replace_private(path, payload, mode=FILE_MODE)
    except FolderSyncError as exc:
        raise StorageError(
            f"token file {path} was written, but its folder could not be synced to disk: {exc.strerror}"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot write token file {path}: {exc.strerror}; the previous file is intact") from None


def save_new_token(token: Token, path: str | os.PathLike[str], *, replace: bool = False) -> None:
    """Write a new token file under the token's lock; refuse an existing file unless ``replace``.

    Fails at once with :class:`TokenBusyError` while another process holds the
    token (``vtoken serve`` would later write its own state over this one).
    """
    path = Path(path)
    with locked(path, wait=False, holder="making a token file"):
        if not replace and (path.exists() or path.is_symlink()):
            raise StorageError(f"{path} already exists; use --force to replace it")
        save_token(token, path)


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The advisory lock file of the token file ``path``."""
    return Path(f"{os.fspath(path)}{LOCK_SUFFIX}")


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], *, wait: bool = True, holder: str = DEFAULT_HOLDER) -> Iterator[None]:
    """Hold the token's advisory lock; with ``wait=False`` fail at once if it is taken.

    The holder writes ``<pid> <holder>`` into the lock file, so a process that
    finds the token busy can say who has it: ``device busy: t.token is in use
    by another process (vtoken serve, pid 4242)``.
    """
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    except FileNotFoundError:
        folder = lock.parent if str(lock.parent) else Path(".")
        raise StorageError(f"cannot use token file {path}: folder {folder} does not exist") from None
    except OSError as exc:
        raise StorageError(f"cannot open lock file {lock}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise TokenBusyError(_busy_message(path, fd)) from None
            raise StorageError(f"cannot lock token file {path}: {exc.strerror}") from None
        _record_holder(fd, holder)
        yield
    finally:
        os.close(fd)


def _record_holder(fd: int, holder: str) -> None:
    """Write ``<pid> <holder>`` into the lock file we hold (best effort: the lock is what counts)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {holder}\n".encode("utf-8", "replace"), 0)


def _busy_message(path: str | os.PathLike[str], fd: int) -> str:
    """``device busy: …`` naming the holder and its pid when the lock file says who it is."""
    base = f"device busy: {os.fspath(path)} is in use by another process"
    try:
        raw = os.pread(fd, MAX_LOCK_INFO_BYTES, 0)
    except OSError:
        return base
    pid_text, _, holder = raw.decode("utf-8", "replace").strip().partition(" ")
    if not pid_text.isdigit():
        return base
    holder = "".join(c for c in holder if c.isprintable())[:MAX_LOCK_INFO_BYTES] or DEFAULT_HOLDER
    return f"{base} ({holder}, pid {pid_text}); stop it first, or wait until it is done"


@contextlib.contextmanager
def open_token(
    path: str | os.PathLike[str], clock: Clock, *, save: bool = True, wait: bool = True, holder: str = DEFAULT_HOLDER
) -> Iterator[Token]:
    """Load a token under its lock, yield it, and save it back (unless ``save=False``).

    ``wait=False``: fail at once with :class:`TokenBusyError` if another process
    holds the token (as ``vtoken serve`` does for as long as it runs) instead of waiting.
    """
    with locked(path, wait=wait, holder=holder):
        token = load_token(path, clock)
        yield token
        if save:
            save_token(token, path)
