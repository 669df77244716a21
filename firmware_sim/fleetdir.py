"""Write a fleet to a folder: ``tokens.pskc`` plus one ``<serial>.token`` file per token."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from firmware_sim.fleet import FleetSpec, build_pskc, check_protection, make_fleet
from firmware_sim.statefile import TOKEN_SUFFIX, save_token
from vtoken.clock import Clock
from vtoken.errors import StorageError

PSKC_FILENAME = "tokens.pskc"


def write_fleet(
    spec: FleetSpec,
    out_dir: str | os.PathLike[str],
    clock: Clock,
    *,
    psk: bytes | None = None,
    password: str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> Path:
    """Manufacture the fleet into ``out_dir`` and return the PSKC file's path.

    ``progress(stage, done)`` is called as tokens are written (stage ``tokens``)
    and as keys are added to the PSKC file (stage ``pskc``).

    The folder must be new or empty; the protection choice (``psk`` or
    ``password``) is checked before anything is written.
    """
    check_protection(psk, password)
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {folder}: {exc.strerror}") from None
    try:
        existing = sorted(p.name for p in folder.iterdir())
    except OSError as exc:
        raise StorageError(f"cannot read {folder}: {exc.strerror}") from None
    if existing:
        fleet_files = [n for n in existing if n == PSKC_FILENAME or n.endswith(TOKEN_SUFFIX)]
        what = f"a fleet ({fleet_files[0]})" if fleet_files else f"other files ({existing[0]})"
        raise StorageError(f"{folder} already holds {what}; choose a new or empty folder")
    for i, token in enumerate(make_fleet(spec, clock), start=1):
        save_token(token, folder / f"{token.serial}{TOKEN_SUFFIX}")
        if progress is not None:
            progress("tokens", i)
    container = build_pskc(
        spec,
        created_ns=clock.now_ns(),
        psk=psk,
        password=password,
        progress=(lambda n: progress("pskc", n)) if progress is not None else None,
    )
    target = folder / PSKC_FILENAME
    try:
        # Created 0600 from the start: a plaintext PSKC file holds every seed.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as output:
            container.write(output)
            output.flush()
            os.fsync(output.fileno())
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror}") from None
    return target
