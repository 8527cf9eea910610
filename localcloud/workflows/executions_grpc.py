"""The Executions API (gRPC, v1) over an Engine, on loopback, for Google's Python client:

    channel = grpc.insecure_channel(server.address)
    client = ExecutionsClient(transport=ExecutionsGrpcTransport(channel=channel))

google-cloud-workflows ships its executions client with a gRPC transport only, so this is how
`create_execution`, `get_execution`, `list_executions` and `cancel_execution` reach the local
engine. The messages are the client's own types; executions are converted from the REST JSON
shape the engine produces. (Step entries exist only in REST: see server.py.)
"""
from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.cloud.workflows.executions_v1.types import executions as types

from localcloud.workflows.engine import Engine
from localcloud.workflows.errors import EngineError, InvalidArgument, NotFound

SERVICE = "google.cloud.workflows.executions.v1.Executions"

_CODES = {
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
}


def to_message(execution: dict) -> types.Execution:
    return types.Execution.from_json(json.dumps(execution), ignore_unknown_fields=True)


class ExecutionsGrpcServer:
    """Serves an engine's executions over gRPC on `host:port` (port 0: a free one)."""

    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 0,
                 workers: int = 8):
        self.engine = engine
        self._server = grpc.server(ThreadPoolExecutor(max_workers=workers,
                                                      thread_name_prefix="wf-grpc"))
        handlers = {
            "CreateExecution": self._unary(self._create, types.CreateExecutionRequest,
                                           types.Execution),
            "GetExecution": self._unary(self._get, types.GetExecutionRequest, types.Execution),
            "ListExecutions": self._unary(self._list, types.ListExecutionsRequest,
                                          types.ListExecutionsResponse),
            "CancelExecution": self._unary(self._cancel, types.CancelExecutionRequest,
                                           types.Execution),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.host = host
        self.port = self._server.add_insecure_port(f"{host}:{port}")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> ExecutionsGrpcServer:
        self._server.start()
        return self

    def stop(self, grace: float = 1.0) -> None:
        self._server.stop(grace).wait()

    def __enter__(self) -> ExecutionsGrpcServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- plumbing
    @staticmethod
    def _unary(fn: Callable, request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return fn(request)
            except EngineError as exc:
                context.abort(_CODES.get(exc.status, grpc.StatusCode.INTERNAL), str(exc))
        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=request_type.deserialize,
            response_serializer=response_type.serialize)

    def _workflow(self, parent: str) -> str:
        parts = parent.strip("/").split("/")
        if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations" \
                or parts[4] != "workflows":
            raise InvalidArgument(f"parent {parent!r}: expected "
                                  f"projects/P/locations/L/workflows/W")
        if parts[1] not in (self.engine.project_id, self.engine.project_number) \
                or parts[3] != self.engine.location:
            raise NotFound(f"this local engine serves project {self.engine.project_id} in "
                           f"location {self.engine.location}, not {parts[1]} in {parts[3]}")
        return parts[5]

    # -- methods
    def _create(self, request: types.CreateExecutionRequest) -> types.Execution:
        workflow = self._workflow(request.parent)
        execution = request.execution
        level = types.Execution.CallLogLevel(execution.call_log_level).name
        name = self.engine.start(workflow, execution.argument or None,
                                 labels=dict(execution.labels), call_log_level=level)
        return to_message(self.engine.get_execution(name))

    def _get(self, request: types.GetExecutionRequest) -> types.Execution:
        view = "BASIC" if request.view == types.ExecutionView.BASIC else "FULL"
        return to_message(self.engine.get_execution(request.name, view=view))

    def _list(self, request: types.ListExecutionsRequest) -> types.ListExecutionsResponse:
        workflow = self._workflow(request.parent)
        view = "FULL" if request.view == types.ExecutionView.FULL else "BASIC"
        page, token = self.engine.list_executions(
            workflow, filter=request.filter or None, page_size=request.page_size or 100,
            page_token=request.page_token or None, view=view,
            order_by=request.order_by or None)
        return types.ListExecutionsResponse(executions=[to_message(e) for e in page],
                                            next_page_token=token or "")

    def _cancel(self, request: types.CancelExecutionRequest) -> types.Execution:
        return to_message(self.engine.cancel(request.name))
