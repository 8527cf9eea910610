"""The timeline of one execution, built from its step entries (Executions REST API shape).

A row per run of a pipeline step (a `main` routine call of `run_step`, or a connector call such
as `read_creation`), per retry wait (its delay and number), with the connector polls the run made
and the Cloud Run job execution it started when the entries say so. Pure: entries in, rows out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Main-routine entries that become rows; the rest (assign, switch, log) are bookkeeping.
ROW_TYPES = {"STEP_SUBWORKFLOW_CALL": "run", "STEP_CONNECTOR_CALL": "call", "STEP_RETRY": "retry"}
MIN_BAR_PERCENT = 0.6


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class Row:
    step: str
    kind: str                  # run | call | retry
    state: str                 # SUCCEEDED | FAILED | IN_PROGRESS | CANCELLED
    start: float               # seconds after the execution started
    duration: float            # seconds
    number: int = 1            # which try of this step (retry waits: the retry number)
    delay: float | None = None # retry waits: the declared delay
    polls: int = 0             # connector polls made by this run (billable steps)
    job_execution: str | None = None
    error: str | None = None
    left: float = 0.0          # bar position and width, percent of the execution's span
    width: float = 0.0
    entry_ids: list[str] = field(default_factory=list)


@dataclass
class Timeline:
    start: datetime | None
    span: float                # seconds from the first entry to the last update
    rows: list[Row]
    polls: int                 # every connector poll of the execution
    retries: int

    def step_durations(self) -> dict[str, list[float]]:
        """Seconds of each run of each step (retry waits excluded)."""
        out: dict[str, list[float]] = {}
        for row in self.rows:
            if row.kind in ("run", "call"):
                out.setdefault(row.step, []).append(row.duration)
        return out


def build(entries: list[dict[str, Any]], execution: dict[str, Any] | None = None) -> Timeline:
    by_id = {str(e.get("entryId") or e.get("name", "").rsplit("/", 1)[-1]): e for e in entries}
    times = [t for e in entries for t in (parse_time(e.get("createTime")), parse_time(e.get("updateTime"))) if t]
    start = parse_time((execution or {}).get("startTime")) or (min(times) if times else None)
    end = max(times) if times else start
    if execution and execution.get("endTime"):
        end = max(end, parse_time(execution["endTime"])) if end else parse_time(execution["endTime"])
    span = max((end - start).total_seconds(), 0.0) if start and end else 0.0

    def owner(entry: dict) -> str | None:
        """The id of the main-routine row entry this entry belongs to (itself included)."""
        seen = 0
        current: dict | None = entry
        while current is not None and seen < 64:
            eid = str(current.get("entryId"))
            if current.get("routine") == "main" and current.get("stepType") in ROW_TYPES:
                return eid
            parent = (current.get("navigationInfo") or {}).get("parent")
            current = by_id.get(str(parent)) if parent is not None else None
            seen += 1
        return None

    rows: dict[str, Row] = {}
    tries: dict[str, int] = {}
    for entry in entries:
        kind = ROW_TYPES.get(entry.get("stepType", ""))
        if entry.get("routine") != "main" or kind is None:
            continue
        created, updated = parse_time(entry.get("createTime")), parse_time(entry.get("updateTime"))
        offset = (created - start).total_seconds() if created and start else 0.0
        duration = (updated - created).total_seconds() if created and updated else 0.0
        step = entry.get("step", "?")
        if kind == "retry":
            number = int((entry.get("stepEntryMetadata") or {}).get("progressNumber") or 0) or 1
            delay = (entry.get("details") or {}).get("delaySeconds")
        else:
            tries[step] = tries.get(step, 0) + 1
            number, delay = tries[step], None
        rows[str(entry.get("entryId"))] = Row(
            step=step, kind=kind, state=str(entry.get("state", "")).removeprefix("STATE_"), start=offset,
            duration=duration, number=number, delay=float(delay) if delay is not None else None,
            error=_error_summary(entry), entry_ids=[str(entry.get("entryId"))])
    total_polls = 0
    for entry in entries:
        polls = int(entry.get("connectorPolls") or 0)
        total_polls += polls
        row = rows.get(owner(entry) or "")
        if row is None:
            continue
        row.polls += polls
        job = _job_execution(entry)
        if job and row.job_execution is None:
            row.job_execution = job
    ordered = sorted(rows.values(), key=lambda r: (r.start, int(r.entry_ids[0]) if r.entry_ids[0].isdigit() else 0))
    for row in ordered:
        if span > 0:
            row.left = min(100.0, 100.0 * row.start / span)
            row.width = max(MIN_BAR_PERCENT, min(100.0 - row.left, 100.0 * row.duration / span))
        else:
            row.left, row.width = 0.0, MIN_BAR_PERCENT
    return Timeline(start=start, span=span, rows=ordered, polls=total_polls,
                    retries=sum(1 for r in ordered if r.kind == "retry"))


def _payload(entry: dict) -> dict | None:
    raw = (entry.get("exception") or {}).get("payload")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {"message": str(raw)}
    return value if isinstance(value, dict) else {"message": str(value)}


def _error_summary(entry: dict) -> str | None:
    payload = _payload(entry)
    if payload is None:
        return None
    code = payload.get("code")
    message = payload.get("message") or ""
    return f"{code}: {message}" if isinstance(code, str) else str(message)[:300]


def _job_execution(entry: dict) -> str | None:
    """The Cloud Run job execution a failed jobs.run call names (the connector's OperationError)."""
    payload = _payload(entry)
    while isinstance(payload, dict):
        operation = payload.get("operation")
        if isinstance(operation, dict) and isinstance(operation.get("name"), str):
            return operation["name"]
        payload = payload.get("cause")
    return None


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]
