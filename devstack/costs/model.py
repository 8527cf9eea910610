"""The cost, latency and capacity model: plain arithmetic over what the executions did.

Inputs are counted (Workflows steps, job runs, Firestore operations, executions: `measure.py`),
read from the deployment (job sizes and secrets: `plan.py`), priced from `prices.toml`, or
parameters of the question (volumes, job start time, generation time, failure rate, quotas).
Nothing here runs anything, so every figure can be checked by hand.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).with_name("prices.toml")
DAYS_PER_MONTH = 30


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    with open(path, "rb") as f:
        return tomllib.load(f)


# --- polling ----------------------------------------------------------------------------------


def poll_times(elapsed: float, policy: dict[str, float]) -> list[float]:
    """When Cloud Workflows polls an operation that takes `elapsed` seconds: once right away, then
    after each delay of the policy (delay × multiplier, capped), until a poll finds it done."""
    delay, t, times = policy["initial_delay"], 0.0, [0.0]
    while t < elapsed:
        t += delay
        times.append(t)
        delay = min(delay * policy["multiplier"], policy["max_delay"])
    return times


def polls(elapsed: float, policy: dict[str, float]) -> int:
    return len(poll_times(elapsed, policy))


def poll_lag(elapsed: float, policy: dict[str, float]) -> float:
    """Seconds between the operation ending and the poll that notices it."""
    return poll_times(elapsed, policy)[-1] - elapsed


# --- one creation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSize:
    cpu: float
    memory_gib: float
    task_timeout_seconds: float
    secrets: int                   # secrets mounted into the job (each read once per execution)


@dataclass(frozen=True)
class JobRun:
    job: str
    seconds: float                 # the container's run: python start, imports, settings, the step's work


@dataclass(frozen=True)
class Profile:
    """What one creation of a kind uses."""
    name: str
    type: str
    workflow_steps: int            # billable Workflows steps, polls apart
    jobs: tuple[JobRun, ...]
    firestore_reads: int
    firestore_writes: int
    executions: int                # Workflows executions started (one Cloud Tasks task each)


@dataclass(frozen=True)
class Assumptions:
    job_start_seconds: float = 10.0        # from the jobs.run request to the container running (not billed)
    image_seconds: float = 10.0            # Imagen generation
    video_seconds: float = 90.0            # Veo generation
    failure_rate: float = 0.0              # share of creations that fail (refunded) like a content-policy refusal
    job_runs_per_minute: int = 60          # the region's quota on job run requests (default undocumented)
    max_running_jobs: int = 1000           # running job executions per project and region
    max_executions: int = 10000            # concurrent Workflows executions per region
    tasks_operations_per_execution: int = 2  # the task's creation and its delivery

    def check(self) -> None:
        problems = []
        for name in ("job_start_seconds", "image_seconds", "video_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                problems.append(f"--{name.replace('_', '-')} must be a number of seconds >= 0, not {value!r}")
        if not (0.0 <= self.failure_rate <= 1.0):
            problems.append(f"--failure-rate must be between 0 and 1 (a share), not {self.failure_rate!r}")
        for name in ("job_runs_per_minute", "max_running_jobs", "max_executions"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)!r}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class Usage:
    """Billable units, added up over creations."""
    steps: float = 0.0
    vcpu_seconds: float = 0.0
    gib_seconds: float = 0.0
    firestore_reads: float = 0.0
    firestore_writes: float = 0.0
    tasks_operations: float = 0.0
    secret_accesses: float = 0.0
    job_runs: float = 0.0

    def add(self, other: Usage, times: float = 1.0) -> Usage:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + times * getattr(other, name))
        return self


def generation_seconds(profile: Profile, a: Assumptions) -> float:
    return a.video_seconds if profile.type == "video" else a.image_seconds


def is_generate(job: str) -> bool:
    return "generate-" in job


def job_seconds(run: JobRun, profile: Profile, a: Assumptions) -> float:
    """The job's billed runtime: its measured run, plus the generation time for every run of a
    generation job (a refusal or a 503 is assumed to take the provider as long)."""
    extra = generation_seconds(profile, a) if is_generate(run.job) else 0.0
    return run.seconds + extra


def billed(seconds: float, increment: float) -> float:
    return math.ceil(round(seconds / increment, 9)) * increment


def usage_of(profile: Profile, sizes: dict[str, JobSize], policy: dict[str, float], a: Assumptions,
             prices: dict[str, Any]) -> Usage:
    increment = prices["cloud_run_jobs"]["billing_increment_seconds"]
    u = Usage(steps=profile.workflow_steps, firestore_reads=profile.firestore_reads,
              firestore_writes=profile.firestore_writes,
              tasks_operations=profile.executions * a.tasks_operations_per_execution)
    for run in profile.jobs:
        size = sizes.get(run.job)
        if size is None:
            raise ValueError(f"the job {run.job} that the workflow runs is not deployed by deploy.sh")
        seconds = job_seconds(run, profile, a)
        u.steps += polls(a.job_start_seconds + seconds, policy)
        u.vcpu_seconds += size.cpu * billed(seconds, increment)
        u.gib_seconds += size.memory_gib * billed(seconds, increment)
        u.secret_accesses += size.secrets
        u.job_runs += 1
    return u


def latency(profile: Profile, policy: dict[str, float], a: Assumptions) -> dict[str, float]:
    """The critical path of one creation: every job's start, its work, and the poll lag."""
    starts = work = lag = 0.0
    for run in profile.jobs:
        seconds = job_seconds(run, profile, a)
        starts += a.job_start_seconds
        work += seconds
        lag += poll_lag(a.job_start_seconds + seconds, policy)
    return {"job_starts": starts, "work": work, "poll_lag": lag, "total": starts + work + lag}


# --- a month ---------------------------------------------------------------------------------


@dataclass
class Bill:
    lines: dict[str, float] = field(default_factory=dict)   # service -> USD for the month

    @property
    def total(self) -> float:
        return sum(self.lines.values())


def _over(amount: float, free: float) -> float:
    return max(0.0, amount - free)


def price_month(u: Usage, prices: dict[str, Any], *, fixed_secret_versions: int = 2,
                scheduler_jobs: int = 1) -> Bill:
    """The month's bill for the usage, each free tier applied once to the month's total."""
    w, r, f = prices["workflows"], prices["cloud_run_jobs"], prices["firestore"]
    t, s, c = prices["cloud_tasks"], prices["secret_manager"], prices["cloud_scheduler"]
    bill = Bill()
    bill.lines["Workflows steps"] = _over(u.steps, w["free_internal_per_month"]) / 1000 * w["internal_per_1000"]
    bill.lines["Cloud Run jobs"] = (_over(u.vcpu_seconds, r["free_vcpu_seconds_per_month"]) * r["vcpu_second"]
                                    + _over(u.gib_seconds, r["free_gib_seconds_per_month"]) * r["gib_second"])
    bill.lines["Firestore"] = (
        _over(u.firestore_reads, f["free_reads_per_day"] * DAYS_PER_MONTH) / 1e5 * f["read_per_100k"]
        + _over(u.firestore_writes, f["free_writes_per_day"] * DAYS_PER_MONTH) / 1e5 * f["write_per_100k"])
    bill.lines["Cloud Tasks"] = (
        _over(u.tasks_operations, t["free_operations_per_month"]) / 1e6 * t["per_million_operations"]
    )
    bill.lines["Secret Manager"] = (
        _over(u.secret_accesses, s["free_accesses_per_month"]) / 1e4 * s["per_10k_accesses"]
        + _over(fixed_secret_versions, s["free_active_versions"]) * s["per_active_version_month"]
    )
    bill.lines["Cloud Scheduler"] = _over(scheduler_jobs, c["free_jobs"]) * c["per_job_month"]
    return bill


def month_usage(volumes: dict[str, int], happy: dict[str, Usage], failed: Usage, failure_rate: float) -> Usage:
    """The month's usage: each type's creations, a share `failure_rate` of them failing like `failed`."""
    total = Usage()
    for kind, count in volumes.items():
        total.add(happy[kind], count * (1 - failure_rate))
        total.add(failed, count * failure_rate)
    return total


def replaced_month(volumes: dict[str, int], prices: dict[str, Any]) -> dict[str, float]:
    """The replaced system: its fixed bill, and its own projection of this system scaled to the volumes."""
    old = prices["replaced"]
    fixed = old["redis_per_month"] + old["vpc_connector_per_month"]
    per_image = old["projection_per_month"] / (old["projection_images"] * old["worker_seconds_image"]
                                                + old["projection_videos"] * old["worker_seconds_video"])
    projection = per_image * (volumes.get("image", 0) * old["worker_seconds_image"]
                              + volumes.get("video", 0) * old["worker_seconds_video"])
    return {"fixed": fixed, "projection": projection}


def break_even(cost_at: Any, fixed: float, *, mix: dict[str, float], limit: int = 10**9) -> int | None:
    """The smallest monthly number of creations (in the given image/video mix) at which
    `cost_at(volumes)` reaches the replaced system's fixed bill; None if not below `limit`."""
    def at(n: int) -> float:
        return cost_at({k: round(n * share) for k, share in mix.items()})

    if at(limit) < fixed:
        return None
    lo, hi = 0, 1
    while at(hi) < fixed:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if at(mid) < fixed else (lo, mid)
    return hi


def capacity(profiles: dict[str, Profile], volumes: dict[str, int], lat: dict[str, float], a: Assumptions,
             ) -> dict[str, float]:
    """Creations per minute each limit allows at the month's mix; the smallest binds first."""
    total = sum(volumes.values()) or 1
    share = {k: v / total for k, v in volumes.items()}
    jobs_per_creation = sum(share[k] * len(profiles[k].jobs) for k in share)
    minutes = sum(share[k] * lat[k] / 60 for k in share)
    return {
        "job run requests per minute (quota)": a.job_runs_per_minute / jobs_per_creation,
        "running job executions per region": a.max_running_jobs / minutes,
        "concurrent Workflows executions": a.max_executions / minutes,
    }
