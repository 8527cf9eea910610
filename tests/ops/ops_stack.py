"""What the operator tests share beyond tests.support: `OpsRun`, one `phoenix ops` run's output.

`OpsStack` is tests.support.stack.Stack under the shape the first operator tests used
(`finish(creation_id)` answers the execution); new tests use the `stack` fixture directly.
"""
from __future__ import annotations

from dataclasses import dataclass

from tests.support.stack import Stack, User, closed_port, marker  # noqa: F401 - re-exported


@dataclass
class OpsRun:
    """What one `phoenix ops ...` run printed and returned."""

    code: int
    out: str
    err: str

    def line_about(self, creation_id: str) -> str:
        lines = [line for line in self.out.splitlines() if creation_id in line]
        assert len(lines) == 1, f"expected one line about {creation_id}, got {lines!r} in:\n{self.out}"
        return lines[0]


class OpsStack:
    """The shared Stack, with `finish(creation_id)` answering the ended execution."""

    def __init__(self, stack: Stack):
        self._stack = stack

    def __getattr__(self, name: str):
        return getattr(self._stack, name)

    def finish(self, creation_id: str) -> dict:
        return self._stack.finish(creation_id).execution
