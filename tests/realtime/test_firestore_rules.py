"""The deployed rules file, firestore.rules, in force on Google's Firestore emulator: what an
app signed in as one user can read, and that no client reads another user's data or writes
anything. The documents are written by the real store adapter (server credentials), so they
have exactly the shape production has."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from creations.model import Creation, CreationType, LedgerEntry
from creations.store.firestore import FirestoreStore
from tests.support.firestore import emulator_client
from tests.support.firestore_users import OWNER, RestClient, equals, id_token, load_rules


@pytest.fixture
def world(firestore_emulator, firestore_project) -> Iterator[dict]:
    """alice and bob, each with a creation (made with an Idempotency-Key) and a balance; the rules loaded."""
    load_rules(firestore_emulator, firestore_project)
    store = FirestoreStore(emulator_client(firestore_emulator, firestore_project))
    ids = {}
    for uid in ("alice", "bob"):
        store.grant(uid, 5, f"grant-{uid}")
        creation = Creation(id=Creation.new_id(), uid=uid, type=CreationType.IMAGE, prompt="a fox", options={},
                            cost=1)
        ids[uid] = store.create_with_debit(creation, idempotency_key="k1", request_hash="h").creation.id
    clients = {name: RestClient(firestore_emulator, firestore_project, token) for name, token in (
        ("alice", id_token(firestore_project, "alice")), ("bob", id_token(firestore_project, "bob")),
        ("nobody", None), ("server", OWNER))}
    yield {"ids": ids, "store": store, **clients}
    for client in clients.values():
        client.close()
    store.close()


def test_a_user_reads_their_own_creation_and_balance(world):
    alice, ids = world["alice"], world["ids"]
    creation = alice.get(f"creations/{ids['alice']}")
    assert creation.status_code == 200, creation.text
    assert creation.json()["fields"]["status"]["stringValue"] == "pending"
    balance = alice.get("users/alice")
    assert balance.status_code == 200
    assert balance.json()["fields"]["tokens"]["integerValue"] == "4"


def test_another_user_and_an_unauthenticated_client_read_nothing(world):
    ids = world["ids"]
    for client in (world["bob"], world["nobody"]):
        assert client.get(f"creations/{ids['alice']}").status_code == 403
        assert client.get("users/alice").status_code == 403
    assert world["bob"].get(f"creations/{ids['bob']}").status_code == 200  # bob is not locked out of his own
    assert world["server"].get(f"creations/{ids['alice']}").status_code == 200


def test_the_ledger_and_idempotency_records_are_server_only(world):
    alice, ids = world["alice"], world["ids"]
    debit = f"ledger/{LedgerEntry.debit_id(ids['alice'], 1)}"
    assert world["server"].get(debit).status_code == 200
    assert alice.get(debit).status_code == 403
    listed = alice.query("ledger", where=equals("uid", "alice"))
    assert listed.status_code == 403, listed.text
    keys = world["server"].query("idempotency").json()
    key_doc = keys[0]["document"]["name"].split("/documents/")[1]
    assert alice.get(key_doc).status_code == 403
    assert alice.query("idempotency", where=equals("uid", "alice")).status_code == 403
    assert alice.query("users").status_code == 403


def test_no_client_writes_anything(world):
    alice, ids = world["alice"], world["ids"]
    mine = f"creations/{ids['alice']}"
    writes = [
        alice.patch(mine, {"uid": {"stringValue": "alice"}, "status": {"stringValue": "draft"}}),
        alice.delete(mine),
        alice.create("creations", "forged", {"uid": {"stringValue": "alice"}, "status": {"stringValue": "draft"}}),
        alice.patch("users/alice", {"tokens": {"integerValue": "1000"}}),
        alice.create("ledger", "forged", {"uid": {"stringValue": "alice"}, "kind": {"stringValue": "grant"}}),
        world["nobody"].patch("users/alice", {"tokens": {"integerValue": "1000"}}),
    ]
    assert [w.status_code for w in writes] == [403] * len(writes)
    assert world["store"].balance("alice") == 4
    assert world["store"].get_creation(ids["alice"]).status.value == "pending"


def test_a_query_must_filter_on_the_callers_own_uid(world):
    alice, ids = world["alice"], world["ids"]
    own = alice.query("creations", where=equals("uid", "alice"),
                      order_by=[{"field": {"fieldPath": "created_at"}, "direction": "DESCENDING"}], limit=20)
    assert own.status_code == 200, own.text
    assert [r["document"]["name"].rsplit("/", 1)[1] for r in own.json() if "document" in r] == [ids["alice"]]
    refused = [
        alice.query("creations"),                                           # everyone's
        alice.query("creations", where=equals("status", "pending")),         # not filtered on uid
        alice.query("creations", where=equals("uid", "bob")),                # someone else's
        alice.query("creations", where=equals("uid", "alice"), limit=500),   # beyond a page
        world["nobody"].query("creations", where=equals("uid", "alice")),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
