"""A stand-in for Cloud Tasks' REST API on loopback (`CreateTask` only), recording the tasks.

It answers like the service: the Task as camelCase JSON, and `409 ALREADY_EXISTS` when a task
with the same name was created before.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from executions_server import google_error

QUEUE_TASKS = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/queues/[^/]+)/tasks$")


class TasksRestServer:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict] = []      # every CreateTask body, with its parent
        self.tasks: dict[str, dict] = {}    # created tasks by name
        self.fail_status: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def log_message(self, *args):
                pass

            def reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = QUEUE_TASKS.match(self.path.split("?")[0])
                if not match:
                    return self.reply(404, google_error(404, "NOT_FOUND", f"no route {self.path}"))
                if server.fail_status:
                    return self.reply(server.fail_status, google_error(server.fail_status, "UNAVAILABLE", "unavailable"))
                body = json.loads(raw)
                task = body.get("task") or {}
                with server.lock:
                    server.requests.append({"parent": match.group(1), "body": body})
                    name = task.get("name")
                    if name in server.tasks:
                        return self.reply(409, google_error(409, "ALREADY_EXISTS", "Requested entity already exists"))
                    server.tasks[name] = task
                self.reply(200, json.dumps({**task, "dispatchCount": 0}).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "TasksRestServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
