"""The local stack for tests, and the ways a test reaches into it.

`running_stack(data_dir, jobs_mode=..., clock=...)` starts `devstack.stack.LocalStack` on free
ports (a VirtualClock by default, so the workflow's backoffs cost no wall time) and yields a
`Stack`: users who submit through the HTTP API, executions and step entries from the engine, the
ledger from the store, and the stack's fault switches (`devstack.faults`) to break chosen jobs.

Every Stack a test touched has its ledger audited after the test (the root conftest).
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from api.auth import make_local_token
from creations.joblog import JobLog
from creations.model import Creation, EntryKind
from creations.pipeline import StepServices
from devstack.faults import Fault, Hold, closed_port  # noqa: F401 - closed_port is part of the kit
from devstack.stack import ROOT, WORKFLOW_FILE, WORKFLOW_ID, LocalStack, StackConfig, settings_env
from localcloud.workflows import VirtualClock

EXECUTION_TIMEOUT = 90.0     # seconds of wall time an execution may take before a test gives up
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


def mode_param(mode: str):
    """A jobs mode of a parametrized stack fixture; each mode's tests form one xdist group, so its
    stack starts once per worker under `--dist loadgroup`."""
    return pytest.param(mode, id=mode, marks=pytest.mark.xdist_group(f"e2e_{mode}"))


PROCESS = mode_param("process")
INPROCESS = mode_param("inprocess")


@contextlib.contextmanager
def running_stack(data_dir: Path, *, jobs_mode: str = "inprocess", clock: str = "virtual",
                  **config: Any) -> Iterator[Stack]:
    """A started LocalStack under `data_dir`, stopped on leaving. `clock` is "virtual" or "real";
    in-process jobs log to DATA_DIR/jobs.log so a test's stdout holds only what it printed."""
    if clock not in ("virtual", "real"):
        raise ValueError(f"clock must be 'virtual' or 'real', not {clock!r}")
    data_dir = Path(data_dir)
    config.setdefault("inprocess_log", data_dir / "jobs.log")
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(StackConfig(data_dir=data_dir, port=0, jobs_mode=jobs_mode,
                                   clock=VirtualClock() if clock == "virtual" else None, **config)).start()
    driver = Stack(stack)
    try:
        yield driver
    finally:
        driver.close()
        stack.stop()


@dataclass
class User:
    uid: str
    granted: int
    http: httpx.Client       # the API, with the user's bearer token
    token: str


@dataclass
class Outcome:
    """A finished execution of a creation, as the engine and the API report it."""

    creation_id: str
    execution: dict
    creation: dict            # GET /v1/creations/{id}, as the creation's owner sees it
    entries: list[dict]       # the execution's step entries

    @property
    def state(self) -> str:
        return self.execution["state"]

    @property
    def error_payload(self) -> dict:
        """The execution's error, decoded: what `raise_failure` raised."""
        return json.loads(self.execution["error"]["payload"])


_live: weakref.WeakSet[Stack] = weakref.WeakSet()


def touched_stacks() -> list[Stack]:
    """The stacks used since the last call (the root conftest audits them after each test)."""
    out = [s for s in list(_live) if s.touched]
    for stack in out:
        stack.touched = False
    return out


class Stack:
    """One LocalStack and the ways a test reaches into it."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.mode = stack.config.jobs_mode
        self.engine = stack.engine
        self.store = stack.store
        self.storage = stack.storage
        self.settings = stack.settings
        self.faults = stack.faults
        self.touched = False
        self._owners: dict[str, User] = {}
        self._clients: list[httpx.Client] = []
        self._services: StepServices | None = None
        _live.add(self)

    def close(self) -> None:
        for client in self._clients:
            client.close()
        if self._services is not None:
            self._services.close()
            self._log_file.close()
        _live.discard(self)

    @property
    def data_dir(self) -> Path:
        return self.stack.config.data_dir

    # --- users and the API ---------------------------------------------------------------

    @property
    def urls(self) -> dict[str, str]:
        return self.stack.urls

    def new_user(self, tokens: int, uid: str | None = None) -> User:
        """A user (a fresh uid unless given) granted `tokens`, with an HTTP client that carries
        their bearer token."""
        self.touched = True
        uid = uid or f"user-{uuid.uuid4().hex[:12]}"
        self.store.grant(uid, tokens, f"grant:{uid}")
        token = make_local_token(uid, self.settings.local_auth_secret)
        client = httpx.Client(base_url=self.stack.urls["api"], timeout=30.0,
                              headers={"Authorization": f"Bearer {token}"})
        self._clients.append(client)
        return User(uid=uid, granted=tokens, http=client, token=token)

    def post_creation(self, user: User, prompt: str, type_: str = "image", *,
                      idempotency_key: str | None = None, **options: Any) -> httpx.Response:
        """POST /v1/creations as `user`; the answer as it came."""
        self.touched = True
        body: dict[str, Any] = {"type": type_, "prompt": prompt}
        if options:
            body["options"] = options
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        return user.http.post("/v1/creations", json=body, headers=headers)

    def submit(self, user: User, prompt: str, type_: str = "image", *,
               idempotency_key: str | None = None, **options: Any) -> str:
        """POST /v1/creations, accepted; returns the creation id (the API debits and starts the execution)."""
        response = self.post_creation(user, prompt, type_, idempotency_key=idempotency_key, **options)
        assert response.status_code == 202, response.text
        creation_id = response.json()["id"]
        self._owners[creation_id] = user
        return creation_id

    def balance(self, user: User) -> int:
        response = user.http.get("/v1/me")
        assert response.status_code == 200, response.text
        return response.json()["tokens"]

    def creation_out(self, user: User, creation_id: str) -> dict:
        response = user.http.get(f"/v1/creations/{creation_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def creation(self, creation_id: str) -> Creation:
        """The creation's record in the store."""
        return creation_record(self.store, creation_id)

    # --- executions ----------------------------------------------------------------------

    def execution_name(self, creation_id: str, timeout: float = 30.0) -> str:
        """The latest execution recorded for the creation; with the Cloud Tasks trigger (which
        cannot know the name) the latest execution labelled with the creation's id and current
        attempt, once its task has been delivered."""
        creation = self.creation(creation_id)
        if creation.execution_ids:
            return creation.execution_ids[-1]
        assert self.settings.trigger == "tasks", f"no execution recorded for {creation_id}"
        deadline = time.monotonic() + timeout
        while True:
            found = self.executions_of(creation_id, creation.attempt)
            if found:
                return found[-1]["name"]
            assert time.monotonic() < deadline, \
                f"no execution of {creation_id} attempt {creation.attempt} within {timeout:g} s"
            time.sleep(0.02)

    def executions_of(self, creation_id: str, attempt: int | None = None) -> list[dict]:
        """The executions labelled with the creation's id (and attempt), oldest first."""
        text = f'labels.creation-id="{creation_id}"'
        if attempt is not None:
            text += f' AND labels.attempt="{attempt}"'
        found, _ = self.engine.list_executions(WORKFLOW_ID, filter=text, order_by="createTime")
        return found

    def wait(self, name: str, timeout: float = EXECUTION_TIMEOUT) -> dict:
        execution = self.engine.wait(name, timeout=timeout)
        assert execution["state"] in TERMINAL_STATES, \
            f"execution {name} is still {execution['state']} after {timeout:g} s"
        return execution

    def finish(self, creation_id: str, name: str | None = None) -> Outcome:
        """Wait for the creation's latest execution (or `name`) to end and read what it left."""
        name = name or self.execution_name(creation_id)
        execution = self.wait(name)
        owner = self._owners.get(creation_id)
        out = self.creation_out(owner, creation_id) if owner is not None else {}
        return Outcome(creation_id, execution, out, self.engine.step_entries(name))

    def wait_for_step(self, name: str, step: str, state: str = "STATE_IN_PROGRESS",
                      timeout: float = EXECUTION_TIMEOUT) -> None:
        """Until the workflow step `step` (a run_step call of main) is in `state`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = job_runs(self.engine.step_entries(name), step)
            if runs and runs[-1]["state"] == state:
                return
            time.sleep(0.02)
        raise AssertionError(f"{step} of {name} did not reach {state} within {timeout:g} s")

    def start_workflow(self, argument: Any) -> str:
        self.touched = True
        return self.engine.start(WORKFLOW_ID, argument)

    # --- money ---------------------------------------------------------------------------

    def ledger_ids(self, user: User, creation_id: str) -> list[str]:
        """The ids of the user's ledger entries for the creation, oldest first."""
        return [e.id for e in self.store.ledger(user.uid) if e.creation_id == creation_id]

    def refunds(self, user: User, creation_id: str) -> int:
        """How many refunds the user's ledger holds for the creation."""
        return sum(1 for e in self.store.ledger(user.uid)
                   if e.creation_id == creation_id and e.kind is EntryKind.REFUND)

    def audit(self) -> list:
        """The ledger audit's findings over the whole stack ([] when the books balance)."""
        return self.store.audit()

    # --- media ---------------------------------------------------------------------------

    def stored_keys(self, prefix: str) -> list[str]:
        listing = self.storage.client.list_objects_v2(Bucket=self.settings.s3_bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    # --- fault switches ------------------------------------------------------------------

    def fault(self, kind: str, job: str = "*", *, marker: str | None = None, times: int | None = None,
              creation_id: str | None = None):
        """While inside, the `job` jobs of creations whose prompt holds `marker` misbehave as `kind`
        (see devstack.faults): `with stack.fault("fail", "generate", marker=tag, times=2): ...`."""
        return self.faults.on(Fault(kind=kind, job=job, times=times, marker=marker, creation_id=creation_id))

    def upload_outage(self, marker: str):
        """While inside, the upload jobs of creations whose prompt holds `marker` find object
        storage unreachable: STORAGE_ERROR, retryable, so the workflow retries and then refunds."""
        return self.fault("storage_down", "upload", marker=marker)

    def held(self, job: str, marker: str):
        """The `job` jobs (e.g. "generate-image") of creations whose prompt holds `marker` wait
        until the hold is released (it is on leaving the block)."""
        return self.faults.on(Hold(job, marker))

    # --- step jobs outside the workflow (an operator, a duplicate delivery) ---------------

    @property
    def services(self) -> StepServices:
        """In-process step services on the stack's own store and storage; their JSON logs go to
        DATA_DIR/steps-outside.log, so a test's stdout holds only what the test printed."""
        if self._services is None:
            self._log_file = open(self.data_dir / "steps-outside.log", "a", encoding="utf-8")
            self._services = StepServices(self.settings, store=self.store, storage=self.storage,
                                          log=JobLog(self._log_file))
        return self._services

    def run_step(self, step: str, creation_id: str, attempt: int) -> int:
        """Run one step job as this stack's mode runs it; returns its exit status."""
        self.touched = True
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
        return self.data_dir / "jobs" / f"{execution}.log"

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


def creation_record(store, creation_id: str) -> Creation:
    creation = store.get_creation(creation_id)
    assert creation is not None, f"creation {creation_id} is gone"
    return creation


def marker() -> str:
    """A tag unique to one test, put in a prompt to aim a fault switch at its creations."""
    return f"[{uuid.uuid4().hex[:10]}]"


def unique(prompt: str) -> str:
    """The prompt with a tag of its own (the generation server counts #flaky calls per text)."""
    return f"{prompt} {marker()}"


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
