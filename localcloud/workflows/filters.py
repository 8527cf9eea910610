"""`list_executions` filters and ordering: the AIP-160 subset the Executions API accepts.

    state="ACTIVE" AND labels.creation="c1" AND createTime>"2026-01-01T00:00:00Z"

Terms are `field op value` joined by AND; fields state, executionId, workflowRevisionId,
createTime, startTime, endTime, duration and labels.KEY; ops = != > >= < <= (and `:` for has).
They apply to executions in their API shape (`executions.py`).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from localcloud.workflows.errors import InvalidArgument
from localcloud.workflows.executions import parse_duration, parse_rfc3339

_TERM_RE = re.compile(
    r'\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:"[^"]*"|[A-Za-z0-9_\-]+))?)\s*'
    r'(?P<op>!=|>=|<=|=|>|<|:)\s*'
    r'(?P<value>"(?:[^"\\]|\\.)*"|[^\s"]+)\s*')
_TIME_FIELDS = {"createTime", "startTime", "endTime"}
ORDER_FIELDS = ("createTime", "startTime", "endTime", "duration", "state")


def parse_filter(text: str) -> list[Callable[[dict], bool]]:
    """Compile a filter into predicates over execution dicts (all must hold)."""
    terms = []
    parts = re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE)
    for part in parts:
        m = _TERM_RE.fullmatch(part)
        if not m:
            raise InvalidArgument(f"filter term {part!r}: expected `field op \"value\"` "
                                  f"(terms joined by AND)")
        field, op, raw = m.group("field"), m.group("op"), m.group("value")
        value = json.loads(raw) if raw.startswith('"') else raw
        terms.append(_term(field, op, value))
    return terms


def order(items: list[dict], order_by: str) -> list[dict]:
    """Sort by `orderBy` ("createTime desc, state"); missing values last."""
    fields = [f.strip() for f in order_by.split(",") if f.strip()]
    for spec in reversed(fields):
        parts = spec.split()
        key = parts[0]
        descending = len(parts) > 1 and parts[1].lower() == "desc"
        if key not in ORDER_FIELDS:
            raise InvalidArgument(f"orderBy field {key!r} is not supported")
        items = sorted(items, key=lambda i, k=key: (i.get(k) is None, i.get(k) or ""),
                       reverse=descending)
    return items


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None:
        return op == "!="
    if op in ("=", ":"):
        return left == right
    if op == "!=":
        return left != right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "<":
        return left < right
    return left <= right


def _term(field: str, op: str, value: str) -> Callable[[dict], bool]:
    if field.startswith("labels.") or field.startswith("label."):
        key = field.split(".", 1)[1].strip('"')
        return lambda item: _compare(op, item.get("labels", {}).get(key), value)
    if field == "state":
        return lambda item: _compare(op, item.get("state"), value)
    if field in ("executionId", "name"):
        return lambda item: _compare(op, item["name"].rsplit("/", 1)[1], value)
    if field == "workflowRevisionId":
        return lambda item: _compare(op, item.get("workflowRevisionId"), value)
    if field in _TIME_FIELDS:
        bound = parse_rfc3339(value)
        return lambda item: _compare(
            op, parse_rfc3339(item[field]) if item.get(field) else None, bound)
    if field == "duration":
        bound = parse_duration(value)
        return lambda item: _compare(
            op, parse_duration(item["duration"]) if item.get("duration") else None, bound)
    raise InvalidArgument(f"filter field {field!r} is not supported (state, executionId, "
                          f"workflowRevisionId, createTime, startTime, endTime, duration, "
                          f"labels.KEY)")
