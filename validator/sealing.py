"""Master keys, and seeds sealed at rest with AES-256-GCM.

A :class:`MasterKey` is 32 random bytes. Its ``key_id`` (16 hex digits of
SHA-256 over a label and the key) is stored beside every sealed seed, so a
:class:`Keyring` holding the current key and older ones can open rows sealed
before a rotation. The key itself never appears in a repr or an error message.

A seed is sealed with a fresh random 96-bit nonce and the token's serial in
the associated data, so a sealed seed copied into another token's row does
not open.

The key comes from a key file (hex, mode 0600, created by ``vtoken validator
init``) or from the ``VTOKEN_MASTER_KEY`` environment variable (hex or
base64).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from validator.records import SealedSeed
from vtoken.safefile import (
    FileTooLargeError,
    NotRegularFileError,
    create_private,
    fsync_dir,
    read_regular_file,
    temp_path,
)
from vtoken.errors import InvalidKeyError, MasterKeyError, SealedSeedError

__all__ = [
    "ENV_VAR",
    "KEY_FILE_MODE",
    "MASTER_KEY_BYTES",
    "NONCE_BYTES",
    "SEAL_AAD_PREFIX",
    "Keyring",
    "MasterKey",
    "SecretBytes",
    "generate_master_key",
    "load_key_file",
    "master_key_from_env",
    "parse_master_key",
    "seal",
    "unseal",
    "write_key_file",
]

#: AES-256: the master key is 32 bytes.
MASTER_KEY_BYTES = 32
#: GCM's standard 96-bit nonce.
NONCE_BYTES = 12
#: GCM tag length (the library's default, appended to the ciphertext).
TAG_BYTES = 16
#: Associated data = this prefix + the serial (ASCII).
SEAL_AAD_PREFIX = b"vtoken-seed-v1\0"
#: Label hashed with the key to form its public id.
KEY_ID_LABEL = b"vtoken-master-key-id-v1\0"
#: Hex digits of the key id (64 bits: names a key, reveals nothing about it).
KEY_ID_HEX_DIGITS = 16
#: The environment variable that may carry the master key.
ENV_VAR = "VTOKEN_MASTER_KEY"
#: Key files are created with this mode; group/other bits make :func:`load_key_file` refuse them.
KEY_FILE_MODE = 0o600
_FORBIDDEN_KEY_FILE_BITS = 0o077
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
#: A key file is a line of hex; anything much bigger is not a key file.
MAX_KEY_FILE_BYTES = 4096
#: Largest seed :func:`seal` accepts (HMAC keys longer than a block are hashed anyway).
MAX_SEED_BYTES = 1024


class SecretBytes(bytes):
    """Bytes holding a secret (a seed): equal to the plain bytes, but its repr and str show only the length."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<secret: {len(self)} bytes>"

    __str__ = __repr__


class MasterKey:
    """A 32-byte AES-256 master key with a public ``key_id``. Its repr hides the key."""

    __slots__ = ("_material", "_key_id")

    def __init__(self, material: bytes) -> None:
        if not isinstance(material, (bytes, bytearray, memoryview)):
            raise MasterKeyError(f"a master key must be bytes, not {type(material).__name__}")
        material = bytes(material)
        if len(material) != MASTER_KEY_BYTES:
            raise MasterKeyError(f"a master key must be {MASTER_KEY_BYTES} bytes, not {len(material)}")
        self._material = material
        digest = hashlib.sha256(KEY_ID_LABEL + material).hexdigest()
        self._key_id = digest[:KEY_ID_HEX_DIGITS]

    @property
    def key_id(self) -> str:
        """Short public identifier of the key (hex)."""
        return self._key_id

    def to_hex(self) -> str:
        """The key as hex text, for writing a key file or an environment variable. Handle with care."""
        return self._material.hex()

    def _aead(self) -> AESGCM:
        return AESGCM(self._material)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MasterKey):
            return NotImplemented
        return hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash(self._key_id)

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self._key_id!r})"

    def __reduce__(self) -> object:
        raise TypeError("a MasterKey cannot be pickled")


class Keyring:
    """The current master key (used to seal) plus older keys (used only to unseal), by key id."""

    __slots__ = ("_current", "_keys")

    def __init__(self, current: MasterKey, older: Iterable[MasterKey] = ()) -> None:
        if not isinstance(current, MasterKey):
            raise MasterKeyError(f"the current key must be a MasterKey, not {type(current).__name__}")
        self._current = current
        self._keys: dict[str, MasterKey] = {current.key_id: current}
        for key in older:
            if not isinstance(key, MasterKey):
                raise MasterKeyError(f"older keys must be MasterKey objects, not {type(key).__name__}")
            self._keys.setdefault(key.key_id, key)

    @property
    def current(self) -> MasterKey:
        """The key new seals use."""
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id this keyring can open (current first)."""
        return tuple(self._keys)

    def get(self, key_id: str) -> MasterKey:
        """The key named ``key_id``, or :class:`MasterKeyError`."""
        try:
            return self._keys[key_id]
        except (KeyError, TypeError):
            raise MasterKeyError(
                f"no master key with id {key_id!r} is loaded (have: {', '.join(self._keys)}); "
                "the store was sealed under a key this validator was not given"
            ) from None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def rotated(self, new_key: MasterKey) -> Keyring:
        """A keyring whose current key is ``new_key``, keeping every key of this one as an older key."""
        return Keyring(new_key, self._keys.values())

    def __repr__(self) -> str:
        return f"Keyring(current={self._current.key_id!r}, keys={list(self._keys)!r})"


def _as_keyring(keys: Keyring | MasterKey) -> Keyring:
    if isinstance(keys, Keyring):
        return keys
    if isinstance(keys, MasterKey):
        return Keyring(keys)
    raise MasterKeyError(f"expected a Keyring or MasterKey, not {type(keys).__name__}")


def generate_master_key() -> MasterKey:
    """A new random master key (from the OS CSPRNG)."""
    return MasterKey(os.urandom(MASTER_KEY_BYTES))


def parse_master_key(text: str, *, source: str = "master key") -> MasterKey:
    """Decode a master key written as 64 hex digits or as base64 (standard or URL-safe) of 32 bytes.

    ``source`` names where the text came from, for error messages; the text itself is never repeated.
    """
    if not isinstance(text, str):
        raise MasterKeyError(f"{source} must be text, not {type(text).__name__}")
    cleaned = "".join(text.split())
    if not cleaned:
        raise MasterKeyError(f"{source} is empty")
    material: bytes | None = None
    if len(cleaned) % 2 == 0 and all(c in _HEX_DIGITS for c in cleaned):
        material = bytes.fromhex(cleaned)  # all hex digits: hex, whatever its length
    elif cleaned.isascii():
        padded = cleaned.rstrip("=")
        padded += "=" * (-len(padded) % 4)
        for altchars in (None, b"-_"):
            try:
                material = base64.b64decode(padded, altchars=altchars, validate=True)
            except (binascii.Error, ValueError):
                continue
            break
    if material is None:
        raise MasterKeyError(f"{source} is neither {2 * MASTER_KEY_BYTES} hex digits nor base64")
    if len(material) != MASTER_KEY_BYTES:
        raise MasterKeyError(
            f"{source} decodes to {len(material)} bytes; a master key is {MASTER_KEY_BYTES} bytes "
            f"({2 * MASTER_KEY_BYTES} hex digits)"
        )
    return MasterKey(material)


def master_key_from_env(environ: Mapping[str, str] | None = None, *, name: str = ENV_VAR) -> MasterKey | None:
    """The master key from environment variable ``name`` (hex or base64), or None if it is not set."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    if value is None:
        return None
    return parse_master_key(value, source=f"environment variable {name}")


def write_key_file(path: str | os.PathLike[str], key: MasterKey) -> Path:
    """Write ``key`` as hex to a new file ``path`` with mode 0600, atomically; never overwrite.

    The key is written to a temporary file in the same directory (created
    0600), flushed to disk, then hard-linked to ``path``, which fails if
    ``path`` exists (on a file system without hard links, ``path`` is
    created with ``O_EXCL`` instead). Returns the path. Raises
    :class:`MasterKeyError`.
    """
    if not isinstance(key, MasterKey):
        raise MasterKeyError(f"expected a MasterKey, not {type(key).__name__}")
    target = Path(path)
    exists = MasterKeyError(f"key file {target} already exists; refusing to overwrite it")
    if target.exists() or target.is_symlink():
        raise exists
    data = (key.to_hex() + "\n").encode("ascii")
    tmp = temp_path(target)
    try:
        try:
            create_private(tmp, data, mode=KEY_FILE_MODE)
        except OSError as exc:
            raise MasterKeyError(f"cannot create key file in {target.parent}: {exc.strerror}") from None
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise exists from None
        except OSError:
            try:  # a file system without hard links: O_EXCL still never overwrites
                create_private(target, data, mode=KEY_FILE_MODE)
            except FileExistsError:
                raise exists from None
            except OSError as exc:
                raise MasterKeyError(f"cannot create key file {target}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    with contextlib.suppress(OSError):
        fsync_dir(target.parent)
    return target


def load_key_file(path: str | os.PathLike[str]) -> MasterKey:
    """Read a master key file (hex or base64); refuse it if group or others may read or write it.

    Like ssh with private keys: a key file whose mode has any of the 0o077
    bits is refused with :class:`MasterKeyError` (run ``chmod 600``). The file
    is opened without blocking and must be a regular file (checked on the
    open descriptor, before any read): a FIFO, device or directory in its
    place is refused at once instead of blocking ``check`` forever. At most
    :data:`MAX_KEY_FILE_BYTES` + 1 bytes are read (:mod:`vtoken.safefile`).
    """
    target = Path(path)

    def private_only(info: os.stat_result) -> None:
        mode = stat.S_IMODE(info.st_mode)
        if os.name == "posix" and mode & _FORBIDDEN_KEY_FILE_BITS:
            raise MasterKeyError(
                f"key file {target} has mode {mode:04o}: group or others can access it; run 'chmod 600 {target}'"
            )

    try:
        raw = read_regular_file(target, MAX_KEY_FILE_BYTES, check=private_only)
    except FileNotFoundError:
        raise MasterKeyError(f"key file {target} does not exist (create one with 'vtoken validator init')") from None
    except NotRegularFileError:
        raise MasterKeyError(f"key file {target} is not a regular file") from None
    except FileTooLargeError as exc:
        raise MasterKeyError(f"key file {target} is {exc.size} bytes; a key file is one line of hex") from None
    except OSError as exc:
        raise MasterKeyError(f"cannot read key file {target}: {exc.strerror}") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise MasterKeyError(f"key file {target} is not ASCII text") from None
    return parse_master_key(text, source=f"key file {target}")


def _aad(serial: str) -> bytes:
    if not isinstance(serial, str):
        raise InvalidKeyError(f"serial must be a string, not {type(serial).__name__}")
    try:
        return SEAL_AAD_PREFIX + serial.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidKeyError("serial must be ASCII") from None


def seal(keys: Keyring | MasterKey, serial: str, seed: bytes) -> SealedSeed:
    """Encrypt ``seed`` for token ``serial`` under the current master key (AES-256-GCM, random nonce)."""
    keyring = _as_keyring(keys)
    if not isinstance(seed, (bytes, bytearray, memoryview)):
        raise InvalidKeyError(f"seed must be bytes, not {type(seed).__name__}")
    seed = bytes(seed)
    if not 1 <= len(seed) <= MAX_SEED_BYTES:
        raise InvalidKeyError(f"seed must be 1 to {MAX_SEED_BYTES} bytes, not {len(seed)}")
    key = keyring.current
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = key._aead().encrypt(nonce, seed, _aad(serial))
    return SealedSeed(key_id=key.key_id, nonce=nonce, ciphertext=ciphertext)


def unseal(keys: Keyring | MasterKey, serial: str, sealed: SealedSeed) -> SecretBytes:
    """Decrypt the seed of token ``serial`` (as :class:`SecretBytes`, which are bytes with a hidden repr).

    Raises :class:`MasterKeyError` if no loaded key has the sealed seed's key
    id, and :class:`SealedSeedError` if it fails authentication (altered,
    belongs to another serial, or a different key with the same id).
    """
    keyring = _as_keyring(keys)
    if not isinstance(sealed, SealedSeed):
        raise SealedSeedError(f"expected a SealedSeed, not {type(sealed).__name__}")
    key = keyring.get(sealed.key_id)
    nonce, ciphertext = bytes(sealed.nonce), bytes(sealed.ciphertext)
    if len(nonce) != NONCE_BYTES or len(ciphertext) <= TAG_BYTES:
        raise SealedSeedError(f"sealed seed of token {serial} is malformed (nonce or ciphertext length)")
    try:
        return SecretBytes(key._aead().decrypt(nonce, ciphertext, _aad(serial)))
    except InvalidTag:
        raise SealedSeedError(
            f"sealed seed of token {serial} failed authentication under master key {key.key_id}: "
            "it was altered, belongs to another token, or the key is wrong"
        ) from None
