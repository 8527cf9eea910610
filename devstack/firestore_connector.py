"""The workflow's Firestore connector bound to Google's Firestore emulator, by its own REST API.

`googleapis.firestore.v1.projects.databases.documents.get` (and the connector's other document
methods) are forwarded to the emulator as the connector sends them to firestore.googleapis.com:
the same method, path (the production document name) and query parameters, the body as given.
So the document the workflow branches on is the one the API and the jobs wrote through the
Firestore client, encoded by Firestore itself, not a translation of it.

Errors come back as the connector raises them: an HTTP error status is an `HttpError` with
`code`, `headers` and the decoded `body`; a refused connection is a `ConnectionFailedError`; a
connection that broke mid-request is a `ConnectionError`; no answer in time, a `TimeoutError`.
Every forwarded request is counted (`counts`: reads are documents returned, writes documents
written), so a benchmark can tell what the workflow costs in Firestore operations.
"""
from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

from localcloud.workflows.errors import WorkflowError

PREFIX = "googleapis.firestore.v1.projects.databases.documents."

# connector method -> (HTTP method, the path argument, the path suffix, the body argument)
METHODS: dict[str, tuple[str, str, str, str | None]] = {
    "get": ("GET", "name", "", None),
    "patch": ("PATCH", "name", "", "body"),
    "delete": ("DELETE", "name", "", None),
    "createDocument": ("POST", "parent", "/{collectionId}", "body"),
    "list": ("GET", "parent", "/{collectionId}", None),
    "batchGet": ("POST", "database", "/documents:batchGet", "body"),
    "beginTransaction": ("POST", "database", "/documents:beginTransaction", "body"),
    "commit": ("POST", "database", "/documents:commit", "body"),
    "rollback": ("POST", "database", "/documents:rollback", "body"),
    "runQuery": ("POST", "parent", ":runQuery", "body"),
}


def _query_params(args: dict[str, Any], skip: set[str]) -> list[tuple[str, str]]:
    """The connector's remaining args as REST query parameters: nested maps become dotted names
    (`mask: {fieldPaths: [a, b]}` is `mask.fieldPaths=a&mask.fieldPaths=b`)."""
    out: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list):
            for item in value:
                walk(prefix, item)
        elif isinstance(value, bool):
            out.append((prefix, "true" if value else "false"))
        elif value is not None:
            out.append((prefix, str(value)))

    for key, value in args.items():
        if key not in skip:
            walk(key, value)
    return out


class EmulatorDocuments:
    """Connector handlers that forward to the emulator at `base_url` (http://host:port)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, pool_size: int = 32):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = urllib3.PoolManager(maxsize=pool_size, retries=False)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()   # requests, reads, writes, by connector method too

    def bind(self, registry) -> list[str]:
        """Bind every document method on `registry`; returns the connector names bound."""
        names = []
        for method in METHODS:
            name = PREFIX + method
            registry.bind(name, self.handler(method))
            names.append(name)
        return names

    def handler(self, method: str):
        def handle(call) -> Any:
            return self.forward(method, dict(call.args))
        handle.__name__ = f"firestore_{method}"
        return handle

    def forward(self, method: str, args: dict[str, Any]) -> Any:
        http_method, path_arg, suffix, body_arg = METHODS[method]
        resource = args.get(path_arg)
        if not isinstance(resource, str) or not resource.startswith("projects/"):
            raise WorkflowError.tagged(
                "ValueError", f"documents.{method}: {path_arg!r} must be a resource name starting with "
                              f"'projects/', got {resource!r}")
        skip = {path_arg}
        if "{collectionId}" in suffix:
            collection = args.get("collectionId")
            if not isinstance(collection, str) or not collection:
                raise WorkflowError.tagged("ValueError", f"documents.{method}: 'collectionId' is required")
            suffix = suffix.replace("{collectionId}", quote(collection, safe=""))
            skip.add("collectionId")
        body = None
        if body_arg is not None:
            skip.add(body_arg)
            body = json.dumps(args.get(body_arg) or {}).encode()
        query = urlencode(_query_params(args, skip))
        url = f"{self.base_url}/v1/{quote(resource, safe='/()')}{suffix}" + (f"?{query}" if query else "")
        headers = {"Authorization": "Bearer owner", "Content-Type": "application/json"}
        try:
            response = self._http.request(http_method, url, body=body, headers=headers,
                                          timeout=urllib3.Timeout(total=self.timeout))
        except urllib3.exceptions.NewConnectionError as exc:
            raise WorkflowError.tagged("ConnectionFailedError", f"documents.{method}: {exc}") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise WorkflowError.tagged("TimeoutError", f"documents.{method}: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WorkflowError.tagged("ConnectionError", f"documents.{method}: {exc}") from exc
        try:
            payload = json.loads(response.data) if response.data else {}
        except ValueError:
            payload = response.data.decode("utf-8", "replace")
        self._count(method, response.status, payload)
        if response.status >= 400:
            raise WorkflowError({
                "tags": ["HttpError"], "code": response.status,
                "message": f"HTTP server responded with error code {response.status}",
                "headers": dict(response.headers), "body": payload,
            })
        return payload

    def _count(self, method: str, status: int, payload: Any) -> None:
        reads = writes = 0
        if status < 400:
            if method == "get":
                reads = 1
            elif method == "batchGet" or method == "runQuery":
                items = payload if isinstance(payload, list) else []
                reads = max(1, sum(1 for item in items if isinstance(item, dict) and
                                   ("found" in item or "document" in item)))
            elif method == "list":
                reads = max(1, len(payload.get("documents") or []) if isinstance(payload, dict) else 1)
            elif method in ("patch", "createDocument", "delete"):
                writes = 1
            elif method == "commit":
                writes = len(payload.get("writeResults") or []) if isinstance(payload, dict) else 0
        elif method == "get" and status == 404:
            reads = 1  # Firestore bills a read for a lookup that finds nothing
        with self._lock:
            self.counts["requests"] += 1
            self.counts[f"requests.{method}"] += 1
            self.counts["reads"] += reads
            self.counts["writes"] += writes

    def close(self) -> None:
        self._http.clear()
