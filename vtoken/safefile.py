"""Files that hold secrets, or that a hostile user may have put in place: one rule for each way.

Reading (:func:`read_regular_file`; token files, master key files, seed
files): open without blocking (a FIFO with no writer would otherwise hang
the reader for ever) and without taking a controlling terminal, check the
type, and whatever else the caller asks, on the open descriptor (so the
checked file is the read file), then read at most ``limit`` + 1 bytes, so
even a file that grows while it is read costs bounded memory.

Writing (:func:`create_private`, :func:`open_new_private`,
:func:`replace_private`; token files, key files, exports, fleets): a new
file is created exclusively (never over an existing file, never through a
symlink) with mode 0600 whatever the umask, written whole and fsynced; a
replacement is such a file in the same folder renamed over the old one,
then the folder is fsynced, so a crash leaves the old file or the new one,
never a mix.

Only the edges call these; each caller turns the :class:`OSError` into its
own message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "PRIVATE_FILE_MODE",
    "FileTooLargeError",
    "FolderSyncError",
    "NotRegularFileError",
    "create_private",
    "fsync_dir",
    "open_new_private",
    "read_regular_file",
    "replace_private",
    "temp_path",
]

#: Files holding seeds or keys: the owner reads and writes, nobody else.
PRIVATE_FILE_MODE = 0o600
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
)
_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)


class NotRegularFileError(OSError):
    """The path names a FIFO, device, socket or directory."""


class FolderSyncError(OSError):
    """The new file is in place, but its folder could not be fsynced: the rename may not survive a crash."""


class FileTooLargeError(OSError):
    """The file holds more than the limit; ``size`` is what its inode said, or ``limit`` + 1 if it grew."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes, more than the limit of {limit}")
        self.size = size
        self.limit = limit


def read_regular_file(
    path: str | os.PathLike[str], limit: int, *, check: Callable[[os.stat_result], None] | None = None
) -> bytes:
    """The bytes of ``path`` (at most ``limit``), which must be a regular file.

    ``check`` sees the open descriptor's ``stat`` before anything is read
    (for example to refuse a key file others may read). Raises
    :class:`NotRegularFileError`, :class:`FileTooLargeError`, or the
    :class:`OSError` of a failed open or read (``FileNotFoundError`` among
    them).
    """
    fd = os.open(Path(path), _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(f"{path} is not a regular file")
        if check is not None:
            check(info)
        if info.st_size > limit:
            raise FileTooLargeError(info.st_size, limit)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, limit + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while being read
                raise FileTooLargeError(size, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


#: fchmod errors of a file system that keeps no Unix modes (vfat, exfat): the mode given to open is all there is.
_NO_MODES = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP})


def _create(path: Path, mode: int) -> int:
    fd = os.open(path, _CREATE_FLAGS, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits the mode needs; this never adds others
    except OSError as exc:
        if exc.errno not in _NO_MODES:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
    return fd


def open_new_private(path: str | os.PathLike[str], *, mode: int = PRIVATE_FILE_MODE) -> BinaryIO:
    """Create ``path`` exclusively with exactly ``mode`` and return it open for writing (no fsync on close)."""
    return os.fdopen(_create(Path(path), mode), "wb")


def create_private(
    path: str | os.PathLike[str], data: bytes, *, mode: int = PRIVATE_FILE_MODE, sync: bool = True
) -> None:
    """Create ``path`` exclusively with exactly ``mode`` and write ``data`` whole; with ``sync``, durably.

    ``sync`` fsyncs the file and then its folder (a failure of the latter is
    :class:`FolderSyncError`, the file in place). ``FileExistsError`` if
    anything (a symlink too) is at ``path``. A write that fails removes the
    partial file before the error is raised.
    """
    target = Path(path)
    _write_new(target, data, mode, sync)
    if sync:
        _sync_folder_of(target)


def _write_new(target: Path, data: bytes, mode: int, sync: bool) -> None:
    fd = _create(target, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        with contextlib.suppress(OSError):
            target.unlink()
        raise


def _sync_folder_of(path: Path) -> None:
    try:
        fsync_dir(path.parent if str(path.parent) else ".")
    except OSError as exc:
        raise FolderSyncError(exc.errno, exc.strerror) from None


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync the folder ``path``, so the names created or renamed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A fresh hidden name beside ``path`` for a file that will be renamed or linked to it."""
    target = Path(path)
    return target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def replace_private(path: str | os.PathLike[str], data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Atomically put ``data`` at ``path`` (mode exactly ``mode``), replacing any file there.

    A temporary file beside it is created (:func:`create_private`), renamed
    over ``path``, and the folder fsynced. On any error but
    :class:`FolderSyncError` the old file is intact and the temporary file
    is gone.
    """
    target = Path(path)
    tmp = temp_path(target)
    try:
        _write_new(tmp, data, mode, sync=True)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_folder_of(target)
