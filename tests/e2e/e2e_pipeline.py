"""Drives a running LocalStack the way its users do: a user through the HTTP API, an operator
through the engine (executions, step entries) and the store, and reads what the YAML declares.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

from api.auth import make_local_token
from creations.model import Creation, EntryKind
from creations.pipeline import StepServices
from devstack.jobs import JOBS_RUN, JobsRunner
from devstack.stack import ROOT, WORKFLOW_FILE, WORKFLOW_ID, LocalStack, settings_env

def mode_param(mode: str):
    """A jobs mode of the `pipeline` fixture; each mode's tests form one xdist group, so its stack
    starts once per worker under `--dist loadgroup`."""
    return pytest.param(mode, id=mode, marks=pytest.mark.xdist_group(f"e2e_{mode}"))


PROCESS = mode_param("process")
INPROCESS = mode_param("inprocess")
EXECUTION_TIMEOUT = 90.0     # seconds of wall time an execution may take before a test gives up
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass
class User:
    uid: str
    granted: int
    http: httpx.Client


@dataclass
class Outcome:
    """A finished execution of a creation, as the engine and the API report it."""

    creation_id: str
    execution: dict
    creation: dict            # GET /v1/creations/{id}
    entries: list[dict]       # the execution's step entries

    @property
    def state(self) -> str:
        return self.execution["state"]

    @property
    def error_payload(self) -> dict:
        """The execution's error, decoded: what `raise_failure` raised."""
        return json.loads(self.execution["error"]["payload"])


class Pipeline:
    """One LocalStack, and the ways a test reaches into it."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.mode = stack.config.jobs_mode
        self.engine = stack.engine
        self.store = stack.store
        self.storage = stack.storage
        self.settings = stack.settings
        self._clients: list[httpx.Client] = []
        self._services: StepServices | None = None

    def close(self) -> None:
        for client in self._clients:
            client.close()
        if self._services is not None:
            self._services.close()

    # --- users and the API ---------------------------------------------------------------

    def new_user(self, tokens: int) -> User:
        uid = f"user-{uuid.uuid4().hex[:12]}"
        self.store.grant(uid, tokens, f"grant:{uid}")
        token = make_local_token(uid, self.settings.local_auth_secret)
        client = httpx.Client(base_url=self.stack.urls["api"], timeout=30.0,
                              headers={"Authorization": f"Bearer {token}"})
        self._clients.append(client)
        return User(uid=uid, granted=tokens, http=client)

    def submit(self, user: User, type_: str, prompt: str, **options: Any) -> str:
        """POST /v1/creations; returns the creation id (the API debits and starts the execution)."""
        body: dict[str, Any] = {"type": type_, "prompt": prompt}
        if options:
            body["options"] = options
        response = user.http.post("/v1/creations", json=body)
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def balance(self, user: User) -> int:
        response = user.http.get("/v1/me")
        assert response.status_code == 200, response.text
        return response.json()["tokens"]

    def creation_out(self, user: User, creation_id: str) -> dict:
        response = user.http.get(f"/v1/creations/{creation_id}")
        assert response.status_code == 200, response.text
        return response.json()

    # --- executions ----------------------------------------------------------------------

    def execution_name(self, creation_id: str) -> str:
        """The latest execution the API recorded for the creation."""
        creation = self.store.get_creation(creation_id)
        assert creation is not None and creation.execution_ids, f"no execution recorded for {creation_id}"
        return creation.execution_ids[-1]

    def wait(self, name: str, timeout: float = EXECUTION_TIMEOUT) -> dict:
        execution = self.engine.wait(name, timeout=timeout)
        assert execution["state"] in TERMINAL_STATES, \
            f"execution {name} is still {execution['state']} after {timeout:g} s"
        return execution

    def finish(self, user: User, creation_id: str, name: str | None = None) -> Outcome:
        """Wait for the creation's execution (or `name`) to end and read what it left."""
        name = name or self.execution_name(creation_id)
        execution = self.wait(name)
        return Outcome(creation_id, execution, self.creation_out(user, creation_id), self.engine.step_entries(name))

    def start_workflow(self, argument: Any) -> str:
        return self.engine.start(WORKFLOW_ID, argument)

    # --- money ---------------------------------------------------------------------------

    def ledger_ids(self, user: User, creation_id: str) -> list[str]:
        return [e.id for e in self.store.ledger(user.uid) if e.creation_id == creation_id]

    def refunds(self, user: User, creation_id: str) -> list:
        return [e for e in self.store.ledger(user.uid)
                if e.creation_id == creation_id and e.kind is EntryKind.REFUND]

    # --- step jobs outside the workflow (an operator, a duplicate delivery) ---------------

    @property
    def services(self) -> StepServices:
        """In-process step services on the stack's own store and storage."""
        if self._services is None:
            self._services = StepServices(self.settings, store=self.store, storage=self.storage)
        return self._services

    def run_step(self, step: str, creation_id: str, attempt: int) -> int:
        """Run one step job as this stack's mode runs it; returns its exit status."""
        if self.mode == "inprocess":
            from steps import run

            return int(run(step, creation_id, attempt, self.services))
        env = {**os.environ, **settings_env(self.settings), "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", f"steps.{step}", "--creation-id", creation_id,
                               "--attempt", str(attempt)], env=env, cwd=ROOT, capture_output=True,
                              timeout=120)
        return done.returncode

    # --- step job subprocesses -------------------------------------------------------------

    def job_process(self, step: str, creation_id: str, timeout: float = 30.0) -> tuple[int, str]:
        """(pid, Cloud Run execution id) of the running `python -m steps.<step>` job of the creation."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in _children(os.getpid()):
                argv = _cmdline(pid)
                if f"steps.{step}" in argv and creation_id in argv:
                    env = _environ(pid)
                    if "CLOUD_RUN_EXECUTION" in env:
                        return pid, env["CLOUD_RUN_EXECUTION"]
            time.sleep(0.02)
        raise AssertionError(f"no {step} job process for {creation_id} within {timeout:g} s")

    def job_log(self, execution: str) -> Path:
        return self.stack.config.data_dir / "jobs" / f"{execution}.log"

    def wait_for_log(self, execution: str, text: str, timeout: float = 30.0) -> None:
        path = self.job_log(execution)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text(errors="replace"):
                return
            time.sleep(0.02)
        raise AssertionError(f"{path} did not log {text!r} within {timeout:g} s")

    @staticmethod
    def kill(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    # --- an object storage outage, for the upload jobs of some creations -------------------

    @contextlib.contextmanager
    def upload_outage(self, prompt_marker: str) -> Iterator[None]:
        """While inside, the upload jobs of creations whose prompt holds `prompt_marker` run with
        object storage unreachable (their endpoint is a closed loopback port); every other job
        runs as usual. The jobs.run binding is the stack's again afterwards."""
        runner = self.jobs_runner()
        dead = f"http://127.0.0.1:{_closed_port()}"
        if self.mode == "process":
            outage = JobsRunner(job_prefix=runner.job_prefix, mode="process",
                                env={**runner.env, "PHOENIX_S3_ENDPOINT_URL": dead},
                                cwd=runner.cwd, log_dir=runner.log_dir / "outage")   # its own execution ids
            services = None
        else:
            services = StepServices(self.settings.model_copy(update={"s3_endpoint_url": dead}),
                                    store=self.store)
            outage = JobsRunner(job_prefix=runner.job_prefix, mode="inprocess", services=services)

        def route(call):
            args = call.args["body"]["overrides"]["containerOverrides"][0]["args"]
            creation = self.store.get_creation(args[args.index("--creation-id") + 1])
            diverted = (call.args["name"].endswith("/jobs/" + runner.job_prefix + "upload")
                        and creation is not None and prompt_marker in creation.prompt)
            return (outage if diverted else runner)(call)

        self.engine.connectors.bind(JOBS_RUN, route)
        try:
            yield
        finally:
            self.engine.connectors.bind(JOBS_RUN, runner)
            if services is not None:
                services.close()

    def jobs_runner(self) -> JobsRunner:
        """The stack's jobs.run handler. The registry has no public getter; reading its map keeps
        the stack's own runner (and its subprocess settings) in play instead of a look-alike."""
        runner = self.engine.connectors._handlers.get(JOBS_RUN)
        assert isinstance(runner, JobsRunner), f"jobs.run is bound to {runner!r}, not the stack's JobsRunner"
        return runner


# --- step entries ------------------------------------------------------------------------------


def job_runs(entries: list[dict], step: str) -> list[dict]:
    """Each run of the workflow step `step` (e.g. generate_media): one `run_step` subworkflow call
    per job execution, the first try and every retry."""
    return [e for e in entries if e["routine"] == "main" and e["step"] == step
            and e["stepType"] == "STEP_SUBWORKFLOW_CALL"]


def retries(entries: list[dict], step: str) -> list[dict]:
    return [e for e in entries if e["routine"] == "main" and e["step"] == step and e["stepType"] == "STEP_RETRY"]


def jobs_started(entries: list[dict]) -> int:
    """How many Cloud Run job executions the workflow started (jobs.run connector calls)."""
    return sum(1 for e in entries if e["routine"] == "run_step" and e["step"] == "run_job"
               and e["stepType"] == "STEP_CONNECTOR_CALL")


# --- what the YAML declares ------------------------------------------------------------------


def _find_step(node: Any, name: str) -> dict | None:
    """The body of the step called `name`, wherever it is nested (steps, try, except)."""
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and isinstance(item.get(name), dict):
                return item[name]
            found = _find_step(item, name)
            if found is not None:
                return found
    elif isinstance(node, dict):
        for value in node.values():
            found = _find_step(value, name)
            if found is not None:
                return found
    return None


def declared_retry(step: str) -> dict:
    """The `retry` policy creation.yaml declares on a main step: {predicate, max_retries, backoff}."""
    source = yaml.safe_load(WORKFLOW_FILE.read_text())
    body = _find_step(source["main"]["steps"], step)
    assert body is not None and "retry" in body, f"creation.yaml declares no retry on {step}"
    return body["retry"]


def backoff_delays(retry: dict) -> list[float]:
    """The delays before each retry: initial_delay × multiplier^n, capped at max_delay."""
    backoff = retry["backoff"]
    delay, out = float(backoff["initial_delay"]), []
    for _ in range(int(retry["max_retries"])):
        out.append(min(delay, float(backoff["max_delay"])))
        delay *= float(backoff["multiplier"])
    return out


# --- /proc (Linux): the stack's job subprocesses ------------------------------------------------


def _children(parent: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(parent):
            pids.append(int(entry))
    return pids


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [part.decode(errors="replace") for part in fh.read().split(b"\0") if part]
    except OSError:
        return []


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return {}
    out = {}
    for part in raw.split(b"\0"):
        key, sep, value = part.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def _closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def creation_record(store, creation_id: str) -> Creation:
    creation = store.get_creation(creation_id)
    assert creation is not None, f"creation {creation_id} is gone"
    return creation
