"""Serving the API for tests: uvicorn on a free loopback port in a thread, local bearer tokens,
and the settings of a test stack (SQLite in a temp dir, the S3 server, the recording Executions
API)."""
from __future__ import annotations

import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from executions_server import ExecutionsRestServer

from api.auth import make_local_token
from api.server import server_config
from creations.settings import Settings
from creations.storage import MediaStorage
from creations.store.sqlite import SqliteStore
from localcloud.s3server import S3Server

SECRET = secrets.token_urlsafe(32)  # the explicit local secret of the test API


class UvicornThread:
    """A uvicorn server for `app` on a free loopback port, in a daemon thread."""

    def __init__(self, app):
        # proto=IPPROTO_TCP, or asyncio leaves Nagle on for the accepted connections (it sets
        # TCP_NODELAY only on sockets that say they are TCP) and keep-alive requests stall 40 ms.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(server_config(app, app.state.settings))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@dataclass
class ApiStack:
    url: str
    settings: Settings
    store: SqliteStore
    storage: MediaStorage
    executions: ExecutionsRestServer

    def user(self, tokens: int = 100, uid: str | None = None) -> UserClient:
        """A new user with `tokens`, and an HTTP client that sends their bearer token."""
        uid = uid or f"user-{uuid.uuid4().hex[:12]}"
        if tokens:
            self.store.grant(uid, tokens, f"grant:{uid}:{uuid.uuid4().hex}")
        return UserClient(uid, self.url, make_local_token(uid, SECRET))


class UserClient(httpx.Client):
    def __init__(self, uid: str, url: str, token: str):
        super().__init__(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.uid = uid
        self.token = token


def api_settings(tmp_dir, s3: S3Server, **overrides) -> Settings:
    values = dict(
        sqlite_path=tmp_dir / "api.sqlite3",
        auth_mode="local", local_auth_secret=SECRET,
        trigger="local", local_engine_url="http://127.0.0.1:9",
        gcp_project="proj-test", gcp_region="europe-west1", workflow_name="creation",
        s3_endpoint_url=s3.endpoint_url, s3_region="us-east-1", s3_bucket=f"media-{uuid.uuid4().hex[:10]}",
        s3_access_key_id="test", s3_secret_access_key="test",
        max_active_per_user=3, trigger_timeout_seconds=5,
    )
    values.update(overrides)
    return Settings(**values)


@contextmanager
def serving_api(tmp_dir, s3: S3Server, executions: ExecutionsRestServer, **overrides) -> Iterator[ApiStack]:
    """The API on a loopback port, over a fresh SQLite store and bucket, with `api_settings` plus
    `overrides`; stopped on leaving."""
    from api.main import create_app

    settings = api_settings(tmp_dir, s3, local_engine_url=executions.url, **overrides)
    store = SqliteStore(settings.sqlite_path)
    storage = MediaStorage.from_settings(settings)
    storage.ensure_bucket()
    server = UvicornThread(create_app(settings, store=store, storage=storage)).start()
    try:
        yield ApiStack(server.url, settings, store, storage, executions)
    finally:
        server.stop()
        store.close()
