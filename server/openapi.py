"""The service's OpenAPI 3.1 document, served at ``/openapi.json``.

Written by hand next to the routes; ``tests/test_server_api.py`` keeps the two
in step (every route documented, nothing documented that is not served), and
schemathesis checks the running service against it.
"""

from __future__ import annotations

import copy
from typing import Any

from validator.importer import FORMATS

_SERIAL = {
    "name": "serial", "in": "path", "required": True,
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    "description": "The token's serial number (vtoken's own: 10 digits with a check digit).",
}
_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["status", "message"],
                             "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}},
}
_RESULT = {
    "type": "object",
    "required": ["accepted", "reason", "message", "serial", "failures"],
    "properties": {
        "accepted": {"type": "boolean"},
        "reason": {"type": "string", "enum": [
            "accepted", "registered", "next-code-required", "wrong-code", "replay", "locked", "throttled",
            "unknown-serial", "mistyped-serial", "bad-format", "not-registered", "same-code", "no-pair", "ambiguous",
        ]},
        "message": {"type": "string"},
        "serial": {"type": "string"},
        "step": {"type": ["integer", "null"]},
        "offset_steps": {"type": ["integer", "null"]},
        "offset_s": {"type": ["number", "null"]},
        "failures": {"type": "integer"},
        "attempts_left": {"type": ["integer", "null"]},
        "retry_after_s": {"type": ["integer", "null"], "description": "Throttled: seconds to wait (also Retry-After)."},
    },
}
_STATUS = {
    "type": "object",
    "required": ["serial", "type", "registered", "locked", "failures"],
    "properties": {
        "serial": {"type": "string"}, "type": {"type": "string", "enum": ["totp", "hotp"]},
        "algorithm": {"type": "string"}, "digits": {"type": "integer"}, "period": {"type": ["integer", "null"]},
        "registered": {"type": "boolean"}, "locked": {"type": "boolean"}, "lock_reason": {"type": ["string", "null"]},
        "failures": {"type": "integer"}, "last_step": {"type": ["integer", "null"]},
        "offset_s": {"type": ["number", "null"]}, "offset_sigma_s": {"type": ["number", "null"]},
        "rate_ppm": {"type": ["number", "null"]}, "rate_sigma_ppm": {"type": ["number", "null"]},
        "single_window_codes": {"type": ["integer", "null"]}, "next_code_window_codes": {"type": ["integer", "null"]},
        "false_accept_per_guess": {"type": ["number", "null"]}, "history": {"type": "integer"},
    },
}
_PI_ANSWER = {
    "type": "object", "required": ["result"],
    "properties": {
        "result": {"type": "object", "required": ["status"], "properties": {
            "status": {"type": "boolean"}, "value": {"type": "boolean"},
            "authentication": {"type": "string", "enum": ["ACCEPT", "REJECT", "CHALLENGE"]},
            "error": {"type": "object"},
        }},
        "detail": {"type": "object"},
    },
}
_PI_FORM = {
    "type": "object",
    "properties": {name: {"type": "string"} for name in ("serial", "pass", "user", "realm", "transaction_id")},
}
_PI_RESYNC = {"type": "object", "properties": {name: {"type": "string"} for name in ("serial", "otp1", "otp2")}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "Malformed request", 401: "No bearer token", 403: "Bearer token not valid here",
            404: "Unknown serial", 413: "Body too large", 429: "Throttled: see Retry-After",
            503: "Store unavailable: nothing was accepted"}
    return {str(c): {"description": text[c], "content": _json(_ERROR)} for c in codes}


def _body(properties: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": _json({
        "type": "object", "additionalProperties": False, "required": list(properties), "properties": properties,
    })}


_CODE = {"type": "string", "description": "The digits shown on the token."}
_ADMIN = [{"bearer": []}]

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "vtoken validator",
        "version": "1",
        "description": "Registers and checks OATH hardware tokens, tracking each token's clock drift. "
        "Decisions are group-committed: an accept is answered only after it is durable.",
    },
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/v1/tokens/{serial}/check": {"post": {
            "summary": "Check one code", "operationId": "check", "parameters": [_SERIAL],
            "requestBody": _body({"code": _CODE}),
            "responses": {"200": {"description": "The decision", "content": _json(_RESULT)},
                          "400": {"description": "Malformed request or code", "content": _json({"oneOf": [_RESULT, _ERROR]})},
                          "404": {"description": "Unknown serial", "content": _json(_RESULT)},
                          "429": {"description": "Throttled", "content": _json(_RESULT)},
                          **_errors(401, 403, 413, 503)},
        }},
        "/v1/tokens/{serial}/register": {"post": {
            "summary": "Register or resync a token with two consecutive codes", "operationId": "register",
            "parameters": [_SERIAL], "requestBody": _body({"code1": _CODE, "code2": _CODE}),
            "responses": {"200": {"description": "The decision", "content": _json(_RESULT)},
                          "400": {"description": "Malformed request or code", "content": _json({"oneOf": [_RESULT, _ERROR]})},
                          "404": {"description": "Unknown serial", "content": _json(_RESULT)},
                          "429": {"description": "Throttled", "content": _json(_RESULT)},
                          **_errors(401, 403, 413, 503)},
        }},
        "/v1/tokens/{serial}": {"get": {
            "summary": "A token's status and drift model", "operationId": "status", "security": _ADMIN,
            "parameters": [_SERIAL],
            "responses": {"200": {"description": "Status", "content": _json(_STATUS)}, **_errors(400, 401, 403, 404, 503)},
        }},
        "/v1/tokens": {"get": {
            "summary": "Tokens, a page at a time, by serial", "operationId": "listTokens", "security": _ADMIN,
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "after", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "A page", "content": _json({
                "type": "object", "required": ["tokens", "next"],
                "properties": {"tokens": {"type": "array", "items": {"type": "object"}},
                               "next": {"type": ["string", "null"]}},
            })}, **_errors(400, 401, 403, 503)},
        }},
        "/v1/tokens/{serial}/unlock": {"post": {
            "summary": "Administrator unlock", "operationId": "unlock", "security": _ADMIN, "parameters": [_SERIAL],
            "responses": {"200": {"description": "Unlocked", "content": _json(_RESULT)},
                          "400": {"description": "Malformed serial", "content": _json({"oneOf": [_RESULT, _ERROR]})},
                          "404": {"description": "Unknown serial", "content": _json(_RESULT)},
                          **_errors(401, 403, 503)},
        }},
        "/v1/import": {"post": {
            "summary": "Import a PSKC, OATH CSV or otpauth URI file, all or nothing", "operationId": "import",
            "security": _ADMIN,
            "parameters": [
                {"name": "format", "in": "query", "schema": {"type": "string", "enum": list(FORMATS)}},
                {"name": "skip_unsupported", "in": "query", "schema": {"type": "string", "enum": ["true", "false"]}},
                {"name": "X-Import-Password", "in": "header", "schema": {"type": "string"}},
                {"name": "X-Import-PSK", "in": "header", "schema": {"type": "string"}},
            ],
            "requestBody": {"required": True, "content": {
                "application/pskc+xml": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            }},
            "responses": {"200": {"description": "Imported", "content": _json({
                "type": "object", "required": ["imported", "serials"],
                "properties": {"imported": {"type": "integer"}, "serials": {"type": "array", "items": {"type": "string"}}},
            })}, **_errors(400, 401, 403, 413, 503)},
        }},
        "/validate/check": {"post": {
            "summary": "privacyIDEA-compatible check", "operationId": "privacyideaValidateCheck",
            "requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": _PI_FORM}, "application/json": {"schema": _PI_FORM},
            }},
            "responses": {code: {"description": "privacyIDEA's answer", "content": _json(_PI_ANSWER)}
                          for code in ("200", "400", "401", "403", "413", "503")},
        }},
        "/token/resync": {"post": {
            "summary": "privacyIDEA-compatible resync with two codes", "operationId": "privacyideaTokenResync",
            "security": _ADMIN,
            "requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": _PI_RESYNC}, "application/json": {"schema": _PI_RESYNC},
            }},
            "responses": {code: {"description": "privacyIDEA's answer", "content": _json(_PI_ANSWER)}
                          for code in ("200", "400", "401", "403", "413", "503")},
        }},
        "/healthz": {"get": {"summary": "The process answers", "operationId": "healthz",
                             "responses": {"200": {"description": "Alive", "content": _json({"type": "object"})}}}},
        "/readyz": {"get": {"summary": "Store reachable and kernel loaded", "operationId": "readyz",
                            "responses": {"200": {"description": "Ready", "content": _json({"type": "object"})},
                                          "503": {"description": "Not ready", "content": _json({"type": "object"})}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "operationId": "metrics",
                             "responses": {"200": {"description": "Text format",
                                                   "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": _json({"type": "object"})}}}},
    },
}


def openapi_document() -> dict[str, Any]:
    """A copy of the document."""
    return copy.deepcopy(_DOCUMENT)


__all__ = ["openapi_document"]
