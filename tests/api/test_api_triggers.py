"""The triggers against local servers speaking the Executions and Cloud Tasks wire formats."""
from __future__ import annotations

import base64
import hashlib
import json
import socket

import grpc
import pytest
from executions_server import ExecutionsGrpcServer, ExecutionsRestServer
from google.cloud import tasks_v2
from google.cloud.workflows import executions_v1
from google.cloud.workflows.executions_v1.services.executions.transports.grpc import ExecutionsGrpcTransport

from creations.model import Creation, CreationType
from creations.settings import Settings
from creations.triggers import (
    ExecutionsRestClient,
    ExecutionsTrigger,
    TasksTrigger,
    TriggerFailed,
    trigger_from_settings,
)
from localcloud.cloudtasks import CloudTasksServer

WORKFLOW = "projects/proj-1/locations/europe-west1/workflows/creation"


def a_creation(kind: CreationType = CreationType.VIDEO, attempt: int = 1) -> Creation:
    return Creation(id=Creation.new_id(), uid="user-1", type=kind, prompt="a red fox", options={},
                    cost=10, attempt=attempt)


@pytest.fixture(scope="module")
def rest_server():
    server = ExecutionsRestServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def grpc_server():
    server = ExecutionsGrpcServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tasks_server():
    """The local Cloud Tasks with the two queues, paused: the tasks stay to be looked at (their
    URL is Google's Executions API, out of reach here)."""
    server = CloudTasksServer().start()
    for queue in ("creations-image", "creations-video"):
        server.tasks.create_queue(f"projects/proj-1/locations/europe-west1/queues/{queue}", state="PAUSED")
    yield server
    server.stop()


def queued(server: CloudTasksServer) -> dict[str, dict]:
    """Every task the queues hold, by name (the full view: with its body)."""
    out = {}
    for queue in ("creations-image", "creations-video"):
        for task in server.tasks.list_tasks(f"projects/proj-1/locations/europe-west1/queues/{queue}", "FULL")["tasks"]:
            out[task["name"]] = task
    return out


@pytest.fixture(autouse=True)
def _healthy_servers(request):
    yield
    for name in ("rest_server", "grpc_server"):
        if name in request.fixturenames:
            request.getfixturevalue(name).fail_status = None
    if "tasks_server" in request.fixturenames:
        request.getfixturevalue("tasks_server").tasks.unavailable = False


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


# --- Executions API -----------------------------------------------------------------------------


def test_executions_rest_sends_parent_argument_and_labels(rest_server):
    trigger = ExecutionsTrigger(ExecutionsRestClient(rest_server.url), WORKFLOW)
    creation = a_creation(CreationType.VIDEO, attempt=2)

    name = trigger.start(creation)

    [started] = rest_server.for_creation(creation.id)
    assert started.parent == WORKFLOW
    assert started.argument == {"creationId": creation.id, "attempt": 2}
    assert started.labels == {"creation-id": creation.id, "type": "video", "attempt": "2"}
    assert name == started.name and name.startswith(WORKFLOW + "/executions/")


def test_executions_grpc_client_sends_the_same_request(grpc_server):
    # The production client (gRPC), pointed at a loopback server without TLS.
    transport = ExecutionsGrpcTransport(channel=grpc.insecure_channel(grpc_server.address))
    trigger = ExecutionsTrigger(executions_v1.ExecutionsClient(transport=transport), WORKFLOW)
    creation = a_creation(CreationType.IMAGE)

    name = trigger.start(creation)

    [started] = grpc_server.for_creation(creation.id)
    assert started.parent == WORKFLOW
    assert started.argument == {"creationId": creation.id, "attempt": 1}
    assert started.labels == {"creation-id": creation.id, "type": "image", "attempt": "1"}
    assert name == started.name


def test_executions_grpc_unavailable_is_trigger_failed(grpc_server):
    grpc_server.fail_status = 503
    transport = ExecutionsGrpcTransport(channel=grpc.insecure_channel(grpc_server.address))
    trigger = ExecutionsTrigger(executions_v1.ExecutionsClient(transport=transport), WORKFLOW)
    with pytest.raises(TriggerFailed):
        trigger.start(a_creation())


def test_executions_rest_server_error_is_trigger_failed(rest_server):
    rest_server.fail_status = 503
    trigger = ExecutionsTrigger(ExecutionsRestClient(rest_server.url), WORKFLOW)
    with pytest.raises(TriggerFailed) as raised:
        trigger.start(a_creation())
    assert raised.value.code == "TRIGGER_FAILED"


def test_executions_refused_connection_is_trigger_failed():
    trigger = ExecutionsTrigger(ExecutionsRestClient(f"http://127.0.0.1:{refused_port()}"), WORKFLOW, timeout=2)
    with pytest.raises(TriggerFailed):
        trigger.start(a_creation())


def test_local_trigger_from_settings_targets_the_local_engine(rest_server):
    settings = Settings(trigger="local", local_engine_url=rest_server.url, gcp_project="p", gcp_region="r",
                        workflow_name="creation")
    creation = a_creation()
    trigger_from_settings(settings).start(creation)
    [started] = rest_server.for_creation(creation.id)
    assert started.parent == "projects/p/locations/r/workflows/creation"


def test_executions_trigger_from_settings_with_http_endpoint(rest_server):
    settings = Settings(trigger="executions", executions_endpoint=rest_server.url, gcp_project="p", gcp_region="r")
    creation = a_creation()
    name = trigger_from_settings(settings).start(creation)
    assert [e.name for e in rest_server.for_creation(creation.id)] == [name]


# --- Cloud Tasks --------------------------------------------------------------------------------


def tasks_trigger(server: CloudTasksServer) -> TasksTrigger:
    settings = Settings(trigger="tasks", tasks_endpoint=server.url, gcp_project="proj-1", gcp_region="europe-west1",
                        tasks_service_account="invoker@proj-1.iam.gserviceaccount.com")
    trigger = trigger_from_settings(settings)
    assert isinstance(trigger, TasksTrigger)
    return trigger


def test_tasks_trigger_creates_the_http_task(tasks_server):
    creation = a_creation(CreationType.VIDEO, attempt=3)

    assert tasks_trigger(tasks_server).start(creation) is None

    queue = "projects/proj-1/locations/europe-west1/queues/creations-video"
    name = f"{queue}/tasks/{hashlib.sha256(f'{creation.id}:3'.encode()).hexdigest()}"
    [request] = [r for r in tasks_server.tasks.create_requests if r["task"]["name"] == name]
    assert request["parent"] == queue
    assert name in queued(tasks_server)
    http = request["task"]["httpRequest"]
    method = http["httpMethod"]  # the REST transport sends enums as numbers
    assert (tasks_v2.HttpMethod[method] if isinstance(method, str) else tasks_v2.HttpMethod(method)) \
        == tasks_v2.HttpMethod.POST
    assert http["url"] == ("https://workflowexecutions.googleapis.com/v1/projects/proj-1/locations/"
                           "europe-west1/workflows/creation/executions")
    body = json.loads(base64.b64decode(http["body"]))
    assert isinstance(body["argument"], str)  # the Executions API takes the argument as a JSON string
    assert json.loads(body["argument"]) == {"creationId": creation.id, "attempt": 3}
    assert body["labels"] == {"creation-id": creation.id, "type": "video", "attempt": "3"}
    assert http["headers"]["Content-Type"] == "application/json"
    assert http["oauthToken"] == {"serviceAccountEmail": "invoker@proj-1.iam.gserviceaccount.com",
                                  "scope": "https://www.googleapis.com/auth/cloud-platform"}


def test_tasks_trigger_uses_the_queue_of_the_type(tasks_server):
    creation = a_creation(CreationType.IMAGE)
    tasks_trigger(tasks_server).start(creation)
    name = f"projects/proj-1/locations/europe-west1/queues/creations-image/tasks/" \
           f"{hashlib.sha256(f'{creation.id}:1'.encode()).hexdigest()}"
    assert name in queued(tasks_server)


def test_tasks_duplicate_is_success_and_creates_nothing_more(tasks_server):
    trigger = tasks_trigger(tasks_server)
    creation = a_creation()
    trigger.start(creation)
    before = len(queued(tasks_server))

    trigger.start(creation)  # the server answers 409 ALREADY_EXISTS

    assert len(queued(tasks_server)) == before
    sent = [r for r in tasks_server.tasks.create_requests if r["task"]["name"].endswith(
        hashlib.sha256(f"{creation.id}:1".encode()).hexdigest())]
    assert len(sent) == 2


def test_tasks_new_attempt_is_a_new_task(tasks_server):
    trigger = tasks_trigger(tasks_server)
    creation = a_creation()
    trigger.start(creation)
    before = len(queued(tasks_server))
    creation.attempt = 2
    trigger.start(creation)
    assert len(queued(tasks_server)) == before + 1


def test_tasks_server_error_is_trigger_failed(tasks_server):
    tasks_server.tasks.unavailable = True
    with pytest.raises(TriggerFailed):
        tasks_trigger(tasks_server).start(a_creation())


def test_tasks_trigger_needs_a_service_account(tasks_server):
    with pytest.raises(ValueError, match="PHOENIX_TASKS_SERVICE_ACCOUNT"):
        trigger_from_settings(Settings(trigger="tasks", tasks_endpoint=tasks_server.url))
