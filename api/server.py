"""How the API is served: uvicorn over h11 with bounds on slow and idle clients.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but it has no deadline
for the request line and headers: a client that connects and sends nothing, or a header a byte a
minute, holds the connection for ever. `HeaderDeadlineProtocol` closes a connection whose request
headers are not complete `header_timeout_seconds` after the connection (or the previous answer).
The body's deadline is kept by the edge middleware (api/edge.py), which answers 408.
"""
from __future__ import annotations

import asyncio

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADER_BYTES = 16 * 1024   # request line + headers: h11 answers 400 beyond


class HeaderDeadlineProtocol(H11Protocol):
    header_timeout_seconds: float = 10.0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the next request's headers are due in time too

    def connection_lost(self, exc) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_seconds, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        handle = getattr(self, "_header_deadline", None)
        if handle is not None:
            handle.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_config(app, settings, *, host: str = "127.0.0.1", port: int = 0, **kwargs) -> uvicorn.Config:
    """The uvicorn configuration every server of this API uses (image, dev stack, tests)."""
    protocol = type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,),
                    {"header_timeout_seconds": settings.header_timeout_seconds})
    options = dict(log_level="warning", lifespan="on", http=protocol,
                   timeout_keep_alive=int(max(1, settings.keep_alive_seconds)),
                   h11_max_incomplete_event_size=MAX_HEADER_BYTES)
    options.update(kwargs)
    return uvicorn.Config(app, host=host, port=port, **options)
