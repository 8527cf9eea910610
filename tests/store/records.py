"""Creation factory and writes around the store, to prove audit() notices books that do not add up."""
from __future__ import annotations

from creations.model import Creation, CreationType, LedgerEntry
from creations.store.base import Store
from creations.store.firestore import FirestoreStore, creation_to_doc
from creations.store.sqlite import SqliteStore


def make_creation(uid: str = "alice", *, cost: int = 1, type: str = "image", prompt: str = "a red fox",
                  **fields) -> Creation:
    return Creation(id=Creation.new_id(), uid=uid, type=CreationType(type), prompt=prompt,
                    options=fields.pop("options", {"aspect_ratio": "1:1"}), cost=cost, **fields)


def tamper_ledger(store: Store, entry: LedgerEntry) -> None:
    """Write a ledger entry without touching any balance (what a buggy code path might do)."""
    if isinstance(store, SqliteStore):
        with store._tx() as db:
            store._add_entry(db, entry)
    elif isinstance(store, FirestoreStore):
        store.client.collection("ledger").document(entry.id).set({
            "uid": entry.uid, "kind": entry.kind.value, "amount": entry.amount,
            "creation_id": entry.creation_id, "attempt": entry.attempt, "at": entry.at})
    else:
        raise TypeError(store)


def tamper_balance(store: Store, uid: str, tokens: int) -> None:
    if isinstance(store, SqliteStore):
        with store._tx() as db:
            store._set_balance(db, uid, tokens)
    elif isinstance(store, FirestoreStore):
        store.client.collection("users").document(uid).set({"tokens": tokens}, merge=True)
    else:
        raise TypeError(store)


def tamper_creation(store: Store, creation: Creation) -> None:
    """Overwrite a creation as is, charge map included (update_creation refuses to change it)."""
    if isinstance(store, SqliteStore):
        with store._tx() as db:
            store._put(db, creation)
    elif isinstance(store, FirestoreStore):
        store.client.collection("creations").document(creation.id).set(creation_to_doc(creation))
    else:
        raise TypeError(store)
