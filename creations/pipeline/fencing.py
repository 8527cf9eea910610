"""Attempt fencing: a step acts only for the creation's current attempt, and only while that
attempt is still running.

Every write goes through `fenced_update`, which re-checks the attempt inside the store's
transaction: a replay that starts between a step's read and its write wins, and the old run's
write is dropped (StaleAttempt) instead of overwriting the new attempt's state.
"""
from __future__ import annotations

import copy
import enum
from collections.abc import Callable

from ..errors import CreationsError, NotFound, StaleAttempt
from ..model import Checkpoint, Creation, CreationError, Status, utcnow
from .contract import StepInput, StepOutOfOrder
from .services import StepServices


def load(svc: StepServices, inp: StepInput) -> Creation:
    creation = svc.store.get_creation(inp.creation_id)
    if creation is None:
        raise NotFound(f"creation {inp.creation_id} does not exist; check the id the step was started with")
    return creation


def stale_reason(creation: Creation, attempt: int) -> str | None:
    """Why a run for `attempt` must not act on `creation`, or None if it may."""
    if creation.attempt != attempt:
        return (f"attempt {attempt} is not current: the creation is at attempt {creation.attempt} "
                f"({creation.status.value})")
    if creation.status is Status.FAILED:
        return f"attempt {attempt} already ended: the creation is failed"
    return None


def ensure_current(creation: Creation, attempt: int) -> None:
    """Raise StaleAttempt unless `attempt` is the creation's current, unfinished attempt.

    A draft passes: the steps before finalize skip their work on a draft, and finalize is a
    no-op on it, so a duplicate execution of a finished attempt runs through harmlessly."""
    reason = stale_reason(creation, attempt)
    if reason:
        raise StaleAttempt(reason)


def require_processing(creation: Creation, step: str) -> None:
    if creation.status is not Status.PROCESSING:
        raise StepOutOfOrder(
            f"{step} runs only while the creation is processing (it is {creation.status.value}); "
            "run mark_processing first")


def require_checkpoint(creation: Creation, step: str, needed: str) -> Checkpoint:
    checkpoint = creation.checkpoint(needed)
    if checkpoint is None:
        raise StepOutOfOrder(f"{step} needs the output of {needed}, which has not run; run {needed} first")
    return checkpoint


def fenced_update(
    svc: StepServices, inp: StepInput, change: Callable[[Creation], Creation | None]
) -> Creation:
    """Apply `change` to a copy of the creation in one transaction, if the run is still current.

    `change` returns the changed copy, or None to write nothing; it may raise to abort. It must
    be pure: the store may call it again when the transaction retries."""

    def mutate(current: Creation) -> Creation | None:
        ensure_current(current, inp.attempt)
        changed = change(copy.deepcopy(current))
        if changed is not None:
            changed.updated_at = utcnow()
        return changed

    return svc.store.update_creation(inp.creation_id, mutate)


def save_checkpoint(svc: StepServices, inp: StepInput, step: str, output: dict) -> Creation:
    """Record what `step` produced for this attempt; fails with StaleAttempt if superseded."""

    def change(creation: Creation) -> Creation:
        if creation.status is not Status.PROCESSING:
            raise StepOutOfOrder(
                f"{step} finished but the creation is {creation.status.value}, not processing; "
                "its output was not recorded")
        creation.checkpoints[step] = Checkpoint(attempt=inp.attempt, output=dict(output))
        return creation

    return fenced_update(svc, inp, change)


class Recorded(str, enum.Enum):
    RECORDED = "recorded"        # the error is on the creation for the workflow to read
    NOT_CURRENT = "not_current"  # superseded or ended meanwhile: nothing written


def error_of(exc: BaseException, step: str) -> CreationError:
    """The error a failed step records: domain errors keep their code and retryability.

    Anything else is a fault no adapter classified (a dropped connection deep in a client
    library, or a bug). It is recorded as INTERNAL and retryable: the workflow's bounded retries
    cost little, they cure the transient case, and a deterministic bug fails the same way each
    time and is then refunded."""
    if isinstance(exc, CreationsError):
        return CreationError(code=exc.code, message=exc.message, step=step, retryable=bool(exc.retryable))
    return CreationError(code="INTERNAL", message=f"unexpected {type(exc).__name__}: {exc}",
                         step=step, retryable=True)


def record_failure(svc: StepServices, inp: StepInput, error: CreationError) -> Recorded:
    """Write `error` on the creation if this run is still the current, unfinished attempt."""

    def change(creation: Creation) -> Creation | None:
        if creation.status.terminal:
            return None
        creation.error = error
        return creation

    try:
        after = fenced_update(svc, inp, change)
    except StaleAttempt:
        return Recorded.NOT_CURRENT
    if after.status.terminal:
        return Recorded.NOT_CURRENT
    return Recorded.RECORDED
