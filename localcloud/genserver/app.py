"""The ASGI app: Vertex AI's Imagen and Veo REST endpoints, as google-genai 3.x calls them.

- `POST /{version}/projects/P/locations/L/publishers/google/models/M:predict` (Imagen)
  -> `{"predictions": [{"bytesBase64Encoded", "mimeType"}]}`
- `POST .../models/M:predictLongRunning` (Veo) -> `{"name": ".../models/M/operations/ID"}`; the
  clip renders in the background.
- `POST .../models/M:fetchPredictOperation` `{"operationName"}` -> `{"name", "done": false}`, then
  `{"name", "done": true, "response": {"videos": [...]}}` (or filtered, or `error`).
- `POST /_local/reset` forgets operations and #flaky counters; `GET /_local/health` answers ok.

Errors have Google's shape: `{"error": {"code", "message", "status"}}`. See testprompts.py for
the prompts that fail on purpose.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import render
from .testprompts import BLOCKED_REASON, FLAKY_FAILURES, SLOW_SECONDS, TestPrompt

log = logging.getLogger("localcloud.genserver")

MAX_PROMPT_CHARS = 10_000
MAX_OPERATIONS = 500
IMAGE_MIME_TYPES = ("image/png", "image/jpeg")
VIDEO_RESOLUTIONS = ("720p", "1080p")
VIDEO_DURATIONS = range(1, 9)  # whole seconds, 1-8 (Veo itself takes 4-8 depending on model)
VIDEO_RESPONSE_TYPE = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND",
                 405: "METHOD_NOT_ALLOWED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE"}


class ApiError(Exception):
    """A request the server answers with Google's error JSON."""

    def __init__(self, code: int, message: str, status: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"code": self.code, "message": self.message,
                                       "status": self.status}}, status_code=self.code)


@dataclass
class Operation:
    """A video generation in progress; `response` or `error` is set once the clip is ready."""

    name: str
    ready_at: float
    sample_count: int = 1
    never_done: bool = False
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def body(self, now: float) -> dict[str, Any]:
        finished = self.response is not None or self.error is not None
        if self.never_done or not finished or now < self.ready_at:
            return {"name": self.name, "done": False}
        if self.error is not None:
            return {"name": self.name, "done": True, "error": self.error}
        return {"name": self.name, "done": True, "response": self.response}


class Backend:
    """The server's memory: operations, #flaky call counts and (instant mode) cached media."""

    def __init__(self, *, instant: bool = False, slow_seconds: float = SLOW_SECONDS,
                 render_concurrency: int = 2):
        self.instant = instant
        self.slow_seconds = slow_seconds
        # The outage that `#down` simulates; a test ends it to replay what failed meanwhile.
        self.down = True
        self._lock = threading.Lock()
        self._calls: dict[str, int] = {}
        self._operations: OrderedDict[str, Operation] = OrderedDict()
        self._instant_media: dict[tuple[Any, ...], bytes] = {}
        # Renders run on threads of their own, not on the event loop's: a video keeps rendering
        # while the HTTP server restarts, as a provider's operation outlives a dropped connection.
        self._renderers = ThreadPoolExecutor(max_workers=render_concurrency,
                                             thread_name_prefix="genserver-render")

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._operations.clear()

    def count_call(self, prompt: str) -> int:
        """How many generation calls this exact prompt text has made, this one included."""
        with self._lock:
            self._calls[prompt] = self._calls.get(prompt, 0) + 1
            return self._calls[prompt]

    def add_operation(self, operation: Operation) -> None:
        with self._lock:
            self._operations[operation.name] = operation
            while len(self._operations) > MAX_OPERATIONS:
                self._operations.popitem(last=False)

    def operation(self, name: str) -> Operation | None:
        with self._lock:
            return self._operations.get(name)

    async def instant_media(self, key: tuple[Any, ...], func: Any, *args: Any,
                            **kwargs: Any) -> bytes:
        """Tiny media rendered once per key, then served from memory."""
        with self._lock:
            cached = self._instant_media.get(key)
        if cached is None:
            cached = await self.run_render(func, *args, **kwargs)
            with self._lock:
                self._instant_media[key] = cached
        return cached

    async def run_render(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Render on a render thread and wait for it without blocking the event loop."""
        return await asyncio.wrap_future(self._renderers.submit(func, *args, **kwargs))

    def render_in_background(self, operation: Operation, func: Any, *args: Any,
                             **kwargs: Any) -> None:
        """Render a video for `operation`, which reports done once the clip is ready."""
        def run() -> None:
            try:
                data = func(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - reported through the operation
                log.exception("video render failed for %s", operation.name)
                operation.error = {"code": 13, "message": f"Rendering the video failed: {exc}"}
                return
            operation.response = _video_response(data, operation.sample_count)

        self._renderers.submit(run)


# --- request parsing ----------------------------------------------------------------------------

def _check_auth(request: Request) -> None:
    if not request.headers.get("authorization", "").lower().startswith("bearer "):
        raise ApiError(401, "Request is missing required authentication credential. Expected "
                            "OAuth 2 access token (Authorization: Bearer ...).")


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "Invalid JSON payload received.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON payload received: the body must be a JSON object.")
    return body


def _prompt_and_parameters(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
        raise ApiError(400, "instances must be a non-empty list of objects, e.g. "
                            '[{"prompt": "a red fox"}].')
    prompt = instances[0].get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "instances[0].prompt is required: describe what to generate.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(400, f"instances[0].prompt is too long ({len(prompt)} characters; the "
                            f"limit is {MAX_PROMPT_CHARS}).")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ApiError(400, "parameters must be an object.")
    return prompt, parameters


def _choice(parameters: dict[str, Any], key: str, allowed: Any, default: Any) -> Any:
    value = parameters.get(key, default)
    if value not in allowed:
        raise ApiError(400, f"Unsupported {key}: {value!r}. Supported values: "
                            f"{', '.join(str(v) for v in allowed)}.")
    return value


def _int(parameters: dict[str, Any], key: str, allowed: range, default: int) -> int:
    value = parameters.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise ApiError(400, f"{key} must be an integer from {allowed.start} to "
                            f"{allowed.stop - 1}, got {value!r}.")
    return value


def _model_and_method(request: Request) -> tuple[str, str, str]:
    """(resource path, model, method) of `.../models/M:method`."""
    model, sep, method = request.path_params["model_method"].partition(":")
    if not sep or not model:
        raise ApiError(404, f"Unknown method on {request.url.path}.")
    p = request.path_params
    resource = (f"projects/{p['project']}/locations/{p['location']}/publishers/"
                f"{p['publisher']}/models/{model}")
    return resource, model, method


# --- behaviours common to both media ------------------------------------------------------------

async def _test_failures(backend: Backend, prompt: str, tags: TestPrompt) -> None:
    """#down and #flaky answer 503 before any work is done."""
    if tags.down and backend.down:
        raise ApiError(503, "The service is currently unavailable (test tag #down).")
    if tags.flaky:
        calls = backend.count_call(prompt)
        if calls <= FLAKY_FAILURES:
            raise ApiError(503, f"The service is currently unavailable (test tag #flaky, call "
                                f"{calls} of {FLAKY_FAILURES} that fail).")


# --- Imagen -------------------------------------------------------------------------------------

async def _predict(backend: Backend, body: dict[str, Any], model: str) -> JSONResponse:
    prompt, parameters = _prompt_and_parameters(body)
    aspect = _choice(parameters, "aspectRatio", tuple(render.IMAGE_SIZES), "1:1")
    count = _int(parameters, "sampleCount", range(1, 5), 1)
    output = parameters.get("outputOptions") or {}
    if not isinstance(output, dict):
        raise ApiError(400, "parameters.outputOptions must be an object.")
    mime = _choice(output, "mimeType", IMAGE_MIME_TYPES, "image/png")
    tags = TestPrompt.parse(prompt)
    await _test_failures(backend, prompt, tags)
    if tags.slow:
        await asyncio.sleep(backend.slow_seconds)
    if tags.internal:
        raise ApiError(500, "Internal error encountered (test tag #internal).")
    if tags.blocked:
        if parameters.get("includeRaiReason"):
            return JSONResponse({"predictions": [{"raiFilteredReason": BLOCKED_REASON}] * count})
        return JSONResponse({})
    if backend.instant:
        data = await backend.instant_media(("image", aspect, mime), render.render_image,
                                           "instant", aspect, mime_type=mime, tiny=True)
    else:
        data = await backend.run_render(render.render_image, prompt, aspect, mime_type=mime,
                                        caption=f"{model} {aspect}")
    encoded = base64.b64encode(data).decode("ascii")
    return JSONResponse({"predictions": [{"bytesBase64Encoded": encoded, "mimeType": mime}] * count})


# --- Veo ----------------------------------------------------------------------------------------

async def _predict_long_running(backend: Backend, body: dict[str, Any],
                                resource: str) -> JSONResponse:
    prompt, parameters = _prompt_and_parameters(body)
    aspect = _choice(parameters, "aspectRatio", tuple(render.VIDEO_SIZES), "16:9")
    duration = _int(parameters, "durationSeconds", VIDEO_DURATIONS, 8)
    _choice(parameters, "resolution", VIDEO_RESOLUTIONS, "720p")  # rendered small regardless
    audio = parameters.get("generateAudio", False)
    if not isinstance(audio, bool):
        raise ApiError(400, f"generateAudio must be true or false, got {audio!r}.")
    count = _int(parameters, "sampleCount", range(1, 5), 1)
    tags = TestPrompt.parse(prompt)
    await _test_failures(backend, prompt, tags)

    now = time.monotonic()
    operation = Operation(name=f"{resource}/operations/{uuid.uuid4()}",
                          ready_at=now + (backend.slow_seconds if tags.slow else 0.0),
                          sample_count=count, never_done=tags.stuck)
    backend.add_operation(operation)
    if tags.internal:
        operation.error = {"code": 13, "message": "Internal error encountered while generating "
                                                  "the video (test tag #internal)."}
    elif tags.blocked:
        operation.response = {"@type": VIDEO_RESPONSE_TYPE, "raiMediaFilteredCount": 1,
                               "raiMediaFilteredReasons": [BLOCKED_REASON]}
    elif backend.instant:
        data = await backend.instant_media(("video", aspect, duration, audio),
                                           render.render_video, "instant", aspect, duration,
                                           audio=audio, tiny=True)
        operation.response = _video_response(data, count)
    else:
        backend.render_in_background(operation, render.render_video, prompt, aspect, duration,
                                     audio=audio)
    return JSONResponse({"name": operation.name})


def _video_response(data: bytes, count: int) -> dict[str, Any]:
    video = {"bytesBase64Encoded": base64.b64encode(data).decode("ascii"), "mimeType": "video/mp4"}
    return {"@type": VIDEO_RESPONSE_TYPE, "videos": [video] * count}


async def _fetch_predict_operation(backend: Backend, body: dict[str, Any],
                                   resource: str) -> JSONResponse:
    name = body.get("operationName")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "operationName is required.")
    if not name.startswith(f"{resource}/operations/"):
        raise ApiError(400, f"operationName {name!r} does not belong to {resource}.")
    operation = backend.operation(name)
    if operation is None:
        raise ApiError(404, f"Operation {name} was not found (the server keeps the latest "
                            f"{MAX_OPERATIONS} operations in memory, until it restarts).")
    return JSONResponse(operation.body(time.monotonic()))


# --- app ----------------------------------------------------------------------------------------

def create_app(*, instant: bool = False, slow_seconds: float = SLOW_SECONDS) -> Starlette:
    """The generation server as an ASGI app; `app.state.backend` holds its memory."""
    backend = Backend(instant=instant, slow_seconds=slow_seconds)

    async def model_method(request: Request) -> JSONResponse:
        try:
            if not request.path_params["version"].startswith("v1"):
                raise ApiError(404, f"Unknown API version {request.path_params['version']!r}.")
            resource, model, method = _model_and_method(request)
            _check_auth(request)
            body = await _json_body(request)
            if method == "predict":
                return await _predict(backend, body, model)
            if method == "predictLongRunning":
                return await _predict_long_running(backend, body, resource)
            if method == "fetchPredictOperation":
                return await _fetch_predict_operation(backend, body, resource)
            raise ApiError(404, f"Method {method!r} is not served here; this server has predict, "
                                "predictLongRunning and fetchPredictOperation.")
        except ApiError as exc:
            if exc.code >= 500:
                log.info("answering %s: %s", exc.code, exc.message)
            return exc.response()
        except Exception as exc:  # noqa: BLE001 - a bug here still answers in Google's shape
            log.exception("request %s failed", request.url.path)
            return ApiError(500, f"Internal error: {type(exc).__name__}: {exc}").response()

    async def reset(request: Request) -> JSONResponse:
        backend.reset()
        return JSONResponse({"reset": True})

    async def outage(request: Request) -> JSONResponse:
        try:
            body = await _json_body(request)
        except ApiError as exc:
            return exc.response()
        if not isinstance(body.get("down"), bool):
            return ApiError(400, 'send {"down": true} (the #down outage on) or {"down": false} (over)').response()
        backend.down = body["down"]
        return JSONResponse({"down": backend.down})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "instant": backend.instant})

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        return ApiError(code, f"{request.method} {request.url.path}: "
                              f"{getattr(exc, 'detail', 'error')}").response()

    app = Starlette(
        routes=[
            Route("/{version}/projects/{project}/locations/{location}/publishers/{publisher}/"
                  "models/{model_method}", model_method, methods=["POST"]),
            Route("/_local/reset", reset, methods=["POST"]),
            Route("/_local/health", health, methods=["GET"]),
            Route("/_local/outage", outage, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.backend = backend
    return app
