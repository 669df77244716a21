"""vtoken.boundedread: the one rule for reading a file a hostile user may have put in place."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from vtoken.boundedread import FileTooLargeError, NotRegularFileError, read_regular_file

LIMIT = 16


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
def test_a_regular_file_within_the_limit_is_read_whole(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(range(size)))
    assert read_regular_file(path, LIMIT) == bytes(range(size))


@pytest.mark.parametrize("size", [LIMIT + 1, 10 * LIMIT])
def test_a_larger_file_is_refused_by_its_size_before_any_read(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * size)
    with pytest.raises(FileTooLargeError) as info:
        read_regular_file(path, LIMIT)
    assert (info.value.size, info.value.limit) == (size, LIMIT)


def test_a_file_larger_than_its_inode_says_is_cut_at_the_limit() -> None:
    """/proc files claim 0 bytes and hold more: as a file growing while it is read, at most limit + 1 are read."""
    with pytest.raises(FileTooLargeError) as info:
        read_regular_file("/proc/self/maps", LIMIT)
    assert info.value.size == LIMIT + 1


def test_a_fifo_with_no_writer_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(NotRegularFileError):
        read_regular_file(fifo, LIMIT)
    assert time.monotonic() - started < 5  # a blocking open would never return


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "."])
def test_devices_and_folders_are_refused(path: str) -> None:
    with pytest.raises(NotRegularFileError):
        read_regular_file(path, LIMIT)


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", LIMIT)


def test_the_check_sees_the_open_file_and_can_refuse_before_any_read(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"secret")
    path.chmod(0o644)
    seen: list[int] = []

    class Refused(Exception):
        pass

    def check(info: os.stat_result) -> None:
        seen.append(info.st_mode & 0o777)
        raise Refused

    with pytest.raises(Refused):
        read_regular_file(path, LIMIT, check=check)
    assert seen == [0o644]
    assert read_regular_file(path, LIMIT, check=lambda info: None) == b"secret"
