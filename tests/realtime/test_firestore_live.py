"""Following a creation live on the production store, Firestore (Google's emulator): an app's
snapshot listener, signed in and under firestore.rules, sees pending -> processing -> draft as
the whole pipeline runs (the local stack on Firestore: API, Workflows engine, step jobs); and the
API's event stream on the Firestore adapter, which listens instead of polling."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from tests.support import sse
from tests.support.firestore_users import UserClient, load_rules
from tests.support.stack import Stack, running_stack
from tests.support.transitions import replayed, to_failed, to_processing

WAIT = 90.0  # seconds of wall time before a test gives up waiting


@pytest.fixture
def firestore_stack(firestore_emulator, firestore_project, tmp_path) -> Iterator[Stack]:
    load_rules(firestore_emulator, firestore_project)
    with running_stack(tmp_path, jobs_mode="inprocess", clock="real", instant_generation=True,
                       extra_settings={"store": "firestore", "firestore_project": firestore_project,
                                       "events_heartbeat_seconds": 0.5}) as stack:
        yield stack


def api_user(stack: Stack, uid: str, tokens: int = 10) -> httpx.Client:
    return stack.new_user(tokens, uid=uid).http


class Seen:
    """What a snapshot listener delivered: each document's statuses in order, without repeats."""

    def __init__(self):
        self.statuses: dict[str, list[str]] = {}
        self.snapshots = 0
        self.changed = threading.Condition()

    def __call__(self, docs, changes, read_time) -> None:
        with self.changed:
            self.snapshots += 1
            for doc in docs:
                history = self.statuses.setdefault(doc.id, [])
                status = doc.get("status")
                if not history or history[-1] != status:
                    history.append(status)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout: float = WAIT) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout=timeout)


def test_an_apps_listener_sees_pending_processing_draft_as_the_pipeline_runs(firestore_stack):
    project = firestore_stack.settings.firestore_project
    alice = api_user(firestore_stack, "alice")
    app = UserClient(project, "alice")        # the app, signed in as alice, under the rules
    seen = Seen()
    watch = app.collection("creations").where(filter=FieldFilter("uid", "==", "alice")).on_snapshot(seen)
    try:
        assert seen.wait_for(lambda: seen.snapshots >= 1)  # the (empty) first snapshot: the listen is allowed
        response = alice.post("/v1/creations", json={"type": "image", "prompt": "a lighthouse at dawn"})
        assert response.status_code == 202
        cid = response.json()["id"]
        assert seen.wait_for(lambda: seen.statuses.get(cid, [""])[-1] == "draft"), seen.statuses
        assert seen.statuses[cid] == ["pending", "processing", "draft"]
    finally:
        watch.unsubscribe()
        app.close()
        alice.close()


def test_a_listener_on_another_users_creations_is_refused(firestore_stack):
    project = firestore_stack.settings.firestore_project
    alice = api_user(firestore_stack, "alice")
    assert alice.post("/v1/creations", json={"type": "image", "prompt": "a fox"}).status_code == 202
    bob = UserClient(project, "bob")
    seen = Seen()
    watch = bob.collection("creations").where(filter=FieldFilter("uid", "==", "alice")).on_snapshot(seen)
    try:
        deadline = time.monotonic() + WAIT
        while watch.is_active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not watch.is_active  # the server ended the listen: PERMISSION_DENIED
        assert seen.snapshots == 0
    finally:
        watch.unsubscribe()
        bob.close()
        alice.close()


def test_the_event_stream_on_firestore_follows_the_pipeline_to_draft(firestore_stack):
    alice = api_user(firestore_stack, "alice")
    cid = alice.post("/v1/creations", json={"type": "image", "prompt": "a red fox"}).json()["id"]
    stream = sse.read(alice, f"/v1/creations/{cid}/events", timeout=WAIT)
    assert stream.ended and stream.statuses[-1] == "draft"
    order = ["pending", "processing", "draft"]
    assert stream.statuses == sorted(stream.statuses, key=order.index)
    assert stream.events[-1].json["media"]["url"]
    alice.close()


def test_the_event_stream_on_firestore_sends_each_change_and_resumes(firestore_stack):
    store = firestore_stack.store
    alice = api_user(firestore_stack, "alice")
    cid = alice.post("/v1/creations", json={"type": "image", "prompt": "a prompt the filter refuses #blocked"}
                     ).json()["id"]
    # The pipeline refuses it (CONTENT_POLICY) and refunds; then an operator replays it.
    first = sse.read(alice, f"/v1/creations/{cid}/events", timeout=WAIT)
    assert first.statuses[-1] == "failed" and first.ids[-1] == "1:3"
    assert first.events[-1].json["error"]["code"] == "CONTENT_POLICY"
    assert sse.read(alice, f"/v1/creations/{cid}/events", last_event_id="1:3").status == 204

    store.update_creation(cid, replayed)   # attempt 2, driven through the store as the steps do
    stream = sse.Stream(0)
    with alice.stream("GET", f"/v1/creations/{cid}/events", headers={"Last-Event-ID": "1:3"},
                      timeout=httpx.Timeout(10, read=WAIT)) as response:
        for event in sse.parse(response.iter_lines(), stream):
            stream.events.append(event)
            if event.id == "2:1":
                store.update_creation(cid, to_processing)
            elif event.id == "2:2":
                store.update_creation(cid, to_failed)
    assert stream.ids == ["2:1", "2:2", "2:3"]
    assert stream.statuses == ["pending", "processing", "failed"]
    alice.close()
