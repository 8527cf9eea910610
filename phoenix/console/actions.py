"""The console's actions: each one call into the operator layer (creations.operator, over
creations.attempts), the same code and rules as `phoenix ops`. This module adapts the results to
pages and runs a bulk replay in the background so its progress can be watched."""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from creations import attempts
from creations.model import Creation, utcnow
from creations.operator import BulkPreview, CancelResult, Operator, ReconcileReport, ReplayResult

from .reader import ConsoleReader, Filter

BULK_MAX = 1000


@dataclass
class BulkJob:
    id: str
    filter: dict[str, str]
    actor: str
    reason: str
    started_at: datetime
    planned: list[str]                    # creation ids the preview found worth replaying
    skipped: list[tuple[str, str]]        # (creation id, why not worth replaying)
    results: list[ReplayResult] = field(default_factory=list)
    done: bool = False
    error: str | None = None
    finished_at: datetime | None = None

    @property
    def progress(self) -> int:
        return len(self.results)

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.outcome] = out.get(r.outcome, 0) + 1
        return out


@dataclass
class CancelPreview:
    cancellable: bool
    execution: str | None
    state: str
    why: str


class Actions:
    def __init__(self, reader: ConsoleReader):
        self.reader = reader
        self.operator: Operator = reader.operator
        self._jobs: dict[str, BulkJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # --- replay ------------------------------------------------------------------------------

    def replay_preview(self, creation: Creation, *, check_storage: bool = False) -> attempts.ReplayPreview:
        """Without check_storage the recorded checkpoints are judged as recorded (cheap: the
        creation page); with it, as the steps will judge them (the preview before a replay)."""
        if check_storage:
            try:
                return self.operator.preview(creation.id)
            except Exception:  # noqa: BLE001 - storage unreachable: the recorded checkpoints still say much
                pass
        return attempts.replay_preview(creation, store=self.operator.store)

    def replay(self, creation_id: str, *, actor: str, reason: str, force: bool,
               expected_attempt: int | None) -> ReplayResult:
        return self.operator.replay(creation_id, actor=actor, reason=reason, force=force,
                                    expected_attempt=expected_attempt)

    # --- bulk replay -------------------------------------------------------------------------

    def bulk_preview(self, f: Filter, limit: int = 100) -> BulkPreview:
        return self.operator.bulk_preview(self.reader.operator_filter(f), limit=min(max(limit, 1), BULK_MAX))

    def start_bulk(self, f: Filter, *, actor: str, reason: str, limit: int = 100) -> BulkJob:
        """Starts the bulk replay in a thread; its page shows the progress, then the summary."""
        flt = self.reader.operator_filter(f)
        limit = min(max(limit, 1), BULK_MAX)
        preview = self.operator.bulk_preview(flt, limit=limit)
        job = BulkJob(id=str(next(self._ids)), filter=f.query(), actor=actor, reason=reason, started_at=utcnow(),
                      planned=[p.creation_id for p in preview.to_replay],
                      skipped=[(p.creation_id, p.reason) for p in preview.not_worth])
        with self._lock:
            self._jobs[job.id] = job

        def run() -> None:
            try:
                self.operator.replay_bulk(flt, actor=actor, reason=reason, limit=limit, progress=job.results.append)
            except Exception as exc:  # noqa: BLE001 - shown on the job's page
                job.error = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
            finally:
                job.done, job.finished_at = True, utcnow()

        threading.Thread(target=run, name=f"bulk-replay-{job.id}", daemon=True).start()
        return job

    def job(self, job_id: str) -> BulkJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    # --- cancel ------------------------------------------------------------------------------

    def cancel_preview(self, creation: Creation) -> CancelPreview:
        if creation.status.terminal:
            return CancelPreview(False, None, creation.status.value, f"it is {creation.status.value}: nothing runs")
        name = creation.execution_ids[-1] if creation.execution_ids else None
        if name is None:
            return CancelPreview(False, None, "-", "no execution recorded for this attempt yet; reconcile settles "
                                                   "it if none ever runs")
        try:
            state = str(self.reader.execution(name).get("state", ""))
        except Exception as exc:  # noqa: BLE001
            return CancelPreview(False, name, "unreadable", f"the execution could not be read: {exc}")
        if state not in ("QUEUED", "ACTIVE"):
            return CancelPreview(False, name, state, f"the execution is {state}: reconcile settles the creation")
        return CancelPreview(True, name, state,
                             f"the execution stops, then attempt {creation.attempt} is failed and refunded at once")

    def cancel(self, creation_id: str, *, actor: str, reason: str) -> CancelResult:
        return self.operator.cancel(creation_id, actor=actor, reason=reason)

    # --- reconcile ---------------------------------------------------------------------------

    def reconcile(self, *, older_than: int, dry_run: bool, actor: str, reason: str) -> ReconcileReport:
        report = self.operator.reconcile(older_than=timedelta(seconds=max(older_than, 0)), dry_run=dry_run)
        if not dry_run:
            self._record(report, actor, reason)
        return report

    def _record(self, report: ReconcileReport, actor: str, reason: str) -> None:
        """Who settled each compensated creation and why, on the creation (as replays are)."""
        from creations.reconcile import Action

        for r in report.results:
            if r.action is not Action.COMPENSATED:
                continue
            entry: dict[str, Any] = {"at": utcnow().isoformat(), "actor": actor, "action": "reconcile",
                                     "reason": reason, "attempt": r.creation.attempt,
                                     "execution": r.execution.name, "result": r.message}

            def record(c: Creation, entry=entry) -> Creation:
                c.actions = [*c.actions, entry]
                return c

            try:
                self.operator.store.update_creation(r.creation.id, record)
            except Exception:  # noqa: BLE001 - deleted meanwhile: the ledger still has the refund
                pass
