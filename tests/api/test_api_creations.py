"""Submitting, reading, listing and deleting creations through HTTP."""
from __future__ import annotations

import httpx
import pytest

from creations.model import Status

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def submit(client, kind="image", prompt="a lighthouse at dusk", **kwargs):
    return client.post("/v1/creations", json={"type": kind, "prompt": prompt, **kwargs})


def finish(api, creation_id: str, status: Status, media: dict | None = None):
    """Move a creation along its state machine, as the pipeline's steps do."""
    def mutate(c):
        c.transition(Status.PROCESSING)
        c.transition(status)
        if media is not None:
            c.media = media
        return c
    return api.store.update_creation(creation_id, mutate)


# --- health and auth --------------------------------------------------------------------------


def test_healthz_needs_no_token(api):
    response = httpx.get(f"{api.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-token"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer"},
])
@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/me"), ("GET", "/v1/creations"), ("POST", "/v1/creations"),
    ("GET", "/v1/creations/abc"), ("DELETE", "/v1/creations/abc"),
])
def test_every_v1_route_needs_a_valid_bearer_token(api, headers, method, path):
    response = httpx.request(method, f"{api.url}{path}", headers=headers,
                             json={"type": "image", "prompt": "x"} if method == "POST" else None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


def test_a_token_signed_with_another_secret_is_refused(api):
    from api.auth import make_local_token

    forged = make_local_token("someone", "not-the-secret")
    response = httpx.get(f"{api.url}/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_me(api):
    with api.user(tokens=42) as client:
        assert client.get("/v1/me").json() == {"uid": client.uid, "tokens": 42}


# --- submit and read --------------------------------------------------------------------------


def test_submit_takes_the_tokens_records_and_starts_one_execution(api):
    with api.user(tokens=25) as client:
        response = submit(client, "video", "a fox running through snow")
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "pending"
        assert body["cost"] == api.settings.cost_video
        assert body["balance"] == 25 - api.settings.cost_video
        assert client.get("/v1/me").json()["tokens"] == 25 - api.settings.cost_video

        [started] = api.executions.for_creation(body["id"])
        assert started.parent == "projects/proj-test/locations/europe-west1/workflows/creation"
        assert started.argument == {"creationId": body["id"], "attempt": 1}
        assert started.labels == {"creation-id": body["id"], "type": "video", "attempt": "1"}
        stored = api.store.get_creation(body["id"])
        assert stored.uid == client.uid
        assert stored.execution_ids == [started.name]


def test_get_a_pending_creation(api):
    with api.user() as client:
        created = submit(client, "image", "a blue teapot").json()
        response = client.get(f"/v1/creations/{created['id']}")
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == created["id"]
        assert (body["type"], body["prompt"], body["status"]) == ("image", "a blue teapot", "pending")
        assert body["cost"] == api.settings.cost_image and body["attempt"] == 1
        assert isinstance(body["options"], dict)
        assert body["createdAt"] and body["updatedAt"]
        assert body["media"] is None and body["error"] is None


def test_a_draft_shows_fresh_media_urls(api):
    with api.user() as client:
        created = submit(client).json()
        key = api.storage.final_key(client.uid, created["id"], "image.png")
        thumb = api.storage.final_key(client.uid, created["id"], "thumb.jpg")
        api.storage.put_bytes(key, PNG, "image/png")
        api.storage.put_bytes(thumb, b"jpeg", "image/jpeg")
        finish(api, created["id"], Status.DRAFT, media={
            "url": "stale", "thumbnailUrl": "stale", "contentType": "image/png", "bytes": len(PNG),
            "key": key, "thumbnailKey": thumb})

        media = client.get(f"/v1/creations/{created['id']}").json()["media"]
        assert media["contentType"] == "image/png" and media["bytes"] == len(PNG)
        assert media["url"].startswith(api.settings.s3_endpoint_url) and "Signature" in media["url"]
        assert httpx.get(media["url"]).content == PNG
        assert httpx.get(media["thumbnailUrl"]).content == b"jpeg"


def test_a_failed_creation_shows_its_error(api):
    with api.user() as client:
        created = submit(client).json()

        def fail(c):
            from creations.model import CreationError
            c.transition(Status.FAILED)
            c.error = CreationError(code="CONTENT_POLICY", message="the prompt was refused", step="generate",
                                    retryable=False)
            return c
        api.store.update_creation(created["id"], fail)
        body = client.get(f"/v1/creations/{created['id']}").json()
        assert body["status"] == "failed"
        assert body["error"] == {"code": "CONTENT_POLICY", "message": "the prompt was refused"}
        assert body["media"] is None


@pytest.mark.parametrize("payload,field", [
    ({"type": "gif", "prompt": "x"}, "type"),
    ({"prompt": "x"}, "type"),
    ({"type": "image"}, "prompt"),
    ({"type": "image", "prompt": 5}, "prompt"),
    ({"type": "image", "prompt": "x", "options": "wide"}, "options"),
    ({"type": "image", "prompt": "x", "colour": "red"}, "colour"),
])
def test_malformed_requests_are_422_with_the_field(api, payload, field):
    with api.user() as client:
        response = client.post("/v1/creations", json=payload)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "INVALID_REQUEST"
        assert field in error["fields"], error
        assert client.get("/v1/me").json()["tokens"] == 100


def test_options_the_model_refuses_are_422_with_a_message_per_field(api):
    with api.user() as client:
        response = submit(client, "image", "   ", options={"noSuchOption": True})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["fields"] and all(isinstance(m, str) and m for m in error["fields"].values())
        assert client.get("/v1/me").json()["tokens"] == 100
        assert client.get("/v1/creations").json()["items"] == []


def test_not_json_is_422(api):
    with api.user() as client:
        response = client.post("/v1/creations", content=b"{not json", headers={"Content-Type": "application/json"})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "INVALID_REQUEST"


def test_unknown_creation_is_404(api):
    with api.user() as client:
        for creation_id in ("0" * 32, "no-such-id", "__x__", "a%2Fb"):
            response = client.get(f"/v1/creations/{creation_id}")
            assert response.status_code == 404, creation_id
            assert response.json()["error"]["code"] == "NOT_FOUND"


def test_another_users_creation_is_not_found(api):
    with api.user() as alice, api.user() as bob:
        created = submit(alice).json()
        assert bob.get(f"/v1/creations/{created['id']}").status_code == 404
        finish(api, created["id"], Status.FAILED)
        assert bob.delete(f"/v1/creations/{created['id']}").status_code == 404
        assert bob.get("/v1/creations").json()["items"] == []
        assert alice.get(f"/v1/creations/{created['id']}").status_code == 200


def test_unknown_route_and_method_keep_the_error_shape(api):
    with api.user() as client:
        missing = client.get("/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
        wrong = client.put("/v1/creations")
        assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert "allow" in {k.lower() for k in wrong.headers}


# --- list -------------------------------------------------------------------------------------


def test_list_pages_newest_first(api):
    with api.user() as client:
        ids = []
        for n in range(5):
            created = submit(client, prompt=f"picture {n}").json()
            ids.append(created["id"])
            finish(api, created["id"], Status.DRAFT if n % 2 else Status.FAILED)  # frees the active slot

        seen, token, pages = [], None, 0
        while True:
            params = {"limit": 2, **({"pageToken": token} if token else {})}
            page = client.get("/v1/creations", params=params)
            assert page.status_code == 200
            body = page.json()
            assert len(body["items"]) <= 2
            seen += [item["id"] for item in body["items"]]
            pages += 1
            token = body["nextPageToken"]
            if not token:
                break
        assert seen == list(reversed(ids))
        assert pages == 3

        drafts = client.get("/v1/creations", params={"status": "draft"}).json()
        assert [i["id"] for i in drafts["items"]] == [ids[3], ids[1]]
        assert drafts["nextPageToken"] is None
        assert len(client.get("/v1/creations").json()["items"]) == 5  # default limit 20


@pytest.mark.parametrize("params,field", [
    ({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"limit": "ten"}, "limit"),
    ({"status": "done"}, "status"), ({"pageToken": "bm90LWEtdG9rZW4"}, "pageToken"),
])
def test_list_rejects_bad_parameters(api, params, field):
    with api.user() as client:
        response = client.get("/v1/creations", params=params)
        assert response.status_code == 422
        assert field in response.json()["error"]["fields"]


# --- delete -----------------------------------------------------------------------------------


def test_delete_a_draft_removes_it_and_its_media(api):
    with api.user() as client:
        created = submit(client).json()
        cid = created["id"]
        final = api.storage.final_key(client.uid, cid, "image.png")
        thumb = api.storage.final_key(client.uid, cid, "thumb.jpg")
        staging = api.storage.staging_key(cid, 1, "raw.png")
        for key in (final, thumb, staging):
            api.storage.put_bytes(key, PNG, "image/png")
        # Media of another creation of the same user stays.
        other = submit(client).json()["id"]
        other_key = api.storage.final_key(client.uid, other, "image.png")
        api.storage.put_bytes(other_key, PNG, "image/png")
        finish(api, cid, Status.DRAFT, media={"key": final, "thumbnailKey": thumb, "contentType": "image/png",
                                              "bytes": len(PNG), "url": "", "thumbnailUrl": ""})

        response = client.delete(f"/v1/creations/{cid}")
        assert response.status_code == 204
        assert response.content == b""
        assert [api.storage.head(k) for k in (final, thumb, staging)] == [None, None, None]
        assert api.storage.head(other_key) is not None
        assert client.get(f"/v1/creations/{cid}").status_code == 404
        assert client.delete(f"/v1/creations/{cid}").status_code == 404


def test_delete_a_failed_creation(api):
    with api.user() as client:
        cid = submit(client).json()["id"]
        finish(api, cid, Status.FAILED)
        assert client.delete(f"/v1/creations/{cid}").status_code == 204
        assert api.store.get_creation(cid) is None


@pytest.mark.parametrize("status", [Status.PENDING, Status.PROCESSING])
def test_a_running_creation_cannot_be_deleted(api, status):
    with api.user() as client:
        cid = submit(client).json()["id"]
        if status is Status.PROCESSING:
            api.store.update_creation(cid, lambda c: (c.transition(Status.PROCESSING), c)[1])
        response = client.delete(f"/v1/creations/{cid}")
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "CREATION_ACTIVE"
        assert api.store.get_creation(cid).status is status
