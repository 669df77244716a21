"""Named presets for the common kinds of hardware token.

Each model is a small frozen configuration. ``totp30`` is the common 30-second
TOTP fob, ``totp60`` a 60-second one like the Feitian c200, ``hotp`` an event
token like the Feitian c100.
"""

from __future__ import annotations

import dataclasses

from firmware_sim.flash import TokenKind
from vtoken.errors import InvalidConfigError
from vtoken.oath import Algorithm, check_digits

#: A HOTP code stays on the display this long (Swivel and Feitian tokens: about 10 s).
HOTP_DISPLAY_NS = 10 * 1_000_000_000


@dataclasses.dataclass(frozen=True)
class TokenModel:
    """A token product: what its firmware computes and how its display behaves."""

    name: str
    kind: TokenKind
    algorithm: Algorithm = Algorithm.SHA1
    digits: int = 6
    period: int = 30
    t0: int = 0
    display_width: int = 6
    #: How long a code stays on the display; ``None`` means "until the TOTP step ends".
    display_ns: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        check_digits(self.digits)
        if self.digits > self.display_width:
            raise InvalidConfigError(f"{self.digits} digits do not fit a {self.display_width}-digit display")
        if self.period <= 0:
            raise InvalidConfigError(f"period must be positive, not {self.period}")

    def code_display_ns(self, step_remaining_ns: int) -> int:
        """How long a code just computed stays on, given the time left in its TOTP step."""
        if self.display_ns is not None:
            return self.display_ns
        return step_remaining_ns if self.kind is TokenKind.TOTP else HOTP_DISPLAY_NS


MODELS: dict[str, TokenModel] = {
    model.name: model
    for model in (
        TokenModel("totp30", TokenKind.TOTP, period=30, description="TOTP, 30 s, SHA-1, 6 digits"),
        TokenModel("totp60", TokenKind.TOTP, period=60, description="TOTP, 60 s, SHA-1, 6 digits (like the Feitian c200)"),
        TokenModel("hotp", TokenKind.HOTP, display_ns=HOTP_DISPLAY_NS, description="HOTP event token, SHA-1, 6 digits (like the Feitian c100)"),
        TokenModel("totp30-8", TokenKind.TOTP, digits=8, display_width=8, description="TOTP, 30 s, SHA-1, 8 digits"),
        TokenModel("totp30-sha256", TokenKind.TOTP, algorithm=Algorithm.SHA256, description="TOTP, 30 s, SHA-256, 6 digits"),
    )
}


def get_model(name: str) -> TokenModel:
    """The preset called ``name``; :class:`InvalidConfigError` lists the choices otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise InvalidConfigError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
