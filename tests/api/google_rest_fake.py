"""A loopback HTTP server answering POSTs on one route with JSON, the way Google's REST APIs do.

Subclasses set `route` and implement `create(match, body) -> (status, payload)`; setting
`fail_status` makes every POST answer with that status (Google's error JSON) instead.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def google_error(code: int, status: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "status": status}}).encode()


class GoogleRestFake:
    route: re.Pattern

    def __init__(self):
        self.fail_status: int | None = None
        fake = self

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
                match = fake.route.match(self.path.split("?")[0])
                if not match:
                    return self.reply(404, google_error(404, "NOT_FOUND", f"no route {self.path}"))
                if fake.fail_status:
                    return self.reply(fake.fail_status, google_error(fake.fail_status, "UNAVAILABLE", "unavailable"))
                self.reply(*fake.create(match, raw))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def create(self, match: re.Match, raw: bytes) -> tuple[int, bytes]:
        raise NotImplementedError

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
