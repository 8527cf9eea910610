"""The money paths through HTTP: debit once, 402 writes nothing, 429, idempotency under
concurrency, and a failed trigger refunded exactly once."""
from __future__ import annotations

import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_stack import SECRET, api_settings
from fastapi.testclient import TestClient

from api.auth import make_local_token
from api.main import create_app
from creations.model import EntryKind, Status
from creations.storage import MediaStorage
from creations.store.sqlite import SqliteStore
from localcloud.cloudtasks import CloudTasksServer


def submit(client, kind="image", prompt="a lighthouse at dusk", key=None, **kwargs):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/creations", json={"type": kind, "prompt": prompt, **kwargs}, headers=headers)


def debits(api, uid):
    return [e for e in api.store.ledger(uid) if e.kind is EntryKind.DEBIT]


def refunds(api, uid):
    return [e for e in api.store.ledger(uid) if e.kind is EntryKind.REFUND]


def test_not_enough_tokens_is_402_and_writes_nothing(api):
    with api.user(tokens=api.settings.cost_video - 1) as client:
        started_before = len(api.executions.executions)
        response = submit(client, "video")
        assert response.status_code == 402
        assert response.json()["error"]["code"] == "INSUFFICIENT_TOKENS"
        assert client.get("/v1/me").json()["tokens"] == api.settings.cost_video - 1
        assert client.get("/v1/creations").json()["items"] == []
        assert debits(api, client.uid) == []
        assert len(api.executions.executions) == started_before
        assert submit(client, "image").status_code == 202  # an image still fits


def test_a_user_without_tokens_gets_402(api):
    with api.user(tokens=0) as client:
        assert submit(client).status_code == 402
        assert client.get("/v1/me").json() == {"uid": client.uid, "tokens": 0}


def test_too_many_running_is_429_and_charges_nothing(api):
    limit = api.settings.max_active_per_user
    with api.user(tokens=100) as client:
        ids = [submit(client).json()["id"] for _ in range(limit)]
        response = submit(client)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "TOO_MANY_ACTIVE"
        assert "retry-after" in {k.lower() for k in response.headers}
        assert client.get("/v1/me").json()["tokens"] == 100 - limit * api.settings.cost_image

        api.store.update_creation(ids[0], lambda c: (c.transition(Status.FAILED), c)[1])
        assert submit(client).status_code == 202  # a finished one frees a slot


def test_same_key_same_body_answers_the_first_creation_and_charges_once(api):
    with api.user(tokens=30) as client:
        first = submit(client, "video", key="k-1")
        again = submit(client, "video", key="k-1")
        assert first.status_code == again.status_code == 202
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["balance"] == 30 - api.settings.cost_video
        assert len(debits(api, client.uid)) == 1
        assert len(api.executions.for_creation(first.json()["id"])) == 1


def test_same_key_other_body_is_409(api):
    with api.user() as client:
        assert submit(client, prompt="a cat", key="k-2").status_code == 202
        conflict = submit(client, prompt="a dog", key="k-2")
        assert conflict.status_code == 409
        assert conflict.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
        assert len(debits(api, client.uid)) == 1


def test_keys_belong_to_their_user(api):
    with api.user() as alice, api.user() as bob:
        a = submit(alice, key="shared-key").json()
        b = submit(bob, key="shared-key").json()
        assert a["id"] != b["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "has space"])
def test_a_malformed_idempotency_key_is_422(api, key):
    with api.user() as client:
        response = client.post("/v1/creations", json={"type": "image", "prompt": "x"},
                               headers={"Idempotency-Key": key})
        assert response.status_code == 422
        assert "Idempotency-Key" in response.json()["error"]["fields"]


def test_twenty_parallel_posts_with_one_key_make_one_creation_and_one_debit(api):
    with api.user(tokens=50) as client:
        body = {"type": "video", "prompt": "waves on a rocky shore", "options": {}}

        def post(_):
            return client.post("/v1/creations", json=body, headers={"Idempotency-Key": "burst-1"})

        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(post, range(20)))

        assert [r.status_code for r in responses] == [202] * 20
        assert len({r.json()["id"] for r in responses}) == 1
        creation_id = responses[0].json()["id"]
        assert len(debits(api, client.uid)) == 1
        assert client.get("/v1/me").json()["tokens"] == 50 - api.settings.cost_video
        assert [i["id"] for i in client.get("/v1/creations").json()["items"]] == [creation_id]
        assert len(api.executions.for_creation(creation_id)) == 1


def test_a_failed_trigger_refunds_and_fails_the_creation(api):
    with api.user(tokens=20) as client:
        api.executions.fail_status = 503
        response = submit(client, "video", key="will-fail")
        assert response.status_code == 503
        body = response.json()
        assert body["refunded"] is True
        assert body["error"]["code"] == "TRIGGER_FAILED" and body["error"]["message"]
        assert body["balance"] == 20
        assert client.get("/v1/me").json()["tokens"] == 20

        creation = client.get(f"/v1/creations/{body['id']}").json()
        assert creation["status"] == "failed"
        assert creation["error"]["code"] == "TRIGGER_FAILED"
        assert len(debits(api, client.uid)) == 1 and len(refunds(api, client.uid)) == 1

        # The retried request answers the same failure; nothing moves twice.
        api.executions.fail_status = None
        again = submit(client, "video", key="will-fail")
        assert again.status_code == 503 and again.json()["id"] == body["id"]
        assert client.get("/v1/me").json()["tokens"] == 20
        assert len(debits(api, client.uid)) == 1 and len(refunds(api, client.uid)) == 1
        assert api.executions.for_creation(body["id"]) == []

        # A new request goes through.
        assert submit(client, "video").status_code == 202


def test_the_books_balance_after_everything(api):
    assert api.store.audit() == []


# --- other triggers behind the same API ---------------------------------------------------------


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_app(tmp_path, s3, **settings):
    settings = api_settings(tmp_path, s3, **settings)
    store = SqliteStore(settings.sqlite_path)
    app = create_app(settings, store=store, storage=MediaStorage.from_settings(settings))
    return app, store


def test_an_unreachable_engine_refunds(tmp_path, s3):
    app, store = local_app(tmp_path, s3, local_engine_url=f"http://127.0.0.1:{refused_port()}")
    store.grant("u1", 5, "g1")
    with TestClient(app, headers={"Authorization": f"Bearer {make_local_token('u1', SECRET)}"}) as client:
        response = client.post("/v1/creations", json={"type": "image", "prompt": "a kite"})
        assert response.status_code == 503
        assert response.json()["refunded"] is True
        assert client.get("/v1/me").json()["tokens"] == 5
        assert store.get_creation(response.json()["id"]).status is Status.FAILED
    assert store.audit() == []
    store.close()


def test_tasks_trigger_behind_the_api_dedups_a_restarted_trigger(tmp_path, s3):
    tasks = CloudTasksServer().start()
    # Paused: the task stays queued to be looked at (its URL is Google's Executions API).
    tasks.tasks.create_queue("projects/proj-test/locations/europe-west1/queues/creations-video", state="PAUSED")
    try:
        # retrigger_after_seconds tiny: a retried request counts the first as dead and triggers again.
        app, store = local_app(tmp_path, s3, trigger="tasks", tasks_endpoint=tasks.url,
                               tasks_service_account="invoker@proj-test.iam.gserviceaccount.com",
                               retrigger_after_seconds=1e-6)
        store.grant("u2", 50, "g2")
        with TestClient(app, headers={"Authorization": f"Bearer {make_local_token('u2', SECRET)}"}) as client:
            key = uuid.uuid4().hex
            first = client.post("/v1/creations", json={"type": "video", "prompt": "rain"},
                                headers={"Idempotency-Key": key})
            again = client.post("/v1/creations", json={"type": "video", "prompt": "rain"},
                                headers={"Idempotency-Key": key})
            assert first.status_code == again.status_code == 202
            assert first.json()["id"] == again.json()["id"]
            assert len(tasks.tasks.create_requests) == 2          # the task was sent twice...
            queue = "projects/proj-test/locations/europe-west1/queues/creations-video"
            [task] = tasks.tasks.list_tasks(queue)["tasks"]       # ...and exists once (409 ALREADY_EXISTS)
            assert "/queues/creations-video/tasks/" in task["name"]
            assert client.get("/v1/me").json()["tokens"] == 40
        store.close()
    finally:
        tasks.stop()
