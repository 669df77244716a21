"""Write a fleet to a folder: ``tokens.pskc`` plus one ``<serial>.token`` file per token.

All or nothing. The fleet is written into a staging folder beside the target
(``.<name>.staging-<pid>-<random>``; inside it, ``.staging-<pid>-<random>``,
when the target is an existing empty folder), made durable, and only then put
in place:

1. every token file (mode 0600) and the PSKC file are written into the staging
   folder, with no fsync each (one fsync per file costs one journal commit
   each: 100,000 of them took most of half an hour). For a large fleet the
   PSKC file is built by a second process meanwhile (:class:`_PskcJob`);
2. everything is made durable at once with ``syncfs(2)`` on the staging folder:
   the data and metadata of every file on that file system, ours included,
   are on disk when it returns (and since Linux 5.8 it reports write-back
   errors). Where ``syncfs`` is missing, each file is fsynced instead (on
   worker threads, whose fsyncs share journal commits), then the folder;
3. the staging folder is renamed to the target, and the target's parent folder
   is fsynced, so the rename is durable too. An existing empty target folder is
   kept: the files are moved into it, the PSKC file last, and it is fsynced.

An error or an interrupt (Ctrl-C) at any point removes the staging folder (and
any file already moved), so the target is left as it was. A staging folder
left by a process that was killed is not locked any more (each run holds an
``flock`` on its own); the next run removes it. One still locked belongs to a
run writing the same folder right now, and the new run is refused.

Token files are made from a template: the first token of the batch is
manufactured the ordinary way, and every token differs from it only in its
device key, its flash records (serial, nonce, encrypted seed) and its crystal
error; see :class:`TokenFileStamper`. The result is byte for byte what
:func:`firmware_sim.statefile.save_token` writes for
:func:`firmware_sim.fleet.make_fleet`'s tokens, checked for the first and the
last token of every fleet.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import copy
import ctypes
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import threading
import zlib
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware_sim.fleet import (
    FleetSpec,
    build_pskc,
    check_protection,
    derive_device_key,
    derive_seed,
    draw_ppm,
    make_token,
)
from firmware_sim.flash import (
    ERASED_BYTE,
    SLOT_COUNT,
    SLOT_SIZE,
    FlashRecord,
    SeedCipher,
    decode_record,
    encode_record,
)
from firmware_sim.statefile import FILE_MODE, TOKEN_SUFFIX, token_file_bytes, token_to_dict
from firmware_sim.token import Token
from vtoken.clock import Clock
from vtoken.errors import CorruptStateError, InvalidInputError, StorageError, VTokenError
from vtoken.safefile import create_private, open_new_private

if TYPE_CHECKING:
    import multiprocessing.process

PSKC_FILENAME = "tokens.pskc"
#: Without syncfs: threads that fsync the files (concurrent fsyncs share journal commits), files per task.
SYNC_THREADS = 8
SYNC_CHUNK = 1000
#: From this many tokens on, the PSKC file is written by a child process while the token files are.
PARALLEL_PSKC_MIN = 2000
#: The token writer looks for news from the PSKC child every this many files.
POLL_EVERY = 256

#: progress(stage, done): token files written, keys written in the PSKC file, token files on disk.
STAGE_TOKENS = "tokens"
STAGE_PSKC = "pskc"
STAGE_SYNCED = "synced"
STAGES = (STAGE_TOKENS, STAGE_PSKC, STAGE_SYNCED)

Progress = Callable[[str, int], None]


def write_fleet(
    spec: FleetSpec,
    out_dir: str | os.PathLike[str],
    clock: Clock,
    *,
    psk: bytes | None = None,
    password: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Manufacture the fleet into ``out_dir`` (all or nothing) and return the PSKC file's path.

    ``progress(stage, done)`` reports token files written (stage ``tokens``),
    the PSKC file written (``pskc``: ``spec.count`` keys at once) and the files
    on disk (``synced``); each stage counts up to ``spec.count``. The folder must be new
    or empty; the protection choice (``psk`` or ``password``) is checked before
    anything is written.
    """
    check_protection(psk, password)
    target = Path(out_dir)
    absolute = Path(os.path.abspath(target))
    made_parents: list[Path] = []
    if _check_target(target):
        # An existing empty folder is kept (its owner, mode, maybe a mount point): stage inside it.
        staging_parent, prefix, mode = target, STAGING_INSIDE, _MOVE_ENTRIES
    else:
        made_parents = _make_parents(absolute.parent)
        staging_parent, prefix, mode = absolute.parent, f".{absolute.name}{STAGING_MARK}", _RENAME_FOLDER
    report = progress if progress is not None else (lambda stage, done: None)
    staging: _Staging | None = None
    moved: list[Path] = []
    try:
        _remove_stale_staging(staging_parent, prefix, target)
        staging = _Staging.create(staging_parent, prefix)
        pskc_path = staging.path / PSKC_FILENAME
        with _PskcJob(spec, clock.now_ns(), pskc_path, psk, password, report) as pskc_job:
            written = _write_token_files(spec, clock, staging.path, report, pskc_job.poll)
            pskc_job.wait()
        make_durable(staging.path, [*written, pskc_path], lambda done: report(STAGE_SYNCED, min(done, spec.count)))
        if mode == _MOVE_ENTRIES:
            _move_entries(staging.path, target, moved)
            staging.remove()
            _fsync_dir(target)
        else:
            staging.rename_to(target)
            _fsync_dir(absolute.parent)
    except BaseException:
        for path in reversed(moved):
            with contextlib.suppress(OSError):
                path.unlink()
        if staging is not None:
            staging.remove()
        for folder in reversed(made_parents):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        if staging is not None:
            staging.release()
    return target / PSKC_FILENAME


# --- the target and its staging folder -------------------------------------------------------------

#: How the staged fleet is put in place: rename the staging folder to the (new) target, or move its
#: files into the (existing, empty) target.
_RENAME_FOLDER = "rename"
_MOVE_ENTRIES = "move"
#: Staging folders: ``.<target>.staging-<pid>-<hex>`` beside a new target, ``.staging-<pid>-<hex>`` in an existing one.
STAGING_MARK = ".staging-"
STAGING_INSIDE = STAGING_MARK
_STAGING_TAIL = r"\d+-[0-9a-f]+\Z"


def _is_staging_inside(name: str) -> bool:
    return re.match(re.escape(STAGING_INSIDE) + _STAGING_TAIL, name) is not None


def _check_target(target: Path) -> bool:
    """Refuse a target that is a file or holds anything; True if it is an existing (empty) folder.

    A staging folder inside it, left by a run that was killed, does not count (it is removed later).
    """
    if not target.exists() and not target.is_symlink():
        return False
    if not target.is_dir():
        raise StorageError(f"cannot create {target}: it exists and is not a folder")
    try:
        existing = sorted(p.name for p in target.iterdir() if not _is_staging_inside(p.name))
    except OSError as exc:
        raise StorageError(f"cannot read {target}: {exc.strerror}") from None
    if existing:
        fleet_files = [n for n in existing if n == PSKC_FILENAME or n.endswith(TOKEN_SUFFIX)]
        what = f"a fleet ({fleet_files[0]})" if fleet_files else f"other files ({existing[0]})"
        raise StorageError(f"{target} already holds {what}; choose a new or empty folder")
    return True


def _make_parents(parent: Path) -> list[Path]:
    """Create the missing folders above the target; return them, outermost first (removed on failure)."""
    missing = [p for p in (parent, *parent.parents) if not p.exists()]
    missing.reverse()
    for folder in missing:
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise StorageError(f"cannot create {folder}: {exc.strerror}") from None
    return missing


@dataclasses.dataclass
class _Staging:
    """This run's staging folder, locked (``flock``) for as long as the run lasts."""

    path: Path
    fd: int | None

    @classmethod
    def create(cls, parent: Path, prefix: str) -> _Staging:
        for _ in range(_NAME_ATTEMPTS):
            path = parent / f"{prefix}{os.getpid()}-{os.urandom(4).hex()}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise StorageError(f"cannot create a staging folder in {parent}: {exc.strerror}") from None
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return cls(path, fd)
        raise StorageError(f"cannot create a staging folder in {parent}")

    def rename_to(self, target: Path) -> None:
        try:
            os.rename(self.path, target)
        except OSError as exc:
            raise StorageError(f"cannot move the fleet into {target}: {exc.strerror}") from None
        self.path = target  # no longer a staging folder: never removed from here on

    def remove(self) -> None:
        """Remove the staging folder (never the target it was renamed to)."""
        if STAGING_MARK in self.path.name:
            shutil.rmtree(self.path, ignore_errors=True)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


#: Random staging names tried before giving up (a clash needs the same pid and 32 random bits).
_NAME_ATTEMPTS = 100


def _remove_stale_staging(parent: Path, prefix: str, target: Path) -> None:
    """Remove staging folders ``<prefix><pid>-<hex>`` whose run is over (lock free).

    One whose lock is held belongs to a run writing the same fleet folder right
    now: refused, rather than racing it.
    """
    pattern = re.compile(re.escape(prefix) + _STAGING_TAIL)
    try:
        candidates = [p for p in parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue  # vanished, or not a folder: not ours to touch
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = path.name[len(prefix) :].split("-")[0]
                raise StorageError(f"another 'vtoken fleet create' (pid {pid}) is writing {target} right now") from None
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _move_entries(staging: Path, target: Path, moved: list[Path]) -> None:
    """Move every file from ``staging`` into the existing empty ``target``, the PSKC file last."""
    names = sorted(os.listdir(staging), key=lambda n: n == PSKC_FILENAME)
    for name in names:
        try:
            os.rename(staging / name, target / name)
        except OSError as exc:
            raise StorageError(f"cannot move {name} into {target}: {exc.strerror}") from None
        moved.append(target / name)


# --- durability ---------------------------------------------------------------------------------------


def _fsync_path(path: Path) -> None:
    """fsync a file or folder by name (Linux flushes an inode's data through any descriptor)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        _fsync_path(path)
    except OSError as exc:
        raise StorageError(f"cannot sync {path} to disk: {exc.strerror}") from None


def _syncfs(folder: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``folder``; False where the call does not exist."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.syncfs
    except (OSError, AttributeError):
        return False
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if call(fd) != 0:
            error = ctypes.get_errno()
            if error in (errno.ENOSYS, errno.EINVAL):
                return False
            raise StorageError(f"cannot sync {folder} to disk: {os.strerror(error)}")
    finally:
        os.close(fd)
    return True


def _fsync_chunk(paths: list[Path]) -> int:
    for path in paths:
        _fsync_path(path)
    return len(paths)


def make_durable(folder: Path, files: list[Path], progress: Callable[[int], None]) -> None:
    """Put ``files`` (all in ``folder``) and ``folder``'s entries on disk; ``progress(files done)``.

    One ``syncfs`` where there is one, else an fsync of every file (on
    :data:`SYNC_THREADS` threads) and then of the folder.
    """
    if _syncfs(folder):
        progress(len(files))
        return
    chunks = [files[i : i + SYNC_CHUNK] for i in range(0, len(files), SYNC_CHUNK)]
    done = 0
    with concurrent.futures.ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="fleet-fsync") as pool:
        try:
            for count in pool.map(_fsync_chunk, chunks):
                done += count
                progress(done)
        except OSError as exc:
            raise StorageError(f"cannot sync a fleet file to disk: {exc.strerror}") from None
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    _fsync_dir(folder)


# --- writing ------------------------------------------------------------------------------------------------


def _write_new(path: Path, payload: bytes) -> None:
    """Create ``path`` (mode 0600, never over an existing file) holding ``payload``; no fsync here."""
    try:
        create_private(path, payload, mode=FILE_MODE, sync=False)
    except OSError as exc:
        raise StorageError(f"cannot write {path.name}: {exc.strerror}") from None


def _write_token_files(
    spec: FleetSpec, clock: Clock, folder: Path, report: Progress, between: Callable[[], None]
) -> list[Path]:
    """Write every token file into ``folder``; return their paths. ``between()`` runs every few files."""
    written: list[Path] = []
    for done, (serial, payload) in enumerate(TokenFileStamper(spec, clock).files(), start=1):
        path = folder / f"{serial}{TOKEN_SUFFIX}"
        _write_new(path, payload)
        written.append(path)
        report(STAGE_TOKENS, done)
        if done % POLL_EVERY == 0:
            between()
    return written


def write_pskc(spec: FleetSpec, created_ns: int, target: Path, psk: bytes | None, password: str | None) -> None:
    """Build the PSKC file of the batch and write it to the new file ``target`` (mode 0600, no fsync)."""
    container = build_pskc(spec, created_ns=created_ns, psk=psk, password=password)
    try:
        with open_new_private(target, mode=FILE_MODE) as output:  # 0600 from the start: it holds every seed
            container.write(output)
    except OSError as exc:
        raise StorageError(f"cannot write {target.name}: {exc.strerror}") from None


class _PskcJob:
    """The PSKC file, built and written while the token files are: in a child process for a large batch.

    Its progress is reported once, when the file is written: python-pskc
    writes the file in one call, and keys merely added to the container in
    memory are not written.

    Building the PSKC file (python-pskc) takes about as long as all the token
    files, and a second core is idle meanwhile. From :data:`PARALLEL_PSKC_MIN`
    tokens on, a forked child process writes it and reports its progress over a
    pipe (fork: the child runs only this job, and the arguments, batch secret
    included, are never serialised). Fork is used only while this process has a
    single thread, where it is safe; otherwise, and for smaller batches, the file
    is written in this process, in :meth:`wait`. Leaving the ``with`` block
    early stops the child.
    """

    def __init__(
        self,
        spec: FleetSpec,
        created_ns: int,
        target: Path,
        psk: bytes | None,
        password: str | None,
        report: Progress,
    ) -> None:
        self._args = (spec, created_ns, target, psk, password)
        self._report = report
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Any = None
        self._done = False
        if spec.count >= PARALLEL_PSKC_MIN and _can_fork():
            import multiprocessing  # here, not at the top: every vtoken command imports this module

            context = multiprocessing.get_context("fork")
            self._conn, child_conn = context.Pipe(duplex=False)
            self._process = context.Process(
                target=_pskc_child, args=(child_conn, *self._args), name="vtoken-fleet-pskc", daemon=True
            )
            self._process.start()
            child_conn.close()

    def __enter__(self) -> _PskcJob:
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join()
            process.close()
            self._conn.close()

    def poll(self) -> None:
        """Take the child's news (no waiting): raise its error if it failed."""
        while self._conn is not None and not self._done and self._conn.poll():
            self._receive()

    def wait(self) -> None:
        """Wait until the PSKC file is written (or write it here); raise the error if that failed."""
        if self._process is None:
            write_pskc(*self._args)
        while self._process is not None and not self._done:
            self._receive()
        self._report(STAGE_PSKC, self._args[0].count)

    def _receive(self) -> None:
        """Handle one message from the child (``_done`` once it reports the file written)."""
        try:
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            raise StorageError("the process writing the PSKC file stopped unexpectedly") from None
        if kind == _MSG_DONE:
            self._done = True
            return
        error_type, message = value
        raise (InvalidInputError if error_type == _ERROR_INPUT else StorageError)(message)


def _can_fork() -> bool:
    """Fork is available and safe: a POSIX system, and no other thread that could hold a lock."""
    import multiprocessing  # (see _PskcJob)

    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


_MSG_DONE = "done"
_MSG_ERROR = "error"
_ERROR_INPUT = "input"


def _pskc_child(
    conn: Any, spec: FleetSpec, created_ns: int, target: Path, psk: bytes | None, password: str | None
) -> None:
    """The child process of :class:`_PskcJob`: write the PSKC file, then say so (or send the error)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # the parent cleans up; this process just stops
    try:
        write_pskc(spec, created_ns, target, psk, password)
    except InvalidInputError as exc:
        conn.send((_MSG_ERROR, (_ERROR_INPUT, str(exc))))
    except VTokenError as exc:
        conn.send((_MSG_ERROR, ("storage", str(exc))))
    except Exception as exc:  # anything else: report it, never a traceback from a child
        conn.send((_MSG_ERROR, ("storage", f"cannot write {target.name}: {type(exc).__name__}")))
    else:
        conn.send((_MSG_DONE, None))
    finally:
        conn.close()


# --- token files from a template ---------------------------------------------------------------------------------

#: The fields of a fleet's token files that differ from token to token.
_VARYING = ("device_key", "flash", "ppm_25")
_CHECKSUM = "checksum"
_PLACEHOLDER = re.compile(r'"@@(\w+)@@"')
#: A flash record ends in a big-endian CRC-32 of the bytes before it.
_CRC_SIZE = 4


def _placeholder(name: str) -> str:
    return f"@@{name}@@"


class _JsonTemplate:
    """JSON text with named holes: ``render(values)`` fills them with the JSON of each value."""

    def __init__(self, text: str) -> None:
        parts = _PLACEHOLDER.split(text)
        self._literals = parts[0::2]
        self._names = parts[1::2]

    def render(self, values: dict[str, str]) -> str:
        out = [self._literals[0]]
        for name, literal in zip(self._names, self._literals[1:], strict=True):
            out.append(json.dumps(values[name]))
            out.append(literal)
        return "".join(out)


def _manufacture(spec: FleetSpec, serial: str, clock: Clock) -> Token:
    """One token of the batch, the ordinary way (as :func:`firmware_sim.fleet.make_fleet` makes it)."""
    return make_token(spec, serial, clock)


class TokenFileStamper:
    """The token files of a batch, made from one manufactured template token.

    Manufacturing a token writes its flash three times (blank, provision, lock),
    and each write re-parses both slots: most of the cost of a token. But the
    tokens of one batch share model, parameters, factory time and battery; a
    token differs from the first only in its device key, its crystal error and,
    in its flash records, its serial, nonce and encrypted seed. So the first
    token is manufactured, and for each token only those are computed: the seed
    encrypted by the flash's own :class:`SeedCipher` (AES-256-GCM, the SIV-style
    nonce of the provisioning record's sequence number), the template's records
    re-made with them (:class:`_RecordPatcher`), and the JSON filled into a
    template. Per token that is three HKDFs, three HMACs, one AES-GCM and two
    CRCs: about a tenth of manufacturing it.

    The first and the last token of every batch are also manufactured the
    ordinary way and must give the same bytes; if they do not (the flash format
    changed), every token is manufactured the ordinary way (``fast`` is False).
    """

    def __init__(self, spec: FleetSpec, clock: Clock) -> None:
        self._spec = spec
        self._clock = clock
        serials = list(spec.serials())
        self._serials = serials
        reference = _manufacture(spec, serials[0], clock)
        self.fast = False
        try:
            self._prepare(reference)
            checks = {serials[0]: reference, serials[-1]: _manufacture(spec, serials[-1], clock)}
            self.fast = all(self._stamp(s) == token_file_bytes(token_to_dict(t)) for s, t in checks.items())
        except (AttributeError, TypeError, ValueError, KeyError, CorruptStateError):
            self.fast = False  # a flash layout this code does not know: manufacture each token

    def files(self) -> Iterable[tuple[str, bytes]]:
        """``(serial, token file bytes)`` for every token of the batch, in serial order."""
        for serial in self._serials:
            if self.fast:
                yield serial, self._stamp(serial)
            else:
                yield serial, token_file_bytes(token_to_dict(_manufacture(self._spec, serial, self._clock)))

    # --- the template ---

    def _prepare(self, reference: Token) -> None:
        data = token_to_dict(reference)
        self._crystal = reference.rtc.crystal
        image = reference.flash.image
        self._slots: list[_RecordPatcher | bytes] = []
        for index in range(SLOT_COUNT):
            raw = image[index * SLOT_SIZE : (index + 1) * SLOT_SIZE]
            if raw == bytes([ERASED_BYTE]) * SLOT_SIZE:
                self._slots.append(raw)
                continue
            record = decode_record(raw)
            self._slots.append(_RecordPatcher(record) if record.provisioned else raw)
        provisioned = [p.record for p in self._slots if isinstance(p, _RecordPatcher)]
        if not provisioned:
            raise ValueError("the template token holds no seed")
        # The seed was encrypted by the provisioning write; later writes (the lock) copy nonce and ciphertext.
        self._provision_sequence = min(r.sequence for r in provisioned)
        self._ppm_text: dict[Fraction, str] = {}
        template = copy.deepcopy(data)
        template["device_key"] = _placeholder("device_key")
        template["flash"] = _placeholder("flash")
        template["rtc"]["crystal"]["ppm_25"] = _placeholder("ppm_25")
        body = {k: v for k, v in template.items() if k != _CHECKSUM}
        self._canonical = _JsonTemplate(json.dumps(body, sort_keys=True, separators=(",", ":")))
        template[_CHECKSUM] = _placeholder(_CHECKSUM)
        self._file = _JsonTemplate(token_file_bytes(template).decode("utf-8"))

    # --- one token ---

    def _stamp(self, serial: str) -> bytes:
        secret = self._spec.batch_secret
        seed = derive_seed(secret, serial)
        device_key = derive_device_key(secret, serial)
        values = {
            "device_key": base64.b64encode(device_key).decode("ascii"),
            "flash": base64.b64encode(self._image(serial, seed, device_key)).decode("ascii"),
            "ppm_25": self._ppm(draw_ppm(secret, serial, self._spec.ppm_spread)),
        }
        canonical = self._canonical.render(values).encode("utf-8")
        values[_CHECKSUM] = hashlib.sha256(canonical).hexdigest()
        return self._file.render(values).encode("utf-8")

    def _image(self, serial: str, seed: bytes, device_key: bytes) -> bytes:
        """The flash image of this token: the template's records with its serial and encrypted seed."""
        nonce, ciphertext = SeedCipher(device_key).encrypt(self._provision_sequence, serial, seed)
        image = bytearray()
        for slot in self._slots:
            image += slot.slot(serial, nonce, ciphertext) if isinstance(slot, _RecordPatcher) else slot
        return bytes(image)

    def _ppm(self, ppm: Fraction) -> str:
        """The crystal error as the token file writes it (a batch has at most a few thousand distinct ones)."""
        text = self._ppm_text.get(ppm)
        if text is None:
            text = self._ppm_text[ppm] = dataclasses.replace(self._crystal, ppm_25=ppm).to_dict()["ppm_25"]
        return text


class _RecordPatcher:
    """One provisioned flash record of the template, re-made for another serial and encrypted seed.

    The record layout (the flash module's docstring) puts serial, nonce and
    encrypted seed at fixed offsets as long as their lengths do not change, and
    ends in a CRC-32 of everything before it; so the template's encoded record
    is copied, those fields overwritten and the CRC recomputed. Any other case
    (a serial or seed of another length) is encoded with :func:`encode_record`.
    """

    def __init__(self, record: FlashRecord) -> None:
        self.record = record
        self._bytes = encode_record(record)
        self._fields = [
            self._locate(record.serial.encode("ascii")),
            self._locate(record.nonce),
            self._locate(record.ciphertext),
        ]

    def _locate(self, value: bytes) -> int:
        at = self._bytes.find(value)
        if at < 0 or self._bytes.find(value, at + 1) >= 0:
            raise ValueError("a record field is not at one place in the template record")
        return at

    def slot(self, serial: str, nonce: bytes, ciphertext: bytes) -> bytes:
        """The slot's bytes (record plus erased padding) for this serial, nonce and ciphertext."""
        values = (serial.encode("ascii"), nonce, ciphertext)
        template = (self.record.serial.encode("ascii"), self.record.nonce, self.record.ciphertext)
        if any(len(new) != len(old) for new, old in zip(values, template, strict=True)):
            data = encode_record(dataclasses.replace(self.record, serial=serial, nonce=nonce, ciphertext=ciphertext))
        else:
            buffer = bytearray(self._bytes)
            for at, value in zip(self._fields, values, strict=True):
                buffer[at : at + len(value)] = value
            buffer[-_CRC_SIZE:] = zlib.crc32(buffer[:-_CRC_SIZE]).to_bytes(_CRC_SIZE, "big")
            data = bytes(buffer)
        return data + bytes([ERASED_BYTE]) * (SLOT_SIZE - len(data))


