"""The HTTP/JSON API (Starlette, an ASGI app) over the group-committed validator.

Every decision goes through the :class:`~server.groupcommit.GroupCommitter`:
the handler awaits the committed result, so an accept is never answered
before its commit. Bodies are size-limited and strictly typed: malformed JSON,
unknown fields and wrong types get 400 with a message, never 500. Nothing
here logs a code, a seed or a credential.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server import auth
from server.edge import ApiError, batch_key, check_text, error_response, json_object, read_body
from server.groupcommit import GroupCommitter, ServiceUnavailableError
from server.metrics import Metrics
from server.openapi import openapi_document
from server.privacyidea import PrivacyIdeaApi
from validator.importer import FORMATS, ImportOptions, import_data
from validator.service import Reason, Result, TokenStatus, Validator
from validator.store import Credential
from vtoken.clock import NS_PER_SECOND
from vtoken.errors import (
    ImportFailedError,
    InvalidInputError,
    StorageError,
    UnknownTokenError,
    VTokenError,
)

#: Request bodies larger than this are refused (413) before they are read in full.
MAX_BODY_BYTES = 64 * 1024
MAX_IMPORT_BYTES = 16 * 1024 * 1024
#: Credentials are re-read from the store this often: a revocation takes effect within it.
CREDENTIAL_REFRESH_S = 2.0
#: ``GET /v1/tokens`` pages.
DEFAULT_PAGE = 100
MAX_PAGE = 1000

ADMIN = ("admin",)
CLIENT = ("client", "admin")


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """What the service enforces."""

    #: Validation endpoints need a client API key (or an admin token).
    require_api_key: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    max_import_bytes: int = MAX_IMPORT_BYTES
    credential_refresh_s: float = CREDENTIAL_REFRESH_S


# --- request bodies ---------------------------------------------------------------------------------


# --- answers ----------------------------------------------------------------------------------------

#: Decisions that are not 200.
_STATUS_OF = {
    Reason.THROTTLED: 429,
    Reason.UNKNOWN_SERIAL: 404,
    Reason.MISTYPED_SERIAL: 404,
    Reason.BAD_FORMAT: 400,
}


def result_json(result: Result, at_ns: int) -> dict[str, Any]:
    """A :class:`Result` as JSON (offsets in seconds, the throttle as seconds to wait)."""
    retry = None
    if result.retry_at_ns is not None:
        retry = max(1, math.ceil((result.retry_at_ns - at_ns) / NS_PER_SECOND))
    return {
        "accepted": result.accepted,
        "reason": result.reason.value,
        "message": result.message,
        "serial": result.serial,
        "step": result.step,
        "offset_steps": result.offset_steps,
        "offset_s": None if result.offset_ns is None else result.offset_ns / NS_PER_SECOND,
        "failures": result.failures,
        "attempts_left": result.attempts_left,
        "retry_after_s": retry,
    }


def result_response(result: Result, at_ns: int) -> JSONResponse:
    body = result_json(result, at_ns)
    headers = {"Retry-After": str(body["retry_after_s"])} if body["retry_after_s"] is not None else None
    return JSONResponse(body, status_code=_STATUS_OF.get(result.reason, 200), headers=headers)


def status_json(status: TokenStatus) -> dict[str, Any]:
    """A token's status: parameters, state and the drift model's view (never the seed)."""
    rec, params = status.record, status.record.params
    return {
        "serial": rec.serial,
        "type": params.kind.value,
        "algorithm": params.algorithm.value,
        "digits": params.digits,
        "period": params.period if params.kind.value == "totp" else None,
        "registered": rec.registered,
        "locked": rec.locked,
        "lock_reason": rec.lock_reason or None,
        "failures": rec.failures,
        "last_step": rec.last_step,
        "offset_s": None if status.offset_ns is None else status.offset_ns / NS_PER_SECOND,
        "offset_sigma_s": status.offset_sigma_s,
        "rate_ppm": status.rate_ppm,
        "rate_sigma_ppm": status.rate_sigma_ppm,
        "single_window_codes": status.single_window_codes,
        "next_code_window_codes": status.next_code_window_codes,
        "false_accept_per_guess": status.false_accept_per_guess,
        "history": len(status.history),
    }


# --- the service ------------------------------------------------------------------------------------


class Service:
    """Route handlers and what they share: the committer, credentials, metrics."""

    def __init__(
        self,
        committer: GroupCommitter,
        config: ServiceConfig,
        metrics: Metrics,
        *,
        kernel: str,
        resolve_user: Callable[[Validator, str, str], str | None] | None = None,
    ) -> None:
        self.committer = committer
        self.config = config
        self.metrics = metrics
        self.kernel = kernel
        self._credentials: dict[str, Credential] = {}
        self._credentials_at = -math.inf
        self._credentials_lock = asyncio.Lock()
        self.privacyidea = PrivacyIdeaApi(self, resolve_user)

    # -- plumbing -----------------------------------------------------------------------------------

    async def decide(
        self, operation: str, job: Callable[[Validator], tuple[Result, int]], serial: str = ""
    ) -> tuple[Result, int]:
        """Run a decision about token ``serial`` through the group committer; count it."""
        start = time.perf_counter()
        try:
            result, at = await self.committer.run_async(job, key=batch_key(serial))
        except ServiceUnavailableError:
            self.metrics.decisions.labels(operation, "unavailable").inc()
            raise
        self.metrics.latency.labels(operation).observe(time.perf_counter() - start)
        self.metrics.decisions.labels(operation, result.reason.value).inc()
        if not result.accepted and result.attempts_left == 0 and result.reason not in (Reason.LOCKED,):
            self.metrics.lockouts.inc()
        return result, at

    async def admin_job(self, job: Callable[[Validator], Any]) -> Any:
        """Work that is not a decision (reads, imports, unlocks): alone, between batches."""
        return await self.committer.run_async(job, batched=False)

    async def credentials(self) -> dict[str, Credential]:
        now = time.monotonic()
        if now - self._credentials_at >= self.config.credential_refresh_s:
            async with self._credentials_lock:
                if now - self._credentials_at >= self.config.credential_refresh_s:
                    found = await self.admin_job(lambda v: v.store.credentials())
                    self._credentials = {c.ident: c for c in found}
                    self._credentials_at = time.monotonic()
        return self._credentials

    async def require(self, request: Request, kinds: tuple[str, ...]) -> None:
        token = auth.bearer(request.headers.get("authorization"))
        if token is None:
            raise ApiError(401, "this endpoint needs 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": 'Bearer realm="vtoken"'})
        if auth.verify(token, await self.credentials(), kinds=kinds) is None:
            raise ApiError(403, "the bearer token is not valid for this endpoint (wrong, revoked or not an admin token)")

    async def require_client(self, request: Request) -> None:
        if self.config.require_api_key:
            await self.require(request, CLIENT)

    # -- /v1 ------------------------------------------------------------------------------------------

    async def check(self, request: Request) -> Response:
        await self.require_client(request)
        serial = check_text(request.path_params["serial"], "the serial")
        body = await json_object(request, {"code": str}, self.config.max_body_bytes)
        code = body["code"]

        def job(v: Validator) -> tuple[Result, int]:
            at = v.clock.now_ns()
            return v.check(serial, code, at), at

        return result_response(*await self.decide("check", job, serial))

    async def register(self, request: Request) -> Response:
        await self.require_client(request)
        serial = check_text(request.path_params["serial"], "the serial")
        body = await json_object(request, {"code1": str, "code2": str}, self.config.max_body_bytes)
        code1, code2 = body["code1"], body["code2"]

        def job(v: Validator) -> tuple[Result, int]:
            at = v.clock.now_ns()
            return v.register(serial, code1, code2, at), at

        return result_response(*await self.decide("register", job, serial))

    async def status(self, request: Request) -> Response:
        await self.require(request, ADMIN)
        serial = check_text(request.path_params["serial"], "the serial")
        return JSONResponse(status_json(await self.admin_job(lambda v: v.status(serial))))

    async def list_tokens(self, request: Request) -> Response:
        await self.require(request, ADMIN)
        unknown = sorted(set(request.query_params) - {"limit", "after"})
        if unknown:
            raise ApiError(400, f"unknown query parameter(s): {', '.join(u[:40] for u in unknown[:5])}")
        text = request.query_params.get("limit", str(DEFAULT_PAGE))
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE:
            raise ApiError(400, f"limit must be a whole number from 1 to {MAX_PAGE}")
        limit, after = int(text), check_text(request.query_params.get("after", ""), "after")

        def job(v: Validator) -> list[dict[str, Any]]:
            page = [r for r in v.store.list_tokens() if r.serial > after][: limit + 1]
            return [
                {"serial": r.serial, "type": r.params.kind.value, "digits": r.params.digits,
                 "registered": r.registered, "locked": r.locked, "failures": r.failures}
                for r in page
            ]

        rows = await self.admin_job(job)
        more = len(rows) > limit
        rows = rows[:limit]
        return JSONResponse({"tokens": rows, "next": rows[-1]["serial"] if more else None})

    async def unlock(self, request: Request) -> Response:
        await self.require(request, ADMIN)
        serial = check_text(request.path_params["serial"], "the serial")

        def job(v: Validator) -> tuple[Result, int]:
            at = v.clock.now_ns()
            return v.unlock(serial, at), at

        return result_response(*await self.decide("unlock", job, serial))

    async def import_tokens(self, request: Request) -> Response:
        await self.require(request, ADMIN)
        unknown = sorted(set(request.query_params) - {"format", "skip_unsupported"})
        if unknown:
            raise ApiError(400, f"unknown query parameter(s): {', '.join(u[:40] for u in unknown[:5])}")
        fmt = request.query_params.get("format", "auto")
        if fmt not in FORMATS:
            raise ApiError(400, f"format must be one of {', '.join(FORMATS)}")
        skip_text = request.query_params.get("skip_unsupported", "false")
        if skip_text not in ("true", "false"):
            raise ApiError(400, "skip_unsupported must be true or false")
        password = request.headers.get("x-import-password")
        psk_hex = request.headers.get("x-import-psk")
        try:
            psk = bytes.fromhex(psk_hex) if psk_hex else None
        except ValueError:
            raise ApiError(400, "X-Import-PSK must be hex") from None
        data = await read_body(request, self.config.max_import_bytes)
        if not data:
            raise ApiError(400, "the body must be a PSKC or CSV file")

        def job(v: Validator) -> list[str]:
            return import_data(v.store, v.keyring, data, fmt=fmt, password=password, psk=psk,
                               now_ns=v.clock.now_ns(), name="the uploaded file",
                               options=ImportOptions(skip_unsupported=skip_text == "true"))

        serials = await self.admin_job(job)
        return JSONResponse({"imported": len(serials), "serials": serials})

    # -- health -----------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            count = await asyncio.wait_for(self.admin_job(lambda v: len(v.store.sealed_key_ids())), timeout=5)
        except (ServiceUnavailableError, StorageError, asyncio.TimeoutError) as exc:
            self.metrics.ready.set(0)
            return JSONResponse({"status": "unavailable", "store": f"not reachable: {str(exc)[:200]}",
                                 "kernel": self.kernel}, status_code=503)
        self.metrics.ready.set(1)
        return JSONResponse({"status": "ready", "store": "reachable", "key_ids": count, "kernel": self.kernel})

    async def metrics_text(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())


def _handler(method: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Map the project's exceptions to answers; nothing becomes a 500 by accident of input."""

    async def wrapped(request: Request) -> Response:
        try:
            return await method(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except ServiceUnavailableError as exc:
            return error_response(503, str(exc), {"Retry-After": "1"})
        except StorageError as exc:
            return error_response(503, f"the store is unavailable: {exc}", {"Retry-After": "1"})
        except UnknownTokenError as exc:
            return error_response(404, str(exc))
        except (ImportFailedError, InvalidInputError) as exc:
            return error_response(400, str(exc))
        except VTokenError as exc:
            return error_response(400, str(exc))

    return wrapped


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail))


#: (method, path, Service attribute): the whole surface, also what the OpenAPI test compares against.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/v1/tokens/{serial}/check", "check"),
    ("POST", "/v1/tokens/{serial}/register", "register"),
    ("GET", "/v1/tokens/{serial}", "status"),
    ("GET", "/v1/tokens", "list_tokens"),
    ("POST", "/v1/tokens/{serial}/unlock", "unlock"),
    ("POST", "/v1/import", "import_tokens"),
    ("POST", "/validate/check", "privacyidea.validate_check"),
    ("POST", "/token/resync", "privacyidea.token_resync"),
    ("GET", "/healthz", "healthz"),
    ("GET", "/readyz", "readyz"),
    ("GET", "/metrics", "metrics_text"),
    ("GET", "/openapi.json", "openapi"),
)


def create_app(service: Service) -> Starlette:
    """The ASGI application over ``service``."""
    routes = []
    for method, path, attr in ROUTES:
        target: Any = service
        for part in attr.split("."):
            target = getattr(target, part)
        routes.append(Route(path, _handler(target), methods=[method]))
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


__all__ = ["ROUTES", "Service", "ServiceConfig", "create_app", "result_json", "status_json"]
