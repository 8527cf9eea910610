"""POST /v1/creations starts its attempt through the domain's one money path: a trigger failure
fails and refunds the creation in ONE store transaction, so no crash between two writes can leave
a refunded creation pending (or a failed one unrefunded)."""
from __future__ import annotations

import socket

from api_stack import SECRET, api_settings
from fastapi.testclient import TestClient

from api.auth import make_local_token
from api.main import create_app
from creations.errors import StoreUnavailable
from creations.model import Status
from creations.storage import MediaStorage
from creations.store.sqlite import SqliteStore


class CrashingUpdates(SqliteStore):
    """A store whose read-modify-writes fail, as when the process dies after the refund commits:
    only the single-transaction refund(..., fail_with=...) can settle a failed trigger."""

    def __init__(self, path):
        super().__init__(path)
        self.updates = 0

    def update_creation(self, creation_id, mutate):
        self.updates += 1
        raise StoreUnavailable("the store went away")


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_trigger_is_failed_and_refunded_in_one_transaction(tmp_path, s3):
    settings = api_settings(tmp_path, s3, local_engine_url=f"http://127.0.0.1:{refused_port()}")
    store = CrashingUpdates(settings.sqlite_path)
    store.grant("u1", 5, "g1")
    app = create_app(settings, store=store, storage=MediaStorage.from_settings(settings))
    with TestClient(app, headers={"Authorization": f"Bearer {make_local_token('u1', SECRET)}"}) as client:
        response = client.post("/v1/creations", json={"type": "image", "prompt": "a kite"})
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["refunded"] is True and body["balance"] == 5
    creation = store.get_creation(body["id"])
    assert creation.status is Status.FAILED
    assert (creation.error.code, creation.error.step, creation.error.retryable) == ("TRIGGER_FAILED", "trigger", False)
    assert creation.charge == {"debited": {"1": True}, "refunded": {"1": True}}
    assert store.updates == 0      # nothing but the one refund transaction touched the creation
    assert store.balance("u1") == 5
    assert store.audit() == []
    store.close()


def test_the_api_and_the_operator_tools_share_the_start_of_an_attempt():
    import inspect

    import api.routes.creations as routes
    import creations.operator as operator
    from creations import attempts

    # One implementation: the API's route calls the domain's start_attempt, the operator's replay
    # calls the domain's replay (which calls start_attempt); neither starts a trigger itself.
    assert "start_attempt(" in inspect.getsource(routes.start_execution)
    assert ".start(" not in inspect.getsource(routes)
    assert ".start(" not in inspect.getsource(operator)
    assert "start_attempt(" in inspect.getsource(attempts.replay)
