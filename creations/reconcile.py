"""The reconciler: no creation stays pending or processing after its execution has ended.

A Workflows execution that is cancelled, or that ends without reaching its own refund step, leaves
its creation pending or processing with the tokens taken. The reconciler finds creations that have
not changed for a while, asks the Executions API about the execution of their current attempt,
and when that execution has ended (or never existed, or is gone) it runs the pipeline's own refund
step for the attempt: the creation is marked failed (its recorded cause kept, else UNKNOWN) and
the attempt is refunded at most once. An execution still QUEUED or ACTIVE is left alone.
"""
from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from google.api_core import exceptions as core_exceptions

from .errors import CreationsError
from .joblog import JobLog
from .model import Creation, Status, utcnow
from .pipeline import StepInput, StepServices, Verdict, execute_step
from .store.base import Store

RUNNING_STATES = frozenset({"QUEUED", "ACTIVE"})
ENDED_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
# Not states of the Executions API: what the reconciler concludes when there is no execution to ask.
NOT_FOUND = "NOT_FOUND"      # an execution was recorded, but the API no longer has it
NONE = "NONE"                # none recorded for this attempt, and none carries its labels
UNREADABLE = "UNREADABLE"    # the API could not be asked (network, permissions, bad answer)
VANISHED_STATES = frozenset({NOT_FOUND, NONE})


class ExecutionsReader(Protocol):
    """GET on the Executions REST API (creations.triggers.ExecutionsRestClient)."""

    def get_json(self, path: str, params: dict[str, str] | None = None, timeout: float = 30.0) -> dict: ...


@dataclass(frozen=True)
class ExecutionSeen:
    """What the Executions API says about the execution of a creation's current attempt."""

    name: str | None   # the execution judged; None when none is known
    state: str         # an Executions API state, or NOT_FOUND / NONE / UNREADABLE
    detail: str = ""

    @property
    def ended(self) -> bool:
        """True when nothing will ever settle the attempt but a compensation."""
        return self.state in ENDED_STATES or self.state in VANISHED_STATES

    def describe(self) -> str:
        if self.state == NONE:
            return "no execution of the attempt recorded or found"
        short = self.name.rsplit("/", 1)[-1] if self.name else "?"
        if self.state == NOT_FOUND:
            return f"execution {short} not found"
        if self.state == UNREADABLE:
            return f"execution {short} unreadable ({self.detail})"
        return f"execution {short} {self.state}"


class Action(str, enum.Enum):
    LEFT_RUNNING = "left running"            # its execution is still queued or running
    COMPENSATED = "compensated"              # marked failed and refunded (at most once)
    WOULD_COMPENSATE = "would compensate"    # dry run
    SETTLED_MEANWHILE = "settled meanwhile"  # reached a terminal state, or a new attempt, on its own
    UNSETTLED = "unsettled"                  # could not be checked or compensated: look at it


@dataclass(frozen=True)
class Reconciled:
    """What the reconciler found for one creation and what it did."""

    creation: Creation          # as found
    execution: ExecutionSeen
    action: Action
    message: str
    status: Status              # the creation's status afterwards
    refunded: bool = False      # tokens given back now

    @property
    def settled(self) -> bool:
        """Terminal now, or left running on purpose."""
        return self.action in (Action.LEFT_RUNNING, Action.COMPENSATED, Action.SETTLED_MEANWHILE)


class Reconciler:
    """Finds stuck creations and compensates those whose execution has ended.

    `workflow` is the workflow path (projects/P/locations/L/workflows/W) searched by label when a
    creation has no execution recorded for its current attempt."""

    def __init__(self, store: Store, reader: ExecutionsReader, services: StepServices, *,
                 workflow: str, log: JobLog, clock: Callable[[], datetime] = utcnow):
        self.store = store
        self.reader = reader
        self.services = services
        self.workflow = workflow
        self.log = log
        self.clock = clock

    def stuck(self, *, older_than: timedelta, limit: int) -> list[Creation]:
        """Creations pending or processing whose last change is older than `older_than`."""
        return self.store.find_creations(statuses=[Status.PENDING, Status.PROCESSING],
                                         updated_before=self.clock() - older_than, limit=limit)

    def run(self, *, older_than: timedelta, limit: int, dry_run: bool) -> Iterator[Reconciled]:
        for creation in self.stuck(older_than=older_than, limit=limit):
            yield self.reconcile(creation, dry_run=dry_run)

    def reconcile(self, creation: Creation, *, dry_run: bool) -> Reconciled:
        seen = self.execution_of(creation)
        if seen.state in RUNNING_STATES:
            return Reconciled(creation, seen, Action.LEFT_RUNNING, "left running", creation.status)
        if not seen.ended:
            what = ("could not ask the Executions API; nothing changed" if seen.state == UNREADABLE
                    else f"the execution's state {seen.state} says neither running nor ended; nothing changed")
            return Reconciled(creation, seen, Action.UNSETTLED, what, creation.status)
        if dry_run:
            # Read again after asking the API: an execution that ended meanwhile settled its creation.
            current = self.store.get_creation(creation.id)
            if current is not None and (current.attempt != creation.attempt or current.status.terminal):
                return Reconciled(creation, seen, Action.SETTLED_MEANWHILE,
                                  f"meanwhile it became {current.status.value} at attempt {current.attempt}; "
                                  "nothing to do", current.status)
            return Reconciled(creation, seen, Action.WOULD_COMPENSATE,
                              f"would mark failed and refund attempt {creation.attempt}", creation.status)
        return self._compensate(creation, seen)

    # --- the execution of the current attempt ---------------------------------------------

    def execution_of(self, creation: Creation) -> ExecutionSeen:
        """The recorded latest execution when it belongs to the current attempt; otherwise the
        newest execution labelled with the creation and attempt (the trigger labels every one);
        otherwise NOT_FOUND (the recorded one is gone) or NONE."""
        recorded = creation.execution_ids[-1] if creation.execution_ids else None
        workflow = recorded.rsplit("/executions/", 1)[0] if recorded and "/executions/" in recorded \
            else self.workflow
        recorded_missing = False
        if recorded:
            try:
                execution = self.reader.get_json(recorded)
            except core_exceptions.NotFound:
                recorded_missing = True
            except Exception as exc:  # noqa: BLE001 - any failure to ask leaves the creation alone
                return ExecutionSeen(recorded, UNREADABLE, _describe(exc))
            else:
                if attempt_of(execution) in (None, creation.attempt):
                    return ExecutionSeen(recorded, str(execution.get("state", "")))
        query = f'labels.creation-id="{creation.id}" AND labels.attempt="{creation.attempt}"'
        try:
            listed = self.reader.get_json(f"{workflow}/executions",
                                          {"filter": query, "pageSize": "20"}).get("executions") or []
        except Exception as exc:  # noqa: BLE001 - an unknown workflow must not read as "vanished"
            return ExecutionSeen(recorded, UNREADABLE, f"listing executions by label: {_describe(exc)}")
        if listed:
            running = [e for e in listed if e.get("state") in RUNNING_STATES]
            chosen = (running or listed)[0]  # the API lists newest first
            return ExecutionSeen(chosen.get("name"), str(chosen.get("state", "")))
        if recorded_missing:
            return ExecutionSeen(recorded, NOT_FOUND)
        return ExecutionSeen(None, NONE)

    # --- compensation ---------------------------------------------------------------------

    def _compensate(self, creation: Creation, seen: ExecutionSeen) -> Reconciled:
        def result(action: Action, message: str, status: Status, refunded: bool = False) -> Reconciled:
            return Reconciled(creation, seen, action, message, status, refunded)

        current = self.store.get_creation(creation.id)
        if current is None:
            return result(Action.UNSETTLED, "the creation was deleted meanwhile; check the user's ledger",
                          creation.status)
        if current.attempt != creation.attempt or current.status.terminal:
            return result(Action.SETTLED_MEANWHILE,
                          f"meanwhile it became {current.status.value} at attempt {current.attempt}; nothing done",
                          current.status)
        log = self.log.bind(step="refund", creationId=creation.id, attempt=creation.attempt,
                            reconciler=True, execution=seen.name, executionState=seen.state)
        try:
            report = execute_step("refund", StepInput(creation.id, creation.attempt), self.services, log)
        except CreationsError as exc:  # an id the pipeline refuses
            return result(Action.UNSETTLED, f"the refund step could not run: {exc.message}", current.status)
        after = self.store.get_creation(creation.id) or current
        refunded = bool(report.output.get("refunded"))
        if after.status is Status.DRAFT:  # its finalize won the race: a draft is never refunded
            return result(Action.SETTLED_MEANWHILE, "it became a draft meanwhile; nothing refunded", after.status)
        if report.verdict in (Verdict.DONE, Verdict.SKIPPED) and after.status.terminal:
            cause = after.error.code if after.error else "-"
            money = (f"refunded {creation.cost} token{'' if creation.cost == 1 else 's'}" if refunded
                     else "nothing to refund (already refunded or never paid)")
            return result(Action.COMPENSATED, f"marked {after.status.value} ({cause}), {money}",
                          after.status, refunded)
        return result(Action.UNSETTLED, f"the refund step ended {report.verdict.value}: {report.message}",
                      after.status, refunded)


def attempt_of(execution: dict) -> int | None:
    """The attempt an execution runs: its `attempt` label, else its argument's `attempt`."""
    label = (execution.get("labels") or {}).get("attempt")
    if isinstance(label, str) and label.isdigit():
        return int(label)
    try:
        attempt = json.loads(execution.get("argument") or "null").get("attempt")
    except (ValueError, AttributeError):
        return None
    return attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None


def _describe(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
