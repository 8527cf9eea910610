"""Replay after an upload outage: a new execution for the next attempt resumes from the
checkpoints (no second generation), reaches draft, and the user pays exactly once net."""
from __future__ import annotations

import pytest

from creations.attempts import replay
from creations.triggers import trigger_from_settings
from tests.support.stack import (
    Stack,
    backoff_delays,
    creation_record,
    declared_retry,
    job_runs,
    marker,
    retries,
)

pytestmark = pytest.mark.slow


def staging_keys(pipeline: Stack, creation_id: str) -> list[str]:
    return pipeline.stored_keys(f"{pipeline.storage.staging_prefix}{creation_id}/")


def test_a_replay_after_an_upload_outage_reuses_the_generation_and_charges_once(pipeline: Stack):
    user = pipeline.new_user(5)
    cost = pipeline.settings.cost_image
    tag = marker()

    # Attempt 1: generated and thumbnailed, then object storage is unreachable for the upload.
    with pipeline.upload_outage(tag):
        creation_id = pipeline.submit(user, f"a red kite over the downs {tag}")
        first = pipeline.finish(creation_id)
    assert first.state == "FAILED"
    payload = first.error_payload
    assert (payload["code"], payload["step"], payload["refunded"]) == ("STORAGE_ERROR", "upload", True)
    upload = declared_retry("upload_media")
    assert len(job_runs(first.entries, "upload_media")) == 1 + upload["max_retries"]
    assert [r["details"]["delaySeconds"] for r in retries(first.entries, "upload_media")] == backoff_delays(upload)
    assert pipeline.balance(user) == user.granted
    failed = creation_record(pipeline.store, creation_id)
    generated = failed.checkpoint("generate")
    assert generated is not None and generated.attempt == 1
    staged = staging_keys(pipeline, creation_id)

    # An operator replays it: the next attempt, through the domain's one money path and the
    # API's own trigger.
    trigger = trigger_from_settings(pipeline.settings)
    try:
        replayed = replay(pipeline.store, trigger, creation_id, actor="e2e", expected_attempt=1)
    finally:
        trigger.close()
    assert replayed.creation.attempt == 2 and not replayed.forced
    name = replayed.execution
    assert replayed.creation.execution_ids[-1] == name
    second = pipeline.finish(creation_id, name)

    assert second.state == "SUCCEEDED", second.execution.get("error")
    assert second.creation["status"] == "draft" and second.creation["attempt"] == 2
    assert second.creation["media"]["contentType"] == "image/png"
    # No second generation: the replay's generate job reused attempt 1's original, so the
    # checkpoint still names it and nothing new was staged for attempt 2.
    done = creation_record(pipeline.store, creation_id)
    assert done.checkpoint("generate").attempt == 1
    assert done.checkpoint("generate").output == generated.output
    assert staging_keys(pipeline, creation_id) == staged
    assert not any(f"/{creation_id}/2/" in key for key in staged)
    assert done.media["sha256"] == generated.output["sha256"]
    assert [r["state"] for r in job_runs(second.entries, "generate_media")] == ["STATE_SUCCEEDED"]
    assert [r["state"] for r in job_runs(second.entries, "upload_media")] == ["STATE_SUCCEEDED"]
    # Paid exactly once net: debit 1, refund 1, debit 2.
    assert pipeline.ledger_ids(user, creation_id) == [
        f"{creation_id}:1:debit", f"{creation_id}:1:refund", f"{creation_id}:2:debit"]
    assert done.charge == {"debited": {"1": True, "2": True}, "refunded": {"1": True}}
    assert pipeline.balance(user) == user.granted - cost
    assert pipeline.store.audit() == []
