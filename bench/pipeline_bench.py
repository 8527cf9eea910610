"""The whole local pipeline under load: POST /v1/creations → the workflow → every step job → draft.

    .venv/bin/python bench/pipeline_bench.py [--inprocess 200] [--process 20] [--start-runs 5]
                                             [--other-job-seconds 5]

Runs the dev stack (devstack.stack.LocalStack) with instant generation and the real clock, once
with in-process step jobs and once with step jobs as subprocesses, and prints:

- creations per second, first POST to last draft (after one warm-up creation);
- orchestration overhead per creation, p50 / p99: the execution's duration minus the time spent
  inside its jobs.run calls (the step jobs themselves), i.e. what the engine, the Firestore
  connector reads, the retry predicate and the step history cost;
- Workflows billable steps of a happy-path creation, counted from its step entries (rule below),
  connector polls apart, estimated from the YAML's polling policy for production job durations;
  the cost at list prices;
- process mode: how long a step job takes to run its first line (python start + imports + settings),
  and the whole job, per step.

Billable-step rule: one step per step entry the execution records (every assign, switch, call of
a subworkflow, a connector or the standard library, try/retry/except, return and raise that ran,
failed or was retried), plus one per assignment beyond the first in an assign step (each
assignment is a billable step). Connector polls are not step entries; they are counted apart.
Pricing assumption: Google prices steps that call *.googleapis.com (connectors), their polling
attempts, subworkflow and standard-library calls, assignments and conditions as INTERNAL steps;
this workflow makes no external HTTP calls, so every step is internal ($0.01 / 1,000). The
"if external" line prices connector calls and polls at the external rate ($0.025 / 1,000) as an
upper bound. Prints figures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from api.auth import make_local_token  # noqa: E402
from devstack.costs.measure import assign_counts, billable_steps, polling_policy, workflow_source  # noqa: E402
from devstack.jobs import polls_for  # noqa: E402
from devstack.stack import ROOT, LocalStack, StackConfig, settings_env  # noqa: E402

INTERNAL_PER_STEP = 0.01 / 1000
EXTERNAL_PER_STEP = 0.025 / 1000
PER_USER = 5                       # the API's default limit of running creations per user
STEPS = ("debit_check", "mark_processing", "generate", "thumbnail", "upload", "finalize", "refund")

TARGET_RATE = 20.0                 # in-process creations per second
TARGET_START = 0.5                 # s, process-mode step start
TARGET_STEPS = 40                  # billable steps per happy-path creation, polls apart


# --- figures from step entries (the YAML is read by devstack/costs/measure.py) ---------------


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def jobs_run_calls(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e["routine"] == "run_step" and e["stepType"] == "STEP_CONNECTOR_CALL"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


# --- one mode ---------------------------------------------------------------------------------


class Users:
    """Enough users that nobody hits the per-user limit of running creations."""

    def __init__(self, stack: LocalStack, count: int):
        self.clients = []
        for _ in range(count):
            uid = f"bench-{uuid.uuid4().hex[:10]}"
            stack.store.grant(uid, 1000, f"grant:{uid}")
            token = make_local_token(uid, stack.settings.local_auth_secret)
            self.clients.append(httpx.Client(base_url=stack.urls["api"], timeout=60.0,
                                             headers={"Authorization": f"Bearer {token}"}))

    def close(self) -> None:
        for client in self.clients:
            client.close()


def post(client: httpx.Client, prompt: str) -> tuple[str, float]:
    started = time.perf_counter()
    response = client.post("/v1/creations", json={"type": "image", "prompt": prompt})
    elapsed = time.perf_counter() - started
    if response.status_code != 202:
        raise SystemExit(f"POST /v1/creations answered {response.status_code}: {response.text}")
    return response.json()["id"], elapsed


def run_mode(mode: str, count: int, start_runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"pipeline-bench-{mode}-") as tmp:
        stack = LocalStack(StackConfig(data_dir=Path(tmp), port=0, jobs_mode=mode, instant_generation=True))
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            stack.start()
            users = Users(stack, (count + PER_USER - 1) // PER_USER + 1)
            try:
                figures = _measure(stack, users, mode, count)
                if mode == "process":
                    figures["starts"] = step_starts(stack, figures["a_draft"], start_runs)
            finally:
                users.close()
                stack.stop()
        return figures


def _measure(stack: LocalStack, users: Users, mode: str, count: int) -> dict:
    engine = stack.engine

    def execution_of(creation_id: str) -> str:
        return stack.store.get_creation(creation_id).execution_ids[-1]

    # Warm-up: first imports, first connections, first subprocess of each step.
    warm, _ = post(users.clients[-1], "warm-up")
    engine.wait(execution_of(warm), timeout=120)

    # S3 requests through the stack's own client: the API's and, in-process, every step's.
    s3_calls = [0]
    lock = threading.Lock()

    def count_s3(**_):
        with lock:
            s3_calls[0] += 1

    stack.storage.client.meta.events.register("before-call.s3", count_s3)

    jobs = [(users.clients[i // PER_USER], f"bench {mode} {i}") for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=32) as pool:
        submitted = list(pool.map(lambda job: post(*job), jobs))
    posted = time.perf_counter()
    names = [execution_of(cid) for cid, _ in submitted]
    executions = [engine.wait(name, timeout=600) for name in names]
    ended = time.perf_counter()

    assigns = assign_counts(workflow_source())
    overheads, durations, billable, local_billable, job_seconds = [], [], [], [], []
    drafts = 0
    for execution in executions:
        if execution["state"] != "SUCCEEDED":
            continue
        drafts += 1
        entries = engine.step_entries(execution["name"])
        duration = ts(execution["endTime"]) - ts(execution["startTime"])
        inside = sum(ts(e["updateTime"]) - ts(e["createTime"]) for e in jobs_run_calls(entries))
        durations.append(duration)
        job_seconds.append(inside)
        overheads.append(duration - inside)
        billable.append(billable_steps(entries, assigns))
        stats = execution.get("localStats") or {}
        if stats:
            local_billable.append(stats["billableSteps"] - stats["connectorPolls"])
    sample = engine.step_entries(executions[0]["name"])
    by_type: dict[str, int] = {}
    for entry in sample:
        by_type[entry["stepType"]] = by_type.get(entry["stepType"], 0) + 1
    return {
        "mode": mode, "count": count, "drafts": drafts,
        "rate": count / (ended - started), "wall": ended - started, "post_wall": posted - started,
        "post_p50": percentile([s for _, s in submitted], 50), "post_p99": percentile([s for _, s in submitted], 99),
        "duration_p50": percentile(durations, 50), "jobs_p50": percentile(job_seconds, 50),
        "overhead_p50": percentile(overheads, 50), "overhead_p99": percentile(overheads, 99),
        "billable": statistics.mode(billable) if billable else None,
        "billable_engine": statistics.mode(local_billable) if local_billable else None,
        "entries": len(sample), "by_type": by_type,
        "a_draft": submitted[0][0],
        "s3_per_creation": s3_calls[0] / count if mode == "inprocess" else None,
    }


def step_starts(stack: LocalStack, creation_id: str, runs: int) -> dict[str, tuple[float, float]]:
    """Per step: median seconds from spawning `python -m steps.<step>` (as the jobs runner does) to
    its first log line, and to its exit. On a draft every step is a quick no-op, so the job time
    is mostly process start, imports, settings and the first store read."""
    env = {**os.environ, **settings_env(stack.settings), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    out = {}
    for step in STEPS:
        first, whole = [], []
        for _ in range(runs):
            started = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", f"steps.{step}", "--creation-id", creation_id,
                                     "--attempt", "1"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            proc.stdout.readline()
            first.append(time.perf_counter() - started)
            proc.stdout.read()
            proc.wait()
            whole.append(time.perf_counter() - started)
        out[step] = (statistics.median(first), statistics.median(whole))
    bare = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - started)
    out["(python -c pass)"] = (statistics.median(bare), statistics.median(bare))
    return out


# --- printing ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def print_mode(f: dict) -> None:
    print(f"\n[{f['mode']}] {f['count']} image creations, POST → draft ({f['drafts']} drafts)")
    print(f"  throughput            {f['rate']:7.1f} creations/s   ({f['wall']:.2f} s wall; all POSTs done "
          f"after {f['post_wall']:.2f} s)")
    print(f"  POST /v1/creations    p50 {f['post_p50'] * 1000:6.1f} ms   p99 {f['post_p99'] * 1000:6.1f} ms")
    print(f"  execution duration    p50 {f['duration_p50'] * 1000:6.1f} ms   of which inside jobs.run "
          f"p50 {f['jobs_p50'] * 1000:6.1f} ms")
    print(f"  orchestration overhead p50 {f['overhead_p50'] * 1000:6.1f} ms   p99 {f['overhead_p99'] * 1000:6.1f} ms"
          "   (execution duration − time inside the step jobs)")
    if f["s3_per_creation"] is not None:
        print(f"  S3 requests (moto)    {f['s3_per_creation']:.1f} per creation, steps and API together")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inprocess", type=int, default=200, help="creations in the in-process run (default 200)")
    p.add_argument("--process", type=int, default=20, help="creations in the process-mode run (default 20)")
    p.add_argument("--start-runs", type=int, default=5, help="runs per step for the start latency (default 5)")
    p.add_argument("--other-job-seconds", type=float, default=5.0,
                   help="assumed production duration of each job but generate, for the poll estimate (default 5)")
    args = p.parse_args(argv)

    results = []
    for mode, count in (("inprocess", args.inprocess), ("process", args.process)):
        if count > 0:
            results.append(run_mode(mode, count, args.start_runs))

    print("pipeline bench: LocalStack, instant generation, real clock, image creations")
    for f in results:
        print_mode(f)

    inproc = next((f for f in results if f["mode"] == "inprocess"), None)
    proc = next((f for f in results if f["mode"] == "process"), None)
    if proc is not None:
        print("\n[process] step job start (median of "
              f"{args.start_runs}): spawn → first log line / → exit, on a draft (no-op run)")
        for step, (first, whole) in proc["starts"].items():
            print(f"  {step:<18} first line {first * 1000:6.0f} ms   whole job {whole * 1000:6.0f} ms")

    source = workflow_source()
    policy = polling_policy(source)
    sample = inproc or proc
    if sample is not None:
        steps = sample["billable"]
        print("\nWorkflows billable steps per happy-path image creation (polls apart)")
        print("  rule: one per step entry (assign, switch, try/retry/except, subworkflow, connector and std-lib "
              "calls, return, raise), + one per assignment beyond the first of an assign step; all internal")
        print(f"  counted from step entries: {steps}   (the engine's own count: {sample['billable_engine']}; "
              f"{sample['entries']} step entries + extra assignments)")
        print(
            "  by step type: "
            + ", ".join(f"{k.removeprefix('STEP_')} {v}" for k, v in sorted(sample["by_type"].items()))
        )
        other_jobs = 5
        other_polls = other_jobs * polls_for(args.other_job_seconds, policy)
        connector_calls = sum(v for k, v in sample["by_type"].items() if k == "STEP_CONNECTOR_CALL")
        print(f"  polling policy (creation.yaml): {json.dumps(policy)}; other jobs assumed "
              f"{args.other_job_seconds:g} s each ({polls_for(args.other_job_seconds, policy)} polls each)")
        for label, seconds in (("image, 10 s generate job", 10.0), ("video, 90 s generate job", 90.0)):
            polls = polls_for(seconds, policy) + other_polls
            total = steps + polls
            internal = total * INTERNAL_PER_STEP
            external = (steps - connector_calls) * INTERNAL_PER_STEP + (connector_calls + polls) * EXTERNAL_PER_STEP
            print(f"  {label:<26} generate polls {polls_for(seconds, policy):2d}, all polls {polls:2d}, "
                  f"steps + polls {total:3d} → ${internal * 1000:.3f} per 1,000 creations "
                  f"(if connector calls and polls were external: ${external * 1000:.3f})")

    print("\ntargets")
    if inproc is not None:
        print(f"  in-process throughput ≥ {TARGET_RATE:g} creations/s: {inproc['rate']:.1f}  "
              f"{verdict(inproc['rate'] >= TARGET_RATE)}")
    if proc is not None:
        worst = max(first for step, (first, _) in proc["starts"].items() if step in STEPS)
        print(f"  process-mode step start ≤ {TARGET_START:g} s: slowest step's first line {worst:.3f} s  "
              f"{verdict(worst <= TARGET_START)}")
    if sample is not None:
        print(f"  ≤ {TARGET_STEPS} billable steps per happy-path creation (polls apart): {sample['billable']}  "
              f"{verdict(sample['billable'] <= TARGET_STEPS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
