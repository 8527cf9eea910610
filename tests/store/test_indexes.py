"""Production Firestore refuses a query without its composite index (the emulator does not): check that
firestore.indexes.json has one for every query FirestoreStore sends."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.types import StructuredQuery

from creations.store.firestore import FirestoreStore

INDEXES = Path(__file__).resolve().parents[2] / "firestore.indexes.json"
_EQUALITY = {StructuredQuery.FieldFilter.Operator.EQUAL, StructuredQuery.FieldFilter.Operator.IN}


def shape(query) -> tuple[str, set[str], list[tuple[str, str]]]:
    """(collection, equality fields, [(order field, direction)]) of a query, __name__ left out."""
    pb = query._to_protobuf()
    filters = list(pb.where.composite_filter.filters) or [pb.where]
    equality = {f.field_filter.field.field_path for f in filters if f.field_filter.op in _EQUALITY}
    orders = [(o.field.field_path, StructuredQuery.Direction(o.direction).name) for o in pb.order_by
              if o.field.field_path != "__name__"]
    return pb.from_[0].collection_id, equality, orders


def covered(collection: str, equality: set[str], orders: list[tuple[str, str]], indexes: list[dict]) -> bool:
    if len(equality) + len(orders) <= 1:
        return True  # a single-field index does it
    for index in indexes:
        if index["collectionGroup"] != collection:
            continue
        fields = [(f["fieldPath"], f["order"]) for f in index["fields"] if f["fieldPath"] != "__name__"]
        head, tail = fields[:len(equality)], fields[len(equality):]
        if {name for name, _ in head} == equality and tail == orders:
            return True
    return False


@pytest.fixture(scope="module")
def offline_store() -> FirestoreStore:
    # Building a query sends nothing: any project and no credentials will do, no emulator needed.
    return FirestoreStore(firestore.Client(project="index-check", credentials=AnonymousCredentials()))


def test_every_query_has_its_composite_index(offline_store):
    store = offline_store
    indexes = json.loads(INDEXES.read_text())["indexes"]
    queries = {
        "active (max_active check)": store.active_query("u"),
        "list": store.list_query("u"),
        "list by status": store.list_query("u", "draft"),
        "find for the reconciler": store.find_query(["pending", "processing"]),
        "find stale": store.find_query(["pending"], datetime.now(UTC)),
        "ledger": store.ledger_query("u"),
    }
    missing = [name for name, q in queries.items() if not covered(*shape(q), indexes)]
    assert not missing, f"firestore.indexes.json lacks an index for: {missing}"


def test_the_check_notices_a_missing_index(offline_store):
    indexes = [i for i in json.loads(INDEXES.read_text())["indexes"]
               if [f["fieldPath"] for f in i["fields"]] != ["uid", "created_at"]]
    assert not covered(*shape(offline_store.list_query("u")), indexes)
