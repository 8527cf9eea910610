"""What the console reads: creations from the store, executions and step entries from the
Executions REST API (the local engine's, or Google's with the operator's credentials), job logs,
media URLs. Read-only: every change goes through the operator layer (creations.operator)."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from creations.model import Creation, CreationType, LedgerEntry, Status, utcnow
from creations.operator import CreationFilter
from creations.reconcile import attempt_of

from . import timeline as tl
from .joblogs import LocalJobLogs, LogLine, cloud_logging_url

PAGE_SIZE = 50
SCAN_LIMIT = 100_000        # creations the overview reads at most per window
OVERVIEW_EXECUTIONS = 100   # the newest executions whose step entries the overview times
AUDIT_TTL = 10.0            # seconds a whole-store audit is shown before it is run again


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

    @property
    def empty(self) -> bool:
        return not self.query()


@dataclass
class Listing:
    items: list[Creation]
    next_token: str | None
    counts: dict[str, int]       # per status, under the filter's other conditions
    counts_capped: bool          # True when the operator layer's count stopped before the end
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
    recorded: bool = True                # named on the creation (else found by its labels)

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
    """Pages' data, read through the operator layer (`creations.operator.Operator`) where it has
    the answer (find, count, trace, audit); job logs and media URLs are the console's own."""

    def __init__(self, settings, operator, *, job_logs: LocalJobLogs | None = None, storage=None,
                 clock=utcnow):
        self.settings = settings
        self.operator = operator
        self.store = operator.store
        self.job_logs = job_logs
        self.storage = storage
        self.clock = clock
        self._audit: tuple[float, list, datetime] | None = None
        self._audit_lock = threading.Lock()

    @property
    def executions(self):
        return self.operator.reader

    # --- creations ------------------------------------------------------------------------

    def resolve(self, q: str) -> CreationFilter:
        """The filter that finds `q`: a creation id, or an execution id or name (the Executions
        API's creation-id label says whose; else the creations are searched for it)."""
        q = q.strip()
        if "/" not in q and self.store.get_creation(q) is not None:
            return CreationFilter(ids=(q,))
        name = q if "/executions/" in q else f"{self.operator.workflow}/executions/{q}"
        try:
            execution = self.executions.get_json(name)
        except Exception:  # noqa: BLE001 - not an execution the API knows: search the creations
            return CreationFilter(execution=q)
        cid = (execution.get("labels") or {}).get("creation-id")
        if not cid:
            try:
                cid = json.loads(execution.get("argument") or "{}").get("creationId")
            except (ValueError, AttributeError):
                cid = None
        if isinstance(cid, str) and cid and self.store.get_creation(cid) is not None:
            return CreationFilter(ids=(cid,))
        return CreationFilter(execution=q)

    def operator_filter(self, f: Filter, *, with_status: bool = True) -> CreationFilter:
        found = self.resolve(f.q) if f.q else CreationFilter()
        return CreationFilter(
            ids=found.ids, execution=found.execution,
            statuses=(Status(f.status),) if f.status and with_status else (),
            types=(CreationType(f.type),) if f.type else (), uid=f.uid or None,
            codes=(f.code,) if f.code else (), created_from=f.since, created_before=f.until)

    def search(self, f: Filter, *, page_token: str | None = None, page_size: int = PAGE_SIZE) -> Listing:
        flt = self.operator_filter(f)
        page = self.operator.find(flt, limit=page_size, page_token=page_token)
        counts, complete = self.counts(f, flt)
        return Listing(page.items, page.next_page_token, counts, not complete,
                       counts["pending"] + counts["processing"])

    def counts(self, f: Filter, flt: CreationFilter) -> tuple[dict[str, int], bool]:
        """Creations per status under the filter (its status aside, so every tab keeps its count):
        counted by the store when it can query the whole filter, else by the operator layer's scan."""
        if flt.ids:
            counts = {s.value: 0 for s in Status}
            for creation in self.operator.find(replace(flt, statuses=()), limit=len(flt.ids)).items:
                counts[creation.status.value] += 1
            return counts, True
        if not flt.execution:
            found = self.store.count_creations(
                uid=flt.uid, created_from=flt.created_from, created_before=flt.created_before,
                types=[t.value for t in flt.types] or None, codes=list(flt.codes) or None)
            return {s.value: int(found.get(s.value, 0)) for s in Status}, True
        counted = self.operator.count_by_status(self.operator_filter(f, with_status=False))
        return {s.value: counted.counts.get(s.value, 0) for s in Status}, counted.complete

    # --- one creation -----------------------------------------------------------------------

    def execution(self, name: str) -> dict[str, Any]:
        return self.executions.get_json(name)

    def attempts(self, trace) -> list[AttemptView]:
        creation = trace.creation
        logs = self._logs(creation)
        views: list[AttemptView] = []
        for i, t in enumerate(trace.executions):
            attempt = (attempt_of(t.execution) if t.execution else None) or i + 1
            views.append(AttemptView(
                attempt=attempt, execution_name=t.name, execution=t.execution, entries=t.entries,
                timeline=tl.build(t.entries, t.execution) if t.execution else None,
                error=t.unreadable and f"the execution could not be read: {t.unreadable}",
                recorded=t.recorded))
        known = {v.attempt for v in views}
        for n in range(1, creation.attempt + 1):
            if n not in known:  # an attempt whose execution was never recorded nor found (or not yet)
                views.append(AttemptView(attempt=n, execution_name=None, execution=None, entries=[],
                                         timeline=None, error="no execution recorded or found for this attempt"))
        views.sort(key=lambda v: (v.attempt, v.execution_name or ""))
        for view in views:
            view.logs = [line for line in logs if line.attempt in (None, view.attempt)]
            if self.job_logs is None:
                view.logging_url = cloud_logging_url(self.settings.gcp_project, creation.id)
                job = next((r.job_execution for r in (view.timeline.rows if view.timeline else [])
                            if r.job_execution and r.state == "FAILED"), None)
                if job:
                    view.logging_url_job = cloud_logging_url(self.settings.gcp_project, creation.id, job)
        return views

    def _logs(self, creation: Creation) -> list[LogLine]:
        if self.job_logs is None:
            return []
        return self.job_logs.lines(creation.id, since=creation.created_at.timestamp() - 5)

    def creation_view(self, creation_id: str) -> CreationView | None:
        if self.store.get_creation(creation_id) is None:
            return None
        trace = self.operator.trace(creation_id)
        creation = trace.creation
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
        return CreationView(creation, self.attempts(trace), trace.ledger, self.store.balance(creation.uid),
                            media_url, thumb_url)

    # --- users ------------------------------------------------------------------------------

    def user(self, uid: str) -> dict[str, Any]:
        ledger = self.store.ledger(uid)
        creations, _ = self.store.search_creations(uid=uid, limit=20)
        totals = {"grant": 0, "debit": 0, "refund": 0}
        for e in ledger:
            totals[e.kind.value] += e.amount
        balance = self.store.balance(uid)
        return {"uid": uid, "balance": balance, "ledger": ledger, "findings": self.user_audit(uid, balance, ledger),
                "creations": creations, "totals": totals,
                "expected": totals["grant"] - totals["debit"] + totals["refund"]}

    def user_audit(self, uid: str, balance: int, ledger: list[LedgerEntry]) -> list:
        """The store's audit rules (creations.store.audit) over this one user's balance, ledger and
        creations' charge maps: what the whole-store audit would find about them."""
        from creations.store.audit import ChargeRecord, find_discrepancies

        charges, token = [], None
        while True:
            page, token = self.store.search_creations(uid=uid, limit=1000, page_token=token)
            charges += [ChargeRecord(c.id, c.uid, c.charge.get("debited", {}), c.charge.get("refunded", {}))
                        for c in page]
            if token is None:
                break
        return find_discrepancies({uid: balance}, ledger, charges)

    def audit(self) -> tuple[list, datetime]:
        """The whole store's audit (the operator layer's), and when it ran: reused for AUDIT_TTL
        seconds, since it reads every balance, ledger entry and creation."""
        with self._audit_lock:
            if self._audit is None or time.monotonic() - self._audit[0] > AUDIT_TTL:
                self._audit = (time.monotonic(), self.operator.audit().findings, self.clock())
            return self._audit[1], self._audit[2]

    # --- overview ---------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        now = self.clock()
        windows = {}
        for label, span in (("last hour", timedelta(hours=1)), ("last day", timedelta(days=1))):
            counts = self.store.count_creations(created_from=now - span)
            codes: dict[str, int] = {}
            token, scanned = None, 0
            while True:  # the failures of the window, for their error codes
                page, token = self.store.search_creations(statuses=[Status.FAILED], created_from=now - span,
                                                          limit=1000, page_token=token)
                for c in page:
                    code = c.error.code if c.error else "-"
                    codes[code] = codes.get(code, 0) + 1
                scanned += len(page)
                if token is None or scanned >= SCAN_LIMIT:
                    break
            windows[label] = {"counts": counts, "total": sum(counts.values()),
                              "codes": sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))[:10],
                              "capped": token is not None}
        newest, _ = self.store.search_creations(
            statuses=[Status.DRAFT, Status.FAILED], created_from=now - timedelta(days=1), limit=OVERVIEW_EXECUTIONS
        )
        windows["last day"]["newest"] = [c for c in newest if c.execution_ids]
        # Step times of the last day's newest finished executions.
        durations: dict[str, list[float]] = {}
        timed = 0

        def last_execution(c: Creation):
            try:
                return self.operator.trace(c.id, find_unrecorded=False).executions[-1]
            except Exception:  # noqa: BLE001 - deleted meanwhile: left out of the times
                return None

        # The reads are network round trips to the Executions API: a few at a time.
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="console-overview") as pool:
            traced = list(pool.map(last_execution, windows["last day"]["newest"]))
        for last in traced:
            if last is None or last.execution is None:  # unreadable: left out of the times
                continue
            timed += 1
            for step, values in tl.build(last.entries, last.execution).step_durations().items():
                durations.setdefault(step, []).extend(values)
        steps = [{"step": step, "runs": len(values), "p50": tl.percentile(values, 50),
                  "p95": tl.percentile(values, 95)} for step, values in durations.items()]
        findings, audited_at = self.audit()
        return {"audited_at": audited_at, "windows": windows, "steps": steps, "timed": timed, "findings": findings}


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
