"""privacyIDEA's validation API on vtoken: ``POST /validate/check`` and ``POST /token/resync``.

Existing privacyIDEA clients (the PAM module, the RADIUS plugin, credential
providers) send ``serial`` (or ``user`` + ``realm``) and ``pass`` as a form or
JSON and read ``result.status``, ``result.value``, ``result.authentication``
and ``detail``. We answer in that shape. Parameters privacyIDEA knows but
vtoken does not use (``client``, ``options``, …) are ignored, as privacyIDEA
ignores what it does not use; a value of the wrong type is refused.

vtoken's next-code round maps to privacyIDEA's challenge: ``authentication``
is ``CHALLENGE`` with a ``transaction_id``; a client that answers the challenge
(``transaction_id`` + ``pass``) gets the pair checked for the same token.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.edge import MAX_TEXT, ApiError, batch_key, read_body
from validator.service import Reason, Result, Validator


API_VERSION = "vtoken (privacyIDEA 3 validate API)"
#: privacyIDEA's error codes for what a client can get wrong.
ERR_PARAMETER = 905
ERR_USER = 904
ERR_AUTH = 4033
#: Tokens whose type and length are remembered for ``detail`` (the dict is emptied when full).
MAX_KNOWN_TOKENS = 100_000
#: Form fields are text; these are the ones read.
FIELDS = ("serial", "pass", "user", "realm", "transaction_id", "otp1", "otp2")

#: Human messages privacyIDEA clients are used to, by outcome.
_MESSAGES = {
    Reason.ACCEPTED: "matching 1 tokens",
    Reason.WRONG_CODE: "wrong otp value",
    Reason.REPLAY: "wrong otp value. previous otp used again",
}


def _answer(
    status: bool, value: bool | None, authentication: str | None, detail: dict[str, Any], http: int = 200,
    error: tuple[int, str] | None = None,
) -> JSONResponse:
    result: dict[str, Any] = {"status": status}
    if value is not None:
        result["value"] = value
    if authentication is not None:
        result["authentication"] = authentication
    if error is not None:
        result["error"] = {"code": error[0], "message": error[1]}
    return JSONResponse(
        {"id": 1, "jsonrpc": "2.0", "version": API_VERSION, "time": time.time(), "result": result, "detail": detail},
        status_code=http,
    )


def _error(code: int, message: str, http: int = 400) -> JSONResponse:
    return _answer(False, None, None, {}, http, (code, message))


class _ParameterError(Exception):
    pass


class PrivacyIdeaApi:
    """The two endpoints, over the service's group committer."""

    def __init__(self, service: Any, resolve_user: Callable[[Validator, str, str], str | None] | None) -> None:
        self._service = service
        self._resolve_user = resolve_user
        #: serial -> (type, digits) for privacyIDEA's ``detail``; touched only on the writer thread.
        self._kinds: dict[str, tuple[str, int]] = {}

    async def _params(self, request: Request) -> dict[str, str]:
        body = await read_body(request, self._service.config.max_body_bytes)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise _ParameterError("malformed JSON") from None
            if not isinstance(data, dict):
                raise _ParameterError("the body must be a JSON object")
        else:
            try:
                pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
            except UnicodeDecodeError:
                raise _ParameterError("the form is not UTF-8") from None
            data = dict(pairs)
        params = {}
        for name in FIELDS:
            if name in data:
                value = data[name]
                if not isinstance(value, str):
                    raise _ParameterError(f"parameter {name!r} must be text")
                if len(value) > MAX_TEXT or not value.isascii() or not value.isprintable():
                    raise _ParameterError(f"parameter {name!r} must be printable ASCII of at most {MAX_TEXT} characters")
                params[name] = value
        return params

    @staticmethod
    def _transaction_id(serial: str) -> str:
        """A challenge's id carries its token's serial: any node can answer it (no state to share).

        That gives nothing away: answering a challenge is the same as sending the serial and a code.
        """
        return f"{secrets.token_hex(6)}-{serial}"

    @staticmethod
    def _challenged(transaction_id: str) -> str | None:
        _, sep, serial = transaction_id.partition("-")
        return serial if sep and serial else None

    async def validate_check(self, request: Request) -> Response:
        service = self._service
        try:
            await service.require_client(request)
        except ApiError as exc:  # 401/403 in privacyIDEA's shape; a store that is down stays a 503
            return _error(ERR_AUTH, exc.message, exc.status)
        try:
            params = await self._params(request)
        except _ParameterError as exc:
            return _error(ERR_PARAMETER, f"ERR{ERR_PARAMETER}: {exc}")
        if "pass" not in params:
            return _error(ERR_PARAMETER, f"ERR{ERR_PARAMETER}: Missing parameter: 'pass'")
        code = params["pass"]
        serial = params.get("serial")
        if not serial and params.get("transaction_id"):
            serial = self._challenged(params["transaction_id"])
        user, realm = params.get("user", ""), params.get("realm", "")
        if not serial and user:
            if self._resolve_user is None:
                return _error(ERR_USER, f"ERR{ERR_USER}: users are resolved only with --portal-db")
            resolve = self._resolve_user
            serial = await service.admin_job(lambda v: resolve(v, user, realm))
            if not serial:
                return _error(ERR_USER, f"ERR{ERR_USER}: The user can not be found in any resolver in this realm!")
        if not serial:
            return _error(ERR_PARAMETER, f"ERR{ERR_PARAMETER}: Missing parameter: 'serial' or 'user'")
        found = serial

        kinds = self._kinds

        def job(v: Validator) -> tuple[Result, int, str, int]:
            at = v.clock.now_ns()
            result = v.check(found, code, at)
            known = kinds.get(result.serial)  # a token's type never changes: read it once, not per check
            if known is None:
                rec = v.store.get(result.serial)
                if rec is None:
                    return result, at, "", 0
                if len(kinds) >= MAX_KNOWN_TOKENS:
                    kinds.clear()
                known = kinds[result.serial] = (rec.params.kind.value, rec.params.digits)
            return result, at, *known

        result, _, kind, digits = await self._decide("validate", job, found)
        return self._check_answer(result, kind, digits)

    async def _decide(self, operation: str, job: Callable[[Validator], Any], serial: str) -> Any:
        service = self._service
        start = time.perf_counter()
        answer = await service.committer.run_async(job, key=batch_key(serial))
        service.metrics.latency.labels(operation).observe(time.perf_counter() - start)
        service.metrics.decisions.labels(operation, answer[0].reason.value).inc()
        return answer

    def _check_answer(self, result: Result, kind: str, digits: int) -> JSONResponse:
        detail: dict[str, Any] = {"serial": result.serial, "type": kind or None, "otplen": digits or None,
                                  "threadid": 0}
        if result.accepted:
            detail["message"] = _MESSAGES[Reason.ACCEPTED]
            return _answer(True, True, "ACCEPT", detail)
        if result.reason is Reason.NEXT_CODE_REQUIRED:
            transaction_id = self._transaction_id(result.serial)
            detail.update(
                message="please enter the next code your token shows",
                transaction_id=transaction_id,
                transaction_ids=[transaction_id],
                multi_challenge=[{"serial": result.serial, "transaction_id": transaction_id, "type": kind,
                                  "message": "please enter the next code your token shows"}],
            )
            return _answer(True, False, "CHALLENGE", detail)
        if result.reason in (Reason.UNKNOWN_SERIAL, Reason.MISTYPED_SERIAL):
            detail["message"] = "The token does not exist" if result.reason is Reason.UNKNOWN_SERIAL else result.message
            return _answer(True, False, "REJECT", detail)
        detail["message"] = _MESSAGES.get(result.reason, result.message)
        return _answer(True, False, "REJECT", detail)

    async def token_resync(self, request: Request) -> Response:
        service = self._service
        try:
            await service.require(request, ("admin",))
        except ApiError as exc:
            return _error(ERR_AUTH, exc.message, exc.status)
        try:
            params = await self._params(request)
        except _ParameterError as exc:
            return _error(ERR_PARAMETER, f"ERR{ERR_PARAMETER}: {exc}")
        missing = [name for name in ("serial", "otp1", "otp2") if not params.get(name)]
        if missing:
            return _error(ERR_PARAMETER, f"ERR{ERR_PARAMETER}: Missing parameter: {missing[0]!r}")
        serial, otp1, otp2 = params["serial"], params["otp1"], params["otp2"]

        def job(v: Validator) -> tuple[Result, int]:
            at = v.clock.now_ns()
            return v.register(serial, otp1, otp2, at), at

        result, _ = await self._decide("resync", job, serial)
        return _answer(True, result.accepted, None, {"message": result.message, "serial": result.serial})


__all__ = ["API_VERSION", "PrivacyIdeaApi"]
