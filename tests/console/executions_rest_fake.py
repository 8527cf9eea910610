"""A loopback stand-in for Google's Workflows Executions REST API, for the console's production
readers: GET an execution, GET its step entries page by page (pageSize, pageToken), list a
workflow's executions by label filter, and POST `:cancel`. It serves what a test gives it."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback_json import JsonServer, google_error

MAX_PAGE = 10   # the fake pages step entries by at most this many, so a client must follow tokens


class ExecutionsRestFake(JsonServer):
    def __init__(self):
        self.executions: dict[str, dict] = {}
        self.entries: dict[str, list[dict]] = {}
        self.requests: list[str] = []
        super().__init__()

    def answer(self, method: str, path: str, raw: bytes) -> tuple[int, bytes]:
        self.requests.append(f"{method} {path}")
        return self.get(path) if method == "GET" else self.post(path)

    def add(self, execution: dict, entries: list[dict]) -> None:
        self.executions[execution["name"]] = execution
        self.entries[execution["name"]] = entries

    def get(self, path: str) -> tuple[int, bytes]:
        parts = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        name = parts.path.removeprefix("/v1/")
        if name.endswith("/stepEntries"):
            execution = name.removesuffix("/stepEntries")
            if execution not in self.entries:
                return 404, google_error(404, "NOT_FOUND", f"execution {execution} not found")
            size = min(int(query.get("pageSize", MAX_PAGE)), MAX_PAGE)
            start = int(query.get("pageToken") or 0)
            page = self.entries[execution][start:start + size]
            body: dict = {"stepEntries": page}
            if start + size < len(self.entries[execution]):
                body["nextPageToken"] = str(start + size)
            return 200, json.dumps(body).encode()
        if name.endswith("/executions"):
            match = re.search(r'labels\.creation-id="([^"]+)"', query.get("filter", ""))
            found = [e for e in self.executions.values() if e["name"].startswith(name + "/")
                     and (match is None or (e.get("labels") or {}).get("creation-id") == match.group(1))]
            return 200, json.dumps({"executions": list(reversed(found))}).encode()
        if name in self.executions:
            return 200, json.dumps(self.executions[name]).encode()
        return 404, google_error(404, "NOT_FOUND", f"execution {name} not found")

    def post(self, path: str) -> tuple[int, bytes]:
        name = urlsplit(path).path.removeprefix("/v1/")
        if not name.endswith(":cancel") or name.removesuffix(":cancel") not in self.executions:
            return 404, google_error(404, "NOT_FOUND", f"no route {path}")
        execution = self.executions[name.removesuffix(":cancel")]
        if execution["state"] not in ("QUEUED", "ACTIVE"):
            return 400, google_error(400, "FAILED_PRECONDITION", "the execution is not running")
        execution["state"] = "CANCELLED"
        return 200, json.dumps(execution).encode()
