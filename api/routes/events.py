"""Live status of creations as server-sent events (SSE), for clients that are not on Firebase.

`GET /v1/creations/{id}/events` follows one creation; `GET /v1/creations/events` follows all of
the caller's active (pending or processing) creations, including ones that start while it is
open. Each `status` event carries the creation as `GET /v1/creations/{id}` answers it, plus its
`version`. A stream ends once what it follows is terminal (draft or failed), after
`events_max_stream_seconds` (the client reconnects with Last-Event-ID), or when the client goes.

Event ids make a reconnect exact:
- one creation: `{attempt}:{step}` (pending 1, processing 2, draft or failed 3), which only grows
  (a replay starts the next attempt at pending). Reconnecting with it sends only newer states;
  if the creation is already terminal at that id, the answer is 204 (EventSource stops).
- all active creations: the newest `updatedAt` sent (a cursor). Reconnecting with it sends the
  current state of every active creation and of those finished since the cursor (minus a margin
  for clocks of other processes); `version` in the data lets a client drop what it already has.

Changes arrive through the store's change feed (creations/store/changes.py), never a tight poll;
every heartbeat interval a stream also re-reads what it follows, so a lost notification delays an
event by at most one heartbeat.
"""
from __future__ import annotations

import asyncio
import json
import re
import threading
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from creations.model import Creation, Status
from creations.store.changes import changes_for

from ..deps import CurrentUser, SettingsDep, StorageDep, StoreDep, only_query
from ..errors import ApiError
from ..schemas import CreationOut, error_responses
from .creations import creation_out, owned_creation

router = APIRouter(prefix="/creations", tags=["events"])

_STEP = {Status.PENDING: 1, Status.PROCESSING: 2, Status.DRAFT: 3, Status.FAILED: 3}
_VERSION = re.compile(r"^([1-9][0-9]{0,8}):([1-3])$")
RETRY_MILLISECONDS = 2000
# Other processes stamp updatedAt with their own clocks: a resumed stream looks this far back.
CLOCK_MARGIN = timedelta(seconds=5)
_LIST_LIMIT = 100


class CreationEvent(CreationOut):
    """The data of a `status` event: the creation, as GET /v1/creations/{id} answers it."""

    version: str = Field(description="`{attempt}:{step}` (pending 1, processing 2, draft or failed 3); "
                                     "grows with every status change: keep the newest per creation.")


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


def version_of(creation: Creation) -> tuple[int, int]:
    return creation.attempt, _STEP[creation.status]


def format_version(version: tuple[int, int]) -> str:
    return f"{version[0]}:{version[1]}"


def _invalid_last_event_id(expected: str) -> ApiError:
    return ApiError(
        422,
        "INVALID_REQUEST",
        "invalid value for Last-Event-ID",
        fields={"Last-Event-ID": f"send the id of the last event received unchanged ({expected}), or omit it"},
    )


def parse_version(text: str) -> tuple[int, int]:
    match = _VERSION.match(text.strip())
    if not match:
        raise _invalid_last_event_id("like 1:2")
    return int(match.group(1)), int(match.group(2))


def format_cursor(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_cursor(text: str) -> datetime:
    try:
        at = datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        raise _invalid_last_event_id("a timestamp like 2026-01-31T12:00:00.000000Z") from None
    return at.replace(tzinfo=UTC)


def sse_event(event_id: str, event: str, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_data(creation: Creation, storage) -> dict[str, Any]:
    out = creation_out(creation, storage)
    return CreationEvent(**out.model_dump(), version=format_version(version_of(creation))).model_dump(
        mode="json", by_alias=True)


# --- limits and the change feed ------------------------------------------------------------------


class StreamSlots:
    """Open streams per user in this process; `acquire` refuses beyond the limit."""

    def __init__(self, per_user: int):
        self.per_user = per_user
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, uid: str):
        with self._lock:
            if self._open.get(uid, 0) >= self.per_user:
                return None
            self._open[uid] = self._open.get(uid, 0) + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                left = self._open.get(uid, 0) - 1
                if left > 0:
                    self._open[uid] = left
                else:
                    self._open.pop(uid, None)

        return release

    def open_streams(self, uid: str) -> int:
        with self._lock:
            return self._open.get(uid, 0)


_state_lock = threading.Lock()


def _app_state(request: Request):
    """The change feed and the stream slots of this app, made on first use."""
    state = request.app.state
    with _state_lock:
        if getattr(state, "event_changes", None) is None:
            settings = state.settings
            state.event_changes = changes_for(state.store, check_seconds=settings.events_change_check_seconds)
            state.event_slots = StreamSlots(settings.events_max_streams_per_user)
    return state.event_changes, state.event_slots


def _take_slot(request: Request, uid: str):
    _, slots = _app_state(request)
    release = slots.acquire(uid)
    if release is None:
        raise ApiError(429, "TOO_MANY_STREAMS",
                       f"{slots.per_user} event streams are already open for this user; close one (or follow "
                       "all active creations with GET /v1/creations/events)", headers={"Retry-After": "5"})
    return release


async def _subscribe(request: Request, uid: str, creation_id: str | None):
    changes, _ = _app_state(request)
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(woken.set)
        except RuntimeError:  # the loop has closed: the stream is gone
            pass

    unsubscribe = await run_in_threadpool(changes.subscribe, uid, creation_id, wake)
    return woken, unsubscribe


class _Clock:
    """When the stream must end and when the next heartbeat is due."""

    def __init__(self, settings):
        self.loop = asyncio.get_running_loop()
        self.heartbeat = settings.events_heartbeat_seconds
        self.deadline = self.loop.time() + settings.events_max_stream_seconds
        self.next_beat = self.loop.time() + self.heartbeat

    async def wait(self, woken: asyncio.Event) -> str:
        """'change', 'heartbeat' or 'end' (the stream's time is up)."""
        now = self.loop.time()
        if now >= self.deadline:
            return "end"
        try:
            await asyncio.wait_for(woken.wait(), timeout=min(self.next_beat, self.deadline) - now)
            woken.clear()
            return "change"
        except TimeoutError:
            if self.loop.time() >= self.deadline:
                return "end"
            self.next_beat = self.loop.time() + self.heartbeat
            return "heartbeat"


def _stream(body: AsyncIterator[str], release) -> EventStreamResponse:
    # A body the server never starts (the client left at once) still gives its slot back.
    weakref.finalize(body, release)
    return EventStreamResponse(body, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


_END = ": the stream's time is up; reconnect with Last-Event-ID to continue\n\n"
_HEARTBEAT = ": heartbeat\n\n"

def _event_item_schema() -> dict[str, Any]:
    """One event of the stream, as OpenAPI 3.2's `itemSchema` describes server-sent events."""
    data = CreationEvent.model_json_schema(by_alias=True, mode="serialization",
                                           ref_template="#/components/schemas/{model}")
    data.pop("$defs", None)
    return {
        "type": "object",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string", "description": "One creation: `{attempt}:{step}`. All creations: the newest "
                                                    "`updatedAt` sent. Send it back as Last-Event-ID to resume."},
            "event": {"type": "string", "enum": ["status", "deleted"]},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
            "retry": {"type": "integer", "description": "Sent once, first: the reconnect delay in milliseconds."},
        },
    }


_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "A `text/event-stream`. First `retry: 2000`; then one event per status change, each "
            "`id: <event id>`, `event: status`, `data: <CreationEvent as JSON>`; comment lines "
            "(`: heartbeat`) every heartbeat interval; `event: deleted` (`data: {\"id\"}`) if the creation "
            "is deleted. The stream ends after the terminal (draft or failed) event, or when its time is up "
            "(reconnect with `Last-Event-ID`)."),
        "content": {"text/event-stream": {"itemSchema": _event_item_schema()}},
    },
    204: {"description": "Nothing more to send: the creation was already terminal at `Last-Event-ID` "
                         "(or, for all creations, none is active and none finished since). EventSource stops."},
}


def _json_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The usual error answers, documented as JSON (the route's own media type is the stream's)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, entry in error_responses(*statuses).items():
        ref = {"$ref": f"#/components/schemas/{entry['model'].__name__}"}
        out[status] = {"description": entry["description"], "content": {"application/json": {"schema": ref}}}
    out[500] = {"description": "Internal error (details are in the logs).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    out[429] = {"description": "Too many event streams open for this user; close one (see Retry-After).",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    return out


# --- routes -------------------------------------------------------------------------------------


@router.get(
    "/events",
    response_class=Response,  # documented below: the stream's events, not one body
    responses={**_STREAM_RESPONSES, **_json_errors(401, 422, 503)},
    dependencies=[Depends(only_query())],
    summary="Follow all of the user's active creations live (server-sent events)",
)
async def all_events(
    request: Request,
    user: CurrentUser,
    store: StoreDep,
    storage: StorageDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(
        alias="Last-Event-ID", max_length=64,
        description="The id of the last event received (a timestamp): resume after it.")] = None,
) -> Response:
    since = parse_cursor(last_event_id) if last_event_id else None
    first = await run_in_threadpool(_user_view, store, user.uid, set(), since)
    if not first:
        return Response(status_code=204)
    release = _take_slot(request, user.uid)
    return _stream(_follow_all(request, user.uid, store, storage, settings, first, since, release), release)


@router.api_route("/events", methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False)
async def all_events_other_methods() -> Response:
    # Without this, DELETE /creations/events would reach DELETE /creations/{creation_id}.
    raise ApiError(405, "METHOD_NOT_ALLOWED", "Method Not Allowed", headers={"Allow": "GET"})


@router.get(
    "/{creation_id}/events",
    response_class=Response,  # documented below: the stream's events, not one body
    responses={**_STREAM_RESPONSES, **_json_errors(401, 404, 422, 503)},
    dependencies=[Depends(only_query())],
    summary="Follow one creation's status live (server-sent events)",
)
async def creation_events(
    creation_id: str,
    request: Request,
    user: CurrentUser,
    store: StoreDep,
    storage: StorageDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(
        alias="Last-Event-ID", max_length=64,
        description="The id of the last event received (`{attempt}:{step}`): resume after it.")] = None,
) -> Response:
    after = parse_version(last_event_id) if last_event_id else None
    creation = await run_in_threadpool(owned_creation, store, creation_id, user)
    if after is not None and creation.status.terminal and version_of(creation) <= after:
        return Response(status_code=204)
    release = _take_slot(request, user.uid)
    return _stream(_follow_one(request, user.uid, creation.id, store, storage, settings, after, release), release)


async def _follow_one(request, uid, creation_id, store, storage, settings, after, release) -> AsyncIterator[str]:
    unsubscribe = None
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        woken, unsubscribe = await _subscribe(request, uid, creation_id)
        clock = _Clock(settings)
        sent = after
        while True:
            creation = await run_in_threadpool(store.get_creation, creation_id)
            if creation is None:
                yield sse_event(format_version(sent or (0, 0)), "deleted", {"id": creation_id})
                return
            version = version_of(creation)
            if sent is None or version > sent:
                yield sse_event(
                    format_version(version), "status", await run_in_threadpool(event_data, creation, storage)
                )
                sent = version
            if creation.status.terminal:
                return
            outcome = await clock.wait(woken)
            if outcome == "end":
                yield _END
                return
            if outcome == "heartbeat":
                yield _HEARTBEAT  # and re-read: a lost notification costs one interval at most
    finally:
        if unsubscribe is not None:
            await run_in_threadpool(unsubscribe)
        release()


def _user_view(store, uid: str, tracked: set[str], since: datetime | None) -> list[Creation]:
    """What the all-creations stream looks at: the user's active creations, those it follows
    that are not active any more, and (resuming) those that changed since the cursor; oldest
    update first."""
    found: dict[str, Creation] = {}
    for status in (Status.PENDING, Status.PROCESSING):
        items, _ = store.list_creations(uid, status=status, limit=_LIST_LIMIT)
        found.update((c.id, c) for c in items)
    if since is not None:
        items, _ = store.list_creations(uid, limit=_LIST_LIMIT)
        found.update((c.id, c) for c in items if c.updated_at > since - CLOCK_MARGIN)
    for creation_id in tracked - found.keys():
        creation = store.get_creation(creation_id)
        found[creation_id] = creation if creation is not None else _Deleted(creation_id)
    return sorted(found.values(), key=lambda c: (c.updated_at, c.id))


class _Deleted:
    updated_at = datetime.min.replace(tzinfo=UTC)

    def __init__(self, creation_id: str):
        self.id = creation_id


async def _follow_all(request, uid, store, storage, settings, first, since, release) -> AsyncIterator[str]:
    unsubscribe = None
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        woken, unsubscribe = await _subscribe(request, uid, None)
        clock = _Clock(settings)
        sent: dict[str, tuple[int, int]] = {}     # what was sent of each creation still followed
        cursor = since
        view = first
        while True:
            for creation in view:
                if isinstance(creation, _Deleted):
                    sent.pop(creation.id, None)
                    yield sse_event(format_cursor(cursor or datetime.now(UTC)), "deleted", {"id": creation.id})
                    continue
                version = version_of(creation)
                if creation.id not in sent or version > sent[creation.id]:
                    cursor = max(cursor, creation.updated_at) if cursor else creation.updated_at
                    data = await run_in_threadpool(event_data, creation, storage)
                    yield sse_event(format_cursor(cursor), "status", data)
                sent[creation.id] = version
                if creation.status.terminal:
                    sent.pop(creation.id)
            if not sent:
                return  # nothing active is left to follow
            outcome = await clock.wait(woken)
            if outcome == "end":
                yield _END
                return
            if outcome == "heartbeat":
                yield _HEARTBEAT
            view = await run_in_threadpool(_user_view, store, uid, set(sent), None)
    finally:
        if unsubscribe is not None:
            await run_in_threadpool(unsubscribe)
        release()
