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
from datetime import UTC, datetime

from google_rest_fake import GoogleRestFake, google_error

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


class ExecutionsRestServer(GoogleRestFake, ExecutionsRecorder):
    route = WORKFLOW_EXECUTIONS

    def __init__(self):
        ExecutionsRecorder.__init__(self)
        GoogleRestFake.__init__(self)

    def create(self, match: re.Match, raw: bytes) -> tuple[int, bytes]:
        try:
            body = json.loads(raw)
            argument = body.get("argument", "")
            json.loads(argument)  # the argument is a JSON *string*
        except (ValueError, TypeError, AttributeError):
            return 400, google_error(400, "INVALID_ARGUMENT", "argument must be a JSON string")
        started = self.record(match.group(1), argument, body.get("labels") or {})
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return 200, json.dumps({"name": started.name, "state": "ACTIVE", "argument": argument,
                                "labels": started.labels, "startTime": now}).encode()


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

    def start(self) -> ExecutionsGrpcServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)
