"""Rules both store adapters apply to records before writing them, so they behave the same."""
from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime

from ..model import Creation, CreationError, Status, utcnow

# Document ids / keys must be usable as Firestore document ids as well as SQLite keys.
_FORBIDDEN_ID_CHARS = ("/",)


def as_utc(value: datetime) -> datetime:
    """The same instant as an aware UTC datetime (a naive one is taken to be UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def check_id(kind: str, value: str) -> str:
    """Refuse ids that cannot name a document: empty, with '/', or of the reserved __x__ form."""
    if not isinstance(value, str) or not value or value in (".", ".."):
        raise ValueError(f"{kind} must be a non-empty string, got {value!r}")
    if any(c in value for c in _FORBIDDEN_ID_CHARS) or (value.startswith("__") and value.endswith("__")):
        raise ValueError(f"{kind} {value!r} cannot contain '/' or have the form __name__")
    if len(value.encode()) > 1500:
        raise ValueError(f"{kind} is longer than 1500 bytes")
    return value


def new_creation_record(creation: Creation) -> Creation:
    """The record create_with_debit writes: a copy at attempt 1, pending, with attempt 1 debited."""
    check_id("creation id", creation.id)
    check_id("uid", creation.uid)
    if creation.cost < 0:
        raise ValueError(f"a creation's cost cannot be negative (got {creation.cost})")
    record = copy.deepcopy(creation)
    record.status = Status.PENDING
    record.attempt = 1
    record.charge = {"debited": {"1": True}, "refunded": {}}
    record.created_at = as_utc(record.created_at)
    record.updated_at = as_utc(record.updated_at)
    return record


def checked_update(before: Creation, after: Creation) -> Creation:
    """Validate what a `mutate` function returned and stamp updated_at.

    The identity (id, uid, created_at), the price and the charge map are not the caller's to
    change: only debit() and refund() move money, in the same transaction as the ledger."""
    for name in ("id", "uid", "cost", "created_at"):
        if getattr(after, name) != getattr(before, name):
            raise ValueError(f"update_creation cannot change {name} (only debit/refund or create set it)")
    if after.charge != before.charge:
        raise ValueError("update_creation cannot change charge: use debit() and refund()")
    if after.attempt < before.attempt:
        raise ValueError(f"update_creation cannot move attempt back from {before.attempt} to {after.attempt}")
    if after.updated_at == before.updated_at:
        after.updated_at = utcnow()
    after.updated_at = as_utc(after.updated_at)
    return after


def idempotency_doc_id(uid: str, key: str) -> str:
    """Where an idempotency key is recorded: a hash, so any key (any length, any character) fits."""
    return hashlib.sha256(f"{uid}\x00{key}".encode()).hexdigest()


def settle_refund(creation: Creation | None, attempt: int,
                  fail_with: CreationError | None) -> tuple[bool, Creation | None, bool]:
    """What refund() may do to the creation, decided inside its transaction.

    Returns (may_refund, the creation to update or None, whether it was marked failed). A draft
    of that attempt is never refunded. With `fail_with`, a current attempt that is not yet
    terminal is marked failed in the same transaction as the refund (keeping a recorded error,
    else `fail_with`), so no crash can leave a failed creation unrefunded."""
    if creation is None:
        return True, None, False  # a deleted creation is still refunded: the ledger holds the debit
    current = creation.attempt == attempt
    if current and creation.status is Status.DRAFT:
        return False, None, False
    changed = copy.deepcopy(creation)
    marked = fail_with is not None and current and not changed.status.terminal
    if marked:
        changed.transition(Status.FAILED)
        if changed.error is None:
            changed.error = fail_with
    return True, changed, marked
