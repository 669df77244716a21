"""The Key Uri Format authenticator apps read: ``otpauth://TYPE/LABEL?PARAMETERS``.

The format is Google Authenticator's (github.com/google/google-authenticator/wiki/Key-Uri-Format)::

    otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example

:func:`parse_uri` reads one URI into an :class:`OtpAuthKey`; :func:`build_uri`
writes the canonical form back (``parse_uri(build_uri(k)) == k``). Pure: no
I/O, no clock. Error messages never contain the secret.

Parsing is strict where a wrong guess would give wrong codes (an unknown
algorithm is an error, never a silent SHA-1) and lenient where the format is
loose: the secret may be lower case and unpadded, the label's issuer may be
separated by ``:`` or ``%3A``, and a HOTP URI without ``counter`` starts at 0.

>>> key = parse_uri("otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example")
>>> key.issuer, key.account, key.algorithm.value, key.digits, key.period
('Example', 'alice@google.com', 'sha1', 6, 30)
>>> key
OtpAuthKey(kind=<TokenKind.TOTP: 'totp'>, account='alice@google.com', issuer='Example', \
algorithm=<Algorithm.SHA1: 'sha1'>, digits=6, period=30, counter=0)
>>> build_uri(key)
'otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example&algorithm=SHA1&digits=6&period=30'
"""

from __future__ import annotations

import base64
import dataclasses
import re
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from vtoken.errors import InvalidInputError, InvalidKeyError, InvalidPeriodError
from vtoken.oath import (
    DEFAULT_DIGITS,
    DEFAULT_PERIOD,
    MAX_PERIOD,
    Algorithm,
    TokenKind,
    check_counter,
    check_digits,
    check_key,
    parse_key,
)

__all__ = [
    "MAX_COUNTER",
    "MAX_PERIOD",
    "MAX_URI_LENGTH",
    "SCHEME",
    "OtpAuthKey",
    "build_uri",
    "parse_uri",
]

SCHEME = "otpauth"
#: A URI longer than this is refused before it is parsed (a QR code holds at most about 4 KB).
MAX_URI_LENGTH = 4096
#: Largest HOTP counter accepted: a signed 64-bit integer, what importers and databases store.
MAX_COUNTER = 2**63 - 1
#: More query parameters than this is not an otpauth URI.
MAX_PARAMETERS = 32

_ALGORITHM_NAMES = {"SHA1": Algorithm.SHA1, "SHA256": Algorithm.SHA256, "SHA512": Algorithm.SHA512}
_URI_NAMES = {algorithm: name for name, algorithm in _ALGORITHM_NAMES.items()}
_KNOWN_PARAMETERS = frozenset({"secret", "issuer", "algorithm", "digits", "period", "counter", "encoder"})
#: Unsigned decimal integers only: ``int()`` would also take "+6", " 6", "6_0" and non-ASCII digits.
_DECIMAL = re.compile(r"[0-9]{1,20}")
#: Label characters written as they are (``@`` keeps e-mail accounts readable); the rest is percent-encoded.
_LABEL_SAFE = "@"


@dataclasses.dataclass(frozen=True)
class OtpAuthKey:
    """One OATH key as an otpauth URI carries it; the secret never appears in the repr.

    ``period`` matters for TOTP only (HOTP keys keep the default 30) and
    ``counter`` for HOTP only (TOTP keys keep 0).
    """

    kind: TokenKind
    secret: bytes = dataclasses.field(repr=False)
    account: str
    issuer: str | None = None
    algorithm: Algorithm = Algorithm.SHA1
    digits: int = DEFAULT_DIGITS
    period: int = DEFAULT_PERIOD
    counter: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, TokenKind):
            raise InvalidInputError(f"kind must be a TokenKind, not {type(self.kind).__name__}")
        if not isinstance(self.algorithm, Algorithm):
            raise InvalidInputError(f"algorithm must be an Algorithm, not {type(self.algorithm).__name__}")
        object.__setattr__(self, "secret", check_key(self.secret))
        _check_name(self.account, "account name")
        if self.account.startswith(" "):
            raise InvalidInputError("account name must not start with a space (the label drops it)")
        if self.issuer is not None:
            _check_name(self.issuer, "issuer")
        check_digits(self.digits)
        _check_period(self.period)
        _check_counter(self.counter)
        if self.kind is TokenKind.TOTP and self.counter != 0:
            raise InvalidInputError("a TOTP key has no counter (leave it 0)")
        if self.kind is TokenKind.HOTP and self.period != DEFAULT_PERIOD:
            raise InvalidInputError(f"a HOTP key has no period (leave it {DEFAULT_PERIOD})")

    @property
    def label(self) -> str:
        """What an authenticator app shows: ``issuer:account``, or the account alone."""
        return self.account if self.issuer is None else f"{self.issuer}:{self.account}"


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{what} is empty")
    if ":" in value:
        raise InvalidInputError(f"{what} must not contain ':' (it separates issuer and account in the label)")
    if not value.isprintable():
        raise InvalidInputError(f"{what} contains control or other non-printable characters")
    return value


def _check_period(period: object) -> int:
    if isinstance(period, bool) or not isinstance(period, int):
        raise InvalidPeriodError(f"period must be an integer number of seconds, not {type(period).__name__}")
    if not 1 <= period <= MAX_PERIOD:
        raise InvalidPeriodError(f"period must be 1 to {MAX_PERIOD} seconds, not {period}")
    return period


def _check_counter(counter: object) -> int:
    value = check_counter(counter)  # type: ignore[arg-type]
    if value > MAX_COUNTER:
        raise InvalidInputError(f"counter must be at most 2^63-1, not {value}")
    return value


# --- building ---------------------------------------------------------------------------------


def build_uri(key: OtpAuthKey) -> str:
    """The canonical otpauth URI of ``key``.

    Secret in unpadded upper-case base32; the issuer both as the label prefix
    and as the ``issuer`` parameter; ``algorithm``, ``digits`` and ``period``
    (TOTP) or ``counter`` (HOTP) always written.
    """
    if not isinstance(key, OtpAuthKey):
        raise InvalidInputError(f"build_uri takes an OtpAuthKey, not {type(key).__name__}")
    label = quote(key.account, safe=_LABEL_SAFE)
    params = [("secret", base64.b32encode(key.secret).decode("ascii").rstrip("="))]
    if key.issuer is not None:
        label = f"{quote(key.issuer, safe=_LABEL_SAFE)}:{label}"
        params.append(("issuer", key.issuer))
    params.append(("algorithm", _URI_NAMES[key.algorithm]))
    params.append(("digits", str(key.digits)))
    if key.kind is TokenKind.TOTP:
        params.append(("period", str(key.period)))
    else:
        params.append(("counter", str(key.counter)))
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params)
    uri = f"{SCHEME}://{key.kind.value}/{label}?{query}"
    if len(uri) > MAX_URI_LENGTH:
        raise InvalidInputError(f"the URI would be {len(uri)} characters, more than {MAX_URI_LENGTH}")
    return uri


# --- parsing ----------------------------------------------------------------------------------


def parse_uri(text: str) -> OtpAuthKey:
    """Read one ``otpauth://`` URI; :class:`InvalidInputError` (or a subclass) says what is wrong.

    Surrounding whitespace is ignored. Unknown parameters (``image``, ...) are
    ignored; known ones may appear once. A TOTP URI's ``counter`` and a HOTP
    URI's ``period`` are checked but not kept.
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"an otpauth URI must be a string, not {type(text).__name__}")
    text = text.strip()
    if len(text) > MAX_URI_LENGTH:
        raise InvalidInputError(f"otpauth URI is {len(text)} characters long; at most {MAX_URI_LENGTH} are accepted")
    if not text.isprintable():
        raise InvalidInputError("otpauth URI contains control characters")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise InvalidInputError("not a valid URI") from None
    if parts.scheme != SCHEME:
        raise InvalidInputError(f"not an otpauth URI: the scheme must be '{SCHEME}://'")
    try:
        kind = TokenKind(parts.netloc.lower())
    except ValueError:
        raise InvalidInputError("otpauth type must be 'totp' or 'hotp'") from None

    issuer_in_label, account = _parse_label(parts.path)
    params = _parse_query(parts.query)
    if "encoder" in params:
        raise InvalidInputError("the 'encoder' parameter (Steam codes) is not supported")

    secret_text = params.get("secret")
    if not secret_text:
        raise InvalidKeyError("otpauth URI has no secret parameter")
    try:
        secret = parse_key(secret_text, "base32")
    except InvalidKeyError as exc:
        raise InvalidKeyError(f"secret: {exc}") from None

    issuer = issuer_in_label
    issuer_param = params.get("issuer")
    if issuer_param:
        if issuer_in_label is not None and issuer_param != issuer_in_label:
            raise InvalidInputError(
                f"issuer parameter {issuer_param!r} differs from the label's issuer {issuer_in_label!r}"
            )
        issuer = _check_name(issuer_param, "issuer")

    algorithm = Algorithm.SHA1
    if "algorithm" in params:
        name = params["algorithm"].upper()
        if name not in _ALGORITHM_NAMES:
            raise InvalidInputError(
                f"unsupported algorithm {params['algorithm']!r}; use SHA1, SHA256 or SHA512"
            )
        algorithm = _ALGORITHM_NAMES[name]

    digits = check_digits(_integer(params, "digits", DEFAULT_DIGITS))
    period = _check_period(_integer(params, "period", DEFAULT_PERIOD))
    counter = _check_counter(_integer(params, "counter", 0))
    return OtpAuthKey(
        kind=kind,
        secret=secret,
        account=account,
        issuer=issuer,
        algorithm=algorithm,
        digits=digits,
        period=period if kind is TokenKind.TOTP else DEFAULT_PERIOD,
        counter=counter if kind is TokenKind.HOTP else 0,
    )


def _parse_label(path: str) -> tuple[str | None, str]:
    """``/issuer:account`` (colon literal or ``%3A``; spaces before the account dropped) to its parts."""
    raw = path[1:] if path.startswith("/") else path
    if not raw:
        raise InvalidInputError("otpauth URI has no label (account name)")
    try:
        label = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInputError("label is not valid percent-encoded UTF-8") from None
    if ":" not in label:
        return None, _check_name(label, "account name")
    issuer, account = label.split(":", 1)
    if ":" in account:
        raise InvalidInputError("label has more than one ':'; neither issuer nor account may contain one")
    if not issuer:
        raise InvalidInputError("label has an empty issuer before ':'")
    return _check_name(issuer, "issuer"), _check_name(account.lstrip(" "), "account name")


def _parse_query(query: str) -> dict[str, str]:
    """The known parameters, percent-decoded; each may appear once."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=MAX_PARAMETERS)
    except UnicodeDecodeError:
        raise InvalidInputError("a parameter is not valid percent-encoded UTF-8") from None
    except ValueError:
        raise InvalidInputError(f"otpauth URI has more than {MAX_PARAMETERS} parameters") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        if name not in _KNOWN_PARAMETERS:
            continue
        if name in params:
            raise InvalidInputError(f"parameter {name!r} appears more than once")
        params[name] = value
    return params


def _integer(params: dict[str, str], name: str, default: int) -> int:
    """A decimal parameter, or ``default`` when absent; the message quotes only non-secret text."""
    value = params.get(name)
    if value is None:
        return default
    if not _DECIMAL.fullmatch(value):
        raise InvalidInputError(f"{name} must be a non-negative decimal integer, not {value[:24]!r}")
    return int(value)
