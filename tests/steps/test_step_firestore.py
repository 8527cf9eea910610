"""The steps on the production store, Firestore (Google's emulator): the document the workflow's
retry predicate reads carries what the steps recorded, in native Firestore fields."""
from __future__ import annotations

from google.cloud import firestore

from creations.model import Status
from steps import ExitCode


def raw_document(stack, creation_id: str) -> dict:
    """The creation document as the Firestore connector sees it (no domain model in between)."""
    client = firestore.Client(project=stack.settings.firestore_project)
    try:
        return client.collection("creations").document(creation_id).get().to_dict()
    finally:
        client.close()


def test_image_runs_through_every_step_on_firestore(firestore_stack):
    stack = firestore_stack
    creation = stack.create("a lighthouse in fog")
    stack.through(creation.id, "finalize")
    done = stack.get(creation.id)
    assert done.status is Status.DRAFT
    assert stack.storage.head(done.media["key"]).sha256 == done.media["sha256"]
    assert stack.store.balance(stack.uid) == stack.GRANT - creation.cost


def test_a_retryable_error_is_readable_by_the_workflow(firestore_stack):
    stack = firestore_stack
    creation = stack.create("a wave #down")
    stack.through(creation.id, "mark_processing")
    assert stack.cli_run("generate", creation.id).code == ExitCode.FAILED  # as a job: from PHOENIX_*
    doc = raw_document(stack, creation.id)
    # What `retry_if_retryable` in workflows/creation.yaml compares: attempt, error.step, retryable.
    assert doc["attempt"] == 1
    assert doc["error"]["step"] == "generate"
    assert doc["error"]["retryable"] is True
    assert doc["error"]["code"] == "PROVIDER_UNAVAILABLE"


def test_refusal_refund_replay_and_stale_runs_on_firestore(firestore_stack):
    stack = firestore_stack
    creation = stack.create("a riot #blocked")
    stack.through(creation.id, "mark_processing")
    assert stack.run("generate", creation.id).code == ExitCode.FAILED
    assert raw_document(stack, creation.id)["error"]["retryable"] is False
    assert stack.run("refund", creation.id).code == 0
    assert stack.run("refund", creation.id).final["outcome"] == "skipped"
    assert stack.store.balance(stack.uid) == stack.GRANT

    stack.replay(creation.id)
    assert stack.run("debit_check", creation.id, 2).code == 0
    assert stack.run("debit_check", creation.id, 2).final["outcome"] == "skipped"
    before = stack.get(creation.id).to_dict()
    for step in stack.PIPELINE:
        assert stack.run(step, creation.id, 1).code == ExitCode.STALE, step
    assert stack.get(creation.id).to_dict() == before
    assert stack.store.balance(stack.uid) == stack.GRANT - creation.cost
