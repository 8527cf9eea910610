"""The Firestore adapter counts its document operations as Firestore bills them (the cost model
reads these counts): a read per document read, one for a query that matches nothing, a write per
document a committed transaction writes."""
from __future__ import annotations

from creations.model import CreationError, Status
from tests.store.records import make_creation


def counted(store, action):
    before = store.ops.snapshot()
    result = action()
    after = store.ops.snapshot()
    return result, {k: after[k] - before[k] for k in after}


def test_creating_with_a_debit_reads_the_user_and_the_active_query_and_writes_three_documents(firestore_store):
    firestore_store.grant("alice", 5, "grant:alice")
    _, ops = counted(firestore_store, lambda: firestore_store.create_with_debit(make_creation("alice"), max_active=5))
    # reads: the user, the active-creations query (matches nothing: still one); writes: creation, debit, balance
    assert ops == {"reads": 2, "writes": 3, "deletes": 0}


def test_an_idempotency_key_adds_its_own_read_and_write(firestore_store):
    firestore_store.grant("alice", 5, "grant:alice")
    _, ops = counted(firestore_store, lambda: firestore_store.create_with_debit(
        make_creation("alice"), idempotency_key="k1", request_hash="h"))
    assert ops == {"reads": 2, "writes": 4, "deletes": 0}


def test_a_refused_transaction_writes_nothing(firestore_store):
    _, ops = counted(firestore_store, lambda: _refused(firestore_store))
    assert ops["writes"] == 0 and ops["reads"] == 1      # the (missing) user document


def _refused(store):
    try:
        store.create_with_debit(make_creation("nobody"))
    except Exception:  # noqa: BLE001 - InsufficientTokens, as expected
        return None


def test_a_refund_reads_the_debit_then_four_documents_and_writes_three(firestore_store):
    firestore_store.grant("alice", 5, "grant:alice")
    created = firestore_store.create_with_debit(make_creation("alice")).creation
    failure = CreationError(code="PROVIDER_UNAVAILABLE", message="down", step="generate", retryable=True)
    refunded, ops = counted(firestore_store, lambda: firestore_store.refund(created.id, 1, fail_with=failure))
    assert refunded is True
    assert ops == {"reads": 5, "writes": 3, "deletes": 0}
    assert firestore_store.get_creation(created.id).status is Status.FAILED


def test_a_query_is_billed_per_document_returned(firestore_store):
    firestore_store.grant("alice", 5, "grant:alice")
    for _ in range(3):
        firestore_store.create_with_debit(make_creation("alice"))
    (items, _token), ops = counted(firestore_store, lambda: firestore_store.list_creations("alice", limit=10))
    assert len(items) == 3 and ops == {"reads": 3, "writes": 0, "deletes": 0}
