"""The happy path, end to end: POST /v1/creations → the workflow runs every step job → a draft whose
media (and thumbnail) the API's URLs serve from object storage, paid for exactly once."""
from __future__ import annotations

import io
import struct

import httpx
import pytest
from PIL import Image

from tests.support.stack import Stack, job_runs, jobs_started, retries

pytestmark = pytest.mark.slow

PIPELINE_STEPS = ("check_debit", "mark_processing", "generate_media", "make_thumbnail", "upload_media",
                  "finalize_creation")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def download(url: str) -> bytes:
    response = httpx.get(url, timeout=30.0)
    assert response.status_code == 200, f"GET {url}: {response.status_code}"
    return response.content


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC, f"not a PNG: {data[:8]!r}"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:3] == JPEG_MAGIC, f"not a JPEG: {data[:3]!r}"
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.size


def assert_each_step_ran_once(entries: list[dict]) -> None:
    for step in PIPELINE_STEPS:
        runs = job_runs(entries, step)
        assert [r["state"] for r in runs] == ["STATE_SUCCEEDED"], (step, runs)
        assert retries(entries, step) == []
    assert jobs_started(entries) == len(PIPELINE_STEPS)
    assert not any(e["routine"] == "main" and e["step"] == "refund_tokens" for e in entries)


def test_an_image_becomes_a_draft_with_its_media_in_storage(pipeline: Stack):
    user = pipeline.new_user(5)
    creation_id = pipeline.submit(user, "a lighthouse at dawn, watercolour")

    outcome = pipeline.finish(creation_id)

    assert outcome.state == "SUCCEEDED", outcome.execution.get("error")
    assert outcome.execution["result"] == (
        f'{{"creationId":"{creation_id}","attempt":1,"status":"draft"}}')
    assert_each_step_ran_once(outcome.entries)
    out = outcome.creation
    assert out["status"] == "draft" and out["error"] is None
    media = out["media"]
    assert media["contentType"] == "image/png"
    original = download(media["url"])
    assert len(original) == media["bytes"] > 1000
    assert png_size(original) == (512, 512)          # 1:1, the default aspect ratio
    assert jpeg_size(download(media["thumbnailUrl"])) == (512, 512)
    # The published object is the one the checkpoints name, with the recorded SHA-256.
    record = pipeline.store.get_creation(creation_id)
    stored = pipeline.storage.head(record.media["key"])
    assert stored is not None and stored.sha256 == record.media["sha256"]
    assert stored.bytes == len(original)
    # Paid once, for this attempt.
    cost = pipeline.settings.cost_image
    assert pipeline.balance(user) == user.granted - cost
    assert pipeline.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit"]
    assert record.charge == {"debited": {"1": True}, "refunded": {}}
    assert pipeline.store.audit() == []


def test_a_video_becomes_a_draft_with_an_mp4_and_a_jpeg_thumbnail(pipeline: Stack):
    user = pipeline.new_user(25)
    creation_id = pipeline.submit(user, "a paper boat on a stream", "video", durationSeconds=4)

    outcome = pipeline.finish(creation_id)

    assert outcome.state == "SUCCEEDED", outcome.execution.get("error")
    assert_each_step_ran_once(outcome.entries)
    out = outcome.creation
    assert out["status"] == "draft"
    media = out["media"]
    assert media["contentType"] == "video/mp4"
    clip = download(media["url"])
    assert len(clip) == media["bytes"] > 1000
    assert clip[4:8] == b"ftyp", f"not an MP4: {clip[:12]!r}"
    assert jpeg_size(download(media["thumbnailUrl"])) == (512, 288)   # 16:9, 512 px wide
    # Every jobs.run call of a finished job records at least one poll (the first, at once).
    polls = [e.get("connectorPolls") for e in outcome.entries if e["stepType"] == "STEP_CONNECTOR_CALL"
             and e["routine"] == "run_step"]
    assert len(polls) == 6 and all(isinstance(p, int) and p >= 1 for p in polls), polls
    cost = pipeline.settings.cost_video
    assert pipeline.balance(user) == user.granted - cost
    assert pipeline.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit"]
    assert pipeline.store.audit() == []
