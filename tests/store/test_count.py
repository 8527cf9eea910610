"""count_creations on both adapters: creations per status, narrowed by user and creation time."""
from __future__ import annotations

from datetime import timedelta

from creations.model import Creation, CreationError, CreationType, utcnow


def make(store, uid: str, minutes_ago: int) -> Creation:
    c = Creation(id=Creation.new_id(), uid=uid, type=CreationType.IMAGE, prompt="p", options={}, cost=1,
                 created_at=utcnow() - timedelta(minutes=minutes_ago))
    store.create_with_debit(c)
    return c


def test_counts_per_status_by_user_and_time(store):
    store.grant("u1", 10, "grant:u1")
    store.grant("u2", 10, "grant:u2")
    old = make(store, "u1", 120)
    make(store, "u1", 5)
    failed = make(store, "u2", 5)
    store.refund(failed.id, 1, fail_with=CreationError("UNKNOWN", "m", "s", True))
    assert store.count_creations() == {"pending": 2, "processing": 0, "draft": 0, "failed": 1}
    assert store.count_creations(uid="u1") == {"pending": 2, "processing": 0, "draft": 0, "failed": 0}
    recent = store.count_creations(created_from=utcnow() - timedelta(minutes=60))
    assert recent == {"pending": 1, "processing": 0, "draft": 0, "failed": 1}
    before = store.count_creations(created_before=old.created_at + timedelta(seconds=1))
    assert before == {"pending": 1, "processing": 0, "draft": 0, "failed": 0}
    assert store.count_creations(uid="nobody") == {"pending": 0, "processing": 0, "draft": 0, "failed": 0}
    assert store.count_creations(codes=["UNKNOWN"]) == {"pending": 0, "processing": 0, "draft": 0, "failed": 1}
    assert store.count_creations(codes=["CONTENT_POLICY"])["failed"] == 0
    assert store.count_creations(types=["image"], uid="u1")["pending"] == 2
    assert store.count_creations(types=["video"]) == {"pending": 0, "processing": 0, "draft": 0, "failed": 0}
    store.refund(old.id, 1, fail_with=CreationError("UNKNOWN", "m", "s", True))


def test_the_firestore_count_queries_have_their_composite_indexes():
    import json

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from creations.store.firestore import FirestoreStore
    from tests.store.test_indexes import INDEXES, covered, shape

    store = FirestoreStore(firestore.Client(project="index-check", credentials=AnonymousCredentials()))
    indexes = json.loads(INDEXES.read_text())["indexes"]
    since = utcnow() - timedelta(days=1)
    queries = {
        "by status": store.count_query("failed"),
        "by status, user, time": store.count_query("failed", "u", since),
        "by status and type, time": store.count_query("failed", None, since, types=["video"]),
        "by status and code": store.count_query("failed", codes=["CONTENT_POLICY"]),
    }
    missing = [name for name, q in queries.items() if not covered(*shape(q), indexes)]
    assert missing == [], f"firestore.indexes.json lacks an index for: {missing}"
