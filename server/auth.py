"""Bearer credentials: administrator tokens and client API keys, stored as digests.

A credential's text is ``vtk_<kind>_<ident>.<secret>``: the ident finds the
stored row, the secret (32 random bytes, base64url) is checked against its
SHA-256 digest in constant time. The text is shown once, when made; the store
never holds it, and no log or error message contains it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from validator.store import CREDENTIAL_KINDS, Credential
from vtoken.errors import InvalidInputError

PREFIX = "vtk"
IDENT_BYTES = 6
SECRET_BYTES = 32
#: ``vtk_admin_0123456789ab.<43 base64url characters>``
_TEXT = re.compile(r"^vtk_(admin|client)_([0-9a-f]{12})\.([A-Za-z0-9_-]{43})$")


def digest(secret: bytes) -> bytes:
    """The stored digest of a credential's secret."""
    return hashlib.sha256(secret).digest()


def make_credential(kind: str, label: str, created_ns: int) -> tuple[Credential, str]:
    """A new credential and its text (give the text to its holder; store only the credential)."""
    if kind not in CREDENTIAL_KINDS:
        raise InvalidInputError(f"credential kind must be one of {', '.join(CREDENTIAL_KINDS)}, not {kind!r}")
    ident = secrets.token_hex(IDENT_BYTES)
    secret = secrets.token_bytes(SECRET_BYTES)
    text = f"{PREFIX}_{kind}_{ident}.{base64.urlsafe_b64encode(secret).decode().rstrip('=')}"
    return Credential(ident, kind, digest(secret), label, created_ns), text


def parse(text: str) -> tuple[str, str, bytes] | None:
    """``(kind, ident, secret)`` of a credential text, or None if it is not one."""
    match = _TEXT.match(text)
    if match is None:
        return None
    kind, ident, encoded = match.groups()
    try:
        secret = base64.urlsafe_b64decode(encoded + "=")
    except ValueError:
        return None
    return kind, ident, secret


def verify(text: str, credentials: dict[str, Credential], *, kinds: tuple[str, ...]) -> Credential | None:
    """The active credential of one of ``kinds`` that ``text`` proves, or None."""
    parsed = parse(text)
    if parsed is None:
        return None
    kind, ident, secret = parsed
    found = credentials.get(ident)
    if found is None or found.revoked_ns is not None or found.kind != kind or kind not in kinds:
        # Still hash, so a wrong ident and a wrong secret take the same time.
        hmac.compare_digest(digest(secret), b"\0" * 32)
        return None
    return found if hmac.compare_digest(digest(secret), found.digest) else None


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


__all__ = ["bearer", "digest", "make_credential", "parse", "verify"]
