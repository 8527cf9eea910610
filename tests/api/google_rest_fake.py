"""A loopback HTTP server answering POSTs on one route with JSON, the way Google's REST APIs do.

Subclasses set `route` and implement `create(match, body) -> (status, payload)`; setting
`fail_status` makes every POST answer with that status (Google's error JSON) instead.
"""
from __future__ import annotations

import re

from tests.support.loopback_json import JsonServer, google_error

__all__ = ["GoogleRestFake", "google_error"]


class GoogleRestFake(JsonServer):
    route: re.Pattern

    def __init__(self):
        self.fail_status: int | None = None
        super().__init__()

    def answer(self, method: str, path: str, raw: bytes) -> tuple[int, bytes]:
        match = self.route.match(path.split("?")[0]) if method == "POST" else None
        if not match:
            return 404, google_error(404, "NOT_FOUND", f"no route {method} {path}")
        if self.fail_status:
            return self.fail_status, google_error(self.fail_status, "UNAVAILABLE", "unavailable")
        return self.create(match, raw)

    def create(self, match: re.Match, raw: bytes) -> tuple[int, bytes]:
        raise NotImplementedError
