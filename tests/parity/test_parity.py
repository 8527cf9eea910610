"""The money paths end to end on production settings: Firestore (Google's emulator) written by the
API and the jobs and read by the workflow through the Firestore REST API, executions started by
Cloud Tasks deliveries. Each test ends with the ledger audit (the root conftest)."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from creations.model import EntryKind
from phoenix.ops import main as ops_main
from tests.parity.conftest import MAX_ACTIVE
from tests.support.stack import Stack, creation_record, declared_retry, job_runs, marker, retries, unique

pytestmark = pytest.mark.slow


def delivered(stack: Stack, creation_id: str) -> list:
    """The Cloud Tasks deliveries of the creation's tasks (their body names the creation)."""
    tasks = stack.stack.tasks.tasks
    names = {r["task"]["name"] for r in tasks.create_requests
             if creation_id in json.loads(_body(r["task"]))["argument"]}
    return [d for d in tasks.deliveries if d.task in names]


def _body(task: dict) -> bytes:
    import base64

    return base64.b64decode(task["httpRequest"]["body"])


def kinds(stack: Stack, user, creation_id: str) -> list[str]:
    return [e.kind.value for e in stack.store.ledger(user.uid) if e.creation_id == creation_id]


def test_an_image_reaches_draft_through_cloud_tasks_and_firestore(stack: Stack):
    user = stack.new_user(3)
    reads_before = stack.stack.firestore_connector.counts["requests.get"]

    creation_id = stack.submit(user, unique("a lighthouse at dawn"))
    done = stack.finish(creation_id)

    assert done.state == "SUCCEEDED", done.execution.get("error")
    assert done.creation["status"] == "draft"
    assert done.creation["media"]["contentType"] == "image/png"
    assert stack.balance(user) == 3 - stack.settings.cost_image
    assert kinds(stack, user, creation_id) == ["debit"]
    # Started by the task's delivery to the Executions API, once; the workflow read the
    # creation through the Firestore REST API of the emulator.
    assert [d.status for d in delivered(stack, creation_id)] == [200]
    assert json.loads(done.execution["argument"]) == {"creationId": creation_id, "attempt": 1}
    assert stack.stack.firestore_connector.counts["requests.get"] > reads_before


def test_a_video_reaches_draft(stack: Stack):
    user = stack.new_user(10)
    creation_id = stack.submit(user, unique("waves on a pebble beach"), "video", durationSeconds=4)
    done = stack.finish(creation_id)
    assert done.state == "SUCCEEDED", done.execution.get("error")
    assert done.creation["media"]["contentType"] == "video/mp4"
    assert stack.balance(user) == 0
    assert kinds(stack, user, creation_id) == ["debit"]


def test_a_content_policy_refusal_fails_at_once_and_refunds(stack: Stack):
    user = stack.new_user(2)
    creation_id = stack.submit(user, unique("a scene #blocked"))
    done = stack.finish(creation_id)

    assert done.state == "FAILED"
    assert done.error_payload["code"] == "CONTENT_POLICY" and done.error_payload["refunded"] is True
    # The retry predicate read retryable=false from the Firestore document: no retry.
    assert len(job_runs(done.entries, "generate_media")) == 1
    assert done.creation["status"] == "failed" and done.creation["error"]["code"] == "CONTENT_POLICY"
    assert stack.balance(user) == 2
    assert kinds(stack, user, creation_id) == ["debit", "refund"]


def test_a_transient_generation_error_is_retried_by_the_yaml_and_succeeds(stack: Stack):
    user = stack.new_user(1)
    creation_id = stack.submit(user, unique("a kite #flaky"))
    done = stack.finish(creation_id)

    assert done.state == "SUCCEEDED", done.execution.get("error")
    # Two 503s recorded as retryable on the document, read back through the connector: two retries
    # at the declared backoff (virtual time).
    generate = declared_retry("generate_media")
    assert len(job_runs(done.entries, "generate_media")) == 3
    assert [r["details"]["delaySeconds"] for r in retries(done.entries, "generate_media")] == \
        [generate["backoff"]["initial_delay"], generate["backoff"]["initial_delay"] * generate["backoff"]["multiplier"]]
    assert stack.balance(user) == 0
    assert kinds(stack, user, creation_id) == ["debit"]


def test_an_outage_refunds_then_the_operators_replay_charges_once_and_reuses_the_media(stack: Stack, monkeypatch):
    user = stack.new_user(1)
    tag = marker()
    with stack.upload_outage(tag):
        creation_id = stack.submit(user, f"a red kite over the downs {tag}")
        first = stack.finish(creation_id)
    assert first.state == "FAILED"
    assert (first.error_payload["code"], first.error_payload["step"]) == ("STORAGE_ERROR", "upload")
    assert stack.balance(user) == 1
    generated = creation_record(stack.store, creation_id).checkpoint("generate")

    # The operator's own tool, with the settings `phoenix dev` writes for it (Firestore, Cloud Tasks).
    for name, value in stack.stack.ops_env().items():
        monkeypatch.setenv(name, value)
    assert ops_main(["replay", "--failed", "--code", "STORAGE_ERROR"]) == 0

    second = stack.finish(creation_id, stack.execution_name(creation_id))
    assert second.state == "SUCCEEDED", second.execution.get("error")
    done = creation_record(stack.store, creation_id)
    assert done.status.value == "draft" and done.attempt == 2
    assert done.checkpoint("generate").output == generated.output       # no second generation
    assert kinds(stack, user, creation_id) == ["debit", "refund", "debit"]
    assert stack.balance(user) == 0
    assert ops_main(["audit"]) == 0


def test_the_operators_trace_finds_the_executions_cloud_tasks_started(stack: Stack, monkeypatch, capsys):
    user = stack.new_user(1)
    creation_id = stack.submit(user, unique("a fox in snow #blocked"))
    name = stack.finish(creation_id).execution["name"]
    assert stack.creation(creation_id).execution_ids == []   # the tasks trigger cannot know it
    for key, value in stack.stack.ops_env().items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()

    assert ops_main(["trace", creation_id]) == 0

    out = capsys.readouterr().out
    assert f"execution {name}" in out and "state FAILED" in out and "generate_media" in out


def test_a_job_killed_after_its_work_is_retried_and_the_creation_completes(stack: Stack):
    user = stack.new_user(1)
    tag = marker()
    # The upload job publishes the media, then dies (exit 137, as a SIGKILLed container) without
    # recording anything: the predicate reads no error for this step and retries.
    with stack.fault("crash_after", "upload", marker=tag, times=1):
        creation_id = stack.submit(user, f"a heron {tag}")
        done = stack.finish(creation_id)
    assert done.state == "SUCCEEDED", done.execution.get("error")
    assert [r["state"] for r in job_runs(done.entries, "upload_media")] == ["STATE_FAILED", "STATE_SUCCEEDED"]
    assert kinds(stack, user, creation_id) == ["debit"]
    assert stack.balance(user) == 0


def test_a_duplicate_task_delivery_starts_a_second_execution_that_charges_nothing(stack: Stack):
    user = stack.new_user(1)
    stack.stack.tasks.tasks.duplicate_next(1)
    creation_id = stack.submit(user, unique("an owl at dusk"))
    stack.stack.tasks.tasks.wait_idle(30)

    assert [d.duplicate for d in delivered(stack, creation_id)] == [False, True]
    executions = stack.executions_of(creation_id, 1)
    assert len(executions) == 2                # Workflows does not deduplicate a delivered task
    ended = [stack.wait(e["name"]) for e in executions]
    assert "SUCCEEDED" in [e["state"] for e in ended]

    done = creation_record(stack.store, creation_id)
    assert done.status.value == "draft"
    assert kinds(stack, user, creation_id) == ["debit"]
    assert stack.balance(user) == 0


def test_twenty_concurrent_creations_of_one_user_at_the_limit(stack: Stack):
    cost = stack.settings.cost_image
    user = stack.new_user(MAX_ACTIVE * cost)          # exactly enough for the limit
    prompts = [unique(f"a paper boat {i}") for i in range(MAX_ACTIVE + 4)]

    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        answers = list(pool.map(lambda p: stack.post_creation(user, p), prompts))

    accepted = [a.json()["id"] for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code != 202]
    assert len(accepted) == MAX_ACTIVE
    assert {a.status_code for a in refused} <= {402, 429}, [a.text for a in refused]
    assert stack.store.balance(user.uid) == 0
    for creation_id in accepted:
        stack._owners[creation_id] = user
        assert stack.finish(creation_id).state == "SUCCEEDED"
    entries = [e for e in stack.store.ledger(user.uid) if e.kind is not EntryKind.GRANT]
    assert sorted(e.creation_id for e in entries) == sorted(accepted)
    assert all(e.kind is EntryKind.DEBIT for e in entries)
    assert stack.balance(user) == 0


def test_phoenix_dev_grant_writes_the_running_stacks_firestore(stack: Stack, monkeypatch, capsys):
    from devstack.cli import main as dev_main
    from devstack.cli import stack_env

    running = stack_env(stack.data_dir)
    assert running is not None and running["PHOENIX_STORE"] == "firestore"
    for key, value in running.items():        # restored after the test, whatever grant sets
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PHOENIX_STORE", "sqlite")   # the shell says otherwise: the running stack wins
    uid = f"granted-{marker()[1:-1]}"

    assert dev_main(["grant", uid, "7", "--data-dir", str(stack.data_dir)]) == 0

    assert "(firestore)" in capsys.readouterr().out
    assert stack.store.balance(uid) == 7
    assert [e.kind for e in stack.store.ledger(uid)] == [EntryKind.GRANT]
    stack.touched = True
