"""The step jobs' log lines of one creation.

Locally the jobs write JSON lines (creations.joblog) to files under the data dir: one file per
job execution in `jobs/` (subprocess mode) or one shared `jobs.log`. In production they go to
Cloud Logging, which the console links to, filtered on the creation and, when a step entry names
it, the job execution.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

MAX_LINES = 500


@dataclass(frozen=True)
class LogLine:
    time: str
    severity: str
    step: str
    attempt: int | None
    message: str
    source: str      # the file (its job execution, in subprocess mode)


class LocalJobLogs:
    """Reads the job logs under `data_dir` (jobs/*.log and jobs.log)."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)

    def files(self) -> list[Path]:
        found = []
        jobs = self.data_dir / "jobs"
        if jobs.is_dir():
            found += sorted(jobs.glob("*.log"))
        shared = self.data_dir / "jobs.log"
        if shared.is_file():
            found.append(shared)
        return found

    def lines(self, creation_id: str, *, since: float | None = None) -> list[LogLine]:
        """The lines about `creation_id`, oldest first (at most MAX_LINES, the newest kept).
        `since` (a POSIX time) skips files last written before it: the creation cannot be there."""
        needle = creation_id.encode()
        out: list[LogLine] = []
        for path in self.files():
            try:
                if since is not None and path.stat().st_mtime < since:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if needle not in data:
                continue
            for raw in data.splitlines():
                if needle not in raw:
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(record, dict) or record.get("creationId") != creation_id:
                    continue
                attempt = record.get("attempt")
                out.append(LogLine(time=str(record.get("time", "")), severity=str(record.get("severity", "")),
                                   step=str(record.get("step", "")),
                                   attempt=attempt if isinstance(attempt, int) else None,
                                   message=str(record.get("message", "")), source=path.name))
        out.sort(key=lambda line: line.time)
        return out[-MAX_LINES:]


def cloud_logging_url(project: str, creation_id: str, job_execution: str | None = None) -> str:
    """A Logs Explorer link: the Cloud Run job logs of this creation (or of one job execution)."""
    clauses = ['resource.type="cloud_run_job"']
    if job_execution:
        clauses.append(f'labels."run.googleapis.com/execution_name"="{job_execution.rsplit("/", 1)[-1]}"')
    else:
        clauses.append(f'jsonPayload.creationId="{creation_id}"')
    query = "\n".join(clauses)
    return f"https://console.cloud.google.com/logs/query;query={quote(query, safe='')}?project={quote(project)}"
