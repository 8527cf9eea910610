"""The operator layer: what `phoenix ops` and the operator console do, as plain functions.

Data in (filters, ids, who asks and why), dataclasses out; nothing here prints. Both front ends
render the same results, so a fix lands in both:

- find creations by filter (ids, status, type, user, error code, creation time, execution), paged,
  newest first; the filter is applied before the limit;
- trace one creation: its executions (recorded, or found by their creation-id label) and their
  step entries, from the Executions REST API (the local engine serves the same API);
- replay one creation, or many by filter, with a preview first (creations/attempts.py holds the
  rules: never charge again for a failure the user was told is final, unless forced with a reason);
- reconcile (preview, then apply: creations/reconcile.py), audit the ledger, cancel an execution.

Where the store, the trigger or the Executions API come from is the caller's business: `Operator`
takes them built, or factories to build them when first needed.
"""
from __future__ import annotations

import dataclasses
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .attempts import (
    AttemptNotStarted,
    NotWorthReplaying,
    ReasonRequired,
    ReplayPreview,
    replay,
    replay_preview,
)
from .errors import CreationsError, NotFound
from .model import Creation, CreationType, LedgerEntry, Status, utcnow
from .replay import NotReplayable
from .store.base import AuditFinding, Store
from .store.paging import MAX_SEARCH_PAGE_SIZE, encode_page_token

# Every error code a creation can carry (recorded by a step, the refund, the trigger or a replay).
KNOWN_ERROR_CODES = frozenset({
    "CHECKSUM_MISMATCH", "CONFIGURATION", "CONTENT_POLICY", "ILLEGAL_TRANSITION", "INSUFFICIENT_TOKENS",
    "INTERNAL", "INVALID_ARGUMENT", "INVALID_REQUEST", "MEDIA_ERROR", "MEDIA_NOT_FOUND", "MEDIA_TIMEOUT",
    "MEDIA_TOOL_MISSING", "NOT_FOUND", "OUT_OF_ORDER", "PROVIDER_AUTH", "PROVIDER_BAD_RESPONSE",
    "PROVIDER_UNAVAILABLE", "STAGED_MEDIA_MISSING", "STALE_ATTEMPT", "STORAGE_ERROR", "STORAGE_REJECTED",
    "STORE_UNAVAILABLE", "TERMINATED", "TRIGGER_FAILED", "UNKNOWN",
})
MAX_SCAN = 100_000          # creations a single find may read before it stops and hands back a token
RUNNING = ("QUEUED", "ACTIVE")


class BadRequest(CreationsError):
    """An operator's request that cannot be carried out as given (unknown code, bad range...)."""

    code = "BAD_REQUEST"


class StoreMissing(CreationsError):
    """The store the settings point at does not exist: nothing to operate on."""

    code = "STORE_MISSING"


def check_store_exists(settings) -> None:
    """Refuse an SQLite store that does not exist (or is not one), instead of creating an empty
    file and reporting on nothing. Firestore databases are not checked here: a missing one
    answers NOT_FOUND on first use."""
    if settings.store != "sqlite":
        return
    path = Path(settings.sqlite_path)
    if not path.is_file():
        raise StoreMissing(f"no store at {path}: point at a stack's data dir with --data-dir DIR "
                           "(or --sqlite-path FILE, PHOENIX_SQLITE_PATH)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'creations'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StoreMissing(f"{path} is not a readable SQLite store: {exc}") from None
    if found is None:
        raise StoreMissing(f"{path} is not a phoenix store (it has no creations table)")


# --- finding creations -----------------------------------------------------------------------


@dataclass(frozen=True)
class CreationFilter:
    """What to look for; every field narrows (AND). Empty means any."""

    ids: tuple[str, ...] = ()
    statuses: tuple[Status, ...] = ()
    types: tuple[CreationType, ...] = ()
    uid: str | None = None
    codes: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_before: datetime | None = None
    execution: str | None = None        # an execution id, or a full execution name

    def __post_init__(self) -> None:
        object.__setattr__(self, "statuses", tuple(Status(s) for s in self.statuses))
        object.__setattr__(self, "types", tuple(CreationType(t) for t in self.types))
        unknown = sorted(set(self.codes) - KNOWN_ERROR_CODES)
        if unknown:
            raise BadRequest(f"unknown error code{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"known codes: {', '.join(sorted(KNOWN_ERROR_CODES))}")
        if self.created_from and self.created_before and self.created_from >= self.created_before:
            raise BadRequest("the time range is empty: its start is not before its end")

    def matches(self, c: Creation) -> bool:
        if self.ids and c.id not in self.ids:
            return False
        if self.statuses and c.status not in self.statuses:
            return False
        if self.types and c.type not in self.types:
            return False
        if self.uid is not None and c.uid != self.uid:
            return False
        if self.codes and (c.error is None or c.error.code not in self.codes):
            return False
        if self.created_from and c.created_at < self.created_from:
            return False
        if self.created_before and c.created_at >= self.created_before:
            return False
        if self.execution and not any(n == self.execution or n.rsplit("/", 1)[-1] == self.execution
                                      for n in c.execution_ids):
            return False
        return True


@dataclass(frozen=True)
class CreationPage:
    items: list[Creation]
    next_page_token: str | None     # pass back to get the next page; None: no more
    scanned: int                    # creations read to fill this page


@dataclass(frozen=True)
class StatusCounts:
    counts: dict[str, int]
    scanned: int
    complete: bool                  # False when the scan stopped at MAX_SCAN


# --- trace ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionTrace:
    name: str
    execution: dict[str, Any] | None     # the Executions API's own JSON (FULL view)
    entries: list[dict[str, Any]]        # its step entries, in order
    recorded: bool                       # named on the creation (else found by its labels)
    unreadable: str | None = None        # why it could not be read

    @property
    def state(self) -> str:
        return (self.execution or {}).get("state", "UNREADABLE" if self.unreadable else "?")


@dataclass(frozen=True)
class Trace:
    creation: Creation
    executions: list[ExecutionTrace]
    ledger: list[LedgerEntry]            # this creation's entries, oldest first


# --- replay --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayResult:
    creation_id: str
    outcome: str            # "started", "not started" (trigger failed), "refused"
    message: str
    attempt: int | None = None
    execution: str | None = None
    forced: bool = False
    code: str | None = None  # the refusal's error code (NOT_FOUND, NOT_REPLAYABLE, NOT_WORTH_REPLAYING, ...)

    @property
    def started(self) -> bool:
        return self.outcome == "started"


@dataclass(frozen=True)
class BulkPreview:
    """What a bulk replay by filter would do: the creations it replays and those it leaves, why."""

    to_replay: list[ReplayPreview]
    not_worth: list[ReplayPreview]
    scanned: int
    complete: bool                 # False: more creations match beyond the limit or the scan

    @property
    def charge(self) -> int:
        return sum(p.charge for p in self.to_replay)

    def not_worth_by_code(self) -> dict[str, int]:
        return dict(Counter(p.error_code or "-" for p in self.not_worth))


# --- reconcile, audit, cancel --------------------------------------------------------------------


@dataclass(frozen=True)
class ReconcileReport:
    results: list[Any]             # creations.reconcile.Reconciled, oldest first
    dry_run: bool
    older_than: timedelta

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.action.value for r in self.results))

    @property
    def unsettled(self) -> int:
        from .reconcile import Action

        return sum(1 for r in self.results if r.action in (Action.UNSETTLED, Action.WOULD_COMPENSATE))


@dataclass(frozen=True)
class AuditReport:
    findings: list[AuditFinding]

    @property
    def balanced(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class CancelResult:
    creation_id: str
    execution: str
    state_before: str
    state_after: str
    settled: Any | None            # the reconcile of the creation right after (Reconciled) when asked
    message: str


class Operator:
    """The operator's actions over one store and one Executions API.

    `trigger_factory()` and `reader_factory()` build the trigger and the Executions API client
    when first needed (production clients need credentials; a read-only command never asks for
    them). `services_factory()` builds the StepServices the reconciler's refund step runs with.
    `workflow` is the workflow path (projects/P/locations/L/workflows/W)."""

    def __init__(self, store: Store, *, workflow: str, trigger_factory: Callable[[], Any] | None = None,
                 reader_factory: Callable[[], Any] | None = None,
                 services_factory: Callable[[], Any] | None = None, storage: Any | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.workflow = workflow
        self.storage = storage
        self.clock = clock
        self._trigger_factory = trigger_factory
        self._reader_factory = reader_factory
        self._services_factory = services_factory
        self._trigger = None
        self._reader = None
        self._services = None

    @classmethod
    def from_settings(cls, settings, store: Store, *, storage=None, job_log=None) -> Operator:
        """An operator wired as the settings say (the trigger and the Executions API they name)."""
        from .triggers import executions_reader_from_settings, trigger_from_settings, workflow_path

        def services():
            from .joblog import JobLog
            from .pipeline import StepServices

            return StepServices(settings, store=store, storage=storage,
                                log=JobLog(job_log) if job_log is not None else None)

        return cls(store, workflow=workflow_path(settings.gcp_project, settings.gcp_region, settings.workflow_name),
                   trigger_factory=lambda: trigger_from_settings(settings),
                   reader_factory=lambda: executions_reader_from_settings(settings),
                   services_factory=services, storage=storage)

    # --- clients, built once ------------------------------------------------------------------

    @property
    def trigger(self):
        if self._trigger is None:
            if self._trigger_factory is None:
                raise BadRequest("no trigger configured: this operator cannot start executions")
            self._trigger = self._trigger_factory()
        return self._trigger

    @property
    def reader(self):
        if self._reader is None:
            if self._reader_factory is None:
                raise BadRequest("no Executions API configured: this operator cannot read executions")
            self._reader = self._reader_factory()
        return self._reader

    def close(self) -> None:
        for client in (self._trigger, self._reader, self._services):
            if client is not None:
                client.close()
        self._trigger = self._reader = self._services = None

    # --- find -----------------------------------------------------------------------------

    def get(self, creation_id: str) -> Creation:
        creation = self.store.get_creation(creation_id) if creation_id else None
        if creation is None:
            raise NotFound(f"no creation {creation_id}")
        return creation

    def get_all(self, creation_ids: Iterable[str]) -> list[Creation]:
        """Every one of the ids, or NotFound naming all the unknown ones (nothing is half done)."""
        ids = list(dict.fromkeys(creation_ids))
        found = {cid: self.store.get_creation(cid) for cid in ids}
        missing = [cid for cid, c in found.items() if c is None]
        if missing:
            raise NotFound(f"no creation {', '.join(missing)}")
        return [found[cid] for cid in ids]

    def find(self, flt: CreationFilter = CreationFilter(), *, limit: int = 50,
             page_token: str | None = None) -> CreationPage:
        """Creations matching the filter, newest first: at most `limit` MATCHES (the filter is
        applied first). The page token continues after the last creation returned."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise BadRequest(f"limit must be a whole number from 1 to 10000, got {limit!r}")
        if flt.ids:
            items = [c for c in self.get_all(flt.ids) if flt.matches(c)]
            items.sort(key=lambda c: (c.created_at, c.id), reverse=True)
            return CreationPage(items[:limit], None, len(flt.ids))
        items: list[Creation] = []
        scanned = 0
        token = page_token
        for creation, next_token in self._scan(flt, token, first_batch=limit + 1):
            scanned += 1
            if flt.matches(creation):
                items.append(creation)
                if len(items) == limit:
                    more = next_token is not None  # None: it was the store's very last creation
                    return CreationPage(items, encode_page_token(creation.created_at, creation.id) if more else None,
                                        scanned)
            if scanned >= MAX_SCAN:
                return CreationPage(items, encode_page_token(creation.created_at, creation.id), scanned)
        return CreationPage(items, None, scanned)

    def iter_matches(self, flt: CreationFilter) -> Iterator[Creation]:
        """Every creation matching the filter, newest first (for bulk actions and counts)."""
        if flt.ids:
            yield from (c for c in self.get_all(flt.ids) if flt.matches(c))
            return
        for creation, _ in self._scan(flt, None):
            if flt.matches(creation):
                yield creation

    def count_by_status(self, flt: CreationFilter = CreationFilter()) -> StatusCounts:
        counts: Counter[str] = Counter()
        scanned = 0
        for creation, _ in self._scan(flt, None):
            scanned += 1
            if flt.matches(creation):
                counts[creation.status.value] += 1
            if scanned >= MAX_SCAN:
                return StatusCounts(dict(counts), scanned, False)
        return StatusCounts(dict(counts), scanned, True)

    def _scan(self, flt: CreationFilter, page_token: str | None,
              first_batch: int = MAX_SEARCH_PAGE_SIZE) -> Iterator[tuple[Creation, str | None]]:
        """The store's creations narrowed by what the store can query (status, user, time),
        newest first, page by page; yields (creation, the store's next page token or None).
        Pages start at `first_batch` and grow, so a short page of a broad filter reads little."""
        token = page_token
        batch = max(1, min(first_batch, MAX_SEARCH_PAGE_SIZE))
        while True:
            page, token = self.store.search_creations(
                statuses=list(flt.statuses) or None, uid=flt.uid, created_from=flt.created_from,
                created_before=flt.created_before, limit=batch, page_token=token)
            batch = min(batch * 4, MAX_SEARCH_PAGE_SIZE)
            for i, creation in enumerate(page):
                yield creation, (token if i == len(page) - 1 else "more")
            if not token:
                return

    # --- trace ----------------------------------------------------------------------------

    def trace(self, creation_id: str, *, find_unrecorded: bool = True) -> Trace:
        """The creation, each execution it ran (the recorded ones, then any found by the
        creation-id label that were never recorded) with its step entries, and its ledger entries."""
        creation = self.get(creation_id)
        names = list(creation.execution_ids)
        recorded = set(names)
        if find_unrecorded or names:
            reader = self.reader  # built here, outside the guards: missing credentials are an error
        if find_unrecorded:
            try:
                listed = reader.get_json(f"{self.workflow}/executions", {
                    "filter": f'labels.creation-id="{creation.id}"', "pageSize": "100"}).get("executions") or []
            except Exception:  # noqa: BLE001 - the recorded ones are still worth showing
                listed = []
            for e in reversed(listed):  # the API lists newest first
                if e.get("name") and e["name"] not in recorded:
                    names.append(e["name"])
        executions = [self._execution_trace(name, name in recorded) for name in names]
        ledger = [e for e in self.store.ledger(creation.uid) if e.creation_id == creation.id]
        return Trace(creation, executions, ledger)

    def _execution_trace(self, name: str, recorded: bool) -> ExecutionTrace:
        reader = self.reader
        try:
            execution = reader.get_json(name)
            entries: list[dict] = []
            token = None
            while True:
                params = {"pageSize": "1000", **({"pageToken": token} if token else {})}
                page = reader.get_json(f"{name}/stepEntries", params)
                entries += page.get("stepEntries", [])
                token = page.get("nextPageToken")
                if not token:
                    break
        except Exception as exc:  # noqa: BLE001 - show what can be shown
            return ExecutionTrace(name, None, [], recorded, _describe(exc))
        return ExecutionTrace(name, execution, entries, recorded)

    # --- replay ---------------------------------------------------------------------------

    def preview(self, creation_id: str) -> ReplayPreview:
        return replay_preview(self.get(creation_id), store=self.store, storage=self.storage)

    def replay(self, creation_id: str, *, actor: str, reason: str = "", force: bool = False,
               expected_attempt: int | None = None) -> ReplayResult:
        """Replay one creation through the domain's replay; refusals come back as results."""
        try:
            done = replay(self.store, self.trigger, creation_id, actor=actor, reason=reason, force=force,
                          expected_attempt=expected_attempt)
        except AttemptNotStarted as exc:
            attempt = exc.creation.attempt if exc.creation else None
            return ReplayResult(creation_id, "not started",
                                f"attempt {attempt} could not be started: {exc.cause}; nothing was charged",
                                attempt=attempt, code=exc.code)
        except (NotFound, NotReplayable, NotWorthReplaying, ReasonRequired) as exc:
            return ReplayResult(creation_id, "refused", exc.message, code=exc.code)
        return ReplayResult(creation_id, "started", f"attempt {done.creation.attempt} started",
                            attempt=done.creation.attempt, execution=done.execution, forced=done.forced)

    def bulk_preview(self, flt: CreationFilter, *, limit: int = 100) -> BulkPreview:
        """The failed creations matching the filter that a bulk replay would start (at most
        `limit`, counted after the filter), and the matching ones it leaves because they failed
        for good (listed with why, not counted in the limit)."""
        flt = _failed_only(flt)
        to_replay, not_worth, scanned = [], [], 0
        complete = True
        for creation in self.iter_matches(flt):
            scanned += 1
            preview = replay_preview(creation, store=None, storage=self.storage)
            if preview.worth:
                if len(to_replay) == limit:
                    complete = False
                    break
                to_replay.append(dataclasses.replace(preview, balance=self.store.balance(creation.uid)))
            else:
                not_worth.append(preview)
        return BulkPreview(to_replay, not_worth, scanned, complete)

    def replay_bulk(self, flt: CreationFilter, *, actor: str, reason: str = "", limit: int = 100,
                    progress: Callable[[ReplayResult], None] | None = None) -> list[ReplayResult]:
        """Replay what `bulk_preview` lists as worth it, each at the attempt the preview saw (a
        creation replayed meanwhile by someone else is refused, not replayed twice). Never forced."""
        results = []
        for p in self.bulk_preview(flt, limit=limit).to_replay:
            result = self.replay(p.creation_id, actor=actor, reason=reason, expected_attempt=p.attempt)
            results.append(result)
            if progress is not None:
                progress(result)
        return results

    # --- reconcile ------------------------------------------------------------------------

    def reconcile(self, *, older_than: timedelta = timedelta(seconds=900), limit: int = 100,
                  dry_run: bool = True) -> ReconcileReport:
        """Creations pending or processing unchanged for `older_than` whose execution ended: with
        dry_run what would be compensated, else compensated (failed and refunded at most once)."""
        if older_than < timedelta(0):
            raise BadRequest("older_than must be 0 or more")
        if not 1 <= limit <= 10_000:
            raise BadRequest("limit must be between 1 and 10000")
        reconciler = self._reconciler()
        return ReconcileReport(list(reconciler.run(older_than=older_than, limit=limit, dry_run=dry_run)),
                               dry_run, older_than)

    def _reconciler(self):
        from .reconcile import Reconciler

        if self._services is None:
            if self._services_factory is None:
                raise BadRequest("no step services configured: this operator cannot reconcile")
            self._services = self._services_factory()
        return Reconciler(self.store, self.reader, self._services, workflow=self.workflow,
                          log=self._services.log.bind(command="reconcile"), clock=self.clock)

    # --- audit ----------------------------------------------------------------------------

    def audit(self) -> AuditReport:
        return AuditReport(self.store.audit())

    # --- cancel ---------------------------------------------------------------------------

    def cancel(self, creation_id: str, *, actor: str, reason: str, settle: bool = True) -> CancelResult:
        """Cancel the running execution of the creation's current attempt, record who and why on
        the creation, and (settle) compensate it at once: a cancelled execution runs no refund."""
        if not reason or not reason.strip():
            raise ReasonRequired("cancelling an execution needs a reason (it is recorded on the creation)")
        creation = self.get(creation_id)
        reconciler = self._reconciler()
        seen = reconciler.execution_of(creation)
        if seen.state not in RUNNING or not seen.name:
            raise BadRequest(f"creation {creation_id} has no running execution to cancel ({seen.describe()})")
        after = self.reader.post_json(f"{seen.name}:cancel")
        action = {"at": self.clock().isoformat(), "actor": actor.strip(), "action": "cancel",
                  "reason": reason.strip(), "attempt": creation.attempt, "execution": seen.name}

        def record(c: Creation) -> Creation:
            c.actions = [*c.actions, action]
            return c

        self.store.update_creation(creation_id, record)
        settled = None
        message = f"execution {seen.name.rsplit('/', 1)[-1]} {after.get('state', 'CANCELLED')}"
        if settle:
            current = self.get(creation_id)
            if not current.status.terminal and current.attempt == creation.attempt:
                settled = reconciler.reconcile(current, dry_run=False)
                message += f"; {settled.message}"
        return CancelResult(creation_id, seen.name, seen.state, str(after.get("state", "")), settled, message)


def _failed_only(flt: CreationFilter) -> CreationFilter:
    if flt.statuses and set(flt.statuses) != {Status.FAILED}:
        raise BadRequest("only failed creations can be replayed: filter on status failed")
    return CreationFilter(ids=flt.ids, statuses=(Status.FAILED,), types=flt.types, uid=flt.uid, codes=flt.codes,
                          created_from=flt.created_from, created_before=flt.created_before,
                          execution=flt.execution)


def _describe(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


__all__ = [
    "AuditReport", "BadRequest", "BulkPreview", "CancelResult", "CreationFilter", "CreationPage",
    "ExecutionTrace", "KNOWN_ERROR_CODES", "Operator", "ReconcileReport", "ReplayPreview", "ReplayResult",
    "StatusCounts", "StoreMissing", "Trace", "check_store_exists",
]
