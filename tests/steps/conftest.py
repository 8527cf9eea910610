"""Step jobs against real local services: a SQLite store file per test, the moto S3 server and
the local generation server (wrapped to count the generation calls that reach it).

`stack` gives each test its own store and bucket, the environment a `python -m steps.<name>`
subprocess needs, and in-process StepServices on the same store; after the test it checks that
the books balance.
"""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from creations.joblog import JobLog
from creations.model import Creation, CreationType, Status
from creations.pipeline import StepServices
from creations.settings import Settings
from creations.storage import MediaStorage
from localcloud.genserver import GenServer
from localcloud.s3server import S3Server
from steps import run
from tests.support.firestore import firestore_emulator, firestore_project  # noqa: F401
from tests.support.s3server import s3_server, storage_settings, unique_bucket  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
PIPELINE = ("debit_check", "mark_processing", "generate", "thumbnail", "upload", "finalize")
GRANT = 50


class GenerationCalls:
    """ASGI wrapper counting the generation requests (:predict, :predictLongRunning) served."""

    def __init__(self, app: Any):
        self.app = app
        self.state = app.state  # GenServer.reset() reaches the backend through app.state
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return self.counts["predict"] + self.counts["predictLongRunning"]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            last = scope["path"].rsplit("/", 1)[-1]
            if ":" in last:
                self.counts[last.rsplit(":", 1)[1]] += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="session")
def counted_gen_server() -> Iterator[GenServer]:
    server = GenServer()
    server.app = GenerationCalls(server.app)
    server.start()
    yield server
    server.stop()


@dataclass
class RunResult:
    code: int
    logs: list[dict[str, Any]]

    @property
    def final(self) -> dict[str, Any]:
        return self.logs[-1]


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    services: StepServices
    calls: GenerationCalls
    uid: str

    PIPELINE = PIPELINE
    REPO = REPO
    GRANT = GRANT  # tokens the test's user starts with

    @staticmethod
    def env_for(settings: Settings) -> dict[str, str]:
        return step_env(settings)

    @property
    def store(self):
        return self.services.store

    @property
    def storage(self) -> MediaStorage:
        return self.services.storage

    def create(self, prompt: str, *, type: str = "image", options: dict | None = None) -> Creation:
        """What the API does: a creation at attempt 1, paid in the same transaction."""
        creation = Creation(id=Creation.new_id(), uid=self.uid, type=CreationType(type),
                            prompt=f"{prompt} [{uuid.uuid4().hex[:8]}]", options=dict(options or {}),
                            cost=self.settings.cost_of(type))
        return self.store.create_with_debit(creation).creation

    def get(self, creation_id: str) -> Creation:
        creation = self.store.get_creation(creation_id)
        assert creation is not None
        return creation

    def run(self, step: str, creation_id: str, attempt: int = 1,
            services: StepServices | None = None) -> RunResult:
        """The in-process entry point, with its log lines."""
        stream = io.StringIO()
        svc = services or self.services
        svc.log = JobLog(stream)
        code = run(step, creation_id, attempt, svc)
        return RunResult(int(code), _json_lines(stream.getvalue()))

    def cli(self, step: str, *args: str, env: dict[str, str] | None = None) -> RunResult:
        """The container entry point, `python -m steps.<step> ...`, as a subprocess."""
        proc = subprocess.run([sys.executable, "-m", f"steps.{step}", *args], cwd=REPO,
                              env=env or self.env, capture_output=True, text=True, timeout=120)
        assert not proc.stderr.strip(), f"{step} wrote to stderr:\n{proc.stderr}"
        return RunResult(proc.returncode, _json_lines(proc.stdout))

    def cli_run(self, step: str, creation_id: str, attempt: int = 1, **kw: Any) -> RunResult:
        return self.cli(step, "--creation-id", creation_id, "--attempt", str(attempt), **kw)

    def through(self, creation_id: str, last: str, attempt: int = 1) -> None:
        """Run the pipeline in-process up to and including `last`, each step succeeding."""
        for step in PIPELINE[: PIPELINE.index(last) + 1]:
            result = self.run(step, creation_id, attempt)
            assert result.code == 0, (step, result.logs)

    def replay(self, creation_id: str) -> Creation:
        """What an operator's replay does: a failed creation starts its next attempt."""
        def next_attempt(c: Creation) -> Creation:
            c.transition(Status.PENDING)
            c.attempt += 1
            return c
        return self.store.update_creation(creation_id, next_attempt)

    @property
    def s3(self):
        """A plain S3 client on the test's bucket, to look at (and spoil) objects directly."""
        import boto3

        return boto3.client("s3", endpoint_url=self.settings.s3_endpoint_url, region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local-secret")

    def staged(self, creation_id: str) -> list[str]:
        prefix = f"{self.settings.staging_prefix}{creation_id}/"
        response = self.s3.list_objects_v2(Bucket=self.settings.s3_bucket, Prefix=prefix)
        return sorted(item["Key"] for item in response.get("Contents", []))

    def remove(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.settings.s3_bucket, Key=key)

    def read(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.settings.s3_bucket, Key=key)["Body"].read()


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def step_env(settings: Settings) -> dict[str, str]:
    """The environment of a step container: PATH and friends plus PHOENIX_* for `settings`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PHOENIX_", "CREATION_ID", "ATTEMPT", "CLOUD_RUN_", "AWS_"))}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"PHOENIX_{name.upper()}"] = str(value)
    env["PYTHONPATH"] = str(REPO)
    return env


def make_stack(s3: S3Server, gen: GenServer, **store_settings: Any) -> Iterator[Stack]:
    """A Stack on `store_settings`, a fresh bucket and a user holding GRANT tokens; after the
    test, the books must balance."""
    settings = storage_settings(
        s3, unique_bucket("steps"),
        genai_base_url=gen.url, genai_static_token="local-token",
        video_poll_seconds=0.05, video_deadline_seconds=60.0, image_timeout_seconds=30.0,
        **store_settings,
    )
    services = StepServices(settings)
    services.storage.ensure_bucket()
    uid = f"user-{uuid.uuid4().hex[:8]}"
    services.store.grant(uid, GRANT, f"grant-{uid}")
    stack = Stack(settings=settings, env=step_env(settings), services=services, calls=gen.app, uid=uid)
    yield stack
    findings = services.store.audit()
    services.close()
    assert findings == [], f"the books do not balance after the test: {findings}"


@pytest.fixture
def stack(tmp_path: Path, s3_server: S3Server,  # noqa: F811 - the imported fixture
          counted_gen_server: GenServer) -> Iterator[Stack]:
    """The steps on the embedded SQLite store (one file per test)."""
    yield from make_stack(s3_server, counted_gen_server, store="sqlite",
                          sqlite_path=tmp_path / "store.sqlite3")


@pytest.fixture
def firestore_stack(firestore_project: str, s3_server: S3Server,  # noqa: F811
                    counted_gen_server: GenServer) -> Iterator[Stack]:
    """The steps on the production store, Firestore, here Google's emulator (a project per test)."""
    yield from make_stack(s3_server, counted_gen_server, store="firestore",
                          firestore_project=firestore_project)


@dataclass(frozen=True)
class DeadEndpoint:
    endpoint_url: str


@pytest.fixture
def stopped_s3() -> Iterator[DeadEndpoint]:
    """An S3 endpoint where the server has stopped: the port is held (bound, not listening), so
    every connection is refused and no other server can take the port meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield DeadEndpoint(f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        sock.close()
