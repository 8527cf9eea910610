"""What every step takes and returns, and the errors only the pipeline raises."""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import CreationsError

# Document ids made by the API are uuid4 hex; accept any id that is safe as a Firestore document
# id and as an object-key segment.
CREATION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
MAX_ATTEMPT = 1000


class InvalidStepInput(CreationsError):
    """A step was started with a creation id or attempt that cannot name a real run."""

    code = "INVALID_ARGUMENT"


class StepOutOfOrder(CreationsError):
    """A step ran before the step it depends on (e.g. thumbnail without a generated original).

    Not retryable: running the same step again cannot help; the workflow runs steps in order,
    so this points at an operator running a step by hand or a broken definition."""

    code = "OUT_OF_ORDER"


class StagedMediaMissing(CreationsError):
    """A checkpoint names a staging object that is gone or changed (e.g. expired by lifecycle).

    Not retryable by the same step; a replay regenerates it, because generate checks the object
    before it skips."""

    code = "STAGED_MEDIA_MISSING"


@dataclass(frozen=True)
class StepInput:
    """Which creation and which attempt a step run acts for."""

    creation_id: str
    attempt: int

    def __post_init__(self) -> None:
        if not isinstance(self.creation_id, str) or not CREATION_ID_PATTERN.match(self.creation_id):
            raise InvalidStepInput(
                f"creation id {self.creation_id!r} is not valid: use the id of an existing creation "
                "(1-128 letters, digits, '-' or '_', starting with a letter or digit)")
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) \
                or not 1 <= self.attempt <= MAX_ATTEMPT:
            raise InvalidStepInput(
                f"attempt {self.attempt!r} is not valid: use the creation's attempt number, an "
                f"integer from 1 to {MAX_ATTEMPT}")


class Outcome(str, enum.Enum):
    DONE = "done"          # the step did its work now
    SKIPPED = "skipped"    # the work was already done (valid checkpoint, or nothing to do)


@dataclass(frozen=True)
class StepResult:
    outcome: Outcome
    message: str
    output: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def done(cls, message: str, output: dict[str, Any] | None = None) -> StepResult:
        return cls(Outcome.DONE, message, dict(output or {}))

    @classmethod
    def skipped(cls, message: str, output: dict[str, Any] | None = None) -> StepResult:
        return cls(Outcome.SKIPPED, message, dict(output or {}))
