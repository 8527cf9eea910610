"""The work of each pipeline step, as plain functions on a small typed input.

`execute_step(name, StepInput(creation_id, attempt), StepServices(...), log)` runs one step and
returns a StepReport whose verdict the job entry points (`steps/`) map to an exit status. The
steps are idempotent and fenced by attempt; see each module for what a step reads and records.
"""
from .contract import (
    InvalidStepInput,
    Outcome,
    StagedMediaMissing,
    StepInput,
    StepOutOfOrder,
    StepResult,
)
from .execution import STEP_FUNCTIONS, StepReport, Verdict, execute_step
from .services import ServiceSetupError, StepServices

__all__ = [
    "InvalidStepInput",
    "Outcome",
    "STEP_FUNCTIONS",
    "ServiceSetupError",
    "StagedMediaMissing",
    "StepInput",
    "StepOutOfOrder",
    "StepReport",
    "StepResult",
    "StepServices",
    "Verdict",
    "execute_step",
]
