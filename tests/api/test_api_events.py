"""Live status over server-sent events, through HTTP on the local API (SQLite store): the order
of events, the end at a terminal state, resuming from an event id, another user's stream, the
per-user bound, heartbeats and the duration bound. Status changes are made through the store, as
the steps make them, both in this process (the API's own store) and from another process (as
the step jobs do), which the API sees through its change feed."""
from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from api_stack import serving_api

from tests.support import sse
from tests.support.transitions import replayed, to_draft, to_failed, to_processing

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def live(tmp_path_factory, s3, executions):
    """The API with short stream bounds: heartbeat 0.3 s, streams of at most 3 s, 2 per user."""
    with serving_api(tmp_path_factory.mktemp("events"), s3, executions, max_active_per_user=20,
                     events_heartbeat_seconds=0.3, events_max_stream_seconds=3.0,
                     events_max_streams_per_user=2) as stack:
        yield stack


def submit(user) -> str:
    response = user.post("/v1/creations", json={"type": "image", "prompt": f"a lighthouse {uuid.uuid4().hex[:6]}"})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def in_another_process(store_path: Path, creation_id: str, change: str) -> None:
    """A status change committed by another process on the same SQLite file (as a step job does)."""
    code = (f"from creations.store.sqlite import SqliteStore; from tests.support.transitions import {change}; "
            f"s = SqliteStore({str(store_path)!r}); s.update_creation({creation_id!r}, {change}); s.close()")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_a_creation_stream_sends_pending_processing_draft_in_order_then_ends(live):
    user = live.user()
    cid = submit(user)
    stream = sse.Stream(0)
    with user.stream("GET", f"/v1/creations/{cid}/events", timeout=httpx.Timeout(10, read=10)) as response:
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"
        for event in sse.parse(response.iter_lines(), stream):
            stream.events.append(event)
            status = event.json["status"]
            if status == "pending":
                in_another_process(live.settings.sqlite_path, cid, "to_processing")
            elif status == "processing":
                live.store.update_creation(cid, to_draft)  # the API's own process
    assert stream.statuses == ["pending", "processing", "draft"]
    assert stream.ids == ["1:1", "1:2", "1:3"]
    assert stream.retry == 2000
    last = stream.events[-1].json
    current = user.get(f"/v1/creations/{cid}").json()
    assert {k: last[k] for k in ("id", "status", "attempt", "updatedAt", "error")} == \
        {k: current[k] for k in ("id", "status", "attempt", "updatedAt", "error")}
    assert last["media"]["url"].split("?")[0] == current["media"]["url"].split("?")[0]
    assert last["version"] == "1:3"


def test_resuming_from_an_event_id_sends_only_newer_states_across_attempts(live):
    user = live.user()
    cid = submit(user)
    live.store.update_creation(cid, to_processing)
    resumed = sse.read(user, f"/v1/creations/{cid}/events", last_event_id="1:1", stop_after=1)
    assert resumed.statuses == ["processing"] and resumed.ids == ["1:2"]

    live.store.update_creation(cid, to_failed)
    finished = sse.read(user, f"/v1/creations/{cid}/events", last_event_id="1:2")
    assert finished.ended and finished.statuses == ["failed"]
    assert finished.events[0].json["error"] == {"code": "CONTENT_POLICY", "message": "refused"}
    # At the terminal event already: nothing more to say, and EventSource stops on 204.
    assert sse.read(user, f"/v1/creations/{cid}/events", last_event_id="1:3").status == 204

    live.store.update_creation(cid, replayed)  # an operator's replay: attempt 2 starts
    again = sse.read(user, f"/v1/creations/{cid}/events", last_event_id="1:3", stop_after=1)
    assert again.ids == ["2:1"] and again.statuses == ["pending"]


def test_a_bad_last_event_id_is_refused_with_the_header_named(live):
    user = live.user()
    cid = submit(user)
    for path, bad in ((f"/v1/creations/{cid}/events", "pending"), ("/v1/creations/events", "1:2")):
        response = user.get(path, headers={"Last-Event-ID": bad})
        assert response.status_code == 422
        assert "Last-Event-ID" in response.json()["error"]["fields"]


def test_another_users_creation_stream_is_not_found(live):
    owner, other = live.user(), live.user()
    cid = submit(owner)
    response = other.get(f"/v1/creations/{cid}/events")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert other.get("/v1/creations/no-such-creation/events").status_code == 404
    assert httpx.get(f"{live.url}/v1/creations/{cid}/events").status_code == 401


def test_streams_per_user_are_bounded_and_a_closed_one_frees_its_place(live):
    user, other = live.user(), live.user()
    cid = submit(user)
    opened = [user.stream("GET", f"/v1/creations/{cid}/events", timeout=httpx.Timeout(10, read=10))
              for _ in range(2)]
    responses = [ctx.__enter__() for ctx in opened]
    try:
        assert [r.status_code for r in responses] == [200, 200]
        refused = user.get(f"/v1/creations/{cid}/events")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "TOO_MANY_STREAMS"
        assert refused.headers["retry-after"]
        assert user.get("/v1/creations/events").status_code == 429
        other_cid = submit(other)  # another user's streams are counted apart
        assert sse.read(other, f"/v1/creations/{other_cid}/events", stop_after=1).status == 200
    finally:
        opened[0].__exit__(None, None, None)
    # The server notices the closed stream at its next write (a heartbeat at most).
    for _ in range(50):
        third = sse.read(user, f"/v1/creations/{cid}/events", stop_after=1)
        if third.status == 200:
            break
        threading.Event().wait(0.1)
    assert third.status == 200
    opened[1].__exit__(None, None, None)


def test_a_quiet_stream_sends_heartbeats_and_ends_when_its_time_is_up(live):
    user = live.user()
    cid = submit(user)
    stream = sse.read(user, f"/v1/creations/{cid}/events")  # pending, and nothing happens
    assert stream.ended and stream.statuses == ["pending"]
    assert "heartbeat" in stream.comments
    assert "reconnect with Last-Event-ID" in stream.comments[-1]


def test_the_all_creations_stream_follows_each_active_creation_until_none_is_left(live):
    user = live.user()
    assert user.get("/v1/creations/events").status_code == 204  # nothing to follow
    first, second = submit(user), submit(user)
    stream = sse.Stream(0)
    third = None
    with user.stream("GET", "/v1/creations/events", timeout=httpx.Timeout(10, read=10)) as response:
        assert response.status_code == 200
        for event in sse.parse(response.iter_lines(), stream):
            stream.events.append(event)
            seen = [(e.json["id"], e.json["status"]) for e in stream.events]
            if seen == [(first, "pending"), (second, "pending")]:
                in_another_process(live.settings.sqlite_path, first, "to_processing")
            elif seen[-1] == (first, "processing"):
                third = submit(user)            # started while the stream is open: followed too
            elif third and seen[-1] == (third, "pending"):
                live.store.update_creation(first, to_draft)
                live.store.update_creation(second, to_failed)
                live.store.update_creation(third, to_processing)
                live.store.update_creation(third, to_draft)
    by_creation: dict[str, list[str]] = {}
    for event in stream.events:
        by_creation.setdefault(event.json["id"], []).append(event.json["status"])
    assert by_creation[first] == ["pending", "processing", "draft"]
    assert by_creation[second] == ["pending", "failed"]
    assert by_creation[third][0] == "pending" and by_creation[third][-1] == "draft"
    cursors = [e.id for e in stream.events]
    assert cursors == sorted(cursors)

    # Resuming from an early cursor sends the state of what finished since; then it ends.
    resumed = sse.read(user, "/v1/creations/events", last_event_id=cursors[0])
    assert resumed.ended
    assert {e.json["id"]: e.json["status"] for e in resumed.events} == {first: "draft", second: "failed",
                                                                          third: "draft"}
    assert user.get("/v1/creations/events", headers={"Last-Event-ID": cursors[-1]}).status_code in (200, 204)
