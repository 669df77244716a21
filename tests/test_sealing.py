"""Master keys and sealed seeds: AES-256-GCM round trips, refusals, key files, the environment variable."""

from __future__ import annotations

import base64
import dataclasses
import os
import pickle
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validator.records import SealedSeed
from validator.sealing import (
    ENV_VAR,
    KEY_FILE_MODE,
    MASTER_KEY_BYTES,
    NONCE_BYTES,
    Keyring,
    MasterKey,
    SecretBytes,
    generate_master_key,
    load_key_file,
    master_key_from_env,
    parse_master_key,
    seal,
    unseal,
    write_key_file,
)
from vtoken.errors import MasterKeyError, SealedSeedError, ValidatorError

SEED = b"SEED-0123456789-RECOGNIZABLE"
SERIAL = "0000005724"
OTHER_SERIAL = "0000005731"
KEY_BYTES = bytes(range(32))


def _secret_forms(material: bytes) -> list[str]:
    return [material.hex(), material.hex().upper(), base64.b64encode(material).decode(), repr(material)]


def assert_no_secret(text: str, *secrets: bytes) -> None:
    for secret in secrets:
        for form in _secret_forms(secret):
            assert form not in text


@pytest.fixture
def key() -> MasterKey:
    return MasterKey(KEY_BYTES)


# --- MasterKey and Keyring ---------------------------------------------------------------------


def test_key_id_is_short_stable_hex_and_repr_hides_the_key(key: MasterKey) -> None:
    assert len(key.key_id) == 16
    int(key.key_id, 16)
    assert MasterKey(KEY_BYTES).key_id == key.key_id
    assert generate_master_key().key_id != key.key_id
    assert key.key_id in repr(key)
    assert_no_secret(repr(key) + str(key), KEY_BYTES)
    assert_no_secret(repr(Keyring(key)), KEY_BYTES)


def test_master_key_equality_and_no_pickling(key: MasterKey) -> None:
    assert key == MasterKey(KEY_BYTES)
    assert key != generate_master_key()
    with pytest.raises(TypeError):
        pickle.dumps(key)


@pytest.mark.parametrize("material", [b"", b"x" * 31, b"x" * 33, "00" * 32])
def test_master_key_must_be_32_bytes(material: object) -> None:
    with pytest.raises(MasterKeyError):
        MasterKey(material)  # type: ignore[arg-type]


def test_generated_keys_are_random() -> None:
    assert len({generate_master_key().key_id for _ in range(20)}) == 20


def test_keyring_finds_older_keys_and_rotates(key: MasterKey) -> None:
    newer = generate_master_key()
    ring = Keyring(key).rotated(newer)
    assert ring.current == newer
    assert ring.key_ids == (newer.key_id, key.key_id)
    assert ring.get(key.key_id) == key
    assert key.key_id in ring
    with pytest.raises(MasterKeyError, match="no master key with id"):
        ring.get("0123456789abcdef")


# --- seal / unseal ---------------------------------------------------------------------------------


def test_seal_unseal_round_trip(key: MasterKey) -> None:
    sealed = seal(Keyring(key), SERIAL, SEED)
    assert sealed.key_id == key.key_id
    assert len(sealed.nonce) == NONCE_BYTES
    assert SEED not in sealed.ciphertext
    seed = unseal(Keyring(key), SERIAL, sealed)
    assert seed == SEED
    assert isinstance(seed, SecretBytes)
    assert_no_secret(repr(seed) + str(seed) + f"{seed}" + repr(sealed), SEED)


def test_each_seal_uses_a_fresh_nonce(key: MasterKey) -> None:
    a, b = seal(key, SERIAL, SEED), seal(key, SERIAL, SEED)
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext


@settings(max_examples=40, deadline=None)
@given(seed=st.binary(min_size=1, max_size=128), serial=st.from_regex(r"[0-9]{6,20}", fullmatch=True))
def test_round_trip_any_seed(seed: bytes, serial: str) -> None:
    key = MasterKey(KEY_BYTES)
    assert unseal(key, serial, seal(key, serial, seed)) == seed


def test_older_key_still_unseals_after_rotation(key: MasterKey) -> None:
    sealed = seal(key, SERIAL, SEED)
    ring = Keyring(key).rotated(generate_master_key())
    assert unseal(ring, SERIAL, sealed) == SEED
    assert seal(ring, SERIAL, SEED).key_id == ring.current.key_id


def test_wrong_key_is_refused_without_leaking(key: MasterKey) -> None:
    sealed = seal(key, SERIAL, SEED)
    other = generate_master_key()
    with pytest.raises(MasterKeyError) as info:
        unseal(Keyring(other), SERIAL, sealed)
    assert sealed.key_id in str(info.value)
    assert_no_secret(str(info.value), SEED, KEY_BYTES)
    # A different key that claims the same id (a corrupted key file, say) fails authentication.
    impostor = dataclasses.replace(sealed, key_id=other.key_id)
    with pytest.raises(SealedSeedError):
        unseal(other, SERIAL, impostor)


@pytest.mark.parametrize("part", ["ciphertext", "tag", "nonce"])
def test_tampering_is_detected(key: MasterKey, part: str) -> None:
    sealed = seal(key, SERIAL, SEED)
    ct = bytearray(sealed.ciphertext)
    nonce = bytearray(sealed.nonce)
    if part == "ciphertext":
        ct[0] ^= 0x01
    elif part == "tag":
        ct[-1] ^= 0x80
    else:
        nonce[3] ^= 0x10
    tampered = SealedSeed(sealed.key_id, bytes(nonce), bytes(ct))
    with pytest.raises(SealedSeedError) as info:
        unseal(key, SERIAL, tampered)
    assert isinstance(info.value, (MasterKeyError, ValidatorError))
    assert_no_secret(str(info.value), SEED, KEY_BYTES)


def test_serial_is_bound_as_associated_data(key: MasterKey) -> None:
    sealed = seal(key, SERIAL, SEED)
    with pytest.raises(SealedSeedError, match=OTHER_SERIAL):
        unseal(key, OTHER_SERIAL, sealed)


def test_truncated_sealed_seed_is_refused(key: MasterKey) -> None:
    sealed = seal(key, SERIAL, SEED)
    with pytest.raises(SealedSeedError):
        unseal(key, SERIAL, SealedSeed(sealed.key_id, sealed.nonce[:8], sealed.ciphertext))
    with pytest.raises(SealedSeedError):
        unseal(key, SERIAL, SealedSeed(sealed.key_id, sealed.nonce, sealed.ciphertext[:10]))


def test_seal_refuses_empty_seed(key: MasterKey) -> None:
    with pytest.raises(ValueError):
        seal(key, SERIAL, b"")


# --- key files ---------------------------------------------------------------------------------------


def test_key_file_is_created_0600_and_loads(tmp_path: Path, key: MasterKey) -> None:
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        path = write_key_file(tmp_path / "master.key", key)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == KEY_FILE_MODE
    assert load_key_file(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]  # no temporary file left behind


def test_key_file_is_never_overwritten(tmp_path: Path, key: MasterKey) -> None:
    path = write_key_file(tmp_path / "master.key", key)
    before = path.read_bytes()
    with pytest.raises(MasterKeyError, match="already exists"):
        write_key_file(path, generate_master_key())
    assert path.read_bytes() == before


def test_key_file_without_hard_links(tmp_path: Path, key: MasterKey, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = write_key_file(tmp_path / "master.key", key)
    assert stat.S_IMODE(path.stat().st_mode) == KEY_FILE_MODE
    assert load_key_file(path) == key
    with pytest.raises(MasterKeyError, match="already exists"):
        write_key_file(path, generate_master_key())
    assert load_key_file(path) == key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, key: MasterKey, mode: int) -> None:
    path = write_key_file(tmp_path / "master.key", key)
    path.chmod(mode)
    with pytest.raises(MasterKeyError, match="chmod 600") as info:
        load_key_file(path)
    assert_no_secret(str(info.value), KEY_BYTES)


def test_key_file_problems(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="does not exist"):
        load_key_file(tmp_path / "missing.key")
    bad = tmp_path / "bad.key"
    bad.write_text("00" * 16 + "\n")
    bad.chmod(0o600)
    with pytest.raises(MasterKeyError, match="16 bytes") as info:
        load_key_file(bad)
    assert "00" * 16 not in str(info.value)


# --- environment variable ------------------------------------------------------------------------------


def test_env_key_hex_and_base64(key: MasterKey) -> None:
    assert master_key_from_env({ENV_VAR: KEY_BYTES.hex()}) == key
    assert master_key_from_env({ENV_VAR: f"  {KEY_BYTES.hex().upper()}\n"}) == key
    assert master_key_from_env({ENV_VAR: base64.b64encode(KEY_BYTES).decode()}) == key
    assert master_key_from_env({ENV_VAR: base64.urlsafe_b64encode(b"\xff" * 32).decode().rstrip("=")}) == MasterKey(
        b"\xff" * 32
    )
    assert master_key_from_env({}) is None


@pytest.mark.parametrize("value", ["", "zz" * 32, "00" * 31, base64.b64encode(b"k" * 24).decode(), "not a key!"])
def test_env_key_malformed_is_refused_without_echo(value: str) -> None:
    with pytest.raises(MasterKeyError, match=ENV_VAR) as info:
        master_key_from_env({ENV_VAR: value})
    if value.strip():
        assert value not in str(info.value)


def test_parse_master_key_names_its_source() -> None:
    with pytest.raises(MasterKeyError, match="somewhere"):
        parse_master_key("abc", source="somewhere")
    assert len(parse_master_key("ab" * MASTER_KEY_BYTES).to_hex()) == 64


# --- a key file that is not a regular file (issue 15, item 10) -------------------------------------------------

#: A process still blocked after this long is hanging on the key file.
_FIFO_TIMEOUT_S = 60

_LOAD_FIFO = """
import sys
from validator.sealing import load_key_file
from vtoken.errors import MasterKeyError
try:
    load_key_file(sys.argv[1])
except MasterKeyError as exc:
    print("refused:", exc)
"""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_key_file_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO with no writer blocked the open, and with it every ``check``, forever. In a subprocess: a
    regression must fail the test, not hang it."""
    import subprocess
    import sys

    fifo = tmp_path / "validator.db.key"
    os.mkfifo(fifo, 0o600)
    done = subprocess.run([sys.executable, "-c", _LOAD_FIFO, str(fifo)], capture_output=True, text=True,
                          timeout=_FIFO_TIMEOUT_S, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is not a regular file" in done.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_check_with_a_fifo_key_file_ends_with_a_message(tmp_path: Path) -> None:
    """``vtoken validator check`` itself: an error message and a non-zero exit, no traceback, no hang."""
    import subprocess
    import sys

    db = tmp_path / "v.db"
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    init = subprocess.run([sys.executable, "-m", "host.cli.main", "validator", "--db", str(db), "init"],
                          capture_output=True, text=True, timeout=_FIFO_TIMEOUT_S, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    assert init.returncode == 0, init.stderr
    key_file = Path(f"{db}.key")
    key_file.unlink()
    os.mkfifo(key_file, 0o600)
    done = subprocess.run([sys.executable, "-m", "host.cli.main", "validator", "--db", str(db), "check", SERIAL,
                           "123456"], capture_output=True, text=True, timeout=_FIFO_TIMEOUT_S, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode != 0
    assert "not a regular file" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_directory_key_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "master.key"
    folder.mkdir(mode=0o700)
    with pytest.raises(MasterKeyError, match="not a regular file"):
        load_key_file(folder)
