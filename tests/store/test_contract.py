"""The Store contract, run against both adapters (SQLite and Firestore on the emulator)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from creations.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InsufficientTokens,
    InvalidOptions,
    NotFound,
    StaleAttempt,
    TooManyActive,
)
from creations.model import Checkpoint, Creation, CreationError, EntryKind, LedgerEntry, Status
from creations.store.firestore import FirestoreStore

from .records import make_creation, tamper_balance, tamper_creation, tamper_ledger


def fail(creation: Creation) -> Creation:
    creation.transition(Status.FAILED)
    creation.error = CreationError(code="PROVIDER_UNAVAILABLE", message="503 from Veo", step="generate",
                                   retryable=True)
    return creation


def replay(creation: Creation) -> Creation:
    creation.transition(Status.PENDING)
    creation.attempt += 1
    creation.error = None
    return creation


def to(status: Status):
    def mutate(creation: Creation) -> Creation:
        creation.transition(status)
        return creation
    return mutate


# --- create_with_debit ---------------------------------------------------------------------------

def test_create_debits_and_records_in_one_go(store):
    store.grant("alice", 5, "signup:alice")
    result = store.create_with_debit(make_creation(cost=2))

    assert (result.balance, result.replayed) == (3, False)
    assert store.balance("alice") == 3
    saved = store.get_creation(result.creation.id)
    assert saved.status is Status.PENDING and saved.attempt == 1
    assert saved.charge == {"debited": {"1": True}, "refunded": {}}
    assert saved.created_at == result.creation.created_at
    debit = store.ledger("alice")[-1]
    assert (debit.id, debit.kind, debit.amount, debit.creation_id, debit.attempt) == (
        LedgerEntry.debit_id(saved.id, 1), EntryKind.DEBIT, 2, saved.id, 1)
    assert store.audit() == []


def test_create_without_enough_tokens_writes_nothing(store):
    store.grant("alice", 1, "signup:alice")
    creation = make_creation(cost=10, type="video")

    with pytest.raises(InsufficientTokens) as info:
        store.create_with_debit(creation, idempotency_key="k1", request_hash="h1")

    assert (info.value.balance, info.value.cost) == (1, 10)
    assert store.get_creation(creation.id) is None
    assert store.balance("alice") == 1
    assert [e.kind for e in store.ledger("alice")] == [EntryKind.GRANT]
    # The key was not consumed: the same request succeeds once the user has tokens.
    store.grant("alice", 20, "topup:1")
    assert store.create_with_debit(creation, idempotency_key="k1", request_hash="h1").replayed is False
    assert store.audit() == []


def test_unknown_user_has_no_tokens(store):
    assert store.balance("nobody") == 0
    with pytest.raises(InsufficientTokens) as info:
        store.create_with_debit(make_creation("nobody"))
    assert info.value.balance == 0


def test_free_creation_for_a_user_without_tokens(store):
    result = store.create_with_debit(make_creation("newcomer", cost=0))
    assert result.balance == 0
    assert store.get_creation(result.creation.id).charge["debited"] == {"1": True}
    assert store.audit() == []


def test_same_idempotency_key_and_request_replays_the_first_creation(store):
    store.grant("alice", 5, "signup:alice")
    first = store.create_with_debit(make_creation(), idempotency_key="key-1", request_hash="hash-a")
    again = store.create_with_debit(make_creation(), idempotency_key="key-1", request_hash="hash-a")

    assert again.replayed is True
    assert again.creation.id == first.creation.id
    assert again.balance == 4 == store.balance("alice")
    assert len(store.list_creations("alice")[0]) == 1


def test_same_idempotency_key_with_another_request_conflicts(store):
    store.grant("alice", 5, "signup:alice")
    store.create_with_debit(make_creation(), idempotency_key="key-1", request_hash="hash-a")
    other = make_creation()

    with pytest.raises(IdempotencyConflict):
        store.create_with_debit(other, idempotency_key="key-1", request_hash="hash-b")

    assert store.get_creation(other.id) is None
    assert store.balance("alice") == 4


def test_idempotency_keys_belong_to_one_user(store):
    store.grant("alice", 5, "signup:alice")
    store.grant("bob", 5, "signup:bob")
    a = store.create_with_debit(make_creation("alice"), idempotency_key="same", request_hash="h")
    b = store.create_with_debit(make_creation("bob"), idempotency_key="same", request_hash="h")
    assert not b.replayed and a.creation.id != b.creation.id
    assert store.balance("bob") == 4


def test_replay_of_a_deleted_creation_is_not_found(store):
    store.grant("alice", 5, "signup:alice")
    first = store.create_with_debit(make_creation(), idempotency_key="k", request_hash="h")
    store.delete_creation(first.creation.id)
    with pytest.raises(NotFound):
        store.create_with_debit(make_creation(), idempotency_key="k", request_hash="h")
    assert store.balance("alice") == 4


def test_active_limit_counts_pending_and_processing_only(store):
    store.grant("alice", 10, "signup:alice")
    one = store.create_with_debit(make_creation(), max_active=2).creation
    two = store.create_with_debit(make_creation(), max_active=2).creation
    store.update_creation(two.id, to(Status.PROCESSING))
    blocked = make_creation()

    with pytest.raises(TooManyActive):
        store.create_with_debit(blocked, max_active=2)
    assert store.get_creation(blocked.id) is None
    assert store.balance("alice") == 8

    store.update_creation(one.id, fail)              # failed no longer counts
    store.create_with_debit(make_creation(), max_active=2)
    store.update_creation(two.id, to(Status.DRAFT))  # nor does a draft
    store.create_with_debit(make_creation(), max_active=2)
    with pytest.raises(TooManyActive):
        store.create_with_debit(make_creation(), max_active=2)
    # Another user's creations do not count against alice's limit.
    store.grant("bob", 1, "signup:bob")
    store.create_with_debit(make_creation("bob"), max_active=1)


def test_creation_id_cannot_be_reused(store):
    store.grant("alice", 5, "signup:alice")
    creation = make_creation()
    store.create_with_debit(creation)
    with pytest.raises(Exception) as info:
        store.create_with_debit(creation)
    assert getattr(info.value, "code", None) == "ALREADY_EXISTS"
    assert store.balance("alice") == 4
    assert store.audit() == []


# --- refund and debit ----------------------------------------------------------------------------

def test_refund_gives_back_once(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation(cost=3)).creation
    store.update_creation(creation.id, fail)

    assert store.refund(creation.id, 1) is True
    assert store.refund(creation.id, 1) is False
    assert store.balance("alice") == 5
    assert store.get_creation(creation.id).charge == {"debited": {"1": True}, "refunded": {"1": True}}
    assert [e.id for e in store.ledger("alice")][-1] == LedgerEntry.refund_id(creation.id, 1)
    assert store.audit() == []


UNRECORDED = CreationError(code="UNKNOWN", message="no step recorded a cause", step="refund", retryable=True)


def test_refund_can_fail_the_creation_in_the_same_transaction(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation(cost=3)).creation
    store.update_creation(creation.id, to(Status.PROCESSING))

    assert store.refund(creation.id, 1, fail_with=UNRECORDED) is True
    after = store.get_creation(creation.id)
    assert after.status is Status.FAILED and after.error == UNRECORDED
    assert after.charge == {"debited": {"1": True}, "refunded": {"1": True}}
    assert store.balance("alice") == 5
    assert store.refund(creation.id, 1, fail_with=UNRECORDED) is False
    assert store.audit() == []


def test_refund_that_fails_the_creation_keeps_the_recorded_error(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation()).creation

    def recorded(c: Creation) -> Creation:
        c.transition(Status.PROCESSING)
        c.error = CreationError(code="CONTENT_POLICY", message="blocked", step="generate", retryable=False)
        return c

    store.update_creation(creation.id, recorded)
    assert store.refund(creation.id, 1, fail_with=UNRECORDED) is True
    after = store.get_creation(creation.id)
    assert after.status is Status.FAILED and after.error.code == "CONTENT_POLICY"


def test_a_draft_is_never_refunded(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation(cost=2)).creation
    store.update_creation(creation.id, to(Status.PROCESSING))
    store.update_creation(creation.id, to(Status.DRAFT))

    assert store.refund(creation.id, 1, fail_with=UNRECORDED) is False
    assert store.refund(creation.id, 1) is False
    after = store.get_creation(creation.id)
    assert after.status is Status.DRAFT and after.charge["refunded"] == {}
    assert store.balance("alice") == 3
    assert store.audit() == []


def test_refund_of_a_superseded_attempt_leaves_the_current_one_alone(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation()).creation
    store.update_creation(creation.id, replay_after_failure)   # attempt 2 begins before 1 was refunded
    assert store.refund(creation.id, 1) is True
    after = store.get_creation(creation.id)
    assert after.attempt == 2 and after.status is Status.PENDING and after.error is None
    assert store.balance("alice") == 5


def replay_after_failure(creation: Creation) -> Creation:
    return replay(fail(creation))


def test_refund_of_an_attempt_never_debited_is_refused(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation()).creation
    assert store.refund(creation.id, 2) is False
    assert store.refund("no-such-creation", 1) is False
    assert store.balance("alice") == 4


def test_refund_after_the_creation_was_deleted(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation(cost=2)).creation
    store.delete_creation(creation.id)
    assert store.get_creation(creation.id) is None
    assert store.refund(creation.id, 1) is True
    assert store.balance("alice") == 5
    assert store.audit() == []


def test_replay_pays_again_once_and_only_for_the_current_attempt(store):
    store.grant("alice", 3, "signup:alice")
    creation = store.create_with_debit(make_creation(cost=2)).creation
    store.update_creation(creation.id, fail)
    assert store.refund(creation.id, 1)
    store.update_creation(creation.id, replay)

    with pytest.raises(StaleAttempt):
        store.debit(creation.id, 1)
    with pytest.raises(StaleAttempt):
        store.debit(creation.id, 3)
    assert store.debit(creation.id, 2) is True
    assert store.debit(creation.id, 2) is False
    assert store.balance("alice") == 1
    saved = store.get_creation(creation.id)
    assert saved.charge == {"debited": {"1": True, "2": True}, "refunded": {"1": True}}
    assert store.refund(creation.id, 2) is True
    assert store.balance("alice") == 3
    assert store.audit() == []


def test_debit_without_enough_tokens_writes_nothing(store):
    store.grant("alice", 2, "signup:alice")
    creation = store.create_with_debit(make_creation(cost=2)).creation
    store.update_creation(creation.id, fail)
    store.update_creation(creation.id, replay)  # attempt 1 was not refunded: balance stays 0

    with pytest.raises(InsufficientTokens) as info:
        store.debit(creation.id, 2)

    assert (info.value.balance, info.value.cost) == (0, 2)
    assert store.get_creation(creation.id).charge["debited"] == {"1": True}
    assert LedgerEntry.debit_id(creation.id, 2) not in [e.id for e in store.ledger("alice")]
    assert store.audit() == []


def test_debit_of_a_missing_creation(store):
    with pytest.raises(NotFound):
        store.debit("no-such-creation", 1)


# --- update_creation -----------------------------------------------------------------------------

def test_update_round_trips_every_field(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation(options={"aspect_ratio": "16:9", "duration_seconds": 8})).creation
    at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

    def work(c: Creation) -> Creation:
        c.transition(Status.PROCESSING)
        c.checkpoints["generate"] = Checkpoint(attempt=1, output={"key": "staging/a.png", "bytes": 1234,
                                                                  "nested": {"list": [1, "two", None]}}, at=at)
        c.execution_ids.append("projects/p/locations/l/workflows/creation/executions/e1")
        c.media = {"url": "https://cdn/x.png", "bytes": 1234}
        c.error = CreationError(code="X", message="m", step="upload", retryable=False)
        return c

    updated = store.update_creation(creation.id, work)
    saved = store.get_creation(creation.id)
    assert saved.to_dict() == updated.to_dict()
    assert saved.checkpoints["generate"].at == at
    assert saved.checkpoints["generate"].output["nested"] == {"list": [1, "two", None]}
    assert saved.error.retryable is False
    assert saved.updated_at > creation.updated_at


def test_update_that_raises_writes_nothing(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation()).creation
    store.update_creation(creation.id, to(Status.PROCESSING))
    store.update_creation(creation.id, to(Status.DRAFT))

    with pytest.raises(IllegalTransition):
        store.update_creation(creation.id, to(Status.PROCESSING))

    def half_then_raise(c: Creation) -> Creation:
        c.prompt = "changed"
        raise StaleAttempt("attempt 1 is not current")

    with pytest.raises(StaleAttempt):
        store.update_creation(creation.id, half_then_raise)
    saved = store.get_creation(creation.id)
    assert saved.status is Status.DRAFT and saved.prompt == "a red fox"


def test_update_returning_none_writes_nothing(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation()).creation
    before = store.get_creation(creation.id)
    assert store.update_creation(creation.id, lambda c: None).to_dict() == before.to_dict()
    assert store.get_creation(creation.id).updated_at == before.updated_at


def test_update_cannot_touch_the_money(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation()).creation

    def sneak_refund(c: Creation) -> Creation:
        c.charge["refunded"]["1"] = True
        return c

    with pytest.raises(ValueError):
        store.update_creation(creation.id, sneak_refund)
    with pytest.raises(ValueError):
        store.update_creation(creation.id, lambda c: (setattr(c, "uid", "mallory"), c)[1])
    assert store.get_creation(creation.id).charge["refunded"] == {}


def test_update_of_a_missing_creation(store):
    with pytest.raises(NotFound):
        store.update_creation("no-such-creation", lambda c: c)


def test_update_keeps_an_explicit_updated_at(store):
    """The reconciler's tests (and operators' tools) may backdate a creation."""
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation()).creation
    old = datetime.now(UTC) - timedelta(hours=3)
    store.update_creation(creation.id, lambda c: (setattr(c, "updated_at", old), c)[1])
    assert store.get_creation(creation.id).updated_at == old


# --- reading -------------------------------------------------------------------------------------

def test_list_is_newest_first_with_pages(store):
    store.grant("alice", 20, "signup:alice")
    store.grant("bob", 1, "signup:bob")
    base = datetime(2030, 5, 1, tzinfo=UTC)
    made = []
    for i in range(7):
        # Two creations share each timestamp: the id breaks the tie, the same way on every page.
        c = make_creation(created_at=base + timedelta(seconds=i // 2), updated_at=base)
        made.append(store.create_with_debit(c).creation)
    store.create_with_debit(make_creation("bob"))
    expected = [c.id for c in sorted(made, key=lambda c: (c.created_at, c.id), reverse=True)]

    seen, token, pages = [], None, 0
    while True:
        items, token = store.list_creations("alice", limit=3, page_token=token)
        seen += [c.id for c in items]
        pages += 1
        if token is None:
            break
    assert seen == expected
    assert pages == 3


def test_list_filters_by_status(store):
    store.grant("alice", 5, "signup:alice")
    a = store.create_with_debit(make_creation()).creation
    b = store.create_with_debit(make_creation()).creation
    store.update_creation(a.id, fail)
    assert [c.id for c in store.list_creations("alice", status=Status.FAILED)[0]] == [a.id]
    assert [c.id for c in store.list_creations("alice", status=Status.PENDING)[0]] == [b.id]
    assert store.list_creations("nobody") == ([], None)


def test_list_refuses_a_forged_page_token_and_bad_limits(store):
    with pytest.raises(InvalidOptions) as info:
        store.list_creations("alice", page_token="not-a-token")
    assert "page_token" in info.value.fields
    with pytest.raises(InvalidOptions):
        store.list_creations("alice", limit=0)
    with pytest.raises(InvalidOptions):
        store.list_creations("alice", limit=1000)


def test_find_creations_oldest_update_first(store):
    store.grant("alice", 10, "signup:alice")
    store.grant("bob", 10, "signup:bob")
    now = datetime.now(UTC)
    stale_pending = store.create_with_debit(make_creation("alice", updated_at=now - timedelta(hours=2))).creation
    stale_processing = store.create_with_debit(make_creation("bob")).creation
    store.update_creation(stale_processing.id, lambda c: (c.transition(Status.PROCESSING),
                                                          setattr(c, "updated_at", now - timedelta(hours=3)), c)[2])
    fresh = store.create_with_debit(make_creation("alice")).creation
    failed = store.create_with_debit(make_creation("bob", updated_at=now - timedelta(hours=5))).creation
    store.update_creation(failed.id, lambda c: (fail(c), setattr(c, "updated_at", now - timedelta(hours=5)), c)[2])

    found = store.find_creations(statuses=[Status.PENDING, Status.PROCESSING],
                                 updated_before=now - timedelta(hours=1))
    assert [c.id for c in found] == [stale_processing.id, stale_pending.id]
    everything_active = store.find_creations(statuses=[Status.PENDING, Status.PROCESSING])
    assert [c.id for c in everything_active][-1] == fresh.id
    assert len(store.find_creations(statuses=[Status.PENDING, Status.PROCESSING], limit=1)) == 1
    assert [c.id for c in store.find_creations(statuses=[Status.FAILED])] == [failed.id]
    assert store.find_creations(statuses=[]) == []


def test_delete_keeps_the_books(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation()).creation
    store.delete_creation(creation.id)
    store.delete_creation(creation.id)  # deleting twice is harmless
    assert store.get_creation(creation.id) is None
    assert store.list_creations("alice") == ([], None)
    assert len(store.ledger("alice")) == 2
    assert store.audit() == []


# --- grants, ledger and audit --------------------------------------------------------------------

def test_grant_is_idempotent_by_entry_id(store):
    assert store.grant("alice", 5, "purchase:123") == 5
    assert store.grant("alice", 5, "purchase:123") == 5
    assert store.grant("alice", 2, "purchase:124") == 7
    with pytest.raises(IdempotencyConflict):
        store.grant("alice", 50, "purchase:123")
    with pytest.raises(ValueError):
        store.grant("alice", 0, "purchase:125")
    with pytest.raises(ValueError):
        store.grant("alice", 1, "bad/id")
    assert store.balance("alice") == 7
    assert [e.id for e in store.ledger("alice")] == ["purchase:123", "purchase:124"]


def test_audit_finds_a_balance_that_does_not_match_the_ledger(store):
    store.grant("alice", 5, "signup:alice")
    tamper_balance(store, "alice", 50)
    [finding] = store.audit()
    assert (finding.uid, finding.balance, finding.expected) == ("alice", 50, 5)


def test_audit_finds_a_refund_without_a_debit(store):
    store.grant("alice", 5, "signup:alice")
    tamper_ledger(store, LedgerEntry(id="ghost:1:refund", uid="alice", kind=EntryKind.REFUND, amount=3,
                                     creation_id="ghost", attempt=1))
    tamper_balance(store, "alice", 8)  # the balance matches the ledger: only the refund is wrong
    details = [f.detail for f in store.audit()]
    assert any("refund without a debit" in d for d in details), details


def test_audit_finds_a_double_refund(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation(cost=2)).creation
    assert store.refund(creation.id, 1)
    # A second refund of the same attempt under another id, as a non-deterministic id would allow.
    tamper_ledger(store, LedgerEntry(id=f"{creation.id}:1:refund-again", uid="alice", kind=EntryKind.REFUND,
                                     amount=2, creation_id=creation.id, attempt=1))
    tamper_balance(store, "alice", 7)
    details = [f.detail for f in store.audit()]
    assert any("refunded 2 times" in d for d in details), details


def test_audit_finds_a_charge_map_that_disagrees_with_the_ledger(store):
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation()).creation
    saved = store.get_creation(creation.id)
    saved.charge["refunded"]["1"] = True  # says refunded; the ledger has no refund
    tamper_creation(store, saved)
    details = [f.detail for f in store.audit()]
    assert any("the ledger has no refund" in d for d in details), details


# --- Firestore layout (the workflow reads these fields through the connector) --------------------

def test_firestore_creation_is_stored_as_native_fields(firestore_store: FirestoreStore):
    store = firestore_store
    store.grant("alice", 5, "signup:alice")
    creation = store.create_with_debit(make_creation(), idempotency_key="k", request_hash="h").creation
    store.update_creation(creation.id, to(Status.PROCESSING))
    store.update_creation(creation.id, fail)

    doc = store.client.collection("creations").document(creation.id).get().to_dict()
    assert doc["status"] == "failed" and doc["attempt"] == 1 and doc["uid"] == "alice"
    assert doc["error"] == {"code": "PROVIDER_UNAVAILABLE", "message": "503 from Veo", "step": "generate",
                            "retryable": True}
    assert doc["charge"] == {"debited": {"1": True}, "refunded": {}}
    assert isinstance(doc["created_at"], datetime) and isinstance(doc["updated_at"], datetime)
    assert store.client.collection("users").document("alice").get().to_dict() == {"tokens": 4}
    entry = store.client.collection("ledger").document(f"{creation.id}:1:debit").get().to_dict()
    assert (entry["kind"], entry["amount"], entry["uid"]) == ("debit", 1, "alice")
    keys = list(store.client.collection("idempotency").stream())
    assert len(keys) == 1 and keys[0].get("creation_id") == creation.id
