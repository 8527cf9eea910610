"""Fault switches of the local stack: make chosen step jobs misbehave the way production can.

A switch names a job (as deployed, without the prefix: `upload`, `generate` for both generation
jobs, `*` for every job), a kind, optionally how many runs it affects per creation (`times`;
none: every run, a permanent fault) and a marker that the creation's prompt must hold:

    fail             the job exits non-zero before doing anything (a container that died at start)
    crash_after      the job does its work, then exits non-zero (killed after its side effect)
    twice            the job runs twice, as at-least-once delivery may; the second run answers
    storage_down     the job finds object storage unreachable
    store_down       the job finds the store unreachable
    generation_down  the job finds the generation service unreachable

An operator flips them with `phoenix dev --fault JOB:KIND[:TIMES][@MARKER]` (repeatable); a test
with `stack.faults.on(Fault(...))`. The workflow sees only what Cloud Run would show it: a job
execution that succeeded or failed.
"""
from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("fail", "crash_after", "twice", "storage_down", "store_down", "generation_down")
UNREACHABLE_KINDS = ("storage_down", "store_down", "generation_down")
CRASH_EXIT = 137        # what a container killed with SIGKILL exits with


class FaultSpecError(ValueError):
    """A fault switch that cannot be understood."""


@dataclass(eq=False)
class Fault:
    """One switch. `times` counts the matching runs of each creation it affects (None: all)."""

    kind: str
    job: str = "*"
    times: int | None = None
    marker: str | None = None
    creation_id: str | None = None
    _runs: Counter = field(default_factory=Counter, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultSpecError(f"unknown fault kind {self.kind!r}; the kinds are {', '.join(KINDS)}")
        if self.times is not None and self.times < 1:
            raise FaultSpecError(f"a fault's times must be 1 or more, not {self.times}")
        if not self.job:
            raise FaultSpecError("a fault names a job (e.g. upload, generate, or * for every job)")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """`JOB:KIND[:TIMES][@MARKER]`, e.g. `upload:storage_down`, `generate:fail:2@#chaos`."""
        text, _, marker = spec.partition("@")
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise FaultSpecError(f"fault {spec!r}: expected JOB:KIND[:TIMES][@MARKER]")
        times = None
        if len(parts) == 3:
            try:
                times = int(parts[2])
            except ValueError:
                raise FaultSpecError(f"fault {spec!r}: TIMES must be a whole number, not {parts[2]!r}") from None
        return cls(kind=parts[1], job=parts[0], times=times, marker=marker or None)

    def covers(self, job: str) -> bool:
        return self.job in ("*", job) or job.startswith(self.job + "-")

    def take(self, creation_id: str | None) -> bool:
        """Count one run of the creation's job; True while the fault still applies to it."""
        self._runs[creation_id] += 1
        return self.times is None or self._runs[creation_id] <= self.times


class Hold:
    """A switch that holds the matching jobs until released (the execution stays ACTIVE); a
    cancelled execution stops waiting at once, as Cloud Workflows stops polling."""

    def __init__(self, job: str, marker: str):
        self.job = job
        self.marker = marker
        self.creation_id = None
        self.reached = threading.Event()
        self._open = threading.Event()

    def covers(self, job: str) -> bool:
        return self.job in ("*", job) or job.startswith(self.job + "-")

    def take(self, creation_id: str | None) -> bool:
        return not self._open.is_set()

    def release(self) -> None:
        self._open.set()

    def wait(self, call: Any) -> None:
        self.reached.set()
        while not self._open.wait(0.02):
            call.check_cancelled()


class Faults:
    """The switches in force. `prompt_of(creation_id)` reads a creation's prompt (for markers)."""

    def __init__(self, prompt_of: Callable[[str], str | None], unreachable: dict[str, dict[str, Any]]):
        self._prompt_of = prompt_of
        self.unreachable = unreachable     # kind -> the settings that make the service unreachable
        self._rules: list[Fault | Hold] = []
        self._lock = threading.Lock()
        self.injected: Counter = Counter()   # kind -> runs affected

    def add(self, rule: Fault | Hold) -> Fault | Hold:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Fault | Hold) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @contextlib.contextmanager
    def on(self, rule: Fault | Hold) -> Iterator[Fault | Hold]:
        self.add(rule)
        try:
            yield rule
        finally:
            self.remove(rule)
            if isinstance(rule, Hold):
                rule.release()

    def match(self, job: str, creation_id: str | None) -> Fault | Hold | None:
        """The first switch that applies to this run of `job` for the creation, counted."""
        with self._lock:
            rules = list(self._rules)
        prompt = None
        for rule in rules:
            if not rule.covers(job):
                continue
            if rule.creation_id is not None and rule.creation_id != creation_id:
                continue
            if rule.marker is not None:
                if creation_id is None:
                    continue
                if prompt is None:
                    prompt = self._prompt_of(creation_id) or ""
                if rule.marker not in prompt:
                    continue
            with self._lock:
                applies = rule.take(creation_id)
                if applies:
                    self.injected["hold" if isinstance(rule, Hold) else rule.kind] += 1
            if applies:
                return rule
        return None


def run_with(rule: Fault | Hold | None, call: Any, run: Callable[[dict[str, Any]], int],
             unreachable: dict[str, dict[str, Any]]) -> int:
    """Run one job under `rule`; `run(overrides)` runs it with settings overridden."""
    if rule is None:
        return run({})
    if isinstance(rule, Hold):
        rule.wait(call)
        return run({})
    if rule.kind == "fail":
        return 1
    if rule.kind == "crash_after":
        run({})
        return CRASH_EXIT
    if rule.kind == "twice":
        run({})
        return run({})
    return run(unreachable[rule.kind])


def unreachable_settings(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Settings under which each service is out of reach: a closed loopback port for the HTTP
    services, a store path below a regular file (it can be neither created nor opened)."""
    blocker = data_dir / "store-down"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.touch()
    return {
        "storage_down": {"s3_endpoint_url": f"http://127.0.0.1:{closed_port()}"},
        "generation_down": {"genai_base_url": f"http://127.0.0.1:{closed_port()}"},
        "store_down": {"sqlite_path": blocker / "phoenix.sqlite3"},
    }


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
