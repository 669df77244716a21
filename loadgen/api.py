"""The two HTTP dialects: vtoken's ``/v1`` JSON API and privacyIDEA's ``/validate/check``.

Each turns a token and a code into (URL, body, headers), and an HTTP answer
into ``(accepted, reason)``: ``accepted`` is None when the answer is not a
decision at all (a 5xx, an error body, a malformed answer), which is always a
wrong answer. Bodies and headers are built from precomputed pieces: a check is
a few string joins, no JSON encoder.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from yarl import URL

from loadgen.config import API_PRIVACYIDEA, LoadConfig
from loadgen.tokens import VToken

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
#: vtoken answers a decision with these statuses (429: throttled, a refusal with Retry-After).
VTOKEN_DECISION_STATUSES = frozenset({200, 429})
#: Reasons are cut to this length in the report.
MAX_REASON = 160


def error_text(status: int, body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return f"HTTP {status}: {body[:80]!r}"
    message: Any = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        result = data.get("result")
        if message is None and isinstance(result, dict) and isinstance(result.get("error"), dict):
            message = result["error"].get("message")
    return f"HTTP {status}: {str(message if message is not None else data)[:MAX_REASON]}"


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class Dialect:
    """How checks and registrations are asked and answered."""

    name = "vtoken"

    def __init__(self, config: LoadConfig) -> None:
        self.base = config.url
        self.check_headers = {"Content-Type": JSON, **_bearer(config.api_key)}
        self.register_headers = {"Content-Type": JSON, **_bearer(config.api_key)}

    def check(self, token: VToken, code: str) -> tuple[URL, bytes]:
        """The URL and body of a check (the session sends ``check_headers``)."""
        url = token.check_url
        if url is None:
            url = token.check_url = URL(f"{self.base}/v1/tokens/{token.path}/check", encoded=True)
        return url, b'{"code":"' + code.encode("ascii") + b'"}'  # type: ignore[return-value]

    def parse_check(self, status: int, body: bytes) -> tuple[bool | None, str]:
        if status not in VTOKEN_DECISION_STATUSES:
            return None, error_text(status, body)
        try:
            data = json.loads(body)
            accepted, reason = data["accepted"], data["reason"]
        except (ValueError, KeyError, TypeError):
            return None, f"HTTP {status}: not a decision: {body[:80]!r}"
        if not isinstance(accepted, bool):
            return None, f"HTTP {status}: 'accepted' is not a boolean"
        return accepted, str(reason)[:MAX_REASON]

    def register(self, token: VToken, code1: str, code2: str) -> tuple[str, bytes]:
        body = json.dumps({"code1": code1, "code2": code2}).encode("ascii")
        return f"{self.base}/v1/tokens/{token.path}/register", body

    def parse_register(self, status: int, body: bytes) -> tuple[bool | None, str]:
        return self.parse_check(status, body)


class PrivacyIdeaDialect(Dialect):
    """privacyIDEA's validate API: form ``serial`` + ``pass``, answer ``result.value`` and ``result.authentication``."""

    name = "privacyidea"

    def __init__(self, config: LoadConfig) -> None:
        super().__init__(config)
        self.check_headers = {"Content-Type": FORM, **_bearer(config.api_key)}
        self.register_headers = {"Content-Type": FORM, **_bearer(config.admin_token)}
        self._check_url = URL(f"{self.base}/validate/check")

    def check(self, token: VToken, code: str) -> tuple[URL, bytes]:
        return self._check_url, b"serial=" + token.path.encode("ascii") + b"&pass=" + code.encode("ascii")

    def parse_check(self, status: int, body: bytes) -> tuple[bool | None, str]:
        if status != 200:
            return None, error_text(status, body)
        try:
            result = json.loads(body)["result"]
            value, ok = result.get("value"), result.get("status")
        except (ValueError, KeyError, TypeError, AttributeError):
            return None, f"HTTP {status}: not a privacyIDEA answer: {body[:80]!r}"
        if ok is not True or not isinstance(value, bool):
            return None, error_text(status, body)
        return value, str(result.get("authentication") or ("ACCEPT" if value else "REJECT"))

    def register(self, token: VToken, code1: str, code2: str) -> tuple[str, bytes]:
        form = urllib.parse.urlencode({"serial": token.serial, "otp1": code1, "otp2": code2})
        return f"{self.base}/token/resync", form.encode("ascii")

    def parse_register(self, status: int, body: bytes) -> tuple[bool | None, str]:
        accepted, reason = self.parse_check(status, body)
        if accepted is False:
            try:
                reason = str(json.loads(body)["detail"]["message"])[:MAX_REASON]
            except (ValueError, KeyError, TypeError):
                pass
        return accepted, reason


def dialect_for(config: LoadConfig) -> Dialect:
    """The dialect ``config.api`` names."""
    return PrivacyIdeaDialect(config) if config.api == API_PRIVACYIDEA else Dialect(config)


def import_request(config: LoadConfig, data: bytes) -> tuple[str, bytes, dict[str, str]]:
    """``POST /v1/import`` of the fleet's PSKC file, with its password or pre-shared key."""
    headers = {"Content-Type": "application/octet-stream", **_bearer(config.admin_token)}
    if config.password is not None:
        headers["X-Import-Password"] = config.password
    if config.psk is not None:
        headers["X-Import-PSK"] = config.psk.hex()
    return f"{config.url}/v1/import?format=pskc", data, headers


__all__ = ["Dialect", "error_text", "PrivacyIdeaDialect", "dialect_for", "import_request"]
