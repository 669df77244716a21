"""The factory export: a token's seed and parameters out of its token file, for a validator or an app.

Three formats, one record per token:

* ``pskc``: RFC 6030 through python-pskc (plaintext, or under a pre-shared
  AES-128 key or a password), laid out exactly as the fleet's ``tokens.pskc``
  (:func:`firmware_sim.fleet.add_pskc_key`);
* ``csv``: the OATH CSV that privacyIDEA and LinOTP import, one line per token
  and no header: ``serial, seed_hex, type, digits, period_or_counter, hash``
  (TOTP: the period; HOTP: the next counter; hash ``sha1|sha256|sha512``);
* ``otpauth``: one Key Uri Format URI per line (issuer ``vtoken``, account =
  serial), what authenticator apps scan from a QR code.

Reading a token file for export changes nothing: it is read once, without the
advisory lock (token files are replaced by an atomic rename, so a reader never
sees a torn file, and taking the lock would create a ``.lock`` file and fail
while ``vtoken serve`` holds the token). A token being served may move on
after the snapshot (a HOTP press); the export is the state when it was read.

Every output holds seeds, so :func:`write_private` creates files with mode
0600 and never replaces an existing file unless asked to.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import os
from collections.abc import Sequence
from pathlib import Path

from firmware_sim.fleet import add_pskc_key, new_pskc_container
from firmware_sim.statefile import TOKEN_SUFFIX, load_token
from firmware_sim.token import Token
from vtoken.clock import SimulatedClock
from vtoken.errors import DeviceStateError, InvalidInputError, StorageError
from vtoken.oath import DEFAULT_PERIOD, Algorithm, TokenKind
from vtoken.otpauth import OtpAuthKey, build_uri
from vtoken.safefile import FolderSyncError, create_private, replace_private

#: The issuer an authenticator app shows for an exported token.
OTPAUTH_ISSUER = "vtoken"
#: Mode of a folder this module creates for QR images.
PRIVATE_DIR_MODE = 0o700
#: OATH CSV column separator, as privacyIDEA's and LinOTP's documentation write it.
CSV_SEPARATOR = ", "
#: QR image formats, by file suffix.
QR_SUFFIXES = {".png": "png", ".svg": "svg"}
#: Pixels per QR module in an image file.
QR_SCALE = 4
#: QR error correction: "M" (15 %) keeps a 20-byte-seed URI small and still scans from a screen.
QR_ERROR = "m"


class ExportFormat(str, enum.Enum):
    """The formats :func:`render` writes."""

    PSKC = "pskc"
    CSV = "csv"
    OTPAUTH = "otpauth"


@dataclasses.dataclass(frozen=True)
class ExportRecord:
    """One token as exported: its seed (never in the repr) and what a validator needs to check its codes."""

    serial: str
    model: str
    kind: TokenKind
    algorithm: Algorithm
    digits: int
    period: int
    t0: int
    counter: int
    seed: bytes = dataclasses.field(repr=False)


# --- reading tokens ---------------------------------------------------------------------------


def factory_seed(token: Token) -> bytes:
    """The token's seed, for the factory export only.

    The flash deliberately has no public seed accessor (the firmware never
    returns it); the factory export is the one reader outside the flash and
    goes through its private decryption here, and nowhere else.
    """
    if not token.flash.provisioned:
        raise DeviceStateError("the token is not provisioned: it has no seed to export")
    return token.flash._decrypt_seed()  # noqa: SLF001 - the one sanctioned reader, see the docstring


def export_record(token: Token) -> ExportRecord:
    """The export record of a provisioned token (its current HOTP counter included)."""
    seed = factory_seed(token)
    flash = token.flash
    return ExportRecord(
        serial=flash.serial,
        model=flash.model,
        kind=flash.kind,
        algorithm=flash.algorithm,
        digits=flash.digits,
        period=flash.period,
        t0=flash.t0,
        counter=flash.counter,
        seed=seed,
    )


def read_record(path: str | os.PathLike[str]) -> ExportRecord:
    """Read one token file (no lock, no write; see the module docstring) and return its record."""
    # Loading a token reads no time; the clock is never consulted.
    return export_record(load_token(path, SimulatedClock(0)))


def fleet_token_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Every ``*.token`` file in a fleet folder (what ``vtoken fleet create`` writes), sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise StorageError(f"fleet folder {root} does not exist or is not a folder")
    try:
        files = sorted(p for p in root.iterdir() if p.name.endswith(TOKEN_SUFFIX) and not p.name.startswith("."))
    except OSError as exc:
        raise StorageError(f"cannot read fleet folder {root}: {exc.strerror}") from None
    if not files:
        raise StorageError(f"fleet folder {root} holds no <serial>{TOKEN_SUFFIX} files")
    return files


def read_fleet(folder: str | os.PathLike[str]) -> list[ExportRecord]:
    """The records of every token file in ``folder``, sorted by serial; two files with one serial are refused."""
    records: dict[str, tuple[ExportRecord, Path]] = {}
    for path in fleet_token_files(folder):
        record = read_record(path)
        if record.serial in records:
            other = records[record.serial][1]
            raise StorageError(f"{other.name} and {path.name} hold the same token {record.serial}")
        records[record.serial] = (record, path)
    return [records[serial][0] for serial in sorted(records)]


# --- formats ----------------------------------------------------------------------------------


def _require_epoch_t0(record: ExportRecord, what: str) -> None:
    if record.kind is TokenKind.TOTP and record.t0 != 0:
        raise InvalidInputError(
            f"token {record.serial} counts TOTP steps from T0 = {record.t0}, which {what} cannot carry; export it as PSKC"
        )


def otpauth_key(record: ExportRecord) -> OtpAuthKey:
    """The record as an authenticator-app key: issuer ``vtoken``, account = serial."""
    _require_epoch_t0(record, "an otpauth URI")
    return OtpAuthKey(
        kind=record.kind,
        secret=record.seed,
        account=record.serial,
        issuer=OTPAUTH_ISSUER,
        algorithm=record.algorithm,
        digits=record.digits,
        period=record.period if record.kind is TokenKind.TOTP else DEFAULT_PERIOD,
        counter=record.counter if record.kind is TokenKind.HOTP else 0,
    )


def otpauth_uri(record: ExportRecord) -> str:
    """The record's otpauth URI."""
    return build_uri(otpauth_key(record))


def csv_line(record: ExportRecord) -> str:
    """``serial, seed_hex, type, digits, period_or_counter, hash`` (no newline)."""
    _require_epoch_t0(record, "OATH CSV")
    moving = record.period if record.kind is TokenKind.TOTP else record.counter
    cells = (record.serial, record.seed.hex(), record.kind.value, str(record.digits), str(moving), record.algorithm.value)
    return CSV_SEPARATOR.join(cells)


def pskc_bytes(records: Sequence[ExportRecord], *, psk: bytes | None = None, password: str | None = None) -> bytes:
    """A PSKC document with every record (plaintext, or under ``psk`` or ``password``)."""
    container = new_pskc_container(psk=psk, password=password)
    for record in records:
        add_pskc_key(
            container,
            serial=record.serial,
            model=record.model,
            kind=record.kind,
            algorithm=record.algorithm,
            digits=record.digits,
            period=record.period,
            t0=record.t0,
            counter=record.counter,
            secret=record.seed,
        )
    out = io.BytesIO()
    container.write(out)
    return out.getvalue()


def render(
    records: Sequence[ExportRecord],
    fmt: ExportFormat | str,
    *,
    psk: bytes | None = None,
    password: str | None = None,
) -> bytes:
    """The whole export document of ``records`` in ``fmt``; ``psk``/``password`` apply to PSKC only."""
    try:
        fmt = ExportFormat(fmt)
    except ValueError:
        raise InvalidInputError(f"unknown export format {fmt!r}; use pskc, csv or otpauth") from None
    if not records:
        raise InvalidInputError("nothing to export: no tokens")
    if fmt is ExportFormat.PSKC:
        return pskc_bytes(records, psk=psk, password=password)
    if psk is not None or password is not None:
        raise InvalidInputError(f"a pre-shared key or password protects PSKC files only, not {fmt.value}")
    line = csv_line if fmt is ExportFormat.CSV else otpauth_uri
    return "".join(line(record) + "\n" for record in records).encode("utf-8")


# --- QR codes ---------------------------------------------------------------------------------


# segno is imported where it is used: it adds about 25 ms to every ``vtoken`` command's start otherwise.


def qr_terminal(uri: str) -> str:
    """The QR code of ``uri`` drawn with Unicode half blocks, to print on a terminal."""
    import segno

    out = io.StringIO()
    segno.make(uri, error=QR_ERROR).terminal(out=out, compact=True)
    return out.getvalue()


def qr_kind(path: str | os.PathLike[str]) -> str:
    """``png`` or ``svg`` from the file name; anything else is refused."""
    suffix = Path(path).suffix.lower()
    if suffix not in QR_SUFFIXES:
        raise InvalidInputError(f"QR image {path} must end in {' or '.join(QR_SUFFIXES)}")
    return QR_SUFFIXES[suffix]


def qr_image(uri: str, kind: str) -> bytes:
    """The QR code of ``uri`` as a PNG or SVG image."""
    import segno

    out = io.BytesIO()
    segno.make(uri, error=QR_ERROR).save(out, kind=kind, scale=QR_SCALE)
    return out.getvalue()


# --- writing ----------------------------------------------------------------------------------


def write_private(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> None:
    """Write ``data`` to a new file with mode 0600; an existing file is replaced only with ``force``.

    Without ``force`` the file is created exclusively (an existing file or
    symlink is refused, never followed). With ``force`` a 0600 temporary file
    is renamed over the target, so the result is 0600 whatever the old mode.
    Either way the data is fsynced (:mod:`vtoken.safefile`).
    """
    target = Path(path)
    try:
        if force:
            replace_private(target, data)
        else:
            create_private(target, data)
    except FileExistsError:
        raise StorageError(f"{target} already exists; use --force to replace it") from None
    except FolderSyncError as exc:
        raise StorageError(f"{target} was written, but its folder could not be synced to disk: {exc.strerror}") from None
    except OSError as exc:
        raise StorageError(f"cannot {'write' if force else 'create'} {target}: {exc.strerror}") from None


def plan_qr_folder(
    folder: str | os.PathLike[str], records: Sequence[ExportRecord], *, force: bool = False
) -> list[tuple[Path, str]]:
    """``(folder/<serial>.png, otpauth URI)`` per record, checked before anything is written.

    Refuses an existing image (unless ``force``) and a token no otpauth URI can
    carry, so a refusal leaves no half-written folder.
    """
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise StorageError(f"{root} is not a folder")
    plan = [(root / f"{record.serial}.png", otpauth_uri(record)) for record in records]
    if not force:
        taken = [target.name for target, _ in plan if target.exists() or target.is_symlink()]
        if taken:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise StorageError(f"{root} already holds {taken[0]}{more}; use --force to replace them")
    return plan


def write_qr_folder(folder: str | os.PathLike[str], plan: Sequence[tuple[Path, str]], *, force: bool = False) -> None:
    """Write a :func:`plan_qr_folder` plan: one PNG per token, each 0600, the folder made 0700 if missing."""
    root = Path(folder)
    try:
        root.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {root}: {exc.strerror}") from None
    for target, uri in plan:
        write_private(target, qr_image(uri, "png"), force=force)
