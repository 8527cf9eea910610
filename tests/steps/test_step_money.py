"""refund and replays: tokens come back exactly once, never for a draft, and a replay pays again
once without paying the provider again for work that succeeded."""
from __future__ import annotations

import concurrent.futures
import io
import json

from creations.joblog import JobLog
from creations.model import EntryKind, Status
from creations.pipeline import StepServices
from creations.storage import MediaStorage
from steps import ExitCode, run


def moves(stack, creation_id: str) -> list[str]:
    return [e.id for e in stack.store.ledger(stack.uid) if e.creation_id == creation_id]


def test_refund_after_a_refusal_gives_the_tokens_back_once(stack):
    creation = stack.create("a riot #blocked")
    stack.through(creation.id, "mark_processing")
    assert stack.run("generate", creation.id).code == ExitCode.FAILED
    assert stack.store.balance(stack.uid) == stack.GRANT - creation.cost

    first = stack.cli_run("refund", creation.id)  # as the workflow runs it: a job
    assert (first.code, first.final["outcome"]) == (0, "done")
    second = stack.run("refund", creation.id)
    assert (second.code, second.final["outcome"]) == (0, "skipped")

    assert stack.store.balance(stack.uid) == stack.GRANT
    assert moves(stack, creation.id) == [f"{creation.id}:1:debit", f"{creation.id}:1:refund"]
    failed = stack.get(creation.id)
    assert failed.status is Status.FAILED
    assert failed.charge["refunded"] == {"1": True}
    assert (failed.error.code, failed.error.step) == ("CONTENT_POLICY", "generate")  # the cause stays


def test_refund_never_touches_a_draft(stack):
    creation = stack.create("a sunny meadow")
    stack.through(creation.id, "finalize")
    before, balance = stack.get(creation.id).to_dict(), stack.store.balance(stack.uid)
    result = stack.run("refund", creation.id)
    assert (result.code, result.final["outcome"]) == (0, "skipped")
    assert stack.get(creation.id).to_dict() == before
    assert stack.store.balance(stack.uid) == balance
    assert moves(stack, creation.id) == [f"{creation.id}:1:debit"]


def test_refund_without_a_recorded_cause_says_so(stack):
    # A step killed by its timeout records nothing; the workflow still runs refund.
    creation = stack.create("a long exposure")
    stack.through(creation.id, "generate")
    assert stack.run("refund", creation.id).code == 0
    failed = stack.get(creation.id)
    assert failed.status is Status.FAILED
    assert (failed.error.code, failed.error.step) == ("UNKNOWN", "refund")
    assert "without recording a cause" in failed.error.message
    assert stack.store.balance(stack.uid) == stack.GRANT


def test_a_finalize_racing_a_refund_cannot_make_a_refunded_draft(stack):
    creation = stack.create("a photo finish")
    stack.through(creation.id, "upload")
    assert stack.run("refund", creation.id).code == 0  # e.g. a duplicate execution gave up
    assert stack.run("finalize", creation.id).code == ExitCode.STALE
    current = stack.get(creation.id)
    assert current.status is Status.FAILED and current.media is None
    assert stack.store.balance(stack.uid) == stack.GRANT


def test_a_stale_refund_only_refunds_its_own_unrefunded_debit(stack):
    creation = stack.create("a lost letter")
    stack.through(creation.id, "generate")

    # Attempt 1 ends failed without its refund (the refund job crashed after marking it failed),
    # and an operator replays it; attempt 2 pays.
    def fail(c):
        c.transition(Status.FAILED)
        return c
    stack.store.update_creation(creation.id, fail)
    stack.replay(creation.id)
    assert stack.run("debit_check", creation.id, 2).code == 0
    assert stack.store.balance(stack.uid) == stack.GRANT - 2 * creation.cost
    before = stack.get(creation.id)

    # The old execution's refund finally runs: attempt 1's tokens come back, attempt 2 is untouched.
    result = stack.run("refund", creation.id, 1)
    assert (result.code, result.final["outcome"]) == (0, "done")
    assert stack.store.balance(stack.uid) == stack.GRANT - creation.cost
    after = stack.get(creation.id)
    assert (after.status, after.attempt, after.error) == (before.status, 2, before.error)
    assert after.charge == {"debited": {"1": True, "2": True}, "refunded": {"1": True}}

    # Again: nothing more.
    assert stack.run("refund", creation.id, 1).final["outcome"] == "skipped"
    assert stack.store.balance(stack.uid) == stack.GRANT - creation.cost


def test_a_replay_after_an_upload_failure_pays_once_and_does_not_generate_again(stack, stopped_s3):
    creation = stack.create("a night market", type="video", options={"durationSeconds": 1})
    stack.through(creation.id, "thumbnail")
    generated = stack.get(creation.id).checkpoint("generate")
    calls = stack.calls.total

    # Attempt 1: the storage goes away during upload; the workflow's retries give up and refund.
    dead_settings = stack.settings.model_copy(update={"s3_endpoint_url": stopped_s3.endpoint_url})
    dead = StepServices(dead_settings, store=stack.store, storage=MediaStorage.from_settings(dead_settings))
    assert stack.run("upload", creation.id, services=dead).code == ExitCode.FAILED
    assert stack.get(creation.id).error.retryable is True
    assert stack.run("refund", creation.id).code == 0
    assert stack.store.balance(stack.uid) == stack.GRANT

    # An operator replays it: attempt 2 pays once, reuses the video, and finishes.
    stack.replay(creation.id)
    for step in stack.PIPELINE:
        result = stack.run(step, creation.id, 2)
        assert result.code == 0, (step, result.logs)
        if step in ("generate", "thumbnail"):
            assert result.final["outcome"] == "skipped", step
    assert stack.run("debit_check", creation.id, 2).code == 0  # a duplicate run pays nothing

    assert stack.calls.total == calls
    done = stack.get(creation.id)
    assert done.status is Status.DRAFT
    assert done.media["sha256"] == generated.output["sha256"]
    assert done.checkpoint("generate").attempt == 1
    assert stack.store.balance(stack.uid) == stack.GRANT - creation.cost
    assert [(e.kind, e.attempt) for e in stack.store.ledger(stack.uid) if e.creation_id == creation.id] == [
        (EntryKind.DEBIT, 1), (EntryKind.REFUND, 1), (EntryKind.DEBIT, 2)]

    # The old execution's refund arrives late: attempt 1 is already refunded, the draft stays.
    assert stack.run("refund", creation.id, 1).final["outcome"] == "skipped"
    assert stack.get(creation.id).status is Status.DRAFT
    assert stack.store.balance(stack.uid) == stack.GRANT - creation.cost


def test_superseded_runs_of_every_step_change_nothing(stack):
    creation = stack.create("a stale loaf #blocked")
    stack.through(creation.id, "mark_processing")
    assert stack.run("generate", creation.id).code == ExitCode.FAILED
    assert stack.run("refund", creation.id).code == 0
    stack.replay(creation.id)
    assert stack.run("debit_check", creation.id, 2).code == 0
    before, balance = stack.get(creation.id).to_dict(), stack.store.balance(stack.uid)
    calls = stack.calls.total

    for step in stack.PIPELINE:
        assert stack.run(step, creation.id, 1).code == ExitCode.STALE, step
    assert stack.run("refund", creation.id, 1).final["outcome"] == "skipped"

    assert stack.get(creation.id).to_dict() == before
    assert stack.store.balance(stack.uid) == balance
    assert stack.calls.total == calls


def test_in_process_runs_share_services_across_threads(stack):
    creations = [stack.create(f"a paper crane {i}") for i in range(4)]
    stream = io.StringIO()
    stack.services.log = JobLog(stream)

    def pipeline(creation_id: str) -> list[int]:
        return [run(step, creation_id, 1, stack.services) for step in stack.PIPELINE]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(pipeline, [c.id for c in creations]))
    assert results == [[0] * 6] * 4
    assert all(stack.get(c.id).status is Status.DRAFT for c in creations)
    assert stack.store.balance(stack.uid) == stack.GRANT - 4
    # Every line is whole JSON, and each run ended with its own final line.
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finals = {(line["creationId"], line["step"]) for line in lines if "exitCode" in line}
    assert finals == {(c.id, step) for c in creations for step in stack.PIPELINE}
