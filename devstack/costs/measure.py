"""What one creation does, counted from real executions of workflows/creation.yaml.

Runs the local stack on production settings (Google's Firestore emulator behind the metering
proxy, the Cloud Tasks trigger), step jobs as processes as a container runs them, a virtual clock
(backoffs cost no time), and submits one creation per scenario through the HTTP API. For each
scenario it counts, from what actually ran:

- the Workflows steps the execution billed, polls apart (its step entries: one per entry, plus
  one per assignment beyond the first of an assign step);
- every jobs.run call: which job, and how long its process ran here (start, imports, work);
- the Firestore document reads and writes of the API and the step jobs (counted on the wire by
  localcloud/firestore_meter.py) and of the workflow's Firestore connector (counted by the binding);
- the executions started (each one Cloud Tasks task).
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack.jobs import JOBS_RUN
from devstack.stack import WORKFLOW_FILE, WORKFLOW_ID, LocalStack, StackConfig


@dataclass(frozen=True)
class Scenario:
    name: str
    type: str            # image | video
    prompt: str
    outcome: str         # the creation's final status: draft | failed


SCENARIOS = (
    Scenario("image", "image", "a lighthouse at dawn", "draft"),
    Scenario("video", "video", "waves on a beach", "draft"),
    Scenario("content policy", "image", "a forbidden picture #blocked", "failed"),
    Scenario("transient retry", "image", "a flaky provider #flaky", "draft"),
)


@dataclass
class JobCall:
    job: str             # the deployed job's name (JOB_PREFIX + id)
    seconds: float       # the job's process here: python start, imports, settings, work
    succeeded: bool


@dataclass
class ScenarioRun:
    scenario: Scenario
    status: str
    workflow_steps: int                  # billable steps, polls apart
    job_call_steps: int                  # of which: the steps the job calls cost (run_step and its callers' calls)
    jobs: list[JobCall]
    firestore: dict[str, int]            # reads, writes
    executions: int                      # executions started (Cloud Tasks tasks in production)


@dataclass
class Measurement:
    runs: dict[str, ScenarioRun]
    polling_policy: dict[str, float]


# --- the YAML -------------------------------------------------------------------------------


def workflow_source(path: Path = WORKFLOW_FILE) -> dict:
    return yaml.safe_load(path.read_text())


def assign_counts(source: Any) -> dict[tuple[str, str], int]:
    """(routine, step) -> number of assignments, for every assign step of the workflow."""
    out: dict[tuple[str, str], int] = {}

    def walk(routine: str, node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                if isinstance(item, dict):
                    for name, body in item.items():
                        if isinstance(body, dict) and isinstance(body.get("assign"), list):
                            out[(routine, name)] = len(body["assign"])
                walk(routine, item)
        elif isinstance(node, dict):
            for value in node.values():
                walk(routine, value)

    for routine, body in source.items():
        walk(routine, body)
    return out


def polling_policy(source: Any) -> dict[str, float]:
    """The polling policy of the workflow's jobs.run call (Google's default where it sets none)."""
    found: list[dict] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("call") == JOBS_RUN:
                found.append(((node.get("args") or {}).get("connector_params") or {}).get("polling_policy") or {})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(source)
    if not found:
        raise ValueError(f"{WORKFLOW_FILE.name} has no {JOBS_RUN} call")
    policy = found[0]
    return {"initial_delay": float(policy.get("initial_delay", 1.0)),
            "multiplier": float(policy.get("multiplier", 1.25)),
            "max_delay": float(policy.get("max_delay", 60.0))}


def billable_steps(entries: list[dict], assigns: dict[tuple[str, str], int]) -> int:
    extra = sum(assigns.get((e["routine"], e["step"]), 1) - 1 for e in entries if e["stepType"] == "STEP_ASSIGN")
    return len(entries) + extra


# --- running the scenarios --------------------------------------------------------------------


class _TimedJobs:
    """The jobs.run connector, timing each job it runs."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[JobCall] = []
        self._lock = threading.Lock()

    def __call__(self, call):
        job = str(call.args.get("name", "")).rsplit("/jobs/", 1)[-1]
        started = time.perf_counter()
        try:
            result = self.inner(call)
        except Exception:
            self._add(JobCall(job, time.perf_counter() - started, False))
            raise
        self._add(JobCall(job, time.perf_counter() - started, True))
        return result

    def _add(self, call: JobCall) -> None:
        with self._lock:
            self.calls.append(call)


def measure(scenarios: tuple[Scenario, ...] = SCENARIOS, *, emulator=None) -> Measurement:
    """Run every scenario once on the local stack on production settings (the Firestore emulator
    started here unless given) and count what it did."""
    import httpx

    from api.auth import make_local_token
    from localcloud.workflows import VirtualClock

    source = workflow_source()
    assigns = assign_counts(source)
    with tempfile.TemporaryDirectory(prefix="phoenix-cost-") as tmp:
        config = StackConfig(data_dir=Path(tmp), port=0, jobs_mode="process", instant_generation=True,
                             clock=VirtualClock(), store="firestore", trigger="tasks",
                             firestore_emulator=emulator, meter_firestore=True)
        with contextlib.redirect_stdout(io.StringIO()), LocalStack(config) as stack:
            timed = _TimedJobs(stack.jobs)
            stack.engine.connectors.bind(JOBS_RUN, timed)
            uid = f"cost-{uuid.uuid4().hex[:8]}"
            stack.store.grant(uid, 1000, f"grant:{uid}")
            headers = {"Authorization": f"Bearer {make_local_token(uid, stack.settings.local_auth_secret)}"}
            with httpx.Client(base_url=stack.urls["api"], headers=headers, timeout=120) as client:
                runs = {s.name: _run(stack, client, timed, s, assigns) for s in scenarios}
    return Measurement(runs=runs, polling_policy=polling_policy(source))


def _firestore_counts(stack: LocalStack) -> dict[str, int]:
    wire, connector = stack.firestore_meter.snapshot(), stack.firestore_connector.counts
    return {k: wire.get(k, 0) + connector.get(k, 0) for k in ("reads", "writes")}


def _run(stack: LocalStack, client, timed: _TimedJobs, scenario: Scenario, assigns) -> ScenarioRun:
    before = _firestore_counts(stack)
    timed.calls.clear()
    response = client.post("/v1/creations", json={"type": scenario.type, "prompt": scenario.prompt})
    if response.status_code != 202:
        raise RuntimeError(f"scenario {scenario.name!r}: the API answered {response.status_code} {response.text}")
    creation_id = response.json()["id"]
    # Wait on the engine, not by reading the creation (each read would be counted as the creation's).
    label = f'labels.creation-id="{creation_id}"'
    deadline = time.monotonic() + 300
    while not (executions := stack.engine.list_executions(WORKFLOW_ID, filter=label)[0]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"scenario {scenario.name!r}: no execution started after 300 s")
        time.sleep(0.05)
    for execution in executions:
        stack.engine.wait(execution["name"], timeout=300)
    executions = stack.engine.list_executions(WORKFLOW_ID, filter=label)[0]   # a duplicate delivery's too
    after = _firestore_counts(stack)
    status = client.get(f"/v1/creations/{creation_id}").json()["status"]
    if status != scenario.outcome:
        raise RuntimeError(f"scenario {scenario.name!r} ended {status}, expected {scenario.outcome}")
    entries = [e for execution in executions for e in stack.engine.step_entries(execution["name"])]
    # A job call costs its caller's try and call entries and run_step's own entries.
    callers = {e["step"] for e in entries if e["stepType"] == "STEP_SUBWORKFLOW_CALL"}
    calls = [e for e in entries if e["routine"] == "run_step" or e["step"] in callers]
    return ScenarioRun(scenario=scenario, status=status, workflow_steps=billable_steps(entries, assigns),
                       job_call_steps=billable_steps(calls, assigns), jobs=list(timed.calls),
                       firestore={k: after[k] - before[k] for k in after}, executions=len(executions))
