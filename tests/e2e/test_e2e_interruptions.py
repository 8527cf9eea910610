"""Interrupted work keeps the money exact: a step job killed mid-generation, an execution cancelled
while its generate job runs, and step jobs delivered twice."""
from __future__ import annotations

import time
import uuid

import httpx
import pytest

from creations.model import Status
from tests.support.stack import PROCESS, Outcome, Stack, User, creation_record, job_runs, jobs_started

pytestmark = pytest.mark.slow


def slow_prompt() -> str:
    return f"a long exposure of city lights #slow [{uuid.uuid4().hex[:10]}]"


def stored_objects(pipeline: Stack, uid: str, creation_id: str) -> dict[str, tuple]:
    """Key -> (ETag, last modified) of the creation's staged and published objects."""
    out = {}
    for prefix in (f"{pipeline.storage.staging_prefix}{creation_id}/", f"media/{uid}/{creation_id}/"):
        listing = pipeline.storage.client.list_objects_v2(Bucket=pipeline.settings.s3_bucket, Prefix=prefix)
        out.update({o["Key"]: (o["ETag"], o["LastModified"]) for o in listing.get("Contents", [])})
    return out


def wait_until_generating(pipeline: Stack, creation_id: str, timeout: float = 30.0) -> None:
    """Until the generate job of the creation is running (its job started and no outcome yet)."""
    if pipeline.mode == "process":
        _, execution = pipeline.job_process("generate", creation_id)
        pipeline.wait_for_log(execution, "calling the generator")
        return
    name = pipeline.execution_name(creation_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = job_runs(pipeline.engine.step_entries(name), "generate_media")
        if runs and runs[-1]["state"] == "STATE_IN_PROGRESS":
            return
        time.sleep(0.02)
    raise AssertionError(f"the generate job of {creation_id} did not start within {timeout:g} s")


@pytest.fixture(scope="module")
def killed_generate(pipeline: Stack) -> tuple[Stack, User, Outcome]:
    """A creation whose generate job was SIGKILLed mid-run (the container dies recording nothing)."""
    user = pipeline.new_user(3)
    creation_id = pipeline.submit(user, slow_prompt())
    pid, execution = pipeline.job_process("generate", creation_id)
    pipeline.wait_for_log(execution, "calling the generator")
    pipeline.kill(pid)
    return pipeline, user, pipeline.finish(creation_id)


@pytest.mark.parametrize("pipeline", [PROCESS], indirect=True)
def test_a_generate_job_killed_mid_run_is_retried_and_paid_once(killed_generate):
    pipeline, user, outcome = killed_generate
    creation_id = outcome.creation_id
    # The killed job recorded nothing; the retry predicate retries a job that died without a word
    # (safe: steps are idempotent), and the second run makes the draft.
    assert outcome.state == "SUCCEEDED", outcome.execution.get("error")
    assert [r["state"] for r in job_runs(outcome.entries, "generate_media")] == ["STATE_FAILED", "STATE_SUCCEEDED"]
    assert job_runs(outcome.entries, "refund_tokens") == []
    assert outcome.creation["status"] == "draft"
    assert pipeline.balance(user) == user.granted - 1
    assert pipeline.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit"]
    assert creation_record(pipeline.store, creation_id).charge == {"debited": {"1": True}, "refunded": {}}
    assert pipeline.store.audit() == []


def test_an_execution_cancelled_mid_generation_is_settled_by_the_refund_job(pipeline: Stack):
    user = pipeline.new_user(3)
    creation_id = pipeline.submit(user, slow_prompt())
    name = pipeline.execution_name(creation_id)
    wait_until_generating(pipeline, creation_id)

    # An operator cancels it through the Executions API. Cloud Workflows runs no except block on
    # cancellation, so the workflow's own refund does not run.
    response = httpx.post(f"{pipeline.stack.urls['executions']}/v1/{name}:cancel", timeout=30.0)
    assert response.status_code == 200, response.text
    execution = pipeline.wait(name)
    assert execution["state"] == "CANCELLED"
    record = creation_record(pipeline.store, creation_id)
    assert record.status is Status.PROCESSING          # left for the reconciler
    assert pipeline.balance(user) == user.granted - record.cost   # still paid, once
    assert pipeline.refunds(user, creation_id) == 0

    # What the reconciler does with a creation whose execution ended without a terminal state:
    # run the refund job for its attempt. Twice, as at-least-once delivery may.
    assert pipeline.run_step("refund", creation_id, 1) == 0
    assert pipeline.run_step("refund", creation_id, 1) == 0

    out = pipeline.creation_out(user, creation_id)
    assert out["status"] == "failed"
    assert pipeline.balance(user) == user.granted
    assert pipeline.refunds(user, creation_id) == 1
    assert pipeline.store.audit() == []


def test_step_jobs_delivered_twice_change_nothing(pipeline: Stack):
    user = pipeline.new_user(3)
    creation_id = pipeline.submit(user, "a bowl of lemons on a table")
    outcome = pipeline.finish(creation_id)
    assert outcome.state == "SUCCEEDED", outcome.execution.get("error")
    before = creation_record(pipeline.store, creation_id).to_dict()
    balance = pipeline.balance(user)
    objects = stored_objects(pipeline, user.uid, creation_id)
    assert len(objects) == 4          # original and thumbnail, staged and published

    # Every step of the finished attempt, run again outside the workflow (a duplicate delivery).
    for step in ("debit_check", "mark_processing", "generate", "thumbnail", "upload", "finalize", "refund"):
        assert pipeline.run_step(step, creation_id, 1) == 0, step
    # And a duplicate execution of the same attempt: it runs through harmlessly.
    duplicate = pipeline.wait(pipeline.start_workflow({"creationId": creation_id, "attempt": 1}))
    assert duplicate["state"] == "SUCCEEDED", duplicate.get("error")
    assert jobs_started(pipeline.engine.step_entries(duplicate["name"])) == 6

    after = creation_record(pipeline.store, creation_id).to_dict()
    assert after == before
    assert pipeline.balance(user) == balance == user.granted - pipeline.settings.cost_image
    assert pipeline.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit"]
    assert stored_objects(pipeline, user.uid, creation_id) == objects
    assert pipeline.store.audit() == []
