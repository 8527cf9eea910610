"""Stand-ins for the Workflows Executions API on loopback, recording what clients send.

`ExecutionsRestServer` speaks the REST wire format (`POST /v1/{workflow}/executions`, the
Execution as camelCase JSON, Google's error JSON); `ExecutionsGrpcServer` speaks the gRPC
service the `executions_v1.ExecutionsClient` uses in production.
"""
from __future__ import annotations

import json
import re
import threading
import uuid
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORKFLOW_EXECUTIONS = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/workflows/[^/]+)/executions$")


@dataclass
class StartedExecution:
    parent: str
    name: str
    argument: dict
    labels: dict[str, str]


class ExecutionsRecorder:
    """What the fake recorded, and how it answers (fail_status: answer every create with it)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.executions: list[StartedExecution] = []
        self.fail_status: int | None = None

    def record(self, parent: str, argument_json: str, labels: dict[str, str]) -> StartedExecution:
        started = StartedExecution(
            parent=parent,
            name=f"{parent}/executions/{uuid.uuid4()}",
            argument=json.loads(argument_json),
            labels=dict(labels),
        )
        with self.lock:
            self.executions.append(started)
        return started

    def for_creation(self, creation_id: str) -> list[StartedExecution]:
        with self.lock:
            return [e for e in self.executions if e.argument.get("creationId") == creation_id]

    def clear(self) -> None:
        with self.lock:
            self.executions.clear()
        self.fail_status = None


def google_error(code: int, status: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "status": status}}).encode()


class ExecutionsRestServer(ExecutionsRecorder):
    def __init__(self):
        super().__init__()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def log_message(self, *args):  # keep test output quiet
                pass

            def reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = WORKFLOW_EXECUTIONS.match(self.path.split("?")[0])
                if not match:
                    return self.reply(404, google_error(404, "NOT_FOUND", f"no route {self.path}"))
                if recorder.fail_status:
                    return self.reply(recorder.fail_status, google_error(recorder.fail_status, "UNAVAILABLE", "unavailable"))
                try:
                    body = json.loads(raw)
                    argument = body.get("argument", "")
                    json.loads(argument)  # the argument is a JSON *string*
                except (ValueError, TypeError, AttributeError):
                    return self.reply(400, google_error(400, "INVALID_ARGUMENT", "argument must be a JSON string"))
                started = recorder.record(match.group(1), argument, body.get("labels") or {})
                now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
                self.reply(200, json.dumps({
                    "name": started.name, "state": "ACTIVE", "argument": argument,
                    "labels": started.labels, "startTime": now,
                }).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "ExecutionsRestServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ExecutionsGrpcServer(ExecutionsRecorder):
    """The `google.cloud.workflows.executions.v1.Executions` gRPC service (CreateExecution only)."""

    def __init__(self):
        super().__init__()
        import grpc
        from google.cloud.workflows.executions_v1 import CreateExecutionRequest, Execution

        recorder = self

        def create_execution(request: CreateExecutionRequest, context):
            if recorder.fail_status:
                context.abort(grpc.StatusCode.UNAVAILABLE, "unavailable")
            started = recorder.record(request.parent, request.execution.argument, dict(request.execution.labels))
            return Execution(name=started.name, argument=request.execution.argument,
                             labels=started.labels, state=Execution.State.ACTIVE)

        handler = grpc.method_handlers_generic_handler(
            "google.cloud.workflows.executions.v1.Executions",
            {
                "CreateExecution": grpc.unary_unary_rpc_method_handler(
                    create_execution,
                    request_deserializer=CreateExecutionRequest.deserialize,
                    response_serializer=Execution.serialize,
                )
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> "ExecutionsGrpcServer":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)
