"""Errors of the Workflows language and of loading a workflow.

A `WorkflowError` carries a value of the language: what `raise` raised (a string, a map, ...) or a
runtime error map `{"tags": [...], "message": ...}` as Cloud Workflows builds them. It is what
`except` catches. `LoadError` is not catchable: the workflow never started.
"""
from __future__ import annotations

from typing import Any


class WorkflowError(Exception):
    """An error value of the language; `except: as: e` binds `value`."""

    def __init__(self, value: Any):
        super().__init__(value.get("message", value) if isinstance(value, dict) else value)
        self.value = value

    @classmethod
    def tagged(cls, tag: str, message: str, **extra: Any) -> "WorkflowError":
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
