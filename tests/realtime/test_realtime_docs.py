"""The examples of docs/realtime.md work as written: the curl command against the running local
stack, the fetch() example's URL and header, and the Firestore listener's query under the rules."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from api.auth import make_local_token
from creations.model import Creation, CreationType
from creations.store.firestore import FirestoreStore
from devstack.stack import LocalStack, StackConfig
from tests.support import sse
from tests.support.firestore import emulator_client
from tests.support.firestore_users import RestClient, equals, id_token, load_rules

DOC = (Path(__file__).resolve().parents[2] / "docs" / "realtime.md").read_text()


def documented(pattern: str) -> re.Match:
    match = re.search(pattern, DOC)
    assert match, f"docs/realtime.md no longer has {pattern!r}"
    return match


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    stack = LocalStack(StackConfig(data_dir=tmp_path_factory.mktemp("docs"), port=0, jobs_mode="inprocess",
                                   instant_generation=True)).start()
    yield stack
    stack.stop()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_documented_curl_command_follows_a_creation_to_its_draft(local_stack):
    command = documented(r'curl -N -H "Authorization: Bearer \$TOKEN" "\$API/v1/creations/\$ID/events"').group(0)
    local_stack.store.grant("docs-reader", 5, "grant-docs-reader")
    token = make_local_token("docs-reader", local_stack.settings.local_auth_secret)
    api = local_stack.urls["api"]
    created = httpx.post(f"{api}/v1/creations", headers={"Authorization": f"Bearer {token}"},
                         json={"type": "image", "prompt": "a lighthouse at dawn"})
    assert created.status_code == 202
    env = {"TOKEN": token, "API": api, "ID": created.json()["id"], "PATH": "/usr/bin:/bin"}
    out = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, timeout=120, check=True)
    stream = sse.Stream(200)
    events = list(sse.parse(out.stdout.splitlines(), stream))
    assert stream.retry == 2000
    assert [e.json["status"] for e in events][-1] == "draft"
    assert [e.id for e in events] == sorted(e.id for e in events)


def test_the_fetch_example_asks_for_the_same_stream_as_the_curl_command():
    fetch = documented(r"fetch\(`\$\{API\}(/v1/creations/\$\{id\}/events)`, \{\s*headers: \{ Authorization: `Bearer")
    assert fetch.group(1).replace("${id}", "$ID") in DOC  # the curl command's path


def test_the_documented_listener_query_is_allowed_for_the_owner_only(firestore_emulator, firestore_project):
    listener = documented(r'collection\(db, "(\w+)"\), where\("(\w+)", "==", user\.uid\),\s*'
                          r'orderBy\("(\w+)", "desc"\), limit\((\d+)\)')
    collection, field, order, limit = listener.groups()
    load_rules(firestore_emulator, firestore_project)
    store = FirestoreStore(emulator_client(firestore_emulator, firestore_project))
    store.grant("alice", 3, "grant-alice")
    store.create_with_debit(Creation(id=Creation.new_id(), uid="alice", type=CreationType.IMAGE, prompt="a fox",
                                     options={}, cost=1))
    order_by = [{"field": {"fieldPath": order}, "direction": "DESCENDING"}]
    for uid, expected in (("alice", 200), ("bob", 403)):
        client = RestClient(firestore_emulator, firestore_project, id_token(firestore_project, uid))
        # As that user, the documented query with `user.uid` being alice's.
        response = client.query(collection, where=equals(field, "alice"), order_by=order_by, limit=int(limit))
        assert response.status_code == expected, response.text
        client.close()
    store.close()
