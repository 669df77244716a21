"""Reading a file a hostile user may have put in place: a regular file, bounded, never blocking.

One definition of the rule every reader at the edges follows (token files,
master key files, seed files): open without blocking (a FIFO with no writer
would otherwise hang the reader for ever) and without taking a controlling
terminal, check the type, and whatever else the caller asks, on the open
descriptor (so the checked file is the read file), then read at most
``limit`` + 1 bytes, so even a file that grows while it is read costs
bounded memory. The pure core never calls it; each caller turns these
errors into its own message.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

__all__ = ["FileTooLargeError", "NotRegularFileError", "read_regular_file"]

_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
)


class NotRegularFileError(OSError):
    """The path names a FIFO, device, socket or directory."""


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
