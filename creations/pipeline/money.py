"""The steps that move tokens: make the current attempt pay, and give back a failed attempt's debit."""
from __future__ import annotations

from ..errors import InsufficientTokens
from ..joblog import JobLog
from ..model import CreationError, Status
from .contract import StepInput, StepResult
from .fencing import ensure_current, load
from .services import StepServices

# Recorded by refund when the attempt failed without any step recording why (a job killed by its
# timeout or out of memory, a job that never started, a crash before the store could be reached).
# Such causes are mostly infrastructure, so a replay may well succeed: retryable.
UNRECORDED_FAILURE = dict(
    code="UNKNOWN",
    message=("the pipeline failed without recording a cause (a step was killed, timed out or could "
             "not reach the store); see the execution's step history and the step's job logs"),
    retryable=True,
)


def debit_check(inp: StepInput, svc: StepServices, log: JobLog) -> StepResult:
    """Make sure the current attempt is paid. The API paid attempt 1 with the creation; a replay
    pays here, once (ledger entry `{id}:{attempt}:debit`)."""
    creation = load(svc, inp)
    ensure_current(creation, inp.attempt)
    if creation.status is Status.DRAFT:
        return StepResult.skipped("the creation is already a draft; its attempt was paid")
    try:
        debited = svc.store.debit(inp.creation_id, inp.attempt)
    except InsufficientTokens as exc:
        raise InsufficientTokens(
            f"not enough tokens for attempt {inp.attempt}: it costs {exc.cost} and the balance is "
            f"{exc.balance}", balance=exc.balance, cost=exc.cost) from exc
    if debited:
        log.info("debited the attempt", cost=creation.cost, uid=creation.uid)
        return StepResult.done(f"debited {creation.cost} tokens for attempt {inp.attempt}")
    return StepResult.skipped(f"attempt {inp.attempt} was already paid")


def refund(inp: StepInput, svc: StepServices, log: JobLog) -> StepResult:
    """Give back this attempt's debit at most once, and mark a current attempt failed.

    Both happen in ONE store transaction (`store.refund(..., fail_with=...)`): no crash between
    them can leave a failed creation unrefunded, and the store refuses to refund a draft of that
    attempt, so a finalize racing this refund cannot produce a refunded draft (whichever commits
    first wins; failed -> draft is not a transition).

    A stale run (an older attempt, e.g. an old execution racing a replay) only refunds that old
    attempt's own debit, if one was taken and not yet refunded, and touches nothing else."""
    creation = load(svc, inp)
    current = creation.attempt == inp.attempt
    if not current:
        log.warning("refunding a superseded attempt: only its own debit, nothing else",
                    currentAttempt=creation.attempt)
    elif creation.status is Status.DRAFT:
        return StepResult.skipped("the creation is a draft: nothing to refund")
    unrecorded = CreationError(step="refund", **UNRECORDED_FAILURE)
    refunded = svc.store.refund(inp.creation_id, inp.attempt, fail_with=unrecorded if current else None)
    after = svc.store.get_creation(inp.creation_id) or creation
    output = {"refunded": refunded, "status": after.status.value,
              "error": after.error.to_dict() if after.error else None}
    if refunded:
        log.notice("refunded the attempt", cost=creation.cost, uid=creation.uid)
        return StepResult.done(f"refunded {creation.cost} tokens of attempt {inp.attempt}", output)
    if after.status is Status.DRAFT and after.attempt == inp.attempt:
        return StepResult.skipped("the creation became a draft meanwhile: nothing to refund", output)
    return StepResult.skipped(
        f"attempt {inp.attempt} was already refunded or never paid: nothing to refund", output)
