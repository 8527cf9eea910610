"""An S3 API server on loopback (moto), standing in for Cloudflare R2 in tests and the dev stack.

boto3 reaches it with `endpoint_url=server.endpoint_url`, path-style addressing, any credentials
and region "us-east-1" (region "auto", as R2 uses, works when buckets are created with an
explicit LocationConstraint). It keeps objects in memory and does not check signatures, so
presigned URLs always work here.
"""
from __future__ import annotations

import logging


class S3Server:
    """moto's threaded S3 server on `host`; port 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True):
        self.host = host
        self._requested_port = port
        self.quiet = quiet
        self._server = None
        self.port: int | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the S3 server is not started: call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        if self._server is not None:
            raise RuntimeError("the S3 server is already started")
        if self.quiet:
            # werkzeug logs every request at INFO; keep warnings and errors.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self.host, port=self._requested_port, verbose=False)
        server.start()
        self._server = server
        self.port = server.get_host_and_port()[1]
        return self

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset endpoint)."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
