"""Reading a fleet folder (``vtoken fleet create`` output) and the run state kept beside it.

Seeds and OATH parameters come from the folder's PSKC file (decrypted with its
password or pre-shared key); each token's clock comes from its ``.token`` file,
read once: its offset from true time and its rate error now, which the load
generator extrapolates linearly for the rest of the run (a fleet's crystals sit
at a constant temperature, so this is exact to the nanosecond over hours).

The run state maps each token to the last HOTP counter or TOTP step the load
generator used against one validator, so a second run neither replays a used
code by mistake nor registers below the validator's replay floor.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import pskc
from pskc.exceptions import DecryptionError, KeyDerivationError, PSKCError

from firmware_sim.fleetdir import PSKC_FILENAME
from firmware_sim.statefile import TOKEN_SUFFIX, load_token
from loadgen.config import LoadgenError
from vtoken.clock import SimulatedClock
from vtoken.errors import VTokenError
from vtoken.oath import TokenKind

#: PPM to a fractional rate.
PPM = 1_000_000
STATE_FORMAT = "vtoken-loadgen-state"
STATE_VERSION = 1
#: PSKC key algorithm URIs (python-pskc keeps them as written).
_PSKC_KINDS = {
    "urn:ietf:params:xml:ns:keyprov:pskc:hotp": TokenKind.HOTP,
    "urn:ietf:params:xml:ns:keyprov:pskc#hotp": TokenKind.HOTP,
    "http://www.ietf.org/keyprov/pskc#hotp": TokenKind.HOTP,
    "urn:ietf:params:xml:ns:keyprov:pskc:totp": TokenKind.TOTP,
    "urn:ietf:params:xml:ns:keyprov:pskc#totp": TokenKind.TOTP,
    "http://www.ietf.org/keyprov/pskc#totp": TokenKind.TOTP,
}


@dataclasses.dataclass(frozen=True)
class FleetToken:
    """One token as the load generator needs it: seed, parameters and its clock now."""

    serial: str
    kind: TokenKind
    algorithm: str
    digits: int
    period: int
    t0: int
    #: HOTP: the next counter the device would use.
    counter: int
    seed: bytes = dataclasses.field(repr=False)
    #: The clock was read at true time ``clock_ref_ns``: device minus true time then, and its rate error.
    clock_ref_ns: int = 0
    clock_offset_ns: int = 0
    clock_rate: float = 0.0


@dataclasses.dataclass
class Fleet:
    """The usable tokens of a folder, its PSKC file, and what was left out and why."""

    folder: Path
    pskc_path: Path
    tokens: list[FleetToken]
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        kinds: dict[str, int] = {}
        for t in self.tokens:
            label = t.kind.value.upper() if t.kind is TokenKind.HOTP else f"TOTP {t.period} s"
            kinds[label] = kinds.get(label, 0) + 1
        return ", ".join(f"{n:,} {label}" for label, n in sorted(kinds.items()))


def _read_pskc(path: Path, password: str | None, psk: bytes | None) -> dict[str, dict[str, object]]:
    try:
        container = pskc.PSKC(str(path))
    except (PSKCError, OSError, ValueError) as exc:
        raise LoadgenError(f"cannot read {path}: {str(exc)[:200]}") from None
    try:
        if password is not None:
            container.encryption.derive_key(password)
        elif psk is not None:
            container.encryption.key = psk
    except (KeyDerivationError, ValueError, TypeError) as exc:
        raise LoadgenError(f"cannot derive the key of {path} from the password: {str(exc)[:200]}") from None
    keys: dict[str, dict[str, object]] = {}
    for key in container.keys:
        serial = str(key.serial or key.id or "")
        try:
            secret = key.secret
        except DecryptionError:
            hint = "wrong --password or --psk" if (password or psk) else "the file is encrypted: give --password or --psk"
            raise LoadgenError(f"cannot decrypt the seeds in {path} ({hint})") from None
        kind = _PSKC_KINDS.get(str(key.algorithm or ""))
        if not serial or secret is None or kind is None:
            raise LoadgenError(f"{path}: key {serial or '?'} has no serial, no secret or an unknown algorithm")
        suite = str(key.algorithm_suite or "SHA1").upper().replace("-", "")
        keys[serial] = {
            "seed": bytes(secret),
            "kind": kind,
            "algorithm": suite.lower(),
            "digits": int(key.response_length or 6),
            "period": int(key.time_interval or 30),
            "t0": int(key.time_offset or 0) * int(key.time_interval or 30),
            "counter": int(key.counter or 0),
        }
    if not keys:
        raise LoadgenError(f"{path} holds no keys")
    return keys


def read_fleet(
    folder: Path,
    *,
    now_ns: int,
    password: str | None = None,
    psk: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Fleet:
    """The fleet in ``folder``: seeds from ``tokens.pskc``, counters and clocks from the token files at ``now_ns``."""
    folder = Path(folder)
    pskc_path = folder / PSKC_FILENAME
    if not folder.is_dir():
        raise LoadgenError(f"no fleet folder {folder}: make one with 'vtoken fleet create --out {folder} ...'")
    if not pskc_path.is_file():
        raise LoadgenError(f"{folder} holds no {PSKC_FILENAME}: is it a 'vtoken fleet create' folder?")
    keys = _read_pskc(pskc_path, password, psk)
    clock = SimulatedClock(now_ns)
    tokens: list[FleetToken] = []
    skipped: list[tuple[str, str]] = []
    serials = sorted(keys)
    for i, serial in enumerate(serials, start=1):
        info = keys[serial]
        path = folder / f"{serial}{TOKEN_SUFFIX}"
        counter = int(info["counter"])  # type: ignore[call-overload]
        period, t0 = int(info["period"]), int(info["t0"])  # type: ignore[call-overload]
        offset, rate = 0, 0.0
        if path.exists():
            try:
                token = load_token(path, clock)
            except VTokenError as exc:
                raise LoadgenError(f"cannot use the token file {path}: {exc}") from None
            flash = token.flash
            if (flash.serial, flash.kind.value, flash.digits) != (serial, info["kind"].value, info["digits"]):  # type: ignore[union-attr]
                raise LoadgenError(f"the token file {path} does not match its key in {pskc_path.name}")
            if token.battery.is_dead(now_ns) or not token.rtc.running:
                skipped.append((serial, "battery dead"))
                continue
            counter = max(counter, flash.counter)
            period, t0 = flash.period, flash.t0
            offset = token.offset_ns()
            rate = float(token.rtc.ppm(now_ns)) / PPM
        elif info["kind"] is TokenKind.TOTP:
            raise LoadgenError(f"{path} is missing: a TOTP token's clock is read from its token file")
        tokens.append(
            FleetToken(
                serial=serial, kind=info["kind"], algorithm=str(info["algorithm"]),  # type: ignore[arg-type]
                digits=int(info["digits"]), period=period, t0=t0,  # type: ignore[call-overload]
                counter=counter, seed=info["seed"], clock_ref_ns=now_ns,  # type: ignore[arg-type]
                clock_offset_ns=offset, clock_rate=rate,
            )
        )
        if progress is not None:
            progress(i, len(serials))
    if not tokens:
        raise LoadgenError(f"no usable token in {folder}")
    return Fleet(folder, pskc_path, tokens, skipped)


# --- run state -------------------------------------------------------------------------------------


def load_state(path: Path, validator: str) -> tuple[dict[str, int], dict[str, int]]:
    """Last counters/steps used against ``validator``, and when each token may take a genuine code again.

    Both are empty when the file or the validator is new.
    """
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, {}
    except OSError as exc:
        raise LoadgenError(f"cannot read the run state {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw)
        if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
            raise ValueError("not a load generator state file")
        found = data["validators"].get(validator, {})
        used = {str(k): int(v) for k, v in found.get("used", {}).items()}
        not_before = {str(k): int(v) for k, v in found.get("not_before_ns", {}).items()}
        return used, not_before
    except (ValueError, KeyError, TypeError, AttributeError):
        raise LoadgenError(f"the run state {path} is damaged: delete it (and re-import the fleet) to start over") from None


def save_state(path: Path, validator: str, used: dict[str, int], not_before_ns: dict[str, int]) -> None:
    """Record what was used against ``validator`` (atomically; other validators' entries are kept)."""
    data: dict[str, object] = {"format": STATE_FORMAT, "version": STATE_VERSION, "validators": {}}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("format") == STATE_FORMAT and isinstance(old.get("validators"), dict):
            data["validators"] = old["validators"]
    except (OSError, ValueError, AttributeError):
        pass
    data["validators"][validator] = {"used": used, "not_before_ns": not_before_ns}  # type: ignore[index]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise LoadgenError(f"cannot write the run state {path}: {exc.strerror}") from None


__all__ = ["Fleet", "FleetToken", "load_state", "read_fleet", "save_state"]
