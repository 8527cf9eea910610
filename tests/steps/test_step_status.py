"""debit_check, mark_processing and finalize: the steps that pay for and move the creation."""
from __future__ import annotations

import threading

from creations.model import Status
from steps import ExitCode


def failed_and_replayed(stack, prompt: str = "a storm #blocked"):
    """A creation whose attempt 1 was refused and refunded, replayed to attempt 2 (pending)."""
    creation = stack.create(prompt)
    stack.through(creation.id, "mark_processing")
    assert stack.run("generate", creation.id).code == ExitCode.FAILED
    assert stack.run("refund", creation.id).code == 0
    return stack.replay(creation.id)


# --- debit_check --------------------------------------------------------------------------------

def test_debit_check_of_attempt_1_takes_nothing_more(stack):
    creation = stack.create("a lamp")
    balance = stack.store.balance(stack.uid)
    for _ in range(2):
        result = stack.run("debit_check", creation.id)
        assert (result.code, result.final["outcome"]) == (0, "skipped")
    assert stack.store.balance(stack.uid) == balance
    debits = [e.id for e in stack.store.ledger(stack.uid) if e.kind.value == "debit"]
    assert debits == [f"{creation.id}:1:debit"]


def test_a_replay_pays_once_even_when_debit_check_runs_twice(stack):
    creation = failed_and_replayed(stack)
    balance = stack.store.balance(stack.uid)
    first = stack.run("debit_check", creation.id, 2)
    assert (first.code, first.final["outcome"]) == (0, "done")
    second = stack.run("debit_check", creation.id, 2)
    assert (second.code, second.final["outcome"]) == (0, "skipped")
    assert stack.store.balance(stack.uid) == balance - creation.cost
    assert stack.get(creation.id).charge["debited"] == {"1": True, "2": True}


def test_a_replay_pays_once_under_concurrent_duplicate_runs(stack):
    creation = failed_and_replayed(stack)
    balance = stack.store.balance(stack.uid)
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(stack.run("debit_check", creation.id, 2).code))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [0, 0, 0, 0]
    assert stack.store.balance(stack.uid) == balance - creation.cost


def test_a_replay_without_enough_tokens_is_recorded_and_not_retryable(stack):
    creation = failed_and_replayed(stack)
    # Spend the balance down to nothing with other creations.
    while stack.store.balance(stack.uid) >= creation.cost:
        stack.create("a filler", type="video" if stack.store.balance(stack.uid) >= 10 else "image")
    balance = stack.store.balance(stack.uid)
    result = stack.run("debit_check", creation.id, 2)
    assert result.code == ExitCode.FAILED
    error = stack.get(creation.id).error
    assert (error.code, error.step, error.retryable) == ("INSUFFICIENT_TOKENS", "debit_check", False)
    assert f"the balance is {balance}" in error.message
    assert stack.store.balance(stack.uid) == balance

    # The workflow then refunds attempt 2, which was never paid: nothing moves, the creation fails.
    assert stack.run("refund", creation.id, 2).code == 0
    assert stack.store.balance(stack.uid) == balance
    assert stack.get(creation.id).status is Status.FAILED
    assert stack.get(creation.id).error.code == "INSUFFICIENT_TOKENS"


def test_debit_check_of_a_superseded_attempt_changes_nothing(stack):
    creation = failed_and_replayed(stack)
    before, balance = stack.get(creation.id).to_dict(), stack.store.balance(stack.uid)
    assert stack.run("debit_check", creation.id, 1).code == ExitCode.STALE
    assert stack.get(creation.id).to_dict() == before
    assert stack.store.balance(stack.uid) == balance


# --- mark_processing ----------------------------------------------------------------------------

def test_mark_processing_moves_pending_to_processing_once(stack):
    creation = stack.create("a drum")
    first = stack.run("mark_processing", creation.id)
    assert (first.code, first.final["outcome"]) == (0, "done")
    after = stack.get(creation.id)
    assert after.status is Status.PROCESSING
    second = stack.run("mark_processing", creation.id)
    assert (second.code, second.final["outcome"]) == (0, "skipped")
    assert stack.get(creation.id).updated_at == after.updated_at


def test_mark_processing_refuses_an_unpaid_replay(stack):
    creation = failed_and_replayed(stack)
    result = stack.run("mark_processing", creation.id, 2)  # debit_check skipped
    assert result.code == ExitCode.FAILED
    current = stack.get(creation.id)
    assert current.status is Status.PENDING
    assert (current.error.code, current.error.retryable) == ("OUT_OF_ORDER", False)


def test_mark_processing_of_a_replay_clears_the_old_error(stack):
    creation = failed_and_replayed(stack)
    assert stack.get(creation.id).error.code == "CONTENT_POLICY"
    assert stack.run("debit_check", creation.id, 2).code == 0
    assert stack.run("mark_processing", creation.id, 2).code == 0
    assert stack.get(creation.id).error is None


def test_mark_processing_of_a_superseded_attempt_changes_nothing(stack):
    creation = failed_and_replayed(stack)
    before = stack.get(creation.id).to_dict()
    assert stack.run("mark_processing", creation.id, 1).code == ExitCode.STALE
    assert stack.get(creation.id).to_dict() == before


def test_a_failed_attempt_is_over_for_every_step_but_refund(stack):
    creation = stack.create("a cliff #blocked")
    stack.through(creation.id, "mark_processing")
    assert stack.run("generate", creation.id).code == ExitCode.FAILED
    assert stack.run("refund", creation.id).code == 0
    before = stack.get(creation.id).to_dict()
    for step in stack.PIPELINE:
        assert stack.run(step, creation.id).code == ExitCode.STALE, step
    assert stack.get(creation.id).to_dict() == before


# --- finalize -----------------------------------------------------------------------------------

def test_finalize_publishes_the_draft_and_clears_the_error(stack):
    creation = stack.create("a bell #flaky")
    stack.through(creation.id, "mark_processing")
    assert stack.run("generate", creation.id).code == ExitCode.FAILED  # a 503, retried below
    assert stack.get(creation.id).error is not None
    assert stack.run("generate", creation.id).code == ExitCode.FAILED
    for step in ("generate", "thumbnail", "upload", "finalize"):
        assert stack.run(step, creation.id).code == 0, step
    done = stack.get(creation.id)
    assert done.status is Status.DRAFT and done.error is None
    upload = done.checkpoint("upload").output
    assert done.media == {k: upload[k] for k in
                          ("url", "thumbnailUrl", "contentType", "bytes", "sha256", "key", "thumbnailKey")}


def test_finalize_of_a_draft_is_a_no_op(stack):
    creation = stack.create("a flute")
    stack.through(creation.id, "finalize")
    before = stack.get(creation.id).to_dict()
    calls = stack.calls.total
    # A duplicate execution of the finished attempt runs through without effect.
    for step in stack.PIPELINE:
        result = stack.run(step, creation.id)
        assert (result.code, result.final["outcome"]) == (0, "skipped"), step
    assert stack.get(creation.id).to_dict() == before
    assert stack.calls.total == calls


def test_finalize_before_upload_is_out_of_order(stack):
    creation = stack.create("a harp")
    stack.through(creation.id, "thumbnail")
    assert stack.run("finalize", creation.id).code == ExitCode.FAILED
    current = stack.get(creation.id)
    assert current.status is Status.PROCESSING
    error = current.error
    assert (error.code, error.step, error.retryable) == ("OUT_OF_ORDER", "finalize", False)


def test_finalize_of_a_superseded_attempt_changes_nothing(stack):
    creation = failed_and_replayed(stack)
    before = stack.get(creation.id).to_dict()
    assert stack.run("finalize", creation.id, 1).code == ExitCode.STALE
    assert stack.get(creation.id).to_dict() == before
