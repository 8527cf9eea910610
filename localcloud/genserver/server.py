"""Run the generation server in a background thread (tests, the local dev stack)."""
from __future__ import annotations

import socket
import threading
import time

import uvicorn

from .app import create_app
from .testprompts import SLOW_SECONDS


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port (0 = a free port).

    TCP_NODELAY on the listening socket is inherited by accepted connections: without it a
    response written in two parts waits for the client's delayed ACK (~40 ms a request on a
    keep-alive connection).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class GenServer:
    """The local generation server on loopback; port 0 picks a free port.

    `GenServer().start()` returns once the server accepts connections; `.url` is the base URL to
    give google-genai (`HttpOptions(base_url=...)`); `.stop()` shuts it down. Operations and
    counters live in `.app`, so a stop/start keeps them (and the port), like a server restart
    that the provider's operations survive.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, instant: bool = False,
                 slow_seconds: float = SLOW_SECONDS):
        self.host = host
        self._requested_port = port
        self.instant = instant
        self.app = create_app(instant=instant, slow_seconds=slow_seconds)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the generation server is not started: call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> GenServer:
        if self._thread is not None:
            raise RuntimeError("the generation server is already started")
        # Bind here, not in uvicorn, so the port is known (and held) before the thread runs. A
        # restarted server keeps its port, so clients configured with `.url` reach it again.
        sock = listening_socket(self.host, self.port if self.port is not None else self._requested_port)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"genserver-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the generation server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def reset(self) -> None:
        """Forget operations and #flaky counters (the same as POST /_local/reset)."""
        self.app.state.backend.reset()

    def __enter__(self) -> GenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
