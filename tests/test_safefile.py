"""vtoken.safefile: reading a file a hostile user may have put in place; writing files that hold secrets."""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vtoken import safefile
from vtoken.safefile import (
    FileTooLargeError,
    FolderSyncError,
    NotRegularFileError,
    create_private,
    open_new_private,
    read_regular_file,
    replace_private,
)

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


# --- writing ------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o277, 0o000], ids=lambda m: f"umask {m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_new_files_are_0600_under_any_umask(tmp_path: Path, umask: int) -> None:
    create_private(tmp_path / "a", b"seed")
    with open_new_private(tmp_path / "b") as output:
        output.write(b"seed")
    (tmp_path / "c").write_bytes(b"old")
    (tmp_path / "c").chmod(0o644)
    replace_private(tmp_path / "c", b"new")
    for name in "abc":
        assert _mode(tmp_path / name) == 0o600, name
    assert (tmp_path / "c").read_bytes() == b"new"


@pytest.mark.parametrize("make", ["file", "symlink", "dangling symlink"])
def test_creating_never_replaces_or_follows_anything(tmp_path: Path, make: str) -> None:
    victim = tmp_path / "victim"
    path = tmp_path / "new"
    if make == "file":
        path.write_bytes(b"keep")
    else:
        if make == "symlink":
            victim.write_bytes(b"keep")
        path.symlink_to(victim)
    for create in (lambda: create_private(path, b"x"), lambda: open_new_private(path).close()):
        with pytest.raises(FileExistsError):
            create()
    if make == "file":
        assert path.read_bytes() == b"keep"
    else:
        assert path.is_symlink()
        assert victim.read_bytes() == b"keep" if make == "symlink" else not victim.exists()


def test_a_failed_write_removes_the_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safefile.os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        create_private(tmp_path / "f", b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_replace_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(safefile.os, "replace", refuse)
    with pytest.raises(OSError, match="Input/output error") as info:
        replace_private(path, b"new")
    monkeypatch.undo()
    assert not isinstance(info.value, FolderSyncError)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_folder_that_cannot_be_synced_is_reported_after_the_new_file_is_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(safefile, "fsync_dir", refuse)
    path = tmp_path / "f"
    with pytest.raises(FolderSyncError):
        replace_private(path, b"new")
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_new_file_is_durable_with_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    real = safefile.fsync_dir
    monkeypatch.setattr(safefile, "fsync_dir", lambda path: (synced.append(Path(path)), real(path)))
    create_private(tmp_path / "durable", b"x")
    create_private(tmp_path / "batch", b"x", sync=False)  # a fleet syncs the whole file system once instead
    assert synced == [tmp_path]


@pytest.mark.parametrize(("error", "kept"), [(errno.EPERM, True), (errno.ENOTSUP, True), (errno.EIO, False),
                                             (errno.ENOSPC, False)])
def test_fchmod_refused_by_a_file_system_without_modes_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int, kept: bool
) -> None:
    """vfat or exfat (a USB stick) keeps no Unix modes; any other fchmod failure removes the new file."""
    def refuse(fd: int, mode: int) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(safefile.os, "fchmod", refuse)
    path = tmp_path / "f"
    if kept:
        create_private(path, b"data")
        assert path.read_bytes() == b"data"
    else:
        with pytest.raises(OSError):
            create_private(path, b"data")
        assert not path.exists()  # no empty file left to block a retry
