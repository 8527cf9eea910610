"""A stand-in for Cloud Tasks' REST API on loopback (`CreateTask` only), recording the tasks.

It answers like the service: the Task as camelCase JSON, and `409 ALREADY_EXISTS` when a task
with the same name was created before.
"""
from __future__ import annotations

import json
import re
import threading

from google_rest_fake import GoogleRestFake, google_error

QUEUE_TASKS = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks$")


class TasksRestServer(GoogleRestFake):
    route = QUEUE_TASKS

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.requests: list[dict] = []      # every CreateTask body, with its parent
        self.tasks: dict[str, dict] = {}    # created tasks by name

    def create(self, match: re.Match, raw: bytes) -> tuple[int, bytes]:
        body = json.loads(raw)
        task = body.get("task") or {}
        with self.lock:
            self.requests.append({"parent": match.group(1), "body": body})
            name = task.get("name")
            if name in self.tasks:
                return 409, google_error(409, "ALREADY_EXISTS", "Requested entity already exists")
            self.tasks[name] = task
        return 200, json.dumps({**task, "dispatchCount": 0}).encode()
