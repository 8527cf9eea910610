"""The steps that move the creation's status: start the attempt's work, and publish the draft."""
from __future__ import annotations

from ..joblog import JobLog
from ..model import Creation, Status
from .contract import StepInput, StepOutOfOrder, StepResult
from .fencing import ensure_current, fenced_update, load, require_checkpoint, require_processing
from .services import StepServices


def mark_processing(inp: StepInput, svc: StepServices, log: JobLog) -> StepResult:
    """pending -> processing, once the attempt is paid. Clears an error left by an earlier
    attempt, so the error on a processing creation always belongs to its current attempt."""
    creation = load(svc, inp)
    ensure_current(creation, inp.attempt)
    if creation.status is Status.DRAFT:
        return StepResult.skipped("the creation is already a draft")
    if creation.status is Status.PROCESSING:
        return StepResult.skipped(f"attempt {inp.attempt} is already processing")
    _require_paid(creation, inp.attempt)

    def change(c: Creation) -> Creation | None:
        if c.status is not Status.PENDING:
            return None  # a duplicate run got here first
        _require_paid(c, inp.attempt)
        c.transition(Status.PROCESSING)
        c.error = None
        return c

    after = fenced_update(svc, inp, change)
    return StepResult.done(f"attempt {inp.attempt} is processing", {"status": after.status.value})


def finalize(inp: StepInput, svc: StepServices, log: JobLog) -> StepResult:
    """processing -> draft with the published media; clears the error of retried steps."""
    creation = load(svc, inp)
    ensure_current(creation, inp.attempt)
    if creation.status is Status.DRAFT:
        return StepResult.skipped("the creation is already a draft", {"media": creation.media})
    require_processing(creation, "finalize")
    media = _media_of(creation)

    def change(c: Creation) -> Creation | None:
        if c.status is Status.DRAFT:
            return None
        require_processing(c, "finalize")
        c.transition(Status.DRAFT)
        c.media = _media_of(c)
        c.error = None
        return c

    after = fenced_update(svc, inp, change)
    return StepResult.done("the creation is a draft", {"media": after.media or media})


def _require_paid(creation: Creation, attempt: int) -> None:
    if not creation.charge.get("debited", {}).get(str(attempt)):
        raise StepOutOfOrder(f"attempt {attempt} is not paid; run debit_check first")


def _media_of(creation: Creation) -> dict:
    """The public media from the upload checkpoint, checked against what generate produced."""
    upload = require_checkpoint(creation, "finalize", "upload").output
    generated = require_checkpoint(creation, "finalize", "generate").output
    if upload.get("sha256") != generated.get("sha256"):
        raise StepOutOfOrder("the uploaded media is not the latest generated media; run upload again")
    return {k: upload.get(k) for k in
            ("url", "thumbnailUrl", "contentType", "bytes", "sha256", "key", "thumbnailKey")}
