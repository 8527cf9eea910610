"""Runs one step for one creation attempt and turns whatever happened into a verdict.

A Cloud Run job can tell the workflow nothing but its exit status, so a failed step records
`error {code, message, step, retryable}` on the creation before it ends; the workflow's retry
predicate reads it there. Refund records nothing: the creation's error stays the cause of the
failure it compensates.
"""
from __future__ import annotations

import enum
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CreationsError, NotFound, StaleAttempt
from ..joblog import JobLog
from ..model import CreationError
from .contract import StepInput, StepResult
from .fencing import Recorded, error_of, record_failure
from .lifecycle import finalize, mark_processing
from .media import generate, thumbnail, upload
from .money import debit_check, refund
from .services import ServiceSetupError, StepServices

StepFunction = Callable[[StepInput, StepServices, JobLog], StepResult]

# In pipeline order, as the workflow runs them; the names match creations.model.STEPS.
STEP_FUNCTIONS: dict[str, StepFunction] = {
    "debit_check": debit_check,
    "mark_processing": mark_processing,
    "generate": generate,
    "thumbnail": thumbnail,
    "upload": upload,
    "finalize": finalize,
    "refund": refund,
}


class Verdict(str, enum.Enum):
    DONE = "done"                # the work was done now
    SKIPPED = "skipped"          # already done (valid checkpoint), or nothing to do
    FAILED = "failed"            # failed; the error is recorded on the creation
    INVALID = "invalid"          # no such creation, or settings that cannot build a client
    STALE = "stale"              # superseded by a newer attempt, or the attempt already ended
    UNRECORDED = "unrecorded"    # failed, and the error could not be recorded (store unreachable)


@dataclass(frozen=True)
class StepReport:
    step: str
    verdict: Verdict
    message: str
    duration_ms: int
    error: CreationError | None = None
    output: dict[str, Any] = field(default_factory=dict)


def execute_step(
    step: str,
    inp: StepInput,
    svc: StepServices,
    log: JobLog,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> StepReport:
    """Run `step` for `inp`; never raises for a failure of the step itself (it becomes a verdict)."""
    if step not in STEP_FUNCTIONS:
        raise ValueError(f"unknown step {step!r}; the steps are {', '.join(STEP_FUNCTIONS)}")
    started = clock()

    def report(verdict: Verdict, message: str, **kw: Any) -> StepReport:
        return StepReport(step, verdict, message, int((clock() - started) * 1000), **kw)

    try:
        result = STEP_FUNCTIONS[step](inp, svc, log)
    except StaleAttempt as exc:
        return report(Verdict.STALE, f"nothing changed: {exc.message}")
    except NotFound as exc:
        return report(Verdict.INVALID, exc.message)
    except Exception as exc:  # noqa: BLE001 - every failure must reach the creation record
        return _failed(step, inp, svc, log, exc, report)
    return report(Verdict(result.outcome.value), result.message, output=result.output)


def _failed(step: str, inp: StepInput, svc: StepServices, log: JobLog, exc: Exception,
            report: Callable[..., StepReport]) -> StepReport:
    error = error_of(exc, step)
    fields: dict[str, Any] = {"error": error.to_dict()}
    if not isinstance(exc, CreationsError) or error.code == "INTERNAL":
        fields["stack_trace"] = "".join(traceback.format_exception(exc))
    log.error(f"{step} failed: {error.code}: {error.message}", **fields)
    if step == "refund":
        return report(Verdict.UNRECORDED, f"the refund did not complete: {error.message}", error=error)
    try:
        recorded = record_failure(svc, inp, error)
    except Exception as record_exc:  # noqa: BLE001 - the store itself is failing
        log.error("could not record the error on the creation",
                  recordError=f"{type(record_exc).__name__}: {record_exc}")
        verdict = Verdict.INVALID if isinstance(exc, ServiceSetupError) else Verdict.UNRECORDED
        return report(verdict, f"{error.code}: {error.message} (not recorded)", error=error)
    if isinstance(exc, ServiceSetupError):
        return report(Verdict.INVALID, f"{error.code}: {error.message}", error=error)
    if recorded is Recorded.NOT_CURRENT:
        return report(Verdict.STALE,
                      f"{error.code}: {error.message}; not recorded: the attempt was superseded or "
                      "ended meanwhile", error=error)
    return report(Verdict.FAILED, f"{error.code}: {error.message}", error=error)
