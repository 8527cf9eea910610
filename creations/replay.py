"""Replay: a new attempt of a failed creation, run by a new Workflows execution.

Cloud Workflows cannot restart an execution from its failed step; recovery is a new execution.
`prepare_replay` moves the creation to its next attempt (failed -> pending, attempt + 1, error
cleared) in one transaction. The new execution's check_debit then pays for that attempt once
(the failed attempt was refunded), and steps whose checkpoints are still valid skip their work,
so a replay after an upload failure does not pay for a second generation.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import CreationsError, NotFound
from .model import Creation, Status, utcnow
from .store.base import Store


class NotReplayable(CreationsError):
    """Only a failed creation can be replayed; a running or finished one cannot."""

    code = "NOT_REPLAYABLE"


def prepare_replay(store: Store, creation_id: str, *, expected_attempt: int | None = None,
                   decide: Callable[[Creation], dict[str, Any] | None] | None = None) -> Creation:
    """The creation at its next attempt, status pending. `expected_attempt` guards against two
    operators replaying at once: the second finds the attempt moved on and gets NotReplayable.
    `decide`, called in the same transaction on the current creation, may refuse by raising, or
    return an operator action to record on the creation ({at, actor, action, reason, ...})."""

    def mutate(current: Creation) -> Creation:
        if current.status is not Status.FAILED:
            raise NotReplayable(
                f"creation {creation_id} is {current.status.value}; only a failed creation can be replayed")
        if expected_attempt is not None and current.attempt != expected_attempt:
            raise NotReplayable(
                f"creation {creation_id} is at attempt {current.attempt}, not {expected_attempt}: "
                "someone replayed it already")
        action = decide(current) if decide is not None else None
        nxt = Creation.from_dict(current.to_dict())
        if action:
            nxt.actions = [*nxt.actions, action]
        nxt.transition(Status.PENDING)
        nxt.attempt = current.attempt + 1
        nxt.error = None
        nxt.updated_at = utcnow()
        return nxt

    try:
        return store.update_creation(creation_id, mutate)
    except NotFound:
        raise NotFound(f"creation {creation_id} does not exist; check the id") from None
