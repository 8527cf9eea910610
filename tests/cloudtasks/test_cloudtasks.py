"""The local Cloud Tasks, driven by the production client (google-cloud-tasks, REST transport)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.api_core import exceptions as core_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports.rest import CloudTasksRestTransport

from localcloud.cloudtasks import CloudTasksServer, RateLimits, RetryConfig
from localcloud.workflows import VirtualClock

LOCATION = "projects/p1/locations/europe-west1"


class Target:
    """An HTTP endpoint that records what it receives and answers with the statuses it is given."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received: list[dict] = []
        self.statuses: list[int] = []       # answered in order; then 200
        self.delay = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with target.lock:
                    target.in_flight += 1
                    target.max_in_flight = max(target.max_in_flight, target.in_flight)
                    target.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = target.statuses.pop(0) if target.statuses else 200
                time.sleep(target.delay)
                with target.lock:
                    target.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def target():
    t = Target()
    yield t
    t.stop()


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def server(clock):
    s = CloudTasksServer(clock=clock).start()
    yield s
    s.stop()


def client_for(server: CloudTasksServer) -> tasks_v2.CloudTasksClient:
    """The production client on its REST transport, aimed at the loopback server without TLS."""
    host = server.url.removeprefix("http://")
    transport = CloudTasksRestTransport(host=host, url_scheme="http", credentials=AnonymousCredentials())
    return tasks_v2.CloudTasksClient(transport=transport)


def make_queue(server, name="q1", **retry) -> str:
    queue = f"{LOCATION}/queues/{name}"
    server.tasks.create_queue(queue, retry=RetryConfig(**retry) if retry else None)
    return queue


def http_task(queue: str, url: str, task_id: str | None = None, body: dict | None = None) -> tasks_v2.Task:
    return tasks_v2.Task(
        name=f"{queue}/tasks/{task_id}" if task_id else None,
        http_request=tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST, url=url, headers={"Content-Type": "application/json"},
            body=json.dumps(body or {"argument": "{}"}).encode(),
            oauth_token=tasks_v2.OAuthToken(service_account_email="invoker@p1.iam.gserviceaccount.com"),
        ),
    )


def test_a_created_task_delivers_its_http_request_with_the_cloud_tasks_headers(server, target):
    queue = make_queue(server)
    client = client_for(server)

    created = client.create_task(parent=queue, task=http_task(queue, target.url + "/v1/run?x=1", "t-1",
                                                              {"argument": '{"a":1}'}))
    server.tasks.wait_idle(10)

    assert created.name == f"{queue}/tasks/t-1"
    [got] = target.received
    assert got["path"] == "/v1/run?x=1"
    assert json.loads(got["body"]) == {"argument": '{"a":1}'}
    assert got["headers"]["Content-Type"] == "application/json"
    assert got["headers"]["X-CloudTasks-QueueName"] == "q1"
    assert got["headers"]["X-CloudTasks-TaskName"] == "t-1"
    assert got["headers"]["X-CloudTasks-TaskRetryCount"] == "0"
    assert got["headers"]["Authorization"].startswith("Bearer ")


def test_a_second_task_with_the_same_name_is_already_exists_even_after_it_ran(server, target):
    queue = make_queue(server)
    client = client_for(server)
    client.create_task(parent=queue, task=http_task(queue, target.url, "same"))
    with pytest.raises(core_exceptions.Conflict) as raised:
        client.create_task(parent=queue, task=http_task(queue, target.url, "same"))
    assert raised.value.response.json()["error"]["status"] == "ALREADY_EXISTS"
    server.tasks.wait_idle(10)

    with pytest.raises(core_exceptions.Conflict):
        client.create_task(parent=queue, task=http_task(queue, target.url, "same"))
    assert len(target.received) == 1


def test_failed_deliveries_are_retried_with_the_queues_backoff(server, target, clock):
    queue = make_queue(server, min_backoff=10, max_backoff=300, max_doublings=3, max_attempts=10)
    target.statuses = [503, 500, 429]
    client_for(server).create_task(parent=queue, task=http_task(queue, target.url, "flaky"))

    started = time.monotonic()
    server.tasks.wait_idle(10)

    attempts = [d for d in server.tasks.deliveries if d.task.endswith("/flaky")]
    assert [d.status for d in attempts] == [503, 500, 429, 200]
    assert [int(r["headers"]["X-CloudTasks-TaskRetryCount"]) for r in target.received] == [0, 1, 2, 3]
    gaps = [round(b.at - a.at) for a, b in zip(attempts, attempts[1:])]
    assert gaps == [10, 20, 40]                  # the documented doubling from min_backoff
    assert time.monotonic() - started < 5        # on the virtual clock: no wall time spent


def test_the_backoff_doubles_then_grows_linearly_up_to_max_backoff():
    config = RetryConfig(min_backoff=10, max_backoff=300, max_doublings=3)
    assert [config.backoff(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]


def test_a_task_is_dropped_after_max_attempts(server, target):
    queue = make_queue(server, min_backoff=1, max_backoff=5, max_attempts=3)
    target.statuses = [503] * 10
    client_for(server).create_task(parent=queue, task=http_task(queue, target.url, "doomed"))
    server.tasks.wait_idle(10)
    assert len(target.received) == 3
    assert server.tasks.dropped == [f"{queue}/tasks/doomed"]


def test_an_unreachable_target_is_retried(server):
    queue = make_queue(server, min_backoff=1, max_backoff=1, max_attempts=2)
    client_for(server).create_task(parent=queue, task=http_task(queue, "http://127.0.0.1:9/", "nobody"))
    server.tasks.wait_idle(10)
    attempts = [d for d in server.tasks.deliveries if d.task.endswith("/nobody")]
    assert [d.status for d in attempts] == [None, None] and attempts[0].error


def test_duplicate_next_delivers_a_task_twice(server, target):
    queue = make_queue(server)
    server.tasks.duplicate_next(1)
    client = client_for(server)
    client.create_task(parent=queue, task=http_task(queue, target.url, "twice"))
    client.create_task(parent=queue, task=http_task(queue, target.url, "once"))
    server.tasks.wait_idle(10)
    names = sorted(r["headers"]["X-CloudTasks-TaskName"] for r in target.received)
    assert names == ["once", "twice", "twice"]
    assert [d.duplicate for d in server.tasks.deliveries if d.task.endswith("/twice")] == [False, True]


def test_a_paused_queue_holds_its_tasks_until_resumed(server, target):
    queue = make_queue(server)
    server.tasks.set_state(queue, "PAUSED")
    client = client_for(server)
    client.create_task(parent=queue, task=http_task(queue, target.url, "held"))
    time.sleep(0.3)
    assert target.received == []
    assert [t.name for t in client.list_tasks(parent=queue)] == [f"{queue}/tasks/held"]
    client.resume_queue(name=queue)
    server.tasks.wait_idle(10)
    assert len(target.received) == 1


def test_max_concurrent_dispatches_is_honoured():
    server = CloudTasksServer().start()     # real clock: dispatches overlap in wall time
    target = Target()
    try:
        target.delay = 0.2
        queue = f"{LOCATION}/queues/narrow"
        server.tasks.create_queue(queue, rate=RateLimits(max_dispatches_per_second=500, max_concurrent_dispatches=2))
        client = client_for(server)
        for i in range(6):
            client.create_task(parent=queue, task=http_task(queue, target.url, f"t{i}"))
        server.tasks.wait_idle(20)
        assert len(target.received) == 6
        assert target.max_in_flight == 2
    finally:
        target.stop()
        server.stop()


def test_bad_requests_get_clear_errors(server, target):
    client = client_for(server)
    with pytest.raises(core_exceptions.NotFound):
        client.create_task(parent=f"{LOCATION}/queues/missing",
                           task=http_task(f"{LOCATION}/queues/missing", target.url, "x"))
    queue = make_queue(server)
    with pytest.raises(core_exceptions.BadRequest, match="task.name"):
        client.create_task(parent=queue, task=http_task(queue, target.url, "bad.name"))
    with pytest.raises(core_exceptions.BadRequest, match="url"):
        client.create_task(parent=queue, task=http_task(queue, "ftp://example.com/", "y"))
    server.tasks.unavailable = True
    with pytest.raises(core_exceptions.ServiceUnavailable):
        client.create_task(parent=queue, task=http_task(queue, target.url, "z"))


def test_the_full_view_returns_the_body_and_basic_does_not(server, target):
    queue = make_queue(server)
    server.tasks.set_state(queue, "PAUSED")
    client = client_for(server)
    client.create_task(parent=queue, task=http_task(queue, target.url, "v", {"argument": "x"}))
    basic = client.get_task(name=f"{queue}/tasks/v")
    full = client.get_task(request=tasks_v2.GetTaskRequest(name=f"{queue}/tasks/v",
                                                           response_view=tasks_v2.Task.View.FULL))
    assert basic.http_request.body == b""
    assert json.loads(full.http_request.body) == {"argument": "x"}
