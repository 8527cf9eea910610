"""One JSON error shape for every answer that is not a success:
`{"error": {"code", "message"}}`, plus `fields` {field: message} on 422.

Domain errors map to statuses here, so routes raise what they mean and never build error bodies.
Unexpected exceptions answer a bare 500: the stack trace goes to the log, never to the client.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from creations import errors as domain
from creations.text import scrub

log = logging.getLogger("api")

# An error answer stays small whatever the request held: a body of 100,000 unknown option keys
# gets the first MAX_FIELDS of them, each name and message cut to a length a person reads.
MAX_FIELDS = 20
MAX_FIELD_NAME_CHARS = 120
MAX_FIELD_MESSAGE_CHARS = 300
MAX_MESSAGE_CHARS = 1000


class ApiError(Exception):
    """An answer the API gives on purpose: status, machine-readable code, message, headers."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 fields: dict[str, str] | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.fields = fields
        self.extra = extra or {}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def error_body(code: str, message: str, *, fields: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """The error document, bounded in size and made of encodable text (a field name can echo a
    key the client sent, lone surrogates included)."""
    message = _cut(message, MAX_MESSAGE_CHARS)
    if fields is not None and len(fields) > MAX_FIELDS:
        message = f"{message} ({len(fields)} problems; the first {MAX_FIELDS} are in error.fields)"
        fields = dict(list(fields.items())[:MAX_FIELDS])
    error: dict[str, Any] = {"code": code, "message": scrub(message)}
    if fields is not None:
        error["fields"] = {scrub(_cut(str(name), MAX_FIELD_NAME_CHARS)): scrub(_cut(str(text), MAX_FIELD_MESSAGE_CHARS))
                           for name, text in fields.items()}
    return {"error": error, **scrub(extra)}


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                   fields: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return SafeJSONResponse(error_body(code, message, fields=fields, **extra), status_code=status, headers=headers)


# Domain error -> (status, extra headers). Checked in order: subclasses before their bases.
_DOMAIN_STATUS: list[tuple[type[domain.CreationsError], int, dict[str, str] | None]] = [
    (domain.InvalidOptions, 422, None),
    (domain.InsufficientTokens, 402, None),
    (domain.NotFound, 404, None),
    (domain.IdempotencyConflict, 409, None),
    (domain.IllegalTransition, 409, None),
    (domain.StaleAttempt, 409, None),
    (domain.TooManyActive, 429, {"Retry-After": "10"}),
    (domain.StoreUnavailable, 503, {"Retry-After": "1"}),
]

_STATUS_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 409: "CONFLICT", 413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE", 422: "INVALID_REQUEST", 429: "TOO_MANY_REQUESTS",
    500: "INTERNAL", 503: "UNAVAILABLE",
}


def _field_name(loc: tuple[Any, ...]) -> str:
    """("body", "options", "aspectRatio") -> "options.aspectRatio"; ("query", "limit") -> "limit"."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or parts
    return ".".join(parts)


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers, fields=exc.fields, **exc.extra)


async def _domain_error(request: Request, exc: domain.CreationsError) -> JSONResponse:
    if isinstance(exc, domain.InvalidOptions):
        return error_response(422, exc.code, exc.message, fields=dict(exc.fields))
    for kind, status, headers in _DOMAIN_STATUS:
        if isinstance(exc, kind):
            return error_response(status, exc.code, exc.message, headers=headers)
    if exc.retryable:
        log.warning("unavailable: %s: %s", exc.code, exc.message)
        return error_response(503, exc.code, "a service the API depends on is unavailable; retry shortly",
                              headers={"Retry-After": "1"})
    log.error("domain error without an HTTP mapping: %s: %s", exc.code, exc.message, exc_info=exc)
    return error_response(500, "INTERNAL", "internal error")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str | None:
    """Every method the path answers to. Starlette's 405 names only the methods of the first route
    whose path matched, and FastAPI makes one route per method."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed) or None


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = _STATUS_CODES.get(exc.status_code) or HTTPStatus(exc.status_code).name
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed:
            headers["Allow"] = allowed
    return error_response(exc.status_code, code, message, headers=headers or None)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    fields: dict[str, str] = {}
    problems = exc.errors()
    for problem in problems:
        fields.setdefault(_field_name(tuple(problem.get("loc", ()))), str(problem.get("msg", "invalid value")))
    shown = list(fields)[:MAX_FIELDS]
    names = ", ".join(_cut(name, MAX_FIELD_NAME_CHARS) for name in shown) or "the request"
    return error_response(422, "INVALID_REQUEST", f"invalid value for {names}", fields=fields)


class SafeJSONResponse(JSONResponse):
    """JSON that is always valid UTF-8: a lone surrogate that reached an answer (a record stored
    before text was checked) is replaced by U+FFFD instead of failing the whole answer."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(scrub(content))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(domain.CreationsError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
