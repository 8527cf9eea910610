"""An S3 API server on loopback (moto), standing in for Cloudflare R2 in tests and the dev stack.

boto3 reaches it with `endpoint_url=server.endpoint_url`, path-style addressing, any credentials
and region "us-east-1" (region "auto", as R2 uses, works when buckets are created with an
explicit LocationConstraint). It keeps objects in memory and does not check signatures, so
presigned URLs always work here. With a `data_dir` (own process only) every change is also written
through to that directory and loaded back at start (localcloud.s3durable): nothing it answered
is lost when it, or the process that started it, is killed.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request


class S3Server:
    """moto's S3 server on `host`; port 0 picks a free port. By default a thread of this process;
    with `own_process=True` a child process, so its CPU work does not compete with this process
    for the interpreter lock (the local stack's throughput is bound by it otherwise). The child runs
    in a process group of its own, so a Ctrl-C sent to the starting process's group does not stop it
    under the caller's feet; it ends with the process that started it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True, own_process: bool = False,
                 data_dir: str | os.PathLike[str] | None = None):
        if data_dir is not None and not own_process:
            raise ValueError("write-through storage (data_dir) needs the S3 server in its own process")
        self.data_dir = data_dir
        self.host = host
        self._requested_port = port
        self.quiet = quiet
        self.own_process = own_process
        self._server = None
        self._process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the S3 server is not started: call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Server:
        if self._server is not None or self._process is not None:
            raise RuntimeError("the S3 server is already started")
        if self.own_process:
            return self._start_process()
        from moto.server import ThreadedMotoServer

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
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def _start_process(self, timeout: float = 30.0) -> S3Server:
        port = self._requested_port or _free_port(self.host)
        if self.data_dir is not None:
            command = ["-m", "localcloud.s3durable", "--host", self.host, "--port", str(port),
                       "--data-dir", os.fspath(self.data_dir)]
        else:
            command = ["-m", "moto.server", "-H", self.host, "-p", str(port)]
        self._process = subprocess.Popen(
            [sys.executable, *command], start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if self.quiet else None)
        self.port = port
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"the S3 server could not start on {self.host}:{port} "
                                   "(is the port taken, or its data dir unreadable?)")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=5):
                    return self
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"the S3 server did not answer on {self.endpoint_url} within {timeout:g} s"
                    ) from exc
                time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
