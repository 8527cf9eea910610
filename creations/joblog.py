"""Structured job logs: one JSON object per line on stdout, in the shape Cloud Logging parses.

Cloud Run forwards a container's stdout to Cloud Logging, which lifts `severity`, `message`,
`time` and `logging.googleapis.com/labels` out of each JSON line; every other key stays in
`jsonPayload`, so operators can filter on `jsonPayload.creationId` or on the labels.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

# Fields that also become Cloud Logging labels (string values only), for quick filtering.
LABEL_FIELDS = ("creationId", "step", "attempt")
LABELS_KEY = "logging.googleapis.com/labels"

SEVERITIES = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")


class JobLog:
    """Writes one JSON line per event; `bind` returns a child that adds fields to every line.

    Children share the parent's stream and lock, so steps running in threads of one process
    (the local in-process mode) never interleave half lines.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        fields: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        _lock: threading.Lock | None = None,
    ):
        self._stream = stream
        self._fields = dict(fields or {})
        self._clock = clock
        self._lock = _lock or threading.Lock()

    @property
    def fields(self) -> dict[str, Any]:
        return dict(self._fields)

    def bind(self, **fields: Any) -> JobLog:
        return JobLog(self._stream, fields={**self._fields, **fields}, clock=self._clock, _lock=self._lock)

    def debug(self, message: str, **fields: Any) -> None:
        self.emit("DEBUG", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.emit("INFO", message, **fields)

    def notice(self, message: str, **fields: Any) -> None:
        self.emit("NOTICE", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.emit("WARNING", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.emit("ERROR", message, **fields)

    def emit(self, severity: str, message: str, **fields: Any) -> None:
        if severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}; use one of {', '.join(SEVERITIES)}")
        line = self.render(severity, message, **fields)
        stream = self._stream if self._stream is not None else sys.stdout
        with self._lock:
            stream.write(line + "\n")
            stream.flush()

    def render(self, severity: str, message: str, **fields: Any) -> str:
        record: dict[str, Any] = {
            "severity": severity,
            "message": message,
            "time": datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds"),
        }
        record.update(self._fields)
        record.update(fields)
        labels = {k: str(record[k]) for k in LABEL_FIELDS if record.get(k) is not None}
        if labels:
            record[LABELS_KEY] = labels
        return json.dumps(record, default=str, ensure_ascii=False, separators=(",", ":"))
