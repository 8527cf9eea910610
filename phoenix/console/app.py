"""The console's web app: server-rendered pages (Jinja2) over the ConsoleReader, and the actions
of the operator layer behind CSRF-checked forms."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from creations.errors import CreationsError
from creations.model import Status

from . import csrf
from .actions import Actions
from .reader import PAGE_SIZE, ConsoleReader, parse_filter

HERE = Path(__file__).resolve().parent
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _age(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def create_console(reader: ConsoleReader, actions: Actions, *, operator: str,
                   where: str = "local") -> FastAPI:
    """The console app. `operator` is who actions are recorded as; `where` names what it reads
    (shown in the header)."""
    app = FastAPI(title="phoenix console", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["age"] = _age
    env.filters["seconds"] = _seconds
    env.filters["short"] = lambda name: (name or "-").rsplit("/", 1)[-1]
    env.filters["ts"] = lambda v: v.strftime("%Y-%m-%d %H:%M:%S") if v else "-"
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, default=str)
    env.globals["statuses"] = [s.value for s in Status]
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.reader = reader
    app.state.actions = actions

    @app.middleware("http")
    async def loopback_host_only(request: Request, call_next):
        # A page elsewhere whose name is made to resolve to 127.0.0.1 (DNS rebinding) would be
        # same-origin with the console, token and all: answer only to the loopback names.
        host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
        if host not in LOOPBACK_NAMES:
            return HTMLResponse(f"this console answers on 127.0.0.1 or localhost, not {host or 'no host'}",
                                status_code=403)
        return await call_next(request)

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        token = csrf.token_for(request)
        response = templates.TemplateResponse(request, name, {
            "csrf": token, "operator": operator, "where": where, "now": datetime.now(UTC),
            **context}, status_code=status_code)
        if getattr(request.state, "new_csrf", None):
            response.set_cookie(csrf.COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    def problem(request: Request, message: str, status_code: int = 400) -> HTMLResponse:
        return render(request, "problem.html", status_code=status_code, message=message)

    async def form_of(request: Request) -> dict[str, str]:
        """The posted form (the pages post application/x-www-form-urlencoded), CSRF-checked."""
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        body = await request.body()
        if kind != "application/x-www-form-urlencoded" or len(body) > 64 * 1024:
            raise csrf.CsrfRejected("post the console's own forms (application/x-www-form-urlencoded)")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        csrf.check(request, form.get(csrf.FIELD))
        return form

    @app.exception_handler(csrf.CsrfRejected)
    async def csrf_rejected(request: Request, exc: csrf.CsrfRejected):
        return problem(request, exc.message, 403)

    @app.exception_handler(CreationsError)
    async def domain_error(request: Request, exc: CreationsError):
        return problem(request, f"{exc.code}: {exc.message}", 409)

    # --- pages -----------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request):
        return render(request, "overview.html", page="overview", data=reader.overview())

    @app.get("/creations", response_class=HTMLResponse)
    def creations(request: Request):
        params = dict(request.query_params)
        try:
            f = parse_filter(params)
        except ValueError as exc:
            return problem(request, str(exc))
        size = _int(params.get("size")) if params.get("size") else PAGE_SIZE
        if size is None or not 1 <= size <= 500:
            return problem(request, f"size must be between 1 and 500, not {params.get('size')!r}")
        try:
            listing = reader.search(f, page_token=params.get("page") or None, page_size=size)
        except CreationsError as exc:  # an unknown error code, a page token not ours, an empty range
            return problem(request, exc.message)
        return render(request, "creations.html", page="creations", f=f, listing=listing,
                      page_token=params.get("page") or "", size=size if size != PAGE_SIZE else None)

    @app.get("/creations/{creation_id}", response_class=HTMLResponse)
    def creation(request: Request, creation_id: str):
        view = reader.creation_view(creation_id)
        if view is None:
            return problem(request, f"no creation {creation_id}", 404)
        return render(request, "creation.html", page="creations", view=view, c=view.creation,
                      preview=actions.replay_preview(view.creation))

    @app.get("/creations/{creation_id}/trace.json")
    def creation_json(creation_id: str):
        creation = reader.store.get_creation(creation_id)
        if creation is None:
            return JSONResponse({"error": {"code": "NOT_FOUND", "message": f"no creation {creation_id}"}}, 404)
        trace = reader.operator.trace(creation_id)
        doc = {"creation": trace.creation.to_dict(),
               "executions": [{"execution": t.execution, "stepEntries": t.entries, "recorded": t.recorded,
                               **({"unreadable": t.unreadable} if t.unreadable else {})} for t in trace.executions],
               "ledger": [{"id": e.id, "kind": e.kind.value, "amount": e.amount, "at": e.at.isoformat()}
                          for e in trace.ledger]}
        return Response(json.dumps(doc, indent=2, default=str), media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="creation-{creation_id}.json"'})

    @app.get("/users", response_class=HTMLResponse)
    def users(request: Request):
        uid = request.query_params.get("uid", "").strip()
        if uid:
            return RedirectResponse(f"/users/{uid}", 303)
        findings, audited_at = reader.audit()
        return render(request, "users.html", page="users", findings=findings, audited_at=audited_at)

    @app.get("/users/{uid}", response_class=HTMLResponse)
    def user(request: Request, uid: str):
        return render(request, "user.html", page="users", u=reader.user(uid))

    # --- actions: a preview (GET), then the action (POST with a reason) ---------------------

    @app.get("/creations/{creation_id}/replay", response_class=HTMLResponse)
    def replay_preview(request: Request, creation_id: str):
        creation = reader.store.get_creation(creation_id)
        if creation is None:
            return problem(request, f"no creation {creation_id}", 404)
        return render(request, "replay.html", page="creations", c=creation,
                      preview=actions.replay_preview(creation, check_storage=True))

    @app.post("/creations/{creation_id}/replay")
    async def replay(request: Request, creation_id: str):
        form = await form_of(request)
        reason = form.get("reason", "").strip()
        if not reason:
            return problem(request, "say why in one line: the reason is recorded on the creation")
        result = actions.replay(creation_id, actor=operator, reason=reason, force=form.get("force") == "yes",
                                expected_attempt=_int(form.get("attempt")))
        if result.outcome == "refused":
            return problem(request, f"not replayed: {result.message}", 409)
        return _back(creation_id, result.message, ok=result.started)

    @app.get("/creations/{creation_id}/cancel", response_class=HTMLResponse)
    def cancel_preview(request: Request, creation_id: str):
        creation = reader.store.get_creation(creation_id)
        if creation is None:
            return problem(request, f"no creation {creation_id}", 404)
        return render(request, "cancel.html", page="creations", c=creation, preview=actions.cancel_preview(creation))

    @app.post("/creations/{creation_id}/cancel")
    async def cancel(request: Request, creation_id: str):
        form = await form_of(request)
        reason = form.get("reason", "").strip()
        if not reason:
            return problem(request, "say why in one line: the reason is recorded on the creation")
        try:
            result = actions.cancel(creation_id, actor=operator, reason=reason)
        except CreationsError as exc:
            return problem(request, f"not cancelled: {exc.message}", 409)
        return _back(creation_id, result.message)

    @app.get("/bulk-replay", response_class=HTMLResponse)
    def bulk_preview(request: Request):
        try:
            f = parse_filter(dict(request.query_params))
        except ValueError as exc:
            return problem(request, str(exc))
        try:
            preview = actions.bulk_preview(f, limit=_int(request.query_params.get("limit")) or 100)
        except CreationsError as exc:
            return problem(request, exc.message)
        return render(request, "bulk.html", page="creations", f=f, preview=preview)

    @app.post("/bulk-replay")
    async def bulk(request: Request):
        form = await form_of(request)
        try:
            f = parse_filter(form)
        except ValueError as exc:
            return problem(request, str(exc))
        reason = form.get("reason", "").strip()
        if not reason:
            return problem(request, "say why in one line: the reason is recorded on every creation replayed")
        try:
            job = actions.start_bulk(f, actor=operator, reason=reason, limit=_int(form.get("limit")) or 100)
        except CreationsError as exc:
            return problem(request, exc.message)
        return RedirectResponse(f"/jobs/{job.id}", 303)

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job(request: Request, job_id: str):
        found = actions.job(job_id)
        if found is None:
            return problem(request, f"no bulk action {job_id} (the console keeps them while it runs)", 404)
        return render(request, "job.html", page="creations", job=found)

    @app.get("/reconcile", response_class=HTMLResponse)
    def reconcile_preview(request: Request):
        older = _int(request.query_params.get("older_than"))
        older = 900 if older is None else older
        report, error = _reconcile(older, dry_run=True, reason="")
        return render(request, "reconcile.html", page="reconcile", older_than=older, report=report, error=error,
                      applied=False)

    @app.post("/reconcile", response_class=HTMLResponse)
    async def reconcile(request: Request):
        form = await form_of(request)
        older = _int(form.get("older_than"))
        older = 900 if older is None else older
        reason = form.get("reason", "").strip()
        if not reason:
            return problem(request, "say why in one line: the reason is recorded on every creation settled")
        report, error = _reconcile(older, dry_run=False, reason=reason)
        return render(request, "reconcile.html", page="reconcile", older_than=older, report=report, error=error,
                      applied=True)

    def _reconcile(older: int, *, dry_run: bool, reason: str):
        try:
            return actions.reconcile(older_than=older, dry_run=dry_run, actor=operator, reason=reason), None
        except CreationsError as exc:
            return None, exc.message
        except Exception as exc:  # noqa: BLE001 - the Executions API unreachable, credentials: say so
            return None, f"reconcile could not run: {type(exc).__name__}: {exc}"

    @app.get("/healthz")
    def health():
        return {"status": "ok"}

    return app


def _back(creation_id: str, message: str, *, ok: bool = True) -> RedirectResponse:
    from urllib.parse import urlencode

    return RedirectResponse(f"/creations/{creation_id}?{urlencode({'done' if ok else 'failed': message})}", 303)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None
