"""Every error of the local engine, in one module.

A `WorkflowError` carries a value of the language: what `raise` raised (a string, a map, ...) or a
runtime error map `{"tags": [...], "message": ...}` as Cloud Workflows builds them. It is what
`except` catches. `LoadError` is not catchable: the workflow never started. `ExecutionCancelled`
unwinds a cancelled execution. `EngineError` and its subclasses are the engine API's answers
(NOT_FOUND, INVALID_ARGUMENT, ...), with the status the Executions API gives them.
"""
from __future__ import annotations

from typing import Any


class WorkflowError(Exception):
    """An error value of the language; `except: as: e` binds `value`."""

    def __init__(self, value: Any):
        super().__init__(value.get("message", value) if isinstance(value, dict) else value)
        self.value = value

    @classmethod
    def tagged(cls, tag: str, message: str, **extra: Any) -> WorkflowError:
        return cls({"message": message, "tags": [tag], **extra})

    @property
    def tags(self) -> list[str]:
        v = self.value
        return list(v.get("tags") or []) if isinstance(v, dict) else []


def key_error(message: str) -> WorkflowError:
    return WorkflowError.tagged("KeyError", message)


def index_error(message: str) -> WorkflowError:
    return WorkflowError.tagged("IndexError", message)


def type_error(message: str) -> WorkflowError:
    return WorkflowError.tagged("TypeError", message)


def value_error(message: str) -> WorkflowError:
    return WorkflowError.tagged("ValueError", message)


def zero_division_error(message: str = "division by zero") -> WorkflowError:
    return WorkflowError.tagged("ZeroDivisionError", message)


def resource_limit_error(message: str) -> WorkflowError:
    return WorkflowError.tagged("ResourceLimitError", message)


class LoadError(Exception):
    """A workflow file that does not load. `problems` lists every message, each naming
    file:line and step, e.g. "creation.yaml:42 step 'run_generate': unknown key 'retyr'"."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def system_error(where: str, exc: BaseException) -> WorkflowError:
    """A defect met while running `where` (a Python exception), as the language's SystemError."""
    return WorkflowError.tagged("SystemError", f"{where}: {type(exc).__name__}: {exc}")


class ExecutionCancelled(BaseException):
    """Raised inside an execution (or a parallel branch) that was cancelled. A BaseException,
    so neither the language's `except` nor library code catching Exception stops it."""


# --- errors of the engine's API (not of a workflow) ---------------------------------------------

class EngineError(Exception):
    """An error of the engine's API (not of a workflow), with the Executions API status."""

    status = "INTERNAL"
    http_code = 500


class NotFound(EngineError):
    status = "NOT_FOUND"
    http_code = 404


class InvalidArgument(EngineError, ValueError):
    status = "INVALID_ARGUMENT"
    http_code = 400


class FailedPrecondition(EngineError):
    status = "FAILED_PRECONDITION"
    http_code = 400


class ArgumentTooLarge(InvalidArgument):
    """The execution argument exceeds 32 KB (the ResourceLimitError of an execution start)."""
