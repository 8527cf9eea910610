"""The Executions API (REST, v1) over an Engine, on loopback, so Google's own client
(`google.cloud.workflows.executions_v1.ExecutionsClient` with its REST transport) and plain HTTP
callers such as Cloud Tasks-style dispatchers can drive the local engine:

    POST /v1/projects/P/locations/L/workflows/W/executions          create (argument, labels)
    GET  /v1/projects/P/locations/L/workflows/W/executions          list (filter, pageSize, ...)
    GET  /v1/projects/P/locations/L/workflows/W/executions/E        get (view)
    POST /v1/projects/P/locations/L/workflows/W/executions/E:cancel cancel
    GET  /v1/projects/P/locations/L/workflows/W/executions/E/stepEntries[/ID]

Errors use Google's JSON shape: {"error": {"code": 404, "message": ..., "status": "NOT_FOUND"}}.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localcloud.workflows.engine import Engine
from localcloud.workflows.errors import EngineError, InvalidArgument, NotFound

_PREFIX = r"^/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/workflows/(?P<workflow>[^/]+)/executions"
_ROUTES = [
    ("POST", re.compile(_PREFIX + r"$"), "create"),
    ("GET", re.compile(_PREFIX + r"$"), "list"),
    ("GET", re.compile(_PREFIX + r"/(?P<execution>[^/:]+)$"), "get"),
    ("POST", re.compile(_PREFIX + r"/(?P<execution>[^/:]+):cancel$"), "cancel"),
    ("GET", re.compile(_PREFIX + r"/(?P<execution>[^/:]+)/stepEntries$"), "step_entries"),
    ("GET", re.compile(_PREFIX + r"/(?P<execution>[^/:]+)/stepEntries/(?P<entry>[^/]+)$"),
     "step_entry"),
]
_STATUS_BY_CODE = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
                   500: "INTERNAL"}


class ExecutionsServer:
    """Serves an engine's executions over HTTP on `host:port` (port 0: a free one)."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 0):
        self.engine = engine
        handler = type("Handler", (_Handler,), {"engine": engine})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ExecutionsServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="wf-executions-api")
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> ExecutionsServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _ApiError(Exception):
    def __init__(self, code: int, message: str, status: str | None = None):
        super().__init__(message)
        self.code = code
        self.status = status or _STATUS_BY_CODE.get(code, "UNKNOWN")


class _Handler(BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"
    server_version = "phoenix-local-workflows"
    # Headers and body go out as two writes: without TCP_NODELAY the body waits for the client's
    # delayed ACK, ~40 ms a request on a keep-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and dev stack
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        try:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            body = self._body()
            path_matched = False
            for route_method, pattern, action in _ROUTES:
                match = pattern.match(parts.path)
                if not match:
                    continue
                path_matched = True
                if route_method != method:
                    continue
                params = match.groupdict()
                self._check_parent(params)
                result = getattr(self, "_" + action)(params, query, body)
                self._send(200, result)
                return
            if path_matched:
                raise _ApiError(405, f"{method} is not allowed on {parts.path}")
            raise _ApiError(404, f"no such resource: {parts.path} (this server implements the "
                                 f"Workflow Executions API v1 executions and stepEntries)")
        except _ApiError as exc:
            self._send(exc.code, {"error": {"code": exc.code, "message": str(exc),
                                            "status": exc.status}})
        except EngineError as exc:
            self._send(exc.http_code, {"error": {"code": exc.http_code, "message": str(exc),
                                                 "status": exc.status}})
        except Exception as exc:  # report, don't drop the connection
            self._send(500, {"error": {"code": 500, "message": f"{type(exc).__name__}: {exc}",
                                       "status": "INTERNAL"}})

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise _ApiError(400, f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _ApiError(400, "the request body must be a JSON object")
        return body

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _check_parent(self, params: dict) -> None:
        engine = self.engine
        if params["project"] not in (engine.project_id, engine.project_number) or \
                params["location"] != engine.location:
            raise _ApiError(404, f"this local server serves project {engine.project_id} in "
                                 f"location {engine.location}, not {params['project']} in "
                                 f"{params['location']}")

    def _name(self, params: dict) -> str:
        return self.engine.execution_name(params["workflow"], params["execution"])

    # -- actions
    def _create(self, params: dict, query: dict, body: dict) -> dict:
        argument = body.get("argument")
        if argument is not None and not isinstance(argument, str):
            raise InvalidArgument("execution.argument must be a JSON-encoded string")
        level = body.get("callLogLevel") or "CALL_LOG_LEVEL_UNSPECIFIED"
        if isinstance(level, int):
            from localcloud.workflows.executions import CALL_LOG_LEVELS
            level = CALL_LOG_LEVELS[level] if 0 <= level < len(CALL_LOG_LEVELS) else str(level)
        name = self.engine.start(params["workflow"], argument, labels=body.get("labels"),
                                 call_log_level=level)
        return self.engine.get_execution(name)

    def _list(self, params: dict, query: dict, body: dict) -> dict:
        page, token = self.engine.list_executions(
            params["workflow"], filter=query.get("filter") or None,
            page_size=_int(query.get("pageSize"), 100), page_token=query.get("pageToken"),
            view=_view(query.get("view"), "BASIC"), order_by=query.get("orderBy") or None)
        out: dict[str, Any] = {"executions": page}
        if token:
            out["nextPageToken"] = token
        return out

    def _get(self, params: dict, query: dict, body: dict) -> dict:
        return self.engine.get_execution(self._name(params), view=_view(query.get("view"),
                                                                        "FULL"))

    def _cancel(self, params: dict, query: dict, body: dict) -> dict:
        return self.engine.cancel(self._name(params))

    def _step_entries(self, params: dict, query: dict, body: dict) -> dict:
        entries = self.engine.step_entries(self._name(params))
        size = _int(query.get("pageSize"), 100)
        offset = 0
        if query.get("pageToken"):
            try:
                offset = int(base64.urlsafe_b64decode(query["pageToken"].encode()).decode())
            except ValueError:
                raise InvalidArgument(f"bad page token {query['pageToken']!r}") from None
        page = entries[offset:offset + size]
        out: dict[str, Any] = {"stepEntries": page, "totalSize": len(entries)}
        if offset + size < len(entries):
            out["nextPageToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return out

    def _step_entry(self, params: dict, query: dict, body: dict) -> dict:
        for entry in self.engine.step_entries(self._name(params)):
            if entry["entryId"] == params["entry"]:
                return entry
        raise NotFound(f"step entry {params['entry']} of {self._name(params)} does not exist")


def _int(text: str | None, default: int) -> int:
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"not an integer: {text!r}") from None


def _view(value: str | None, default: str) -> str:
    if not value:
        return default
    names = {"0": default, "1": "BASIC", "2": "FULL", "EXECUTION_VIEW_UNSPECIFIED": default,
             "BASIC": "BASIC", "FULL": "FULL"}
    if value not in names:
        raise InvalidArgument(f"view {value!r}: BASIC or FULL")
    return names[value]
