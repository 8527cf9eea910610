"""The local Executions API: Google's own ExecutionsClient (gRPC, the transport the package
ships) and plain REST calls (create, get, list, cancel, stepEntries) against an engine."""
from __future__ import annotations

import json
import time

import grpc
import httpx
import pytest
from google.api_core import exceptions as api_exceptions
from google.cloud.workflows.executions_v1 import ExecutionsClient
from google.cloud.workflows.executions_v1.services.executions.transports import (
    ExecutionsGrpcTransport,
)
from google.cloud.workflows.executions_v1.types import Execution, ExecutionView

from localcloud.workflows import Engine, RealClock
from localcloud.workflows.executions_grpc import ExecutionsGrpcServer
from localcloud.workflows.server import ExecutionsServer

PARENT = "projects/phoenix-local/locations/us-central1/workflows"
ORDERS = """\
main:
  params: [args]
  steps:
    - check:
        switch:
          - condition: ${args.n < 0}
            raise: {code: 400, message: negative}
    - r:
        return: ${args.n * 2}
"""
SLEEPY = "- w:\n    call: sys.sleep\n    args: {seconds: 30}\n"


@pytest.fixture(scope="module")
def engine():
    engine = Engine(clock=RealClock())
    engine.deploy("orders", ORDERS)
    engine.deploy("sleepy", SLEEPY)
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def client(engine):
    with ExecutionsGrpcServer(engine) as server:
        channel = grpc.insecure_channel(server.address)
        yield ExecutionsClient(transport=ExecutionsGrpcTransport(channel=channel))
        channel.close()


@pytest.fixture(scope="module")
def rest(engine):
    with ExecutionsServer(engine) as server, httpx.Client(base_url=server.url,
                                                          timeout=10) as http:
        yield http


def wait_state(engine: Engine, name: str, state: str) -> None:
    deadline = time.monotonic() + 10
    while engine.get_execution(name)["state"] != state:
        assert time.monotonic() < deadline, f"{name} never became {state}"
        time.sleep(0.01)


def test_client_creates_gets_and_lists(engine: Engine, client: ExecutionsClient):
    created = client.create_execution(parent=f"{PARENT}/orders", execution=Execution(
        argument=json.dumps({"n": 21}), labels={"kind": "image"}))
    assert created.name.startswith(f"{PARENT}/orders/executions/")
    engine.wait(created.name, 10)
    got = client.get_execution(name=created.name)
    assert got.state == Execution.State.SUCCEEDED
    assert json.loads(got.result) == 42
    assert dict(got.labels) == {"kind": "image"}
    assert got.workflow_revision_id == engine.get_execution(created.name)["workflowRevisionId"]
    basic = client.get_execution(request={"name": created.name, "view": ExecutionView.BASIC})
    assert basic.result == "" and basic.state == Execution.State.SUCCEEDED
    failed = client.create_execution(parent=f"{PARENT}/orders",
                                     execution=Execution(argument='{"n": -1}'))
    engine.wait(failed.name, 10)
    got_failed = client.get_execution(name=failed.name)
    assert got_failed.state == Execution.State.FAILED
    assert json.loads(got_failed.error.payload) == {"code": 400, "message": "negative"}
    assert got_failed.error.stack_trace.elements[0].step == "check"
    listed = [e.name for e in client.list_executions(parent=f"{PARENT}/orders")]
    assert created.name in listed and failed.name in listed
    only_failed = [e.name for e in client.list_executions(
        request={"parent": f"{PARENT}/orders", "filter": 'state="FAILED"'})]
    assert failed.name in only_failed and created.name not in only_failed


def test_client_cancels(engine: Engine, client: ExecutionsClient):
    created = client.create_execution(parent=f"{PARENT}/sleepy", execution=Execution())
    wait_state(engine, created.name, "ACTIVE")
    cancelled = client.cancel_execution(name=created.name)
    assert cancelled.state == Execution.State.CANCELLED
    with pytest.raises(api_exceptions.FailedPrecondition):
        client.cancel_execution(name=created.name)


def test_client_errors(client: ExecutionsClient):
    with pytest.raises(api_exceptions.NotFound):
        client.get_execution(name=f"{PARENT}/orders/executions/does-not-exist")
    with pytest.raises(api_exceptions.NotFound):
        client.create_execution(parent=f"{PARENT}/never-deployed", execution=Execution())
    with pytest.raises(api_exceptions.NotFound):
        client.create_execution(
            parent="projects/other/locations/us-central1/workflows/orders",
            execution=Execution())
    with pytest.raises(api_exceptions.InvalidArgument):
        client.create_execution(parent=f"{PARENT}/orders",
                                execution=Execution(argument="{not json"))


def test_rest_create_get_list_and_step_entries(engine: Engine, rest: httpx.Client):
    response = rest.post(f"/v1/{PARENT}/orders/executions",
                         json={"argument": '{"n": 5}', "labels": {"via": "rest"}})
    assert response.status_code == 200
    name = response.json()["name"]
    # the body is what Google's types read
    assert Execution.from_json(response.text, ignore_unknown_fields=True).name == name
    engine.wait(name, 10)
    got = rest.get(f"/v1/{name}").json()
    assert got["state"] == "SUCCEEDED" and got["result"] == "10"
    assert got["labels"] == {"via": "rest"}
    first = rest.get(f"/v1/{PARENT}/orders/executions", params={"pageSize": 1}).json()
    assert len(first["executions"]) == 1 and first["nextPageToken"]
    assert "result" not in first["executions"][0]   # list defaults to the BASIC view
    second = rest.get(f"/v1/{PARENT}/orders/executions",
                      params={"pageSize": 1, "pageToken": first["nextPageToken"]}).json()
    assert second["executions"][0]["name"] != first["executions"][0]["name"]
    filtered = rest.get(f"/v1/{PARENT}/orders/executions",
                        params={"filter": 'labels.via="rest"', "view": "FULL"}).json()
    assert [e["name"] for e in filtered["executions"]] == [name]
    assert filtered["executions"][0]["result"] == "10"
    entries = rest.get(f"/v1/{name}/stepEntries").json()
    assert [(e["step"], e["stepType"], e["state"]) for e in entries["stepEntries"]] == [
        ("check", "STEP_SWITCH", "STATE_SUCCEEDED"), ("r", "STEP_RETURN", "STATE_SUCCEEDED")]
    assert entries["totalSize"] == 2
    one = rest.get(f"/v1/{name}/stepEntries/2").json()
    assert one["step"] == "r" and one["entryId"] == "2"


def test_rest_cancel(engine: Engine, rest: httpx.Client):
    name = rest.post(f"/v1/{PARENT}/sleepy/executions", json={}).json()["name"]
    wait_state(engine, name, "ACTIVE")
    cancelled = rest.post(f"/v1/{name}:cancel", json={})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "CANCELLED"
    again = rest.post(f"/v1/{name}:cancel", json={})
    assert again.status_code == 400
    assert again.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_rest_errors_use_googles_shape(rest: httpx.Client):
    missing = rest.get(f"/v1/{PARENT}/orders/executions/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"
    assert missing.json()["error"]["code"] == 404
    bad = rest.post(f"/v1/{PARENT}/orders/executions", json={"argument": {"n": 1}})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    broken = rest.post(f"/v1/{PARENT}/orders/executions", content=b"{oops",
                       headers={"Content-Type": "application/json"})
    assert broken.status_code == 400
    wrong_method = rest.delete(f"/v1/{PARENT}/orders/executions")
    assert wrong_method.status_code == 405
    unknown = rest.get("/v1/projects/phoenix-local/locations/us-central1/workflows")
    assert unknown.status_code == 404
    bad_filter = rest.get(f"/v1/{PARENT}/orders/executions", params={"filter": "color=red"})
    assert bad_filter.status_code == 400
