"""Step entries of an execution, shaped like the Executions API's `stepEntries`.

Recording is on the hot path of every step, so an entry is a small mutable record handed once
to a sink (an append to a queue drained by the database writer); marking it done only changes
the record. An entry's life (begin, then succeed, fail or cancel) is one context manager,
`History.record(...)`, used by every kind of entry the interpreter writes.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from localcloud.workflows.errors import ExecutionCancelled, WorkflowError, system_error

IN_PROGRESS = "STATE_IN_PROGRESS"
SUCCEEDED = "STATE_SUCCEEDED"
FAILED = "STATE_FAILED"
CANCELLED = "STATE_CANCELLED"


class Entry:
    """One step entry. `key` is its row id in the database (the execution's key base plus
    `id`); `meta` holds stepEntryMetadata fields (progressType, progressNumber, threadId) and
    local extras (connectorPolls, retry delay)."""

    __slots__ = ("key", "id", "routine", "step", "type", "state", "created", "updated",
                 "error", "parent", "meta")

    def __init__(self, key: int, entry_id: int, routine: str, step: str, type_: str,
                 parent: Entry | None, now: float, meta: dict | None):
        self.key = key
        self.id = entry_id
        self.routine = routine
        self.step = step
        self.type = type_
        self.state = IN_PROGRESS
        self.created = now
        self.updated = now
        self.error: Any = None
        self.parent = parent.id if parent is not None else None
        self.meta = meta


class History:
    """Creates the step entries of one execution. Each new entry goes to `sink` once; the
    writer stores its state then, and keeps storing it while it is in progress, so finishing
    an entry only changes the record (`updated` is set before `state`, so a record read as
    finished is complete)."""

    __slots__ = ("key_base", "sink", "now", "ids", "last")

    def __init__(self, key_base: int, sink: Callable[[Entry], None],
                 now: Callable[[], float], first_id: int = 1):
        self.key_base = key_base
        self.sink = sink
        self.now = now
        self.ids = itertools.count(first_id)
        self.last: Entry | None = None   # the entry begun last (the execution's current step)

    def record(self, routine: str, step: str, type_: str, parent: Entry | None,
               meta: dict | None = None, where: str | None = None) -> EntryLife:
        """`with history.record(...) as entry:` begins an entry and ends it as the body does:
        succeeded; failed with the error's value; cancelled. Any other exception is a defect
        of the engine or a recursion too deep: it fails the entry and leaves the block as the
        language's SystemError or RecursionError naming `where` (default: the step)."""
        return EntryLife(self, self.begin(routine, step, type_, parent, meta), where)

    def begin(self, routine: str, step: str, type_: str, parent: Entry | None,
              meta: dict | None = None) -> Entry:
        entry_id = next(self.ids)
        entry = Entry(self.key_base + entry_id, entry_id, routine, step, type_, parent,
                      self.now(), meta)
        self.sink(entry)
        self.last = entry
        return entry

    def succeed(self, entry: Entry) -> None:
        entry.updated = self.now()
        entry.state = SUCCEEDED

    def fail(self, entry: Entry, error: Any) -> None:
        entry.error = error
        entry.updated = self.now()
        entry.state = FAILED

    def cancel(self, entry: Entry) -> None:
        entry.updated = self.now()
        entry.state = CANCELLED


class EntryLife:
    """The context manager `History.record` returns (see there)."""

    __slots__ = ("history", "entry", "where")

    def __init__(self, history: History, entry: Entry, where: str | None):
        self.history = history
        self.entry = entry
        self.where = where

    def __enter__(self) -> Entry:
        return self.entry

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        history, entry = self.history, self.entry
        if exc_type is None:
            history.succeed(entry)
            return False
        if issubclass(exc_type, WorkflowError):
            history.fail(entry, exc.value)
            return False
        if issubclass(exc_type, ExecutionCancelled):
            history.cancel(entry)
            return False
        if not issubclass(exc_type, Exception):   # KeyboardInterrupt, SystemExit: not ours
            history.cancel(entry)
            return False
        where = self.where or f"step '{entry.step}'"
        if issubclass(exc_type, RecursionError):
            error = WorkflowError.tagged("RecursionError", f"{where}: maximum recursion depth")
        else:
            error = system_error(where, exc)
        history.fail(entry, error.value)
        raise error from exc
