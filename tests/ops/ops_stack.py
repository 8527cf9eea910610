"""Drives a LocalStack for the operator CLI's tests: users submit through the HTTP API, the CLI runs
in-process against the stack's settings, and some step jobs of chosen creations are held or
broken on purpose (object storage unreachable for their upload, generate held until released).

The stack's jobs.run connector is bound to a JobRouter: the stack's own in-process runner, with
diversions for creations whose prompt carries a marker, so a diversion never races the submit.
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import httpx

from api.auth import make_local_token
from creations.joblog import JobLog
from creations.model import Creation, EntryKind
from creations.pipeline import StepServices
from creations.storage import MediaStorage
from devstack.jobs import JOBS_RUN, JobsRunner
from devstack.stack import JOB_PREFIX, LocalStack

EXECUTION_TIMEOUT = 60.0      # seconds of wall time an execution may take before a test gives up
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass
class OpsRun:
    """What one `phoenix ops ...` run printed and returned."""

    code: int
    out: str
    err: str

    def line_about(self, creation_id: str) -> str:
        lines = [line for line in self.out.splitlines() if creation_id in line]
        assert len(lines) == 1, f"expected one line about {creation_id}, got {lines!r} in:\n{self.out}"
        return lines[0]


@dataclass
class User:
    uid: str
    granted: int
    http: httpx.Client


def job_of(call) -> tuple[str, str | None]:
    """(job id without the deploy prefix, creation id) of a jobs.run call."""
    job = call.args["name"].rsplit("/jobs/", 1)[1].removeprefix(JOB_PREFIX)
    args = call.args["body"]["overrides"]["containerOverrides"][0]["args"]
    return job, args[args.index("--creation-id") + 1] if "--creation-id" in args else None


class JobRouter:
    """The jobs.run handler of the test stack: the stack's runner unless a diversion claims the call."""

    def __init__(self, runner: JobsRunner):
        self.runner = runner
        self._diversions: list[tuple[Callable[[Any], bool], Callable[[Any], Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, call):
        with self._lock:
            diversions = list(self._diversions)
        for claims, handler in diversions:
            if claims(call):
                return handler(call)
        return self.runner(call)

    @contextlib.contextmanager
    def diverted(self, claims: Callable[[Any], bool], handler: Callable[[Any], Any]) -> Iterator[None]:
        entry = (claims, handler)
        with self._lock:
            self._diversions.append(entry)
        try:
            yield
        finally:
            with self._lock:
                self._diversions.remove(entry)


class Gate:
    """Holds the jobs it claims until released; the execution stays ACTIVE meanwhile. A cancelled
    execution stops waiting at once, as Cloud Workflows stops polling a cancelled operation."""

    def __init__(self, runner: JobsRunner):
        self.runner = runner
        self.reached = threading.Event()
        self._open = threading.Event()

    def __call__(self, call):
        self.reached.set()
        while not self._open.wait(0.02):
            call.check_cancelled()
        return self.runner(call)

    def release(self) -> None:
        self._open.set()


class OpsStack:
    """One LocalStack (in-process jobs) and the ways a test reaches into it."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.engine = stack.engine
        self.store = stack.store
        self.settings = stack.settings
        # The jobs' JSON logs go to a file, so the CLI's stdout holds only what the CLI printed.
        self._job_log = open(stack.config.data_dir / "jobs.log", "a", encoding="utf-8")
        self.services = StepServices(self.settings, store=self.store, storage=stack.storage,
                                     log=JobLog(self._job_log))
        self.router = JobRouter(JobsRunner(job_prefix=JOB_PREFIX, mode="inprocess", services=self.services))
        self.engine.connectors.bind(JOBS_RUN, self.router)
        self._clients: list[httpx.Client] = []
        self._owned: list[Any] = [self.services, self._job_log]

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for owned in self._owned:
            owned.close()

    # --- users and the API -------------------------------------------------------------------

    def new_user(self, tokens: int) -> User:
        uid = f"user-{uuid.uuid4().hex[:12]}"
        self.store.grant(uid, tokens, f"grant:{uid}")
        token = make_local_token(uid, self.settings.local_auth_secret)
        client = httpx.Client(base_url=self.stack.urls["api"], timeout=30.0,
                              headers={"Authorization": f"Bearer {token}"})
        self._clients.append(client)
        return User(uid=uid, granted=tokens, http=client)

    def submit(self, user: User, prompt: str, type_: str = "image") -> str:
        response = user.http.post("/v1/creations", json={"type": type_, "prompt": prompt})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def creation(self, creation_id: str) -> Creation:
        creation = self.store.get_creation(creation_id)
        assert creation is not None, f"creation {creation_id} is gone"
        return creation

    # --- executions ----------------------------------------------------------------------------

    def execution_name(self, creation_id: str) -> str:
        creation = self.creation(creation_id)
        assert creation.execution_ids, f"no execution recorded for {creation_id}"
        return creation.execution_ids[-1]

    def wait(self, name: str) -> dict:
        execution = self.engine.wait(name, timeout=EXECUTION_TIMEOUT)
        assert execution["state"] in TERMINAL_STATES, \
            f"execution {name} is still {execution['state']} after {EXECUTION_TIMEOUT:g} s"
        return execution

    def finish(self, creation_id: str) -> dict:
        """Wait for the creation's latest execution to end; returns the execution."""
        return self.wait(self.execution_name(creation_id))

    def wait_for_step(self, name: str, step: str, state: str = "STATE_IN_PROGRESS") -> None:
        """Until the workflow step `step` (a run_step call of main) is in `state`."""
        deadline = time.monotonic() + EXECUTION_TIMEOUT
        while time.monotonic() < deadline:
            runs = [e for e in self.engine.step_entries(name) if e["routine"] == "main"
                    and e["step"] == step and e["stepType"] == "STEP_SUBWORKFLOW_CALL"]
            if runs and runs[-1]["state"] == state:
                return
            time.sleep(0.02)
        raise AssertionError(f"{step} of {name} did not reach {state} within {EXECUTION_TIMEOUT:g} s")

    # --- money ---------------------------------------------------------------------------------

    def ledger_ids(self, user: User, creation_id: str) -> list[str]:
        return [e.id for e in self.store.ledger(user.uid) if e.creation_id == creation_id]

    def refunds(self, user: User, creation_id: str) -> int:
        return sum(1 for e in self.store.ledger(user.uid)
                   if e.creation_id == creation_id and e.kind is EntryKind.REFUND)

    # --- jobs held or broken on purpose --------------------------------------------------------

    def _claims(self, job: str, marker: str) -> Callable[[Any], bool]:
        def claims(call) -> bool:
            name, creation_id = job_of(call)
            if name != job or creation_id is None:
                return False
            creation = self.store.get_creation(creation_id)
            return creation is not None and marker in creation.prompt

        return claims

    @contextlib.contextmanager
    def upload_outage(self, marker: str) -> Iterator[None]:
        """While inside, the upload jobs of creations whose prompt holds `marker` find object
        storage unreachable (a closed loopback port, no client-side retries): STORAGE_ERROR,
        retryable, so the workflow retries the upload and then refunds."""
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{closed_port()}", region_name="us-east-1",
            aws_access_key_id="local", aws_secret_access_key="local",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
                          connect_timeout=2, read_timeout=5))
        storage = MediaStorage(client, self.settings.s3_bucket, public_base_url=None, presign_ttl=3600,
                               staging_prefix=self.settings.staging_prefix)
        services = StepServices(self.settings, store=self.store, storage=storage, log=self.services.log)
        broken = JobsRunner(job_prefix=JOB_PREFIX, mode="inprocess", services=services)
        try:
            with self.router.diverted(self._claims("upload", marker), broken):
                yield
        finally:
            services.close()

    @contextlib.contextmanager
    def held(self, job: str, marker: str) -> Iterator[Gate]:
        """The `job` jobs (e.g. "generate-image") of creations whose prompt holds `marker` wait
        until the gate is released (it is on leaving the block)."""
        gate = Gate(self.router.runner)
        try:
            with self.router.diverted(self._claims(job, marker), gate):
                yield gate
        finally:
            gate.release()


def marker() -> str:
    return f"[{uuid.uuid4().hex[:10]}]"


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
