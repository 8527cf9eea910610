"""`phoenix ops reconcile`: creations whose execution ended without a terminal state are failed and
refunded once; running ones are left alone; a dry run changes nothing."""
from __future__ import annotations

import pytest

from creations.model import Creation, CreationType, Status
from creations.replay import prepare_replay
from creations.triggers import trigger_from_settings
from tests.support.stack import Stack, closed_port, marker

pytestmark = pytest.mark.xdist_group("ops")


def tokens(n: int) -> str:
    return f"{n} token{'' if n == 1 else 's'}"


def slow_prompt() -> str:
    return f"a long exposure of city lights #slow {marker()}"


def test_an_execution_cancelled_mid_generation_is_failed_and_refunded_once(ops, stack: Stack):
    user = stack.new_user(3)
    creation_id = stack.submit(user, slow_prompt())
    name = stack.execution_name(creation_id)
    stack.wait_for_step(name, "generate_media")
    # Cancelled while its generate job runs: Cloud Workflows runs no except block on cancellation,
    # so the workflow's own refund never runs.
    assert stack.engine.cancel(name, timeout=30)["state"] == "CANCELLED"
    stuck = stack.creation(creation_id)
    assert stuck.status is Status.PROCESSING
    assert stack.store.balance(user.uid) == user.granted - stuck.cost
    assert stack.refunds(user, creation_id) == 0

    # Not yet old enough for the default threshold: nothing found, nothing done.
    quiet = ops("reconcile")
    assert (quiet.code, creation_id in quiet.out) == (0, False)
    assert quiet.out.startswith("nothing to reconcile")

    dry = ops("reconcile", "--older-than", "0", "--dry-run")
    assert dry.code == 1, "a dry run that finds work to do exits 1"
    assert dry.line_about(creation_id) == (
        f"  {creation_id} attempt 1 processing, execution {name.rsplit('/', 1)[1]} CANCELLED: "
        "would mark failed and refund attempt 1")
    assert "dry run: nothing changed" in dry.out
    assert stack.creation(creation_id).to_dict() == stuck.to_dict()
    assert stack.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit"]

    run = ops("reconcile", "--older-than", "0")
    assert run.code == 0, run.out + run.err
    assert run.line_about(creation_id).endswith(
        f"CANCELLED: marked failed (UNKNOWN), refunded {tokens(stuck.cost)}")
    settled = stack.creation(creation_id)
    assert settled.status is Status.FAILED
    assert settled.error.code == "UNKNOWN" and settled.error.retryable
    assert settled.charge == {"debited": {"1": True}, "refunded": {"1": True}}
    assert stack.store.balance(user.uid) == user.granted
    # The refund step's structured log is the record of the money move, on stderr.
    assert '"message":"refunded the attempt"' in run.err and creation_id in run.err

    again = ops("reconcile", "--older-than", "0")
    assert again.code == 0 and creation_id not in again.out
    assert stack.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit", f"{creation_id}:1:refund"]


def test_an_active_execution_is_left_running(ops, stack: Stack):
    user = stack.new_user(3)
    tag = marker()
    with stack.held("generate-image", tag) as gate:
        creation_id = stack.submit(user, f"a kettle on a stove {tag}")
        assert gate.reached.wait(30)
        name = stack.execution_name(creation_id)
        before = stack.creation(creation_id).to_dict()
        run = ops("reconcile", "--older-than", "0")
        assert run.code == 0, run.out + run.err
        assert run.line_about(creation_id) == (
            f"  {creation_id} attempt 1 processing, execution {name.rsplit('/', 1)[1]} ACTIVE: left running")
        assert stack.creation(creation_id).to_dict() == before
    assert stack.finish(creation_id).state == "SUCCEEDED"
    assert stack.creation(creation_id).status is Status.DRAFT
    assert stack.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit"]


def test_a_replay_whose_execution_was_not_recorded_is_found_by_its_labels(ops, stack: Stack):
    """The CLI died between starting attempt 2's execution and recording it: the latest recorded
    execution is attempt 1's (FAILED), but attempt 2 runs and must be left alone."""
    user = stack.new_user(3)
    creation_id = stack.submit(user, f"a #blocked scene {marker()}")
    first = stack.execution_name(creation_id)
    assert stack.finish(creation_id).state == "FAILED"
    tag_holder = stack.creation(creation_id).prompt   # hold attempt 2's generate by its prompt
    with stack.held("generate-image", tag_holder) as gate:
        replayed = prepare_replay(stack.store, creation_id, expected_attempt=1)
        trigger = trigger_from_settings(stack.settings)
        try:
            second = trigger.start(replayed)        # started, never recorded on the creation
        finally:
            trigger.close()
        assert gate.reached.wait(30)
        assert stack.creation(creation_id).execution_ids == [first]
        run = ops("reconcile", "--older-than", "0")
        assert run.code == 0, run.out + run.err
        assert run.line_about(creation_id) == (
            f"  {creation_id} attempt 2 processing, execution {second.rsplit('/', 1)[1]} ACTIVE: left running")
        assert stack.creation(creation_id).status is Status.PROCESSING
    # Released, attempt 2 meets the same content policy and its own refund: paid once, refunded once.
    assert stack.wait(second)["state"] == "FAILED"
    assert stack.creation(creation_id).status is Status.FAILED
    assert stack.store.balance(user.uid) == user.granted


@pytest.mark.parametrize("recorded", [None, "does-not-exist"], ids=["never-started", "vanished"])
def test_a_creation_without_a_live_execution_is_failed_and_refunded(ops, stack: Stack, recorded):
    """The API died between its debit and its trigger (nothing recorded), or the recorded
    execution is gone from the Executions API."""
    user = stack.new_user(3)
    creation = Creation(id=Creation.new_id(), uid=user.uid, type=CreationType.IMAGE,
                        prompt="a quiet harbour", options={}, cost=stack.settings.cost_image)
    stack.store.create_with_debit(creation)
    if recorded:
        workflow = "projects/phoenix-local/locations/us-central1/workflows/creation"
        stack.store.update_creation(
            creation.id, lambda c: (c.execution_ids.append(f"{workflow}/executions/{recorded}"), c)[1])
    assert stack.store.balance(user.uid) == user.granted - creation.cost

    run = ops("reconcile", "--older-than", "0")
    assert run.code == 0, run.out + run.err
    found = "no execution of the attempt recorded or found" if recorded is None \
        else f"execution {recorded} not found"
    assert run.line_about(creation.id) == (
        f"  {creation.id} attempt 1 pending, {found}: marked failed (UNKNOWN), refunded {tokens(creation.cost)}")
    settled = stack.creation(creation.id)
    assert settled.status is Status.FAILED
    assert stack.store.balance(user.uid) == user.granted
    assert stack.refunds(user, creation.id) == 1


def test_an_unreachable_executions_api_leaves_everything_as_it_was(ops, stack: Stack, monkeypatch):
    user = stack.new_user(3)
    creation = Creation(id=Creation.new_id(), uid=user.uid, type=CreationType.IMAGE,
                        prompt="a quiet harbour", options={}, cost=stack.settings.cost_image)
    stack.store.create_with_debit(creation)
    monkeypatch.setenv("PHOENIX_LOCAL_ENGINE_URL", f"http://127.0.0.1:{closed_port()}")
    run = ops("reconcile", "--older-than", "0")
    assert run.code == 1
    assert "unreadable" in run.line_about(creation.id)
    assert stack.creation(creation.id).status is Status.PENDING
    assert stack.refunds(user, creation.id) == 0
    # Once the API answers again, it is settled.
    monkeypatch.setenv("PHOENIX_LOCAL_ENGINE_URL", stack.settings.local_engine_url)
    assert ops("reconcile", "--older-than", "0").code == 0
    assert stack.creation(creation.id).status is Status.FAILED
    assert stack.store.balance(user.uid) == user.granted
