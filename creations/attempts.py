"""Starting an attempt of a creation: the one money path that the API, the operator tools and
the tests share.

An attempt is one Workflows execution of the creation at its current attempt number. Attempt 1
is paid by the API with the creation itself (`store.create_with_debit`); a replay's attempt is
paid by the workflow's `debit_check` step, once. `start_attempt` triggers the execution and
records its name; when the trigger fails it fails the attempt and gives back whatever it was
paid in ONE store transaction (`store.refund(..., fail_with=...)`), so no crash can leave a
failed creation unrefunded or a refunded creation pending.

`replay` decides from the recorded error whether a failed creation is worth another attempt:
a failure the user was told is final (the provider refused the prompt, the request is invalid,
an error recorded as not retryable) is never charged again unless an operator forces it with a
reason, which is recorded on the creation with who did it and when. `replay_preview` says, before
anything moves, whether a replay is worth it and why, what it will charge, and which steps will
skip their work because their checkpoint is still valid.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .errors import CreationsError, NotFound
from .model import Creation, CreationError, Status, utcnow
from .replay import NotReplayable, prepare_replay
from .store.base import Store

log = logging.getLogger("creations.attempts")

TRIGGER_FAILED = "TRIGGER_FAILED"

# Codes a new attempt cannot fix: the same request fails the same way, and the user was told so.
FINAL_CODES: dict[str, str] = {
    "CONTENT_POLICY": "the provider refused the prompt; the same prompt is refused again",
    "INVALID_REQUEST": "the provider refused the request as invalid; the same request fails again",
    "INSUFFICIENT_TOKENS": "the user did not have the tokens for another attempt",
}

# The pipeline's steps in order; the media steps skip their work when their checkpoint is valid.
PIPELINE_STEPS = ("debit_check", "mark_processing", "generate", "thumbnail", "upload", "finalize")
MEDIA_STEPS = ("generate", "thumbnail", "upload")


class NotWorthReplaying(CreationsError):
    """The creation failed for good; a replay would charge the user again for the same failure.
    Only a forced replay with a reason starts it."""

    code = "NOT_WORTH_REPLAYING"


class ReasonRequired(CreationsError):
    """A forced replay must say why (recorded on the creation)."""

    code = "REASON_REQUIRED"


class AttemptNotStarted(CreationsError):
    """The execution could not be started: the attempt is failed and what it was paid is refunded
    (one transaction). `creation` is the creation afterwards; `refunded` whether tokens came back now."""

    code = TRIGGER_FAILED
    retryable = True

    def __init__(self, message: str, *, creation: Creation | None, refunded: bool, cause: str):
        super().__init__(message)
        self.creation = creation
        self.refunded = refunded
        self.cause = cause


@dataclass(frozen=True)
class AttemptStarted:
    creation: Creation           # after the execution name was recorded (when there is one)
    execution: str | None        # None: queued (Cloud Tasks), the name is not known yet
    recorded: bool               # False when the name could not be written (the run goes on)


def start_attempt(store: Store, trigger, creation: Creation, *, failure_message: str | None = None,
                  failure_step: str = "trigger", retryable_on_failure: bool = False) -> AttemptStarted:
    """Start the execution of the creation's current attempt and record its name.

    On any trigger failure the attempt is failed with TRIGGER_FAILED (`failure_message`, else the
    trigger's own message; `retryable_on_failure` as recorded) and refunded in one store
    transaction, then AttemptNotStarted is raised. A failure to record the name after a
    successful start is logged, not raised: the execution runs and owns the creation, and
    operators find it by its creation-id label."""
    try:
        name = trigger.start(creation)
    except Exception as exc:  # any failure: the execution is not known to run
        cause = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if isinstance(exc, CreationsError):
            log.warning("creation %s attempt %s: %s", creation.id, creation.attempt, cause)
        else:
            log.error("the trigger raised unexpectedly for creation %s", creation.id, exc_info=exc)
        error = CreationError(code=TRIGGER_FAILED, message=failure_message or cause, step=failure_step,
                              retryable=retryable_on_failure)
        refunded = store.refund(creation.id, creation.attempt, fail_with=error)
        raise AttemptNotStarted(
            f"attempt {creation.attempt} of creation {creation.id} could not be started: {cause}",
            creation=store.get_creation(creation.id), refunded=refunded, cause=cause) from exc
    if not name:
        return AttemptStarted(creation, None, False)
    try:
        recorded = store.update_creation(creation.id, _record_execution(name, creation.attempt))
    except CreationsError as exc:
        log.warning("creation %s: execution %s started but not recorded: %s", creation.id, name, exc.message)
        return AttemptStarted(creation, name, False)
    return AttemptStarted(recorded, name, True)


def _record_execution(name: str, attempt: int):
    def mutate(c: Creation) -> Creation | None:
        if c.attempt != attempt or name in c.execution_ids:
            return None
        c.execution_ids = [*c.execution_ids, name]
        return c

    return mutate


# --- replay -------------------------------------------------------------------------------------


def worth_replaying(creation: Creation) -> tuple[bool, str]:
    """(worth it, why) for a failed creation, from its recorded error's code and `retryable`."""
    error = creation.error
    if error is None:
        return True, "failed without a recorded cause; another attempt may well succeed"
    if error.code in FINAL_CODES:
        return False, f"{error.code}: {FINAL_CODES[error.code]}"
    if not error.retryable:
        return False, (f"{error.code} was recorded as not retryable: the user was told it failed "
                       "for good and got the tokens back")
    return True, f"{error.code} is retryable: the cause may be over"


@dataclass(frozen=True)
class StepPlan:
    step: str
    will: str          # "run" or "skip"
    why: str


@dataclass(frozen=True)
class ReplayPreview:
    """What a replay of one creation would do, computed without changing anything."""

    creation_id: str
    uid: str
    status: str
    attempt: int
    next_attempt: int
    error_code: str | None
    retryable: bool | None
    replayable: bool           # failed: a replay can start at all
    worth: bool                # replayable and not failed for good
    reason: str                # why (or why not)
    charge: int                # tokens the next attempt will debit
    balance: int | None        # the user's balance now (None when not read)
    steps: list[StepPlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def needs_force(self) -> bool:
        return self.replayable and not self.worth

    @property
    def enough_tokens(self) -> bool | None:
        return None if self.balance is None else self.balance >= self.charge


def replay_preview(creation: Creation, *, store: Store | None = None, storage=None) -> ReplayPreview:
    """Whether replaying `creation` is worth it and why, what it will charge, and which steps will
    skip their work. With `storage`, checkpoints are checked as the steps check them (the object
    is still stored with the recorded SHA-256); without, a recorded checkpoint is reported as such."""
    replayable = creation.status is Status.FAILED
    if replayable:
        worth, reason = worth_replaying(creation)
    else:
        worth, reason = False, f"it is {creation.status.value}; only a failed creation can be replayed"
    notes = []
    last = str(creation.attempt)
    if creation.charge.get("debited", {}).get(last) and not creation.charge.get("refunded", {}).get(last) \
            and replayable:
        notes.append(f"attempt {last} was paid and not refunded yet: run `phoenix ops reconcile` first")
    return ReplayPreview(
        creation_id=creation.id, uid=creation.uid, status=creation.status.value, attempt=creation.attempt,
        next_attempt=creation.attempt + 1, error_code=creation.error.code if creation.error else None,
        retryable=creation.error.retryable if creation.error else None, replayable=replayable,
        worth=replayable and worth, reason=reason, charge=creation.cost if replayable else 0,
        balance=store.balance(creation.uid) if store is not None else None,
        steps=step_plan(creation, storage), notes=notes)


def step_plan(creation: Creation, storage=None) -> list[StepPlan]:
    """Per pipeline step, whether the next attempt runs it or skips it on a valid checkpoint."""
    from .pipeline.media import REUSABLE

    plans = []
    for step in PIPELINE_STEPS:
        if step == "debit_check":
            plans.append(StepPlan(step, "run", f"debits {creation.cost} token(s) for the new attempt"))
            continue
        if step not in MEDIA_STEPS:
            plans.append(StepPlan(step, "run", "bookkeeping, no provider or storage cost"))
            continue
        checkpoint = creation.checkpoint(step)
        if checkpoint is None:
            plans.append(StepPlan(step, "run", "no checkpoint"))
        elif storage is None:
            plans.append(StepPlan(step, "skip" if _plausible(creation, step) else "run",
                                  f"checkpoint of attempt {checkpoint.attempt} recorded (storage not checked)"
                                  if _plausible(creation, step) else "its checkpoint does not match the steps before"))
        elif REUSABLE[step](storage, creation):
            plans.append(StepPlan(step, "skip", f"valid checkpoint of attempt {checkpoint.attempt}"))
        else:
            plans.append(StepPlan(step, "run", f"the checkpoint of attempt {checkpoint.attempt} is no longer valid"))
    return plans


def _plausible(creation: Creation, step: str) -> bool:
    """Without storage: the recorded checkpoints agree with each other (the SHA-256 chain)."""
    generate = creation.checkpoint("generate")
    if step == "generate":
        return generate is not None
    thumb = creation.checkpoint("thumbnail")
    if step == "thumbnail":
        return generate is not None and thumb is not None \
            and thumb.output.get("sourceSha256") == generate.output.get("sha256")
    upload = creation.checkpoint("upload")
    return _plausible(creation, "thumbnail") and upload is not None \
        and upload.output.get("sha256") == generate.output.get("sha256") \
        and upload.output.get("thumbnailSha256") == thumb.output.get("sha256")


@dataclass(frozen=True)
class Replayed:
    creation: Creation         # at its new attempt, after the execution was recorded
    execution: str | None
    forced: bool
    action: dict[str, Any]


def replay(store: Store, trigger, creation_id: str, *, actor: str, reason: str = "", force: bool = False,
           expected_attempt: int | None = None) -> Replayed:
    """Start the next attempt of a failed creation, if it is worth it (or forced with a reason).

    Raises NotFound, NotReplayable (not failed, or someone replayed it first: `expected_attempt`),
    NotWorthReplaying (failed for good and not forced), ReasonRequired (forced without a reason),
    AttemptNotStarted (the trigger failed: the new attempt is failed again, nothing charged)."""
    reason = (reason or "").strip()
    if force and not reason:
        raise ReasonRequired("a forced replay needs a reason (it is recorded on the creation)")
    if not actor or not actor.strip():
        raise ValueError("replay needs the actor: who asks for it")
    creation = store.get_creation(creation_id)
    if creation is None:
        raise NotFound(f"creation {creation_id} does not exist; check the id")
    attempt = creation.attempt if expected_attempt is None else expected_attempt

    def decide(current: Creation) -> dict[str, Any]:
        if current.status is not Status.FAILED:
            raise NotReplayable(f"creation {creation_id} is {current.status.value}; "
                                "only a failed creation can be replayed")
        worth, why = worth_replaying(current)
        if not worth and not force:
            raise NotWorthReplaying(
                f"creation {creation_id} is not worth replaying: {why}; a replay would charge the user "
                "again for the same failure (force it with a reason if you must)")
        return {"at": utcnow().isoformat(), "actor": actor.strip(),
                "action": "replay (forced)" if not worth else "replay",
                "reason": reason, "attempt": current.attempt + 1,
                "previousError": current.error.code if current.error else None}

    started = prepare_replay(store, creation_id, expected_attempt=attempt, decide=decide)
    action = started.actions[-1]
    forced = action["action"] == "replay (forced)"
    # A new attempt that could not start is as replayable as the failure it replaced: a forced one
    # stays not retryable, so a bulk replay does not pick it up.
    result = start_attempt(store, trigger, started, failure_step="replay",
                           retryable_on_failure=not forced)
    return Replayed(result.creation, result.execution, forced, action)
