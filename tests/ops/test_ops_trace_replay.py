"""`phoenix ops trace` and `phoenix ops replay` against a running local stack."""
from __future__ import annotations

import json

import pytest

from creations.model import Status
from tests.support.stack import Stack, User, marker

pytestmark = pytest.mark.xdist_group("ops")


@pytest.fixture(scope="module")
def draft(stack: Stack) -> tuple[User, str]:
    user = stack.new_user(5)
    creation_id = stack.submit(user, "a lighthouse at dusk")
    assert stack.finish(creation_id).state == "SUCCEEDED"
    return user, creation_id


def fail_upload(stack: Stack, user: User, prompt: str) -> str:
    """A creation that was generated and thumbnailed, then failed (retryably) at its upload."""
    tag = marker()
    with stack.upload_outage(tag):
        creation_id = stack.submit(user, f"{prompt} {tag}")
        assert stack.finish(creation_id).state == "FAILED"
    creation = stack.creation(creation_id)
    assert creation.status is Status.FAILED
    assert (creation.error.code, creation.error.step, creation.error.retryable) == ("STORAGE_ERROR", "upload", True)
    return creation_id


# --- trace -----------------------------------------------------------------------------------


def test_trace_of_a_draft_shows_the_creation_its_execution_and_step_entries(ops, stack, draft):
    _, creation_id = draft
    name = stack.execution_name(creation_id)
    run = ops("trace", creation_id)
    assert run.code == 0, run.err
    assert f"creation {creation_id}" in run.out
    assert "status draft  attempt 1" in run.out
    assert "checkpoint generate" in run.out and "checkpoint upload" in run.out
    assert f"execution {name}\n  state SUCCEEDED" in run.out
    # One row per step entry: the pipeline's steps and the jobs each one ran.
    rows = [
        line.split() for line in run.out.splitlines() if line.startswith("  main ") or line.startswith("  run_step ")
    ]
    steps = {(r[0], r[1]) for r in rows}
    assert {("main", "generate_media"), ("main", "upload_media"), ("main", "finalize_creation"),
            ("run_step", "run_job")} <= steps
    assert all(r[3] == "SUCCEEDED" for r in rows if r[0] == "main" and r[2] == "SUBWORKFLOW_CALL")


def test_trace_json_holds_the_creation_and_every_step_entry(ops, stack, draft):
    _, creation_id = draft
    run = ops("trace", creation_id, "--json")
    assert run.code == 0, run.err
    doc = json.loads(run.out)
    assert doc["creation"]["id"] == creation_id and doc["creation"]["status"] == "draft"
    [execution] = doc["executions"]
    assert execution["execution"]["name"] == stack.execution_name(creation_id)
    assert execution["execution"]["state"] == "SUCCEEDED"
    assert execution["stepEntries"] == stack.engine.step_entries(execution["execution"]["name"])


def test_trace_of_an_unknown_creation_exits_2(ops):
    run = ops("trace", "no-such-creation")
    assert run.code == 2  # an unknown id is a bad argument
    assert run.out == ""
    assert "no creation no-such-creation" in run.err


# --- replay ----------------------------------------------------------------------------------


def test_replay_after_an_upload_failure_reaches_draft_paying_once_without_a_second_generation(ops, stack):
    user = stack.new_user(5)
    cost = stack.settings.cost_image
    creation_id = fail_upload(stack, user, "a red kite over the downs")
    assert stack.store.balance(user.uid) == user.granted          # attempt 1 was refunded
    generated = stack.creation(creation_id).checkpoint("generate")
    assert generated is not None and generated.attempt == 1

    run = ops("replay", creation_id)
    assert run.code == 0, run.out + run.err
    replayed = stack.creation(creation_id)
    assert replayed.attempt == 2 and len(replayed.execution_ids) == 2
    assert run.line_about(creation_id).endswith(f"attempt 2 started {replayed.execution_ids[-1]}")
    assert stack.wait(replayed.execution_ids[-1])["state"] == "SUCCEEDED"

    done = stack.creation(creation_id)
    assert done.status is Status.DRAFT and done.attempt == 2
    # No second generation: attempt 2 reused attempt 1's original, and published it.
    assert done.checkpoint("generate").attempt == 1
    assert done.checkpoint("generate").output == generated.output
    assert done.media["sha256"] == generated.output["sha256"]
    # One net payment: debit 1, refund 1, debit 2.
    assert stack.ledger_ids(user, creation_id) == [
        f"{creation_id}:1:debit", f"{creation_id}:1:refund", f"{creation_id}:2:debit"]
    assert stack.store.balance(user.uid) == user.granted - cost

    # The trace now shows both executions, the failed one first.
    trace = ops("trace", creation_id)
    assert trace.code == 0
    assert [line.split()[1] for line in trace.out.splitlines() if line.startswith("  state ")] == [
        "FAILED",
        "SUCCEEDED",
    ]


def test_bulk_replay_dry_run_lists_only_replayable_failures_and_changes_nothing(ops, stack):
    user = stack.new_user(5)
    retryable = fail_upload(stack, user, "a field of poppies")
    refused = stack.submit(user, f"a #blocked scene {marker()}")
    assert stack.finish(refused).state == "FAILED"
    assert stack.creation(refused).error.code == "CONTENT_POLICY"
    before = {cid: stack.creation(cid).to_dict() for cid in (retryable, refused)}
    balance = stack.store.balance(user.uid)

    run = ops("replay", "--failed", "--dry-run")
    assert run.code == 0, run.err
    assert run.line_about(retryable) == f"  would replay {retryable} (attempt 1 -> 2, failed, STORAGE_ERROR)"
    assert refused not in run.out
    # --code narrows the bulk replay to the codes asked for, whatever they are.
    only_policy = ops("replay", "--failed", "--code", "CONTENT_POLICY", "--dry-run")
    assert only_policy.code == 0
    assert refused in only_policy.out and retryable not in only_policy.out

    assert {cid: stack.creation(cid).to_dict() for cid in (retryable, refused)} == before
    assert stack.store.balance(user.uid) == balance


def test_replay_of_a_draft_is_refused(ops, stack, draft):
    user, creation_id = draft
    before = stack.creation(creation_id).to_dict()
    run = ops("replay", creation_id)
    assert run.code == 1
    assert run.line_about(creation_id) == (
        f"  {creation_id}: not replayed: creation {creation_id} is draft; only a failed creation can be replayed")
    assert stack.creation(creation_id).to_dict() == before


def test_replay_of_a_running_creation_is_refused_and_it_still_finishes(ops, stack):
    user = stack.new_user(5)
    tag = marker()
    with stack.held("generate-image", tag) as gate:
        creation_id = stack.submit(user, f"a paper boat on a pond {tag}")
        assert gate.reached.wait(30)
        run = ops("replay", creation_id)
        assert run.code == 1
        assert "is processing; only a failed creation can be replayed" in run.line_about(creation_id)
        held = stack.creation(creation_id)
        assert (held.status, held.attempt, len(held.execution_ids)) == (Status.PROCESSING, 1, 1)
    assert stack.finish(creation_id).state == "SUCCEEDED"
    assert stack.creation(creation_id).status is Status.DRAFT
    assert stack.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit"]


@pytest.mark.parametrize("argv", [
    ["replay"],                                      # neither ids nor --failed
    ["replay", "some-id", "--failed"],               # both
    ["replay", "some-id", "--code", "STORAGE_ERROR"],  # --code without --failed
    ["replay", "--failed", "--limit", "0"],
    ["replay", "--failed", "--limit", "many"],
    ["reconcile", "--older-than", "-1"],
    ["reconcile", "--limit", "0"],
    ["reconcile", "--bogus"],
    ["trace"],
    ["rewind", "some-id"],
], ids=" ".join)
def test_bad_arguments_exit_2_and_say_what_is_wrong(ops, argv):
    run = ops(*argv)
    assert run.code == 2
    assert run.err.strip(), "a usage error must say what was wrong"
    assert run.out == ""
