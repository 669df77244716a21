"""What every endpoint checks at the edge: body limits, strict JSON, text fields, and the one error shape."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from vtoken.errors import InvalidSerialError
from vtoken.serialno import normalize


class ApiError(Exception):
    """An error answer: HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape: ``{"error": {"status": ..., "message": ...}}``."""
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (by Content-Length, or while streaming)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise ApiError(400, "Content-Length must be a number")
        if int(declared) > limit:
            raise ApiError(413, f"request body too large: at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body too large: at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_object(request: Request, fields: dict[str, type], limit: int) -> dict[str, Any]:
    """A JSON object body with exactly these string fields (all required)."""
    body = await read_body(request, limit)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {str(exc)[:120]}") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(repr(u)[:40] for u in unknown[:5])}")
    missing = [name for name in fields if name not in data]
    if missing:
        raise ApiError(400, f"missing field(s): {', '.join(missing)}")
    for name, kind in fields.items():
        if not isinstance(data[name], kind) or isinstance(data[name], bool):
            raise ApiError(400, f"field {name!r} must be a {kind.__name__}, not {type(data[name]).__name__}")
        if isinstance(data[name], str):
            check_text(data[name], name)
    return data


#: Serials, codes and other text fields: printable ASCII, at most this long (vendor serials reach 64).
MAX_TEXT = 128


def check_text(text: str, what: str) -> str:
    """Refuse text no token field can hold (non-ASCII, control characters, lone surrogates, too long)."""
    if len(text) > MAX_TEXT or not text.isascii() or not text.isprintable():
        raise ApiError(400, f"{what} must be printable ASCII of at most {MAX_TEXT} characters")
    return text


def batch_key(serial: str) -> str:
    """The serial as the store knows it (batches are ordered by it, on every node alike)."""
    try:
        return normalize(serial)
    except InvalidSerialError:
        return serial


__all__ = ["MAX_TEXT", "ApiError", "batch_key", "check_text", "error_response", "json_object", "read_body"]
