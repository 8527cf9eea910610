"""The console's actions, each a call into the operator layer (creations.attempts and
creations.operator): the same rules and the same code as `phoenix ops`. This module only adapts
their results to pages and runs a bulk replay in the background so its progress can be watched."""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from creations import attempts
from creations.errors import CreationsError
from creations.model import Creation, Status, utcnow

from .reader import ConsoleReader, Filter

BULK_MAX = 1000


@dataclass
class BulkItem:
    creation_id: str
    outcome: str = "waiting"     # waiting | started | not replayed | failed to start
    detail: str = ""


@dataclass
class BulkJob:
    id: str
    filter: dict[str, str]
    actor: str
    reason: str
    started_at: datetime
    items: list[BulkItem]
    skipped: list[tuple[str, str]]       # (creation id, why not worth replaying)
    done: bool = False
    finished_at: datetime | None = None

    @property
    def progress(self) -> int:
        return sum(1 for i in self.items if i.outcome != "waiting")

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.items:
            out[item.outcome] = out.get(item.outcome, 0) + 1
        return out


@dataclass
class BulkPreview:
    worth: list[attempts.ReplayPreview]
    not_worth: list[attempts.ReplayPreview]
    charge: int
    scanned: int
    capped: bool


@dataclass
class CancelPreview:
    cancellable: bool
    execution: str | None
    state: str
    why: str


@dataclass
class Reconciled:
    rows: list[Any] = field(default_factory=list)
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


class Actions:
    """`trigger_factory()` builds the trigger the settings name (closed after each use)."""

    def __init__(self, reader: ConsoleReader, *, trigger_factory: Callable[[], Any],
                 reconciler_factory: Callable[[], Any] | None = None):
        self.reader = reader
        self.store = reader.store
        self.trigger_factory = trigger_factory
        self.reconciler_factory = reconciler_factory
        self._jobs: dict[str, BulkJob] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # --- replay ------------------------------------------------------------------------------

    def replay_preview(self, creation: Creation, *, check_storage: bool = False) -> attempts.ReplayPreview:
        storage = self.reader.storage if check_storage else None
        try:
            return attempts.replay_preview(creation, store=self.store, storage=storage)
        except Exception:  # noqa: BLE001 - storage unreachable: the recorded checkpoints still say much
            return attempts.replay_preview(creation, store=self.store)

    def replay(self, creation_id: str, *, actor: str, reason: str, force: bool,
               expected_attempt: int | None) -> str:
        trigger = self.trigger_factory()
        try:
            done = attempts.replay(self.store, trigger, creation_id, actor=actor, reason=reason, force=force,
                                   expected_attempt=expected_attempt)
        finally:
            _close(trigger)
        return f"replayed: attempt {done.creation.attempt} started" + (" (forced)" if done.forced else "")

    # --- bulk replay -------------------------------------------------------------------------

    def bulk_candidates(self, f: Filter, limit: int = BULK_MAX) -> tuple[list[Creation], int, bool]:
        """The failed creations the filter selects (a filter on another status selects none)."""
        if f.status and f.status != Status.FAILED.value:
            return [], 0, False
        failed = Filter(**{**f.__dict__, "status": Status.FAILED.value})
        found: list[Creation] = []
        token = None
        while len(found) < limit:
            listing = self.reader.search(failed, page_token=token, page_size=min(100, limit - len(found)))
            found += listing.items
            token = listing.next_token
            if token is None:
                break
        return found, len(found), token is not None

    def bulk_preview(self, f: Filter, limit: int = BULK_MAX) -> BulkPreview:
        found, scanned, capped = self.bulk_candidates(f, limit)
        previews = [attempts.replay_preview(c, store=self.store) for c in found]
        worth = [p for p in previews if p.worth]
        return BulkPreview(worth=worth, not_worth=[p for p in previews if not p.worth],
                           charge=sum(p.charge for p in worth), scanned=scanned, capped=capped)

    def start_bulk(self, f: Filter, *, actor: str, reason: str, limit: int = 100) -> BulkJob:
        preview = self.bulk_preview(f, min(max(limit, 1), BULK_MAX))
        job = BulkJob(id=str(next(self._ids)), filter=f.query(), actor=actor, reason=reason,
                      started_at=utcnow(), items=[BulkItem(p.creation_id) for p in preview.worth],
                      skipped=[(p.creation_id, p.reason) for p in preview.not_worth])
        expected = {p.creation_id: p.attempt for p in preview.worth}
        with self._lock:
            self._jobs[job.id] = job

        def run() -> None:
            trigger = self.trigger_factory()
            try:
                for item in job.items:
                    try:
                        done = attempts.replay(self.store, trigger, item.creation_id, actor=actor, reason=reason,
                                               expected_attempt=expected[item.creation_id])
                        item.outcome, item.detail = "started", f"attempt {done.creation.attempt}"
                    except attempts.AttemptNotStarted as exc:
                        item.outcome, item.detail = "failed to start", exc.message
                    except CreationsError as exc:
                        item.outcome, item.detail = "not replayed", exc.message
                    except Exception as exc:  # noqa: BLE001 - one bad creation does not stop the rest
                        item.outcome, item.detail = "failed to start", f"{type(exc).__name__}: {exc}"
            finally:
                _close(trigger)
                job.done, job.finished_at = True, utcnow()

        threading.Thread(target=run, name=f"bulk-replay-{job.id}", daemon=True).start()
        return job

    def job(self, job_id: str) -> BulkJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    # --- cancel ------------------------------------------------------------------------------

    def cancel_preview(self, creation: Creation) -> CancelPreview:
        if creation.status.terminal:
            return CancelPreview(False, None, creation.status.value,
                                 f"it is {creation.status.value}: nothing runs")
        name = creation.execution_ids[-1] if creation.execution_ids else None
        if name is None:
            return CancelPreview(False, None, "-", "no execution recorded for this attempt; reconcile settles it")
        try:
            state = str(self.reader.execution(name).get("state", ""))
        except Exception as exc:  # noqa: BLE001
            return CancelPreview(False, name, "unreadable", f"the execution could not be read: {exc}")
        if state not in ("QUEUED", "ACTIVE"):
            return CancelPreview(False, name, state, f"the execution is {state}; reconcile settles the creation")
        return CancelPreview(True, name, state, "the execution stops; reconcile then fails the creation and "
                                                "refunds the attempt")

    def cancel(self, creation_id: str, *, actor: str, reason: str) -> str:
        from creations import operator

        done = operator.cancel(self.store, self.reader.executions, creation_id, actor=actor, reason=reason)
        return getattr(done, "message", None) or "cancelled"

    # --- reconcile -----------------------------------------------------------------------

    def reconcile(self, *, older_than: int, dry_run: bool, actor: str, reason: str) -> Reconciled:
        if self.reconciler_factory is None:
            return Reconciled(error="reconcile is not available here")
        try:
            reconciler, close = self.reconciler_factory()
        except Exception as exc:  # noqa: BLE001
            return Reconciled(error=f"cannot reach the Executions API: {exc}")
        out = Reconciled()
        try:
            for r in reconciler.run(older_than=timedelta(seconds=max(older_than, 0)), limit=100, dry_run=dry_run):
                out.rows.append(r)
                out.counts[r.action.value] = out.counts.get(r.action.value, 0) + 1
        finally:
            close()
        return out


def _close(thing: Any) -> None:
    close = getattr(thing, "close", None)
    if close:
        close()
