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

log = logging.getLogger("api")


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


def error_body(code: str, message: str, *, fields: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        error["fields"] = fields
    return {"error": error, **extra}


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                   fields: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(code, message, fields=fields, **extra), status_code=status, headers=headers)


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
        method for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in request.app.router.routes)
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
    for problem in exc.errors():
        fields.setdefault(_field_name(tuple(problem.get("loc", ()))), str(problem.get("msg", "invalid value")))
    names = ", ".join(fields) or "the request"
    return error_response(422, "INVALID_REQUEST", f"invalid value for {names}", fields=fields)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(domain.CreationsError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
