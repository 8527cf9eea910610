"""The production store: Cloud Firestore, in native fields the workflow can read.

Layout: `users/{uid}` {tokens}; `creations/{id}` with native fields (status, attempt, error map
{code, message, step, retryable}, checkpoints map, charge map, timestamps as timestamps) because
the workflow reads that document through the Firestore connector and branches on
`error.retryable`; `ledger/{entryId}` with deterministic ids; `idempotency/{sha256(uid, key)}`.

Contention. Firestore's server libraries lock pessimistically: two transactions that both read a
balance and then write it wait on each other until one is aborted (the emulator breaks such a
deadlock only by a 2 s lock timeout, and aborts both). So:
- the client makes one attempt (`client_attempts`); on Aborted we back off with full jitter
  (exponential, bounded) before a fresh transaction; after the last try: StoreUnavailable.
  Measured on the emulator with two clients racing for one balance: the client's own immediate
  retry collided again about half the time (4.2 s instead of 2.1 s);
- transactions of one process that move the same user's tokens or the same creation take an
  in-process lock first (striped by uid), so threads of one API or step process queue instead of
  deadlocking each other. Across processes the Firestore transaction alone keeps the books right.
"""
from __future__ import annotations

import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from ..errors import (
    CreationsError,
    IdempotencyConflict,
    InsufficientTokens,
    NotFound,
    StaleAttempt,
    StoreUnavailable,
    TooManyActive,
)
from ..model import Creation, CreationError, EntryKind, LedgerEntry, Status, utcnow
from .audit import ChargeRecord, find_discrepancies
from .base import AuditFinding, CreateResult, Store
from .paging import MAX_SEARCH_PAGE_SIZE, check_limit, decode_page_token, encode_page_token
from .records import as_utc, check_id, checked_update, idempotency_doc_id, new_creation_record, settle_refund

T = TypeVar("T")

# Transient: a retry in a fresh transaction, after a pause, may succeed.
_TRANSIENT = (gexc.Aborted, gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.ResourceExhausted,
              gexc.InternalServerError)
_ACTIVE = [Status.PENDING.value, Status.PROCESSING.value]


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it was raised from or during (a failed rollback hides the real error)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def creation_to_doc(creation: Creation) -> dict[str, Any]:
    """A creation as native Firestore fields (maps, timestamps, null error)."""
    doc = creation.to_dict()
    doc["created_at"] = as_utc(creation.created_at)
    doc["updated_at"] = as_utc(creation.updated_at)
    doc["checkpoints"] = {step: {"attempt": cp.attempt, "output": cp.output, "at": as_utc(cp.at)}
                          for step, cp in creation.checkpoints.items()}
    return doc


def creation_from_doc(snapshot) -> Creation:
    data = snapshot.to_dict()
    data.setdefault("id", snapshot.id)
    return Creation.from_dict(data)


def _entry_from_doc(snapshot) -> LedgerEntry:
    d = snapshot.to_dict()
    return LedgerEntry(id=snapshot.id, uid=d["uid"], kind=EntryKind(d["kind"]), amount=int(d["amount"]),
                       creation_id=d.get("creation_id"), attempt=d.get("attempt"), at=d["at"])


def _entry_to_doc(entry: LedgerEntry) -> dict[str, Any]:
    return {"uid": entry.uid, "kind": entry.kind.value, "amount": entry.amount,
            "creation_id": entry.creation_id, "attempt": entry.attempt, "at": as_utc(entry.at)}


class _StripedLocks:
    """A fixed set of locks picked by key: bounded memory, and the same key always the same lock."""

    def __init__(self, stripes: int = 64):
        self._locks = [threading.RLock() for _ in range(stripes)]

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        lock = self._locks[zlib.crc32(key.encode()) % len(self._locks)]
        with lock:
            yield


class FirestoreStore(Store):
    """The Store on a `google.cloud.firestore.Client` (FIRESTORE_EMULATOR_HOST points it at the emulator)."""

    def __init__(
        self,
        client: firestore.Client,
        *,
        client_attempts: int = 1,
        retries: int = 10,
        backoff_base_seconds: float = 0.1,
        backoff_cap_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ):
        self.client = client
        self._client_attempts = client_attempts
        self._retries = retries
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds
        self._sleep = sleep
        self._rng = rng
        self._locks = _StripedLocks()
        self._users = client.collection("users")
        self._creations = client.collection("creations")
        self._ledger = client.collection("ledger")
        self._keys = client.collection("idempotency")

    @classmethod
    def from_settings(cls, settings) -> FirestoreStore:
        client = firestore.Client(project=settings.firestore_project, database=settings.firestore_database)
        return cls(client)

    def close(self) -> None:
        self.client.close()

    # --- transactions --------------------------------------------------------------------------

    def _transact(self, lock_key: str, body: Callable[[Any], T]) -> T:
        """Run `body(transaction)` in a transaction; retried with jittered backoff on contention."""
        last: BaseException | None = None
        for attempt in range(self._retries):
            try:
                with self._locks.hold(lock_key):
                    transaction = self.client.transaction(max_attempts=self._client_attempts)
                    return firestore.transactional(body)(transaction)
            except CreationsError:
                raise  # the body refused (InsufficientTokens, StaleAttempt, ...): nothing was written
            except Exception as exc:  # noqa: BLE001 - classified below
                if isinstance(exc, gexc.GoogleAPICallError) and isinstance(exc.__context__, CreationsError):
                    raise exc.__context__ from None  # the body refused, then the rollback call failed
                chain = list(_causes(exc))
                conflict = next((e for e in chain if isinstance(e, gexc.AlreadyExists)), None)
                if conflict is not None:
                    raise CreationsError(f"the document already exists: {conflict.message}",
                                         code="ALREADY_EXISTS") from exc
                if not any(isinstance(e, _TRANSIENT) for e in chain):
                    raise
                last = exc
            # Full jitter: contenders spread out instead of colliding again in lock step.
            self._sleep(self._rng() * min(self._backoff_cap, self._backoff_base * 2 ** attempt))
        raise StoreUnavailable(
            f"Firestore kept aborting the transaction ({self._retries} tries): {last}") from last

    def _call(self, fn: Callable[[], T]) -> T:
        """A plain (non-transactional) call, with transport failures as StoreUnavailable."""
        try:
            return fn()
        except _TRANSIENT as exc:
            raise StoreUnavailable(f"Firestore is unavailable: {exc}") from exc

    # --- creations and money -------------------------------------------------------------------

    def create_with_debit(self, creation, *, idempotency_key=None, request_hash=None, max_active=None):
        record = new_creation_record(creation)
        uid, cost = record.uid, record.cost
        user_ref = self._users.document(uid)
        creation_ref = self._creations.document(record.id)
        key_ref = self._keys.document(idempotency_doc_id(uid, idempotency_key)) if idempotency_key is not None else None
        active_query = self.active_query(uid)

        def body(tx) -> CreateResult:
            # All reads first: Firestore transactions read, then write.
            key = key_ref.get(transaction=tx) if key_ref is not None else None
            user = user_ref.get(transaction=tx)
            balance = int((user.to_dict() or {}).get("tokens", 0)) if user.exists else 0
            if key is not None and key.exists:
                if key.get("request_hash") != request_hash:
                    raise IdempotencyConflict("this Idempotency-Key was already used for a different request; "
                                              "send a new key for a new request")
                first = self._creations.document(key.get("creation_id")).get(transaction=tx)
                if not first.exists:
                    raise NotFound(f"the creation {key.get('creation_id')} made for this Idempotency-Key was deleted")
                return CreateResult(creation=creation_from_doc(first), balance=balance, replayed=True)
            if max_active is not None:
                active = list(active_query.limit(max_active).stream(transaction=tx))
                if len(active) >= max_active:
                    raise TooManyActive(
                        f"{len(active)} creations are already pending or processing (the limit is "
                        f"{max_active}); wait for one to finish")
            if balance < cost:
                raise InsufficientTokens(
                    f"not enough tokens: this {record.type.value} costs {cost} and the balance is {balance}",
                    balance=balance, cost=cost)
            tx.create(creation_ref, creation_to_doc(record))
            tx.create(self._ledger.document(LedgerEntry.debit_id(record.id, 1)), _entry_to_doc(LedgerEntry(
                id=LedgerEntry.debit_id(record.id, 1), uid=uid, kind=EntryKind.DEBIT, amount=cost,
                creation_id=record.id, attempt=1)))
            tx.set(user_ref, {"tokens": balance - cost}, merge=True)
            if key_ref is not None:
                tx.create(key_ref, {"uid": uid, "request_hash": request_hash, "creation_id": record.id,
                                    "created_at": utcnow()})
            return CreateResult(creation=record, balance=balance - cost, replayed=False)

        return self._transact(uid, body)

    def get_creation(self, creation_id: str) -> Creation | None:
        snap = self._call(lambda: self._creations.document(creation_id).get())
        return creation_from_doc(snap) if snap.exists else None

    def list_creations(self, uid, *, status=None, limit=20, page_token=None):
        check_limit(limit)
        query = self.list_query(uid, status)
        return self._page(query, limit, page_token)

    def _page(self, query, limit: int, page_token: str | None) -> tuple[list[Creation], str | None]:
        """One page of a query ordered newest first (created_at, then id, descending)."""
        if page_token:
            after_at, after_id = decode_page_token(page_token)
            query = query.start_after({"created_at": after_at, "__name__": after_id})
        snaps = self._call(lambda: list(query.limit(limit + 1).stream()))
        items = [creation_from_doc(s) for s in snaps[:limit]]
        token = encode_page_token(items[-1].created_at, items[-1].id) if len(snaps) > limit else None
        return items, token

    def _uid_of_creation(self, creation_id: str) -> str:
        """The owner of a creation (never changes), to pick the in-process lock before the transaction."""
        current = self.get_creation(creation_id)
        if current is None:
            raise NotFound(f"creation {creation_id} does not exist")
        return current.uid

    def update_creation(self, creation_id: str, mutate: Callable[[Creation], Creation | None]) -> Creation:
        ref = self._creations.document(creation_id)

        def body(tx) -> Creation:
            snap = ref.get(transaction=tx)
            if not snap.exists:
                raise NotFound(f"creation {creation_id} does not exist")
            current = creation_from_doc(snap)
            changed = mutate(creation_from_doc(snap))
            if changed is None:
                return current
            changed = checked_update(current, changed)
            tx.set(ref, creation_to_doc(changed))
            return changed

        return self._transact(self._uid_of_creation(creation_id), body)

    def delete_creation(self, creation_id: str) -> None:
        self._call(lambda: self._creations.document(creation_id).delete())

    def debit(self, creation_id: str, attempt: int) -> bool:
        ref = self._creations.document(creation_id)
        entry_ref = self._ledger.document(LedgerEntry.debit_id(creation_id, attempt))

        def body(tx) -> bool:
            snap = ref.get(transaction=tx)
            if not snap.exists:
                raise NotFound(f"creation {creation_id} does not exist")
            creation = creation_from_doc(snap)
            user_ref = self._users.document(creation.uid)
            entry = entry_ref.get(transaction=tx)
            user = user_ref.get(transaction=tx)
            if attempt != creation.attempt:
                raise StaleAttempt(f"attempt {attempt} is not current: creation {creation_id} is at "
                                   f"attempt {creation.attempt}")
            if entry.exists:
                return False
            balance = int((user.to_dict() or {}).get("tokens", 0)) if user.exists else 0
            if balance < creation.cost:
                raise InsufficientTokens(
                    f"not enough tokens: attempt {attempt} costs {creation.cost} and the balance is {balance}",
                    balance=balance, cost=creation.cost)
            tx.create(entry_ref, _entry_to_doc(LedgerEntry(
                id=entry_ref.id, uid=creation.uid, kind=EntryKind.DEBIT, amount=creation.cost,
                creation_id=creation_id, attempt=attempt)))
            tx.set(user_ref, {"tokens": balance - creation.cost}, merge=True)
            tx.update(ref, {f"charge.debited.`{attempt}`": True, "updated_at": utcnow()})
            return True

        return self._transact(self._uid_of_creation(creation_id), body)

    def refund(self, creation_id: str, attempt: int, *, fail_with: CreationError | None = None) -> bool:
        debit_ref = self._ledger.document(LedgerEntry.debit_id(creation_id, attempt))
        refund_ref = self._ledger.document(LedgerEntry.refund_id(creation_id, attempt))
        creation_ref = self._creations.document(creation_id)
        first_look = self._call(lambda: debit_ref.get())
        if first_look.exists:
            uid = first_look.get("uid")
        else:
            # Never debited (a debit committed after this read is refunded by a later call); there
            # is still a creation to fail when asked to.
            if fail_with is None:
                return False
            snapshot = self._call(lambda: creation_ref.get())
            if not snapshot.exists:
                return False
            uid = snapshot.get("uid")
        user_ref = self._users.document(uid)

        def body(tx) -> bool:
            debit = debit_ref.get(transaction=tx)
            refund = refund_ref.get(transaction=tx)
            user = user_ref.get(transaction=tx)
            snapshot = creation_ref.get(transaction=tx)
            may_refund, creation, marked = settle_refund(
                creation_from_doc(snapshot) if snapshot.exists else None, attempt, fail_with)
            if not may_refund:
                return False
            refunded = debit.exists and not refund.exists
            if refunded:
                amount = int(debit.get("amount"))
                balance = int((user.to_dict() or {}).get("tokens", 0)) if user.exists else 0
                tx.create(refund_ref, _entry_to_doc(LedgerEntry(
                    id=refund_ref.id, uid=uid, kind=EntryKind.REFUND, amount=amount, creation_id=creation_id,
                    attempt=attempt)))
                tx.set(user_ref, {"tokens": balance + amount}, merge=True)
                if creation is not None:
                    creation.charge["refunded"][str(attempt)] = True
            if creation is not None and (refunded or marked):
                creation.updated_at = utcnow()
                tx.set(creation_ref, creation_to_doc(creation))
            return refunded

        return self._transact(uid, body)

    # --- users and the ledger ----------------------------------------------------------------

    def grant(self, uid: str, amount: int, entry_id: str) -> int:
        check_id("uid", uid)
        check_id("ledger entry id", entry_id)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError(f"a grant must be a positive whole number of tokens, got {amount!r}")
        user_ref = self._users.document(uid)
        entry_ref = self._ledger.document(entry_id)

        def body(tx) -> int:
            entry = entry_ref.get(transaction=tx)
            user = user_ref.get(transaction=tx)
            balance = int((user.to_dict() or {}).get("tokens", 0)) if user.exists else 0
            if entry.exists:
                existing = _entry_from_doc(entry)
                if (existing.uid, existing.kind, existing.amount) != (uid, EntryKind.GRANT, amount):
                    raise IdempotencyConflict(f"ledger entry {entry_id} already exists for a different move "
                                              f"({existing.kind.value} of {existing.amount} to {existing.uid})")
                return balance
            tx.create(entry_ref, _entry_to_doc(LedgerEntry(id=entry_id, uid=uid, kind=EntryKind.GRANT,
                                                           amount=amount)))
            tx.set(user_ref, {"tokens": balance + amount}, merge=True)
            return balance + amount

        return self._transact(uid, body)

    def balance(self, uid: str) -> int:
        snap = self._call(lambda: self._users.document(uid).get())
        return int((snap.to_dict() or {}).get("tokens", 0)) if snap.exists else 0

    def ledger(self, uid: str) -> list[LedgerEntry]:
        query = self.ledger_query(uid)
        return [_entry_from_doc(s) for s in self._call(lambda: list(query.stream()))]

    def audit(self) -> list[AuditFinding]:
        # One read-only transaction: balances, ledger and charges from the same snapshot.
        def read(tx):
            balances = {s.id: int((s.to_dict() or {}).get("tokens", 0))
                        for s in self._users.select(["tokens"]).stream(transaction=tx)}
            entries = [_entry_from_doc(s) for s in self._ledger.stream(transaction=tx)]
            charges = []
            for s in self._creations.select(["uid", "charge"]).stream(transaction=tx):
                d = s.to_dict()
                charge = d.get("charge") or {}
                charges.append(ChargeRecord(s.id, d.get("uid", ""), charge.get("debited") or {},
                                            charge.get("refunded") or {}))
            return balances, entries, charges

        balances, entries, charges = self._call(
            lambda: firestore.transactional(read)(self.client.transaction(read_only=True)))
        return find_discrepancies(balances, entries, charges)

    # --- operations ----------------------------------------------------------------------------

    def find_creations(self, *, statuses, updated_before=None, limit=100):
        values = [Status(s).value for s in statuses]
        if not values:
            return []
        query = self.find_query(values, updated_before).limit(int(limit))
        return [creation_from_doc(s) for s in self._call(lambda: list(query.stream()))]

    def search_creations(self, *, statuses=None, uid=None, created_from=None, created_before=None,
                         limit=100, page_token=None):
        check_limit(limit, MAX_SEARCH_PAGE_SIZE)
        values = None if statuses is None else [Status(s).value for s in statuses]
        if values == []:
            return [], None
        query = self.search_query(values, uid, created_from, created_before)
        return self._page(query, limit, page_token)

    def count_creations(self, *, uid=None, created_from=None, created_before=None, types=None, codes=None):
        """One COUNT aggregation per status (billed per 1,000 index entries counted, not per
        document). A user's creations by type or code are few: those are counted by reading them,
        so no composite index is needed for every combination."""
        if types == [] or codes == []:
            return {s.value: 0 for s in Status}
        if uid is not None and (types or codes):
            return super().count_creations(uid=uid, created_from=created_from, created_before=created_before,
                                           types=types, codes=codes)
        counts = {}
        for status in Status:
            query = self.count_query(status.value, uid, created_from, created_before, types, codes)
            result = self._call(lambda q=query: q.count(alias="n").get())
            counts[status.value] = int(result[0][0].value) if result and result[0] else 0
        return counts

    # --- the queries (production needs a composite index for each: see firestore.indexes.json) --

    def active_query(self, uid: str):
        """The user's pending/processing creations (the max_active check)."""
        return (self._creations.where(filter=FieldFilter("uid", "==", uid))
                .where(filter=FieldFilter("status", "in", _ACTIVE)))

    def list_query(self, uid: str, status: Status | str | None = None):
        query = self._creations.where(filter=FieldFilter("uid", "==", uid))
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", Status(status).value))
        return (query.order_by("created_at", direction=firestore.Query.DESCENDING)
                .order_by("__name__", direction=firestore.Query.DESCENDING))

    def find_query(self, statuses: list[str], updated_before=None):
        query = self._creations.where(filter=FieldFilter("status", "in", statuses))
        if updated_before is not None:
            query = query.where(filter=FieldFilter("updated_at", "<", as_utc(updated_before)))
        return query.order_by("updated_at").order_by("__name__")

    def search_query(self, statuses: list[str] | None = None, uid: str | None = None,
                     created_from=None, created_before=None):
        query = self._creations
        if uid is not None:
            query = query.where(filter=FieldFilter("uid", "==", uid))
        if statuses is not None:
            query = query.where(filter=FieldFilter("status", "in", statuses))
        if created_from is not None:
            query = query.where(filter=FieldFilter("created_at", ">=", as_utc(created_from)))
        if created_before is not None:
            query = query.where(filter=FieldFilter("created_at", "<", as_utc(created_before)))
        return (query.order_by("created_at", direction=firestore.Query.DESCENDING)
                .order_by("__name__", direction=firestore.Query.DESCENDING))

    def count_query(self, status: str, uid: str | None = None, created_from=None, created_before=None,
                    types=None, codes=None):
        query = self.search_query([status], uid, created_from, created_before)
        if types:
            query = query.where(filter=FieldFilter("type", "in", list(types)))
        if codes:
            query = query.where(filter=FieldFilter("error.code", "in", list(codes)))
        return query

    def ledger_query(self, uid: str):
        return self._ledger.where(filter=FieldFilter("uid", "==", uid)).order_by("at").order_by("__name__")
