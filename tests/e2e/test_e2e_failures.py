"""Failures end to end, driven by the generation server's test prompts: a safety refusal fails at
once, a flaky provider is retried as the YAML declares, a provider that stays down exhausts the
retries; every failure is refunded exactly once."""
from __future__ import annotations

import pytest

from tests.support.stack import (
    Outcome,
    Stack,
    User,
    backoff_delays,
    declared_retry,
    job_runs,
    retries,
    unique,
)

pytestmark = pytest.mark.slow


def assert_refunded_once(pipeline: Stack, user: User, outcome: Outcome) -> None:
    creation_id = outcome.creation_id
    assert pipeline.balance(user) == user.granted
    assert pipeline.refunds(user, creation_id) == 1
    assert pipeline.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit", f"{creation_id}:1:refund"]
    record = pipeline.store.get_creation(creation_id)
    assert record.charge == {"debited": {"1": True}, "refunded": {"1": True}}
    assert [r["state"] for r in job_runs(outcome.entries, "refund_tokens")] == ["STATE_SUCCEEDED"]
    assert pipeline.store.audit() == []


def published_objects(pipeline: Stack, user: User, creation_id: str) -> list[str]:
    return pipeline.stored_keys(f"media/{user.uid}/{creation_id}/")


def test_a_blocked_prompt_fails_at_once_with_content_policy_and_is_refunded(pipeline: Stack):
    user = pipeline.new_user(3)
    creation_id = pipeline.submit(user, unique("a storm over the sea #blocked"))

    outcome = pipeline.finish(creation_id)

    assert outcome.state == "FAILED"
    payload = outcome.error_payload
    assert payload["code"] == "CONTENT_POLICY"
    assert payload["step"] == "generate"
    assert payload["refunded"] is True
    assert payload["creationId"] == creation_id and payload["attempt"] == 1
    # One generate job, no retry: the recorded error said not retryable.
    assert [r["state"] for r in job_runs(outcome.entries, "generate_media")] == ["STATE_FAILED"]
    assert retries(outcome.entries, "generate_media") == []
    for later in ("make_thumbnail", "upload_media", "finalize_creation"):
        assert job_runs(outcome.entries, later) == []
    out = outcome.creation
    assert out["status"] == "failed" and out["media"] is None
    assert out["error"]["code"] == "CONTENT_POLICY"
    assert "Rephrase" in out["error"]["message"]   # the provider's reason, readable by the user
    assert published_objects(pipeline, user, creation_id) == []
    assert_refunded_once(pipeline, user, outcome)


def test_a_flaky_provider_is_retried_with_the_declared_backoff_and_succeeds(pipeline: Stack):
    user = pipeline.new_user(3)
    creation_id = pipeline.submit(user, unique("a windmill in the fog #flaky"))

    outcome = pipeline.finish(creation_id)

    assert outcome.state == "SUCCEEDED", outcome.execution.get("error")
    runs = job_runs(outcome.entries, "generate_media")
    # The server answers 503 twice, then the image: two failed jobs, the third succeeds.
    assert [r["state"] for r in runs] == ["STATE_FAILED", "STATE_FAILED", "STATE_SUCCEEDED"]
    for failed in runs[:2]:
        assert '"StepFailed"' in failed["exception"]["payload"]
    declared = backoff_delays(declared_retry("generate_media"))
    assert [r["details"]["delaySeconds"] for r in retries(outcome.entries, "generate_media")] == declared[:2]
    # Each retry was decided by reading the error the job recorded on the creation.
    predicate_reads = [e for e in outcome.entries if e["routine"] == "retry_if_retryable"
                       and e["step"] == "read_recorded_error"]
    assert len(predicate_reads) == 2
    assert outcome.creation["status"] == "draft"
    assert outcome.creation["media"]["contentType"] == "image/png"
    assert pipeline.balance(user) == user.granted - pipeline.settings.cost_image
    assert pipeline.refunds(user, creation_id) == 0
    assert pipeline.store.audit() == []


def test_a_provider_that_stays_down_exhausts_the_retries_and_is_refunded_once(pipeline: Stack):
    user = pipeline.new_user(3)
    creation_id = pipeline.submit(user, unique("a quiet harbour #down"))

    outcome = pipeline.finish(creation_id)

    assert outcome.state == "FAILED"
    retry = declared_retry("generate_media")
    runs = job_runs(outcome.entries, "generate_media")
    assert len(runs) == 1 + retry["max_retries"]
    assert all(r["state"] == "STATE_FAILED" for r in runs)
    assert [r["details"]["delaySeconds"] for r in retries(outcome.entries, "generate_media")] == backoff_delays(retry)
    payload = outcome.error_payload
    assert payload["code"] == "PROVIDER_UNAVAILABLE"
    assert payload["step"] == "generate"
    assert payload["refunded"] is True
    assert "503" in payload["message"]
    assert outcome.creation["status"] == "failed"
    assert outcome.creation["error"]["code"] == "PROVIDER_UNAVAILABLE"
    assert_refunded_once(pipeline, user, outcome)
