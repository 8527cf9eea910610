"""Executions, step entries and log lines in the shapes of the Executions API: JSON field names,
RFC 3339 times, `google.protobuf.Duration` text ("1.500s"), the BASIC and FULL views. An
execution is shaped from the engine's live record while it runs, from its stored row after.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from typing import Any

from localcloud.workflows.database import dumps
from localcloud.workflows.errors import InvalidArgument, WorkflowError

QUEUED, ACTIVE, SUCCEEDED, FAILED, CANCELLED = ("QUEUED", "ACTIVE", "SUCCEEDED", "FAILED",
                                                "CANCELLED")
CALL_LOG_LEVELS = ("CALL_LOG_LEVEL_UNSPECIFIED", "LOG_ALL_CALLS", "LOG_ERRORS_ONLY", "LOG_NONE")
BASIC_FIELDS = ("name", "state", "createTime", "startTime", "endTime", "duration",
                "workflowRevisionId", "labels", "callLogLevel", "status")


# --- time formats ------------------------------------------------------------------------------

def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    moment = _dt.datetime.fromtimestamp(ts, tz=_dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def parse_rfc3339(text: str) -> float:
    value = text.strip()
    if value.endswith("Z") or value.endswith("z"):
        value = value[:-1] + "+00:00"
    # Python parses at most 6 fractional digits
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        moment = _dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.timestamp()


def format_duration(seconds: float) -> str:
    """google.protobuf.Duration in JSON: "1.500s", "3s"."""
    seconds = max(0.0, seconds)
    whole = int(seconds)
    nanos = int(round((seconds - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    if nanos == 0:
        return f"{whole}s"
    if nanos % 1_000_000 == 0:
        return f"{whole}.{nanos // 1_000_000:03d}s"
    if nanos % 1000 == 0:
        return f"{whole}.{nanos // 1000:06d}s"
    return f"{whole}.{nanos:09d}s"


def parse_duration(text: str) -> float:
    if not text.endswith("s"):
        raise InvalidArgument(f"not a duration like '1.5s': {text!r}")
    try:
        return float(text[:-1])
    except ValueError:
        raise InvalidArgument(f"not a duration like '1.5s': {text!r}") from None


# --- executions --------------------------------------------------------------------------------

def execution_from_live(name: str, execution: Any, view: str) -> dict:
    """An execution this engine runs or queued (see engine.LiveExecution)."""
    deployment = execution.deployment
    item: dict[str, Any] = {
        "name": name,
        "state": execution.state,
        "createTime": rfc3339(execution.created),
        "workflowRevisionId": deployment.revision_id,
        "callLogLevel": execution.call_log_level,
        "labels": dict(execution.labels),
    }
    if execution.started is not None:
        item["startTime"] = rfc3339(execution.started)
    if execution.ended is not None:
        item["endTime"] = rfc3339(execution.ended)
        item["duration"] = format_duration(execution.ended - (execution.started
                                                              or execution.created))
    if execution.argument_text is not None:
        item["argument"] = execution.argument_text
    if execution.result is not None:
        item["result"] = execution.result
    if execution.error is not None:
        item["error"] = execution.error
    run = execution.run
    if execution.state == ACTIVE and run is not None:
        last = run.history.last
        if last is not None:
            item["status"] = {"currentSteps": [{"routine": last.routine, "step": last.step}]}
    if execution.stats is not None:
        item["localStats"] = execution.stats
    return basic_view(item) if view == "BASIC" else item


def execution_from_row(name: str, row: dict, view: str) -> dict:
    """An execution as stored (database.EXECUTION_COLUMNS)."""
    item: dict[str, Any] = {
        "name": name,
        "state": row["state"],
        "createTime": rfc3339(row["create_time"]),
        "workflowRevisionId": row["revision_id"],
        "callLogLevel": row["call_log_level"],
        "labels": json.loads(row["labels"]),
    }
    if row["start_time"] is not None:
        item["startTime"] = rfc3339(row["start_time"])
    if row["end_time"] is not None:
        item["endTime"] = rfc3339(row["end_time"])
        item["duration"] = format_duration(row["end_time"] - (row["start_time"]
                                                              or row["create_time"]))
    if row["argument"] is not None:
        item["argument"] = row["argument"]
    if row["result"] is not None:
        item["result"] = row["result"]
    if row["error"] is not None:
        item["error"] = json.loads(row["error"])
    if row["stats"]:
        item["localStats"] = json.loads(row["stats"])
    return basic_view(item) if view == "BASIC" else item


def basic_view(item: dict) -> dict:
    return {k: v for k, v in item.items() if k in BASIC_FIELDS}


def error_payload(error: WorkflowError) -> dict:
    """An execution's `error`: the raised value as JSON text, a context naming the steps the
    error went through (innermost first) and their stack trace."""
    value = error.value
    stack = list(getattr(error, "wf_stack", []) or [])
    if type(value) is dict:
        summary = str(value.get("message", ""))
        tags = value.get("tags")
        if type(tags) is list and tags:
            summary = f"{tags[0]}: {summary}" if summary else str(tags[0])
    else:
        summary = value if type(value) is str else dumps(value)
    context = summary
    for element in stack:
        context += (f"\nin step \"{element['step']}\", routine \"{element['routine']}\", "
                    f"line: {element['position']['line']}")
    return {"payload": dumps(value), "context": context,
            "stackTrace": {"elements": [{"step": e["step"], "routine": e["routine"],
                                         "position": {"line": str(e["position"]["line"])}}
                                        for e in stack]}}


def run_stats(run: Any, clock_speed: float = 1.0) -> dict:
    """`localStats` of an ended execution: steps run, billable steps, connector polls, and the
    speed of the local clock's waits when it was not the wall clock's."""
    stats = {"steps": run.steps_done, "billableSteps": run.steps_done + run.extra_billable,
             "connectorPolls": run.polls}
    if clock_speed != 1:
        stats["clockSpeed"] = clock_speed
    return stats


# --- step entries and logs ---------------------------------------------------------------------

def step_entry(execution_name: str, row: tuple) -> dict:
    """A step entry from its stored row (database.Database.step_entries)."""
    (entry_id, routine, step, step_type, state, created, updated, exception, parent,
     meta) = row
    item: dict[str, Any] = {
        "name": f"{execution_name}/stepEntries/{entry_id}",
        "createTime": rfc3339(created),
        "updateTime": rfc3339(updated),
        "routine": routine,
        "step": step,
        "stepType": step_type,
        "state": state,
        "entryId": str(entry_id),
    }
    if exception is not None:
        item["exception"] = {"payload": exception}
    extras = json.loads(meta) if meta else {}
    metadata = {k: extras.pop(k) for k in ("progressType", "progressNumber", "threadId")
                if k in extras}
    if "progressNumber" in metadata:
        metadata["progressNumber"] = str(metadata["progressNumber"])
    if metadata:
        item["stepEntryMetadata"] = metadata
    if parent is not None:
        item["navigationInfo"] = {"parent": str(parent)}
    if "connectorPolls" in extras:
        item["connectorPolls"] = extras.pop("connectorPolls")
    if extras:
        item["details"] = extras
    return item


def log_entry(line: tuple) -> dict:
    """A `sys.log` line (database.LogLine) as a Cloud Logging entry's time, severity, payload."""
    _, when, severity, text, payload = line
    out: dict[str, Any] = {"time": rfc3339(when), "severity": severity}
    if payload is not None:
        out["jsonPayload"] = json.loads(payload)
    else:
        out["textPayload"] = text
    return out
