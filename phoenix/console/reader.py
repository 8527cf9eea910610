"""What the console reads: creations from the store, executions and step entries from the
Executions REST API (the local engine's, or Google's with the operator's credentials), job logs,
media URLs. Read-only: every change goes through the operator layer (creations.operator)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from creations.model import Creation, CreationType, LedgerEntry, Status, utcnow
from creations.store.paging import encode_page_token

from . import timeline as tl
from .joblogs import LocalJobLogs, LogLine, cloud_logging_url

PAGE_SIZE = 50
SCAN_LIMIT = 20_000         # creations a filtered listing reads at most before it stops
STEP_ENTRIES_PAGE = 1000
OVERVIEW_EXECUTIONS = 100   # the newest executions whose step entries the overview times


@dataclass(frozen=True)
class Filter:
    """The Creations page's filters, as the query string gives them (all optional)."""

    status: str = ""
    type: str = ""
    uid: str = ""
    code: str = ""
    since: datetime | None = None
    until: datetime | None = None
    q: str = ""                  # a creation id or an execution id (or name)

    def query(self, **override: Any) -> dict[str, str]:
        values = {"status": self.status, "type": self.type, "uid": self.uid, "code": self.code,
                  "since": self.since.strftime("%Y-%m-%dT%H:%M") if self.since else "",
                  "until": self.until.strftime("%Y-%m-%dT%H:%M") if self.until else "", "q": self.q}
        values.update({k: str(v) for k, v in override.items()})
        return {k: v for k, v in values.items() if v}

    def matches(self, c: Creation) -> bool:
        """The filters the store's query does not apply itself."""
        if self.type and c.type.value != self.type:
            return False
        if self.code and (c.error.code if c.error else "") != self.code:
            return False
        return True

    @property
    def empty(self) -> bool:
        return not self.query()


@dataclass
class Listing:
    items: list[Creation]
    next_token: str | None
    counts: dict[str, int]       # per status, under the filter's other conditions
    counts_capped: bool          # True when the counts stopped at SCAN_LIMIT
    running: int                 # pending + processing among the counts


@dataclass
class AttemptView:
    attempt: int
    execution_name: str | None
    execution: dict[str, Any] | None
    entries: list[dict[str, Any]]
    timeline: tl.Timeline | None
    error: str | None            # why the execution could not be read
    logs: list[LogLine] = field(default_factory=list)
    logging_url: str | None = None       # production: Cloud Logging, the creation's job logs
    logging_url_job: str | None = None   # production: the logs of the job execution that failed

    @property
    def short_name(self) -> str:
        return self.execution_name.rsplit("/", 1)[-1] if self.execution_name else "-"


@dataclass
class CreationView:
    creation: Creation
    attempts: list[AttemptView]
    ledger: list[LedgerEntry]
    balance: int
    media_url: str | None
    thumbnail_url: str | None


class ConsoleReader:
    def __init__(self, settings, store, executions, *, job_logs: LocalJobLogs | None = None,
                 storage=None, clock=utcnow):
        self.settings = settings
        self.store = store
        self.executions = executions
        self.job_logs = job_logs
        self.storage = storage
        self.clock = clock

    # --- creations ------------------------------------------------------------------------

    def find_by_id(self, q: str) -> Creation | None:
        """A creation by its id, or by the id or full name of one of its executions."""
        q = q.strip()
        if not q:
            return None
        creation = self.store.get_creation(q) if "/" not in q else None
        if creation is not None:
            return creation
        name = q if "/executions/" in q else f"{self.workflow()}/executions/{q}"
        try:
            execution = self.executions.get_json(name)
        except Exception:  # noqa: BLE001 - not an execution we can read: no match
            return None
        cid = (execution.get("labels") or {}).get("creation-id")
        if not cid:
            try:
                cid = json.loads(execution.get("argument") or "{}").get("creationId")
            except (ValueError, AttributeError):
                cid = None
        return self.store.get_creation(cid) if isinstance(cid, str) and cid else None

    def workflow(self) -> str:
        s = self.settings
        return f"projects/{s.gcp_project}/locations/{s.gcp_region}/workflows/{s.workflow_name}"

    def search(self, f: Filter, *, page_token: str | None = None, page_size: int = PAGE_SIZE) -> Listing:
        if f.q:
            found = self.find_by_id(f.q)
            items = [found] if found is not None and self._in_window(found, f) and f.matches(found) \
                and (not f.status or found.status.value == f.status) else []
            counts = {s.value: sum(1 for c in items if c.status is s) for s in Status}
            return Listing(items, None, counts, False, counts["pending"] + counts["processing"])
        statuses = [Status(f.status)] if f.status else None
        items, token = self._scan(f, statuses, page_token, page_size)
        counts, capped = self.counts(f)
        return Listing(items, token, counts, capped, counts.get("pending", 0) + counts.get("processing", 0))

    def _in_window(self, c: Creation, f: Filter) -> bool:
        return ((not f.uid or c.uid == f.uid) and (f.since is None or c.created_at >= f.since)
                and (f.until is None or c.created_at < f.until))

    def _scan(self, f: Filter, statuses, page_token, page_size) -> tuple[list[Creation], str | None]:
        """Up to page_size creations matching the filter, newest first, and the token after the
        last one. Filters the store cannot apply (type, error code) are applied here, reading at
        most SCAN_LIMIT creations."""
        out: list[Creation] = []
        scanned = 0
        token = page_token
        batch = 500 if (f.type or f.code) else page_size
        while True:
            page, token = self.store.search_creations(statuses=statuses, uid=f.uid or None,
                                                      created_from=f.since, created_before=f.until,
                                                      limit=batch, page_token=token)
            for c in page:
                scanned += 1
                if f.matches(c):
                    out.append(c)
                    if len(out) == page_size:
                        more = token is not None or c is not page[-1]
                        return out, encode_page_token(c.created_at, c.id) if more else None
            if token is None or scanned >= SCAN_LIMIT:
                return out, token

    def counts(self, f: Filter) -> tuple[dict[str, int], bool]:
        """Creations per status under the filter (its status excepted)."""
        count = getattr(self.store, "count_creations", None)
        if count is not None and not f.type and not f.code:
            found = count(uid=f.uid or None, created_from=f.since, created_before=f.until)
            return {s.value: int(found.get(s.value, 0)) for s in Status}, False
        counts = {s.value: 0 for s in Status}
        token, scanned = None, 0
        while True:
            page, token = self.store.search_creations(uid=f.uid or None, created_from=f.since,
                                                      created_before=f.until, limit=1000, page_token=token)
            for c in page:
                if f.matches(c):
                    counts[c.status.value] += 1
            scanned += len(page)
            if token is None:
                return counts, False
            if scanned >= SCAN_LIMIT:
                return counts, True

    # --- one creation -----------------------------------------------------------------------

    def execution(self, name: str) -> dict[str, Any]:
        return self.executions.get_json(name)

    def step_entries(self, name: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        token = None
        for _ in range(100):  # 100,000 entries: the documented step limit of one execution
            params = {"pageSize": str(STEP_ENTRIES_PAGE)}
            if token:
                params["pageToken"] = token
            page = self.executions.get_json(f"{name}/stepEntries", params)
            entries += page.get("stepEntries") or []
            token = page.get("nextPageToken")
            if not token:
                break
        return entries

    def attempts(self, creation: Creation, *, with_logs: bool = True) -> list[AttemptView]:
        views: list[AttemptView] = []
        logs = self._logs(creation) if with_logs else []
        for name in creation.execution_ids:
            try:
                execution = self.execution(name)
                entries = self.step_entries(name)
                error = None
            except Exception as exc:  # noqa: BLE001 - show what can be shown, and why not the rest
                execution, entries, error = None, [], _describe(exc)
            attempt = _attempt_of(execution) if execution else None
            views.append(AttemptView(
                attempt=attempt or 0, execution_name=name, execution=execution, entries=entries,
                timeline=tl.build(entries, execution) if execution else None, error=error))
        # Attempts without a readable attempt number take their position.
        for i, view in enumerate(views):
            if not view.attempt:
                view.attempt = i + 1
        known = {v.attempt for v in views}
        for n in range(1, creation.attempt + 1):
            if n not in known:  # an attempt whose execution was never recorded (or not yet)
                views.append(AttemptView(attempt=n, execution_name=None, execution=None, entries=[],
                                         timeline=None, error="no execution recorded for this attempt"))
        views.sort(key=lambda v: v.attempt)
        for view in views:
            view.logs = [line for line in logs if line.attempt in (None, view.attempt)]
            if self.job_logs is None:
                job = next((r.job_execution for r in (view.timeline.rows if view.timeline else [])
                            if r.job_execution), None)
                view.logging_url = cloud_logging_url(self.settings.gcp_project, creation.id)
                if job:
                    view.logging_url_job = cloud_logging_url(self.settings.gcp_project, creation.id, job)
        return views

    def _logs(self, creation: Creation) -> list[LogLine]:
        if self.job_logs is None:
            return []
        since = creation.created_at.timestamp() - 5
        return self.job_logs.lines(creation.id, since=since)

    def creation_view(self, creation_id: str) -> CreationView | None:
        creation = self.store.get_creation(creation_id)
        if creation is None:
            return None
        ledger = [e for e in self.store.ledger(creation.uid) if e.creation_id == creation.id]
        media_url = thumb_url = None
        if creation.media:
            media_url, thumb_url = creation.media.get("url"), creation.media.get("thumbnailUrl")
            if self.storage is not None:
                try:
                    if creation.media.get("key"):
                        media_url = self.storage.url(creation.media["key"])
                    if creation.media.get("thumbnailKey"):
                        thumb_url = self.storage.url(creation.media["thumbnailKey"])
                except Exception:  # noqa: BLE001 - the stored URLs are still worth showing
                    pass
        return CreationView(creation, self.attempts(creation), ledger, self.store.balance(creation.uid),
                            media_url, thumb_url)

    # --- users ------------------------------------------------------------------------------

    def user(self, uid: str) -> dict[str, Any]:
        ledger = self.store.ledger(uid)
        findings = [f for f in self.store.audit() if f.uid == uid]
        creations, _ = self.store.search_creations(uid=uid, limit=20)
        totals = {"grant": 0, "debit": 0, "refund": 0}
        for e in ledger:
            totals[e.kind.value] += e.amount
        return {"uid": uid, "balance": self.store.balance(uid), "ledger": ledger, "findings": findings,
                "creations": creations, "totals": totals,
                "expected": totals["grant"] - totals["debit"] + totals["refund"]}

    # --- overview ---------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        now = self.clock()
        windows = {}
        for label, span in (("last hour", timedelta(hours=1)), ("last day", timedelta(days=1))):
            counts = {s.value: 0 for s in Status}
            codes: dict[str, int] = {}
            newest: list[Creation] = []
            token, scanned = None, 0
            while True:
                page, token = self.store.search_creations(created_from=now - span, limit=1000, page_token=token)
                for c in page:
                    counts[c.status.value] += 1
                    if c.error:
                        codes[c.error.code] = codes.get(c.error.code, 0) + 1
                    if c.execution_ids and len(newest) < OVERVIEW_EXECUTIONS and c.status.terminal:
                        newest.append(c)
                scanned += len(page)
                if token is None or scanned >= SCAN_LIMIT:
                    break
            windows[label] = {"counts": counts, "total": sum(counts.values()),
                              "codes": sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))[:10],
                              "capped": token is not None, "newest": newest}
        # Step times of the last day's newest finished executions.
        durations: dict[str, list[float]] = {}
        timed = 0
        started = time.monotonic()
        for c in windows["last day"]["newest"]:
            try:
                execution = self.execution(c.execution_ids[-1])
                entries = self.step_entries(c.execution_ids[-1])
            except Exception:  # noqa: BLE001 - an unreadable execution is left out of the times
                continue
            timed += 1
            for step, values in tl.build(entries, execution).step_durations().items():
                durations.setdefault(step, []).extend(values)
        steps = [{"step": step, "runs": len(values), "p50": tl.percentile(values, 50),
                  "p95": tl.percentile(values, 95)} for step, values in durations.items()]
        findings = self.store.audit()
        return {"windows": windows, "steps": steps, "timed": timed, "findings": findings,
                "timing_ms": (time.monotonic() - started) * 1000}


def _attempt_of(execution: dict) -> int | None:
    label = (execution.get("labels") or {}).get("attempt")
    if isinstance(label, str) and label.isdigit():
        return int(label)
    try:
        attempt = json.loads(execution.get("argument") or "null").get("attempt")
    except (ValueError, AttributeError):
        return None
    return attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None


def _describe(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}"


def parse_filter(params: dict[str, str]) -> Filter:
    """A Filter from query parameters; ValueError naming the parameter when one is unusable."""
    status = params.get("status", "").strip()
    if status and status not in {s.value for s in Status}:
        raise ValueError(f"status must be one of {', '.join(s.value for s in Status)}, not {status!r}")
    type_ = params.get("type", "").strip()
    if type_ and type_ not in {t.value for t in CreationType}:
        raise ValueError(f"type must be one of {', '.join(t.value for t in CreationType)}, not {type_!r}")

    def when(name: str) -> datetime | None:
        raw = params.get(name, "").strip()
        if not raw:
            return None
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name} must be a date and time like 2026-01-31T14:00, not {raw!r}") from None
        from creations.store.records import as_utc

        return as_utc(value)

    return Filter(status=status, type=type_, uid=params.get("uid", "").strip(),
                  code=params.get("code", "").strip().upper(), since=when("since"), until=when("until"),
                  q=params.get("q", "").strip())
