"""The Cloud Run Jobs connector of the local stack.

`googleapis.run.v2.projects.locations.jobs.run` is answered the way Cloud Run answers it: the
job's container runs (`python -m steps.<name>` with the container-override args, or the same
step in-process for speed), the call waits until it ends, and a non-zero exit becomes an
OperationError that carries no exit code and no output, exactly what the workflow sees in
production. The wait is real; the polls Cloud Workflows would have billed for it under the
call's polling policy are counted on the step entry.
"""
from __future__ import annotations

import argparse
import os
import secrets
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from devstack.faults import Faults, run_with
from localcloud.workflows.errors import WorkflowError

JOBS_RUN = "googleapis.run.v2.projects.locations.jobs.run"

# Job id (after the deploy-time prefix) -> the step module it runs. Both generation jobs run
# `steps.generate`; they differ in production only by their CPU, memory and timeout.
JOB_STEPS: dict[str, str] = {
    "debit-check": "debit_check",
    "mark-processing": "mark_processing",
    "generate-image": "generate",
    "generate-video": "generate",
    "thumbnail": "thumbnail",
    "upload": "upload",
    "finalize": "finalize",
    "refund": "refund",
}

Mode = Literal["process", "inprocess"]


def polls_for(elapsed: float, policy: Mapping[str, Any]) -> int:
    """How many polls Cloud Workflows makes to notice an operation that took `elapsed` seconds:
    one right away, then one after each delay of the polling policy until the operation is done."""
    delay = float(policy.get("initial_delay", 1.0))
    multiplier = float(policy.get("multiplier", 1.25))
    max_delay = float(policy.get("max_delay", 60.0))
    polls, waited = 1, 0.0
    while waited < elapsed:
        waited += delay
        polls += 1
        delay = min(delay * multiplier, max_delay)
    return polls


class JobsRunner:
    """Connector handler for jobs.run. `env` is the environment of a job's process (the step
    settings); `services` is what in-process steps share; `faults` the switches that make chosen
    jobs misbehave, and `services_with(overrides)` the in-process services under changed settings
    (a service made unreachable)."""

    def __init__(self, *, job_prefix: str, mode: Mode = "process", env: Mapping[str, str] | None = None,
                 services: Any = None, cwd: Path | None = None, log_dir: Path | None = None,
                 faults: Faults | None = None, services_with: Callable[[dict[str, Any]], Any] | None = None):
        if mode not in ("process", "inprocess"):
            raise ValueError(f"jobs mode must be 'process' or 'inprocess', not {mode!r}")
        if mode == "inprocess" and services is None:
            raise ValueError("the in-process jobs mode needs the steps' services")
        self.job_prefix = job_prefix
        self.mode = mode
        self.env = dict(env or os.environ)
        self.services = services
        self.cwd = cwd
        self.log_dir = log_dir
        self.faults = faults
        self._services_with = services_with
        self._overridden: dict[tuple, Any] = {}
        self._used_ids: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, call) -> dict[str, Any]:
        name = call.args.get("name")
        if not isinstance(name, str) or "/jobs/" not in name:
            raise WorkflowError.tagged(
                "ValueError", f"jobs.run: 'name' must be projects/P/locations/L/jobs/J, got {name!r}"
            )
        job = name.rsplit("/jobs/", 1)[1]
        step = JOB_STEPS.get(job[len(self.job_prefix):]) if job.startswith(self.job_prefix) else None
        if step is None:
            raise _http_error(404, f"Resource '{job}' of kind 'JOB' in region ... does not exist.", "NOT_FOUND")
        overrides = (call.args.get("body") or {}).get("overrides") or {}
        containers = overrides.get("containerOverrides") or [{}]
        args = [str(a) for a in (containers[0].get("args") or [])]
        timeout = _duration_seconds(overrides.get("timeout"), default=600.0)
        execution = self._new_execution(job)
        rule = None
        if self.faults is not None:
            rule = self.faults.match(job[len(self.job_prefix):], _creation_of(args))

        def run(settings: dict[str, Any]) -> int:
            if self.mode == "process":
                return self._run_process(call, step, args, timeout, execution, job, settings)
            return self._run_inprocess(step, args, settings)

        started = time.monotonic()
        code = run_with(rule, call, run, self.faults.unreachable if self.faults is not None else {})
        elapsed = time.monotonic() - started
        record = getattr(call, "record_polls", None)
        if record is not None:
            record(polls_for(elapsed, call.connector_params.get("polling_policy") or {}))

        resource = f"{name}/executions/{execution}"
        if code != 0:
            raise WorkflowError(
                {
                    "tags": ["OperationError"],
                    "message": "Cloud Run long-running operation failed.",
                    "operation": {
                        "name": resource,
                        "done": True,
                        "error": {
                            "code": 3,
                            "message": f"Task {execution}-task0 failed: "
                            "the container exited with a non-zero exit code.",
                        },
                        "metadata": {
                            "name": resource,
                            "failedCount": 1,
                            "succeededCount": 0,
                            "conditions": [
                                {"type": "Completed", "state": "CONDITION_FAILED", "reason": "NonZeroExitCode"}
                            ],
                        },
                    },
                }
            )
        return {"name": resource, "job": job, "taskCount": 1, "succeededCount": 1, "failedCount": 0,
                "conditions": [{"type": "Completed", "state": "CONDITION_SUCCEEDED"}]}

    def _new_execution(self, job: str) -> str:
        """A job execution id as Cloud Run makes them (`JOB-xxxxx`), never one used before here or
        by an earlier run of the stack whose log is in the log dir: logs are never overwritten."""
        alphabet = string.ascii_lowercase + string.digits
        while True:
            execution = f"{job}-{''.join(secrets.choice(alphabet) for _ in range(5))}"
            with self._lock:
                if execution in self._used_ids:
                    continue
                if self.log_dir is not None and self.mode == "process":
                    self.log_dir.mkdir(parents=True, exist_ok=True)
                    try:   # claimed by creating its log; a name taken before a restart is skipped
                        (self.log_dir / f"{execution}.log").open("xb").close()
                    except FileExistsError:
                        continue
                self._used_ids.add(execution)
                return execution

    def _run_process(self, call, step: str, args: list[str], timeout: float, execution: str, job: str,
                     settings: dict[str, Any]) -> int:
        env = dict(self.env, CLOUD_RUN_JOB=job, CLOUD_RUN_EXECUTION=execution,
                   CLOUD_RUN_TASK_INDEX="0", CLOUD_RUN_TASK_ATTEMPT="0", CLOUD_RUN_TASK_COUNT="1")
        for name, value in settings.items():
            env[f"PHOENIX_{name.upper()}"] = str(value)
        if settings:
            env["AWS_MAX_ATTEMPTS"] = "1"      # an unreachable service fails at once, not after backoffs
        out = subprocess.DEVNULL
        if self.log_dir is not None:
            out = open(self.log_dir / f"{execution}.log", "ab")   # a job run twice logs both runs
        try:
            proc = subprocess.Popen([sys.executable, "-m", f"steps.{step}", *args], env=env, cwd=self.cwd,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                return proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
            try:
                call.check_cancelled()
            except BaseException:
                _stop(proc)
                raise
            if time.monotonic() > deadline:  # the task timeout: Cloud Run sends SIGTERM, then kills
                _stop(proc)
                return -1

    def _run_inprocess(self, step: str, args: list[str], settings: dict[str, Any]) -> int:
        from steps import run

        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--creation-id", required=True)
        parser.add_argument("--attempt", type=int, required=True)
        try:
            ns = parser.parse_args(args)
        except SystemExit:
            return 2
        return int(run(step, ns.creation_id, ns.attempt, self._services_for(settings)))

    def _services_for(self, settings: dict[str, Any]) -> Any:
        if not settings:
            return self.services
        if self._services_with is None:
            raise RuntimeError("this jobs runner cannot run in-process steps under other settings")
        key = tuple(sorted((k, str(v)) for k, v in settings.items()))
        with self._lock:
            services = self._overridden.get(key)
            if services is None:
                services = self._overridden[key] = self._services_with(settings)
        return services

    def close(self) -> None:
        """Close the in-process services made for changed settings."""
        with self._lock:
            made, self._overridden = list(self._overridden.values()), {}
        for services in made:
            services.close()


def _creation_of(args: list[str]) -> str | None:
    return args[args.index("--creation-id") + 1] if "--creation-id" in args[:-1] else None


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _duration_seconds(value: Any, *, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value)
    try:
        return float(text[:-1] if text.endswith("s") else text)
    except ValueError:
        raise WorkflowError.tagged(
            "ValueError", f"jobs.run: overrides.timeout must be a duration like '600s', got {value!r}"
        ) from None


def _http_error(code: int, message: str, status: str) -> WorkflowError:
    return WorkflowError(
        {
            "tags": ["HttpError"],
            "code": code,
            "message": f"HTTP server responded with error code {code}",
            "headers": {},
            "body": {"error": {"code": code, "message": message, "status": status}},
        }
    )
