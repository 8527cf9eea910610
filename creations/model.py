"""The creation record, its state machine and the ledger entry shape.

A creation moves pending -> processing -> draft | failed. A replay (a new attempt) may move a
failed creation back to pending; nothing else leaves a terminal state.
"""
from __future__ import annotations

import dataclasses
import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import IllegalTransition


def utcnow() -> datetime:
    return datetime.now(UTC)


class CreationType(str, enum.Enum):
    IMAGE = "image"
    VIDEO = "video"


class Status(str, enum.Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    DRAFT = "draft"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (Status.DRAFT, Status.FAILED)


# Allowed transitions. A transition to the same status is not a transition and is refused too,
# except where listed (processing -> processing lets a replayed attempt re-mark itself).
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PROCESSING, Status.FAILED}),
    Status.PROCESSING: frozenset({Status.DRAFT, Status.FAILED}),
    Status.DRAFT: frozenset(),
    Status.FAILED: frozenset({Status.PENDING}),  # replay: a new attempt starts
}


def check_transition(current: Status, new: Status) -> None:
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"a creation cannot go from {current.value} to {new.value}")


# The step names, in pipeline order. Checkpoints are keyed by these.
STEPS = ("debit_check", "mark_processing", "generate", "thumbnail", "upload", "finalize", "refund")


@dataclass
class CreationError:
    code: str
    message: str
    step: str
    retryable: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> CreationError | None:
        if not d:
            return None
        return cls(code=d["code"], message=d["message"], step=d["step"], retryable=bool(d["retryable"]))


@dataclass
class Checkpoint:
    """What a step produced, and for which attempt. `output` is step-specific JSON."""

    attempt: int
    output: dict[str, Any]
    at: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "output": self.output, "at": self.at.isoformat()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Checkpoint:
        at = d.get("at")
        return cls(
            attempt=int(d["attempt"]),
            output=dict(d.get("output") or {}),
            at=datetime.fromisoformat(at) if isinstance(at, str) else (at or utcnow()),
        )


@dataclass
class Creation:
    id: str
    uid: str
    type: CreationType
    prompt: str
    options: dict[str, Any]
    cost: int
    status: Status = Status.PENDING
    attempt: int = 1
    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    error: CreationError | None = None
    execution_ids: list[str] = field(default_factory=list)
    # Per attempt (as a string key, for Firestore maps): whether the debit / refund happened.
    charge: dict[str, dict[str, bool]] = field(default_factory=lambda: {"debited": {}, "refunded": {}})
    # Public media once finalized: {url, thumbnailUrl, contentType, bytes, sha256, key, thumbnailKey}.
    media: dict[str, Any] | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    # What operators did to it, oldest first: {at, actor, action, reason, attempt} (see
    # creations/attempts.py). Never shown to the user; kept so a forced replay has a name and a why.
    actions: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def transition(self, new: Status) -> None:
        """Move to `new` or raise IllegalTransition; stamps updated_at."""
        check_transition(self.status, new)
        self.status = new
        self.updated_at = utcnow()

    def checkpoint(self, step: str) -> Checkpoint | None:
        """The checkpoint of `step`, whatever attempt wrote it (a replay reuses earlier work)."""
        return self.checkpoints.get(step)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uid": self.uid,
            "type": self.type.value,
            "prompt": self.prompt,
            "options": self.options,
            "cost": self.cost,
            "status": self.status.value,
            "attempt": self.attempt,
            "checkpoints": {k: v.to_dict() for k, v in self.checkpoints.items()},
            "error": self.error.to_dict() if self.error else None,
            "execution_ids": list(self.execution_ids),
            "charge": {"debited": dict(self.charge.get("debited", {})),
                       "refunded": dict(self.charge.get("refunded", {}))},
            "media": self.media,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "actions": [dict(a) for a in self.actions],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Creation:
        def ts(v: Any) -> datetime:
            if isinstance(v, datetime):
                return v if v.tzinfo else v.replace(tzinfo=UTC)
            return datetime.fromisoformat(v)

        charge = d.get("charge") or {}
        return cls(
            id=d["id"],
            uid=d["uid"],
            type=CreationType(d["type"]),
            prompt=d["prompt"],
            options=dict(d.get("options") or {}),
            cost=int(d["cost"]),
            status=Status(d["status"]),
            attempt=int(d.get("attempt", 1)),
            checkpoints={k: Checkpoint.from_dict(v) for k, v in (d.get("checkpoints") or {}).items()},
            error=CreationError.from_dict(d.get("error")),
            execution_ids=list(d.get("execution_ids") or []),
            charge={"debited": dict(charge.get("debited") or {}), "refunded": dict(charge.get("refunded") or {})},
            media=d.get("media"),
            created_at=ts(d["created_at"]),
            updated_at=ts(d["updated_at"]),
            actions=[dict(a) for a in (d.get("actions") or [])],
        )


class EntryKind(str, enum.Enum):
    GRANT = "grant"
    DEBIT = "debit"
    REFUND = "refund"


@dataclass(frozen=True)
class LedgerEntry:
    """One money move. `id` is deterministic ({creation}:{attempt}:debit|refund) so writing twice is a no-op."""

    id: str
    uid: str
    kind: EntryKind
    amount: int  # always positive; kind gives the sign
    creation_id: str | None = None
    attempt: int | None = None
    at: datetime = field(default_factory=utcnow)

    @staticmethod
    def debit_id(creation_id: str, attempt: int) -> str:
        return f"{creation_id}:{attempt}:debit"

    @staticmethod
    def refund_id(creation_id: str, attempt: int) -> str:
        return f"{creation_id}:{attempt}:refund"
