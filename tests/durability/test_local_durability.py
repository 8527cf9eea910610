"""The local stack loses nothing a developer made when it is stopped with Ctrl-C (SIGINT to the
whole process group) or killed (SIGKILL to the group): after a restart every draft's media
downloads, byte for byte, and the step jobs' logs of the runs before are still there."""
from __future__ import annotations

import hashlib
import time
import uuid

import httpx
import pytest

from tests.support.devprocess import DevProcess, wait_until_gone

pytestmark = pytest.mark.slow

DRAFT_TIMEOUT = 240.0      # process-mode jobs start a Python each; generous for a loaded machine


def drafts_of(client: httpx.Client, ids: list[str]) -> dict[str, dict]:
    """Waits until every creation is a draft; returns them as the API shows them."""
    deadline = time.monotonic() + DRAFT_TIMEOUT
    out: dict[str, dict] = {}
    while time.monotonic() < deadline and len(out) < len(ids):
        for creation_id in ids:
            body = client.get(f"/v1/creations/{creation_id}").json()
            assert body["status"] != "failed", body
            if body["status"] == "draft":
                out[creation_id] = body
        time.sleep(0.2)
    assert len(out) == len(ids), f"not drafts within {DRAFT_TIMEOUT:g} s: {set(ids) - set(out)}"
    return out


def media_digests(client: httpx.Client, creation: dict) -> tuple[str, str]:
    """SHA-256 of the draft's media and of its thumbnail, downloaded from the URLs the API gives."""
    digests = []
    for url in (creation["media"]["url"], creation["media"]["thumbnailUrl"]):
        response = httpx.get(url, timeout=30.0)
        assert response.status_code == 200, f"GET {url}: {response.status_code}"
        digests.append(hashlib.sha256(response.content).hexdigest())
    return digests[0], digests[1]


# Ctrl-C with in-process jobs (no job logs), SIGKILL with step jobs as processes: each run of a
# job logs to DATA_DIR/jobs/<execution>.log.
@pytest.mark.parametrize("stop, flags", [("ctrl-c", ("--in-process",)), ("sigkill", ())], ids=["ctrl-c", "sigkill"])
def test_every_drafts_media_and_every_job_log_survive_a_stop_and_a_restart(tmp_path, stop, flags):
    data_dir = tmp_path / "data"
    uid = f"dev-{uuid.uuid4().hex[:8]}"
    logged = "--in-process" not in flags
    first = DevProcess(data_dir, "--instant", *flags).start()
    try:
        store = first.store()
        store.grant(uid, 10, f"grant:{uid}")
        store.close()
        with first.client(uid) as client:
            ids = [
                client.post("/v1/creations", json={"type": "image", "prompt": f"a harbour at night {n}"}).json()["id"]
                for n in range(2)
            ]
            before = {cid: media_digests(client, c) for cid, c in drafts_of(client, ids).items()}
    finally:
        if stop == "ctrl-c":
            assert first.interrupt() == 0, "".join(first.output)
        else:
            first.crash()
    # The S3 stand-in does not outlive the stack it served.
    assert wait_until_gone(first.urls["s3"]), "the S3 stand-in outlived its stack"
    logs = {p.name: p.read_bytes() for p in (data_dir / "jobs").glob("*.log")}
    assert len(logs) == (2 * 6 if logged else 0)     # six step jobs a draft, each with a log of its own

    second = DevProcess(data_dir, "--instant", *flags).start()
    try:
        with second.client(uid) as client:
            after = {cid: media_digests(client, c) for cid, c in drafts_of(client, ids).items()}
            assert after == before
            # A creation after the restart: its jobs log under new names, the old logs untouched.
            more = client.post("/v1/creations", json={"type": "image", "prompt": "a harbour at dawn"}).json()["id"]
            drafts_of(client, [more])
        now = {p.name: p.read_bytes() for p in (data_dir / "jobs").glob("*.log")}
        assert len(now) == len(logs) + (6 if logged else 0)
        assert {name: now[name] for name in logs} == logs
        assert all(b'"step":' in text for text in logs.values())   # each holds its job's JSON lines
        store = second.store()
        try:
            assert store.audit() == []
            assert store.balance(uid) == 10 - 3
        finally:
            store.close()
    finally:
        second.interrupt()
