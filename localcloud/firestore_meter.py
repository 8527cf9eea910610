"""A metering gRPC proxy in front of the Firestore emulator: counts document reads and writes.

Point clients at the proxy instead of the emulator (FIRESTORE_EMULATOR_HOST=proxy.address) and
every Firestore RPC of every process (the API, step jobs in subprocesses, the operator tools)
passes through it unchanged, bytes for bytes, while the proxy counts what Firestore bills:

- reads: one per document a lookup returns or finds missing (GetDocument, BatchGetDocuments),
  one per document a query returns and at least one per query (RunQuery, ListDocuments), one
  per aggregation query;
- writes: one per write a commit applied (CommitResponse.write_results);
- calls: every RPC by method name (transactions' BeginTransaction and Rollback are not billed).

The emulator has no metrics endpoint of its own; this is where the counts come from.
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from google.cloud.firestore_v1.types import firestore as fs

SERVICE = "/google.firestore.v1.Firestore/"
_STREAMING = {"BatchGetDocuments", "RunQuery", "RunAggregationQuery", "PartitionQuery"}
_BIDI = {"Write", "Listen"}


class FirestoreMeter:
    """The proxy: `start()`, then give clients `address`; read `counts` (a Counter)."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0, workers: int = 64):
        self.upstream = upstream
        self._channel = grpc.insecure_channel(upstream, options=[("grpc.max_receive_message_length", -1),
                                                                  ("grpc.max_send_message_length", -1)])
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                   options=[("grpc.max_receive_message_length", -1),
                                            ("grpc.max_send_message_length", -1)])
        self._server.add_generic_rpc_handlers((_Handler(self),))
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        self.host = host

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> FirestoreMeter:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)
        self._channel.close()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    # --- counting ----------------------------------------------------------------------------

    def _add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                self.counts[key.replace("__", ".")] += value

    def count_unary(self, method: str, response: bytes) -> None:
        if method == "GetDocument":
            self._add(reads=1)
        elif method == "Commit":
            self._add(writes=len(fs.CommitResponse.deserialize(response).write_results))
        elif method == "ListDocuments":
            self._add(reads=max(1, len(fs.ListDocumentsResponse.deserialize(response).documents)))

    def count_item(self, method: str, raw: bytes) -> int:
        """Count one streamed answer; returns the documents it carried."""
        if method == "BatchGetDocuments":
            item = fs.BatchGetDocumentsResponse.deserialize(raw)
            found = 1 if (item.found or item.missing) else 0
        elif method == "RunQuery":
            found = 1 if fs.RunQueryResponse.deserialize(raw).document else 0
        elif method == "RunAggregationQuery":
            found = 1
        else:
            found = 0
        if found:
            self._add(reads=found)
        return found


def _metadata(context: grpc.ServicerContext) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in context.invocation_metadata() if not k.startswith(":") and k != "user-agent"
            and not k.startswith("grpc-")]


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, meter: FirestoreMeter):
        self.meter = meter

    def service(self, details: grpc.HandlerCallDetails):
        full = details.method
        if not full.startswith(SERVICE):
            return None
        method = full[len(SERVICE):]
        meter = self.meter
        channel = meter._channel

        def fail(context, exc: grpc.RpcError):
            context.abort(exc.code(), exc.details() or "")

        if method in _BIDI:
            upstream = channel.stream_stream(full)

            def bidi(requests: Iterator[bytes], context) -> Iterator[bytes]:
                meter._add(**{f"calls__{method}": 1})
                try:
                    yield from upstream(requests, metadata=_metadata(context))
                except grpc.RpcError as exc:
                    fail(context, exc)

            return grpc.stream_stream_rpc_method_handler(bidi)

        if method in _STREAMING:
            upstream = channel.unary_stream(full)

            def streaming(request: bytes, context) -> Iterator[bytes]:
                meter._add(**{f"calls__{method}": 1})
                # Counted as the answers go by: a client may stop reading once it has what it
                # asked for, and the rest of this generator then never runs.
                documents = 0
                try:
                    for raw in upstream(request, metadata=_metadata(context)):
                        documents += meter.count_item(method, raw)
                        yield raw
                except grpc.RpcError as exc:
                    fail(context, exc)
                finally:
                    if method in ("RunQuery", "RunAggregationQuery") and documents == 0:
                        meter._add(reads=1)  # a query that returns nothing still costs one read

            return grpc.unary_stream_rpc_method_handler(streaming)

        upstream = channel.unary_unary(full)

        def unary(request: bytes, context) -> bytes:
            meter._add(**{f"calls__{method}": 1})
            try:
                response = upstream(request, metadata=_metadata(context))
            except grpc.RpcError as exc:
                fail(context, exc)
            meter.count_unary(method, response)
            return response

        return grpc.unary_unary_rpc_method_handler(unary)
