"""A local Cloud Tasks: the Cloud Tasks v2 REST API on loopback, dispatching HTTP tasks.

    POST   /v2/projects/P/locations/L/queues                  create a queue
    GET    /v2/projects/P/locations/L/queues[/Q]              list / get queues
    DELETE /v2/projects/P/locations/L/queues/Q                delete a queue
    POST   /v2/.../queues/Q:pause | :resume | :purge
    POST   /v2/.../queues/Q/tasks                             create a task ({"task", "responseView"})
    GET    /v2/.../queues/Q/tasks[/T]                         list / get tasks
    DELETE /v2/.../queues/Q/tasks/T                           delete a task

It behaves as the service does where a caller can tell: a task name deduplicates (a second
create with the same name, even after the task ran or was deleted, answers 409 ALREADY_EXISTS);
unknown queues answer 404; only HTTP tasks exist. Delivery is at least once: a task's HTTP
request is sent when its schedule time comes, with the task's headers plus the X-CloudTasks-*
ones and, for a task carrying an OAuth token, an `Authorization: Bearer` header (a local
stand-in token: nothing here checks it). A 2xx answer completes the task; anything else, or no
answer within the dispatch deadline, is retried under the queue's retry config (min/max
backoff, max doublings, max attempts, max retry duration), with the queue's rate limits
(dispatches per second, concurrent dispatches). `duplicate_next(n)` delivers the next n tasks
once more after their first successful delivery, as the service may.

Time goes through a localcloud clock: with a `VirtualClock` every backoff and schedule wait
returns at once, so retries cost no wall time in tests.
"""
from __future__ import annotations

import base64
import heapq
import http.client
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localcloud.workflows.clock import Clock, RealClock, VirtualClock

_LOCATION = r"projects/[^/:]+/locations/[^/:]+"
_QUEUE = _LOCATION + r"/queues/[A-Za-z0-9-]{1,100}"
_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
_QUEUE_NAME = re.compile(rf"^{_QUEUE}$")
HTTP_METHODS = ["HTTP_METHOD_UNSPECIFIED", "POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_VIEWS = ["VIEW_UNSPECIFIED", "BASIC", "FULL"]
MAX_DISPATCH_DEADLINE = 1800.0
DEFAULT_DISPATCH_DEADLINE = 600.0


class TasksApiError(Exception):
    """An API error, answered as Google's JSON error."""

    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _invalid(message: str) -> TasksApiError:
    return TasksApiError(400, "INVALID_ARGUMENT", message)


def _not_found(what: str) -> TasksApiError:
    return TasksApiError(404, "NOT_FOUND", f"Requested entity was not found: {what}")


# --- durations and timestamps (the REST encodings) -------------------------------------------


def parse_duration(value: Any, what: str) -> float:
    """A protobuf Duration as REST sends it ("10s", "0.100s") or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            pass
    raise _invalid(f"{what} must be a duration like \"10s\", got {value!r}")


def format_duration(seconds: float) -> str:
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: Any, what: str) -> float:
    if not isinstance(text, str):
        raise _invalid(f"{what} must be an RFC 3339 timestamp, got {text!r}")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise _invalid(f"{what} must be an RFC 3339 timestamp, got {text!r}") from None


# --- queues ----------------------------------------------------------------------------------


@dataclass
class RetryConfig:
    """The queue's retry config, with Cloud Tasks' defaults."""

    max_attempts: int = 100              # -1: unlimited
    min_backoff: float = 0.1
    max_backoff: float = 3600.0
    max_doublings: int = 16
    max_retry_duration: float = 0.0      # 0: unlimited

    def backoff(self, failures: int) -> float:
        """The wait after the `failures`-th failed attempt: min_backoff doubles max_doublings times,
        then grows linearly by the last doubled step, capped at max_backoff (as documented:
        10 s, 300 s and 3 doublings give 10, 20, 40, 80, 160, 240, 300, 300...)."""
        n = max(failures, 1) - 1
        step = self.min_backoff * 2 ** min(n, self.max_doublings)
        delay = step + max(n - self.max_doublings, 0) * step
        return min(delay, self.max_backoff)

    def to_json(self) -> dict:
        return {"maxAttempts": self.max_attempts, "minBackoff": format_duration(self.min_backoff),
                "maxBackoff": format_duration(self.max_backoff), "maxDoublings": self.max_doublings,
                "maxRetryDuration": format_duration(self.max_retry_duration)}

    @classmethod
    def from_json(cls, raw: Any) -> RetryConfig:
        raw = raw or {}
        if not isinstance(raw, dict):
            raise _invalid("retryConfig must be an object")
        config = cls()
        if "maxAttempts" in raw:
            config.max_attempts = int(raw["maxAttempts"])
        if "minBackoff" in raw:
            config.min_backoff = parse_duration(raw["minBackoff"], "retryConfig.minBackoff")
        if "maxBackoff" in raw:
            config.max_backoff = parse_duration(raw["maxBackoff"], "retryConfig.maxBackoff")
        if "maxDoublings" in raw:
            config.max_doublings = int(raw["maxDoublings"])
        if "maxRetryDuration" in raw:
            config.max_retry_duration = parse_duration(raw["maxRetryDuration"], "retryConfig.maxRetryDuration")
        config.check()
        return config

    def check(self) -> None:
        if self.max_attempts < -1 or self.max_attempts == 0:
            raise _invalid("retryConfig.maxAttempts must be -1 (unlimited) or at least 1")
        if not 0 <= self.min_backoff <= self.max_backoff:
            raise _invalid("retryConfig.minBackoff must be between 0 and retryConfig.maxBackoff")
        if self.max_doublings < 0 or self.max_retry_duration < 0:
            raise _invalid("retryConfig.maxDoublings and maxRetryDuration must not be negative")


@dataclass
class RateLimits:
    max_dispatches_per_second: float = 500.0
    max_concurrent_dispatches: int = 1000

    def to_json(self) -> dict:
        return {"maxDispatchesPerSecond": self.max_dispatches_per_second,
                "maxConcurrentDispatches": self.max_concurrent_dispatches,
                "maxBurstSize": max(1, int(self.max_dispatches_per_second))}

    @classmethod
    def from_json(cls, raw: Any) -> RateLimits:
        raw = raw or {}
        if not isinstance(raw, dict):
            raise _invalid("rateLimits must be an object")
        limits = cls()
        if "maxDispatchesPerSecond" in raw:
            limits.max_dispatches_per_second = float(raw["maxDispatchesPerSecond"])
        if "maxConcurrentDispatches" in raw:
            limits.max_concurrent_dispatches = int(raw["maxConcurrentDispatches"])
        if not 0 < limits.max_dispatches_per_second <= 500:
            raise _invalid("rateLimits.maxDispatchesPerSecond must be in (0, 500]")
        if not 1 <= limits.max_concurrent_dispatches <= 5000:
            raise _invalid("rateLimits.maxConcurrentDispatches must be between 1 and 5000")
        return limits


@dataclass
class Queue:
    name: str
    retry: RetryConfig = field(default_factory=RetryConfig)
    rate: RateLimits = field(default_factory=RateLimits)
    state: str = "RUNNING"
    tasks: dict[str, Task] = field(default_factory=dict)
    in_flight: int = 0
    held: list[Task] = field(default_factory=list)   # due, but paused or at the concurrency limit
    next_dispatch: float = 0.0                       # the rate limit: earliest time of the next dispatch

    def to_json(self) -> dict:
        return {"name": self.name, "state": self.state, "rateLimits": self.rate.to_json(),
                "retryConfig": self.retry.to_json()}


# --- tasks -----------------------------------------------------------------------------------


@dataclass
class Attempt:
    schedule_time: float
    dispatch_time: float | None = None
    response_time: float | None = None
    response_status: int | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"scheduleTime": rfc3339(self.schedule_time)}
        if self.dispatch_time is not None:
            out["dispatchTime"] = rfc3339(self.dispatch_time)
        if self.response_time is not None:
            out["responseTime"] = rfc3339(self.response_time)
        if self.response_status is not None:
            out["responseStatus"] = {"code": self.response_status}
        return out


@dataclass
class Task:
    name: str
    queue: str
    http: dict[str, Any]              # method, url, headers, body (bytes), oauth / oidc
    schedule_time: float
    create_time: float
    dispatch_deadline: float
    dispatch_count: int = 0
    response_count: int = 0
    first_attempt: Attempt | None = None
    last_attempt: Attempt | None = None
    extra_deliveries: int = 0         # deliberate duplicates still to send after a success
    redelivery: bool = False          # the next dispatch is such a duplicate

    def to_json(self, view: str = "BASIC") -> dict:
        request: dict[str, Any] = {"url": self.http["url"], "httpMethod": self.http["method"],
                                   "headers": dict(self.http["headers"])}
        if view == "FULL" and self.http["body"]:
            request["body"] = base64.b64encode(self.http["body"]).decode("ascii")
        if self.http.get("oauthToken"):
            request["oauthToken"] = self.http["oauthToken"]
        if self.http.get("oidcToken"):
            request["oidcToken"] = self.http["oidcToken"]
        out = {"name": self.name, "httpRequest": request, "scheduleTime": rfc3339(self.schedule_time),
               "createTime": rfc3339(self.create_time), "dispatchDeadline": format_duration(self.dispatch_deadline),
               "dispatchCount": self.dispatch_count, "responseCount": self.response_count, "view": view}
        if self.first_attempt:
            out["firstAttempt"] = self.first_attempt.to_json()
        if self.last_attempt:
            out["lastAttempt"] = self.last_attempt.to_json()
        return out


@dataclass
class Delivery:
    """One dispatch of a task, as the server saw it (for tests and benchmarks)."""

    task: str
    attempt: int                      # 1 for the first dispatch
    status: int | None                # the HTTP status, None when nothing answered
    error: str | None
    duplicate: bool                   # a deliberate second delivery of a task that had succeeded
    at: float


def _view(raw: Any) -> str:
    if isinstance(raw, str) and raw.isdigit():   # query parameters carry enums as numbers
        raw = int(raw)
    if isinstance(raw, int) and 0 <= raw < len(_VIEWS):
        raw = _VIEWS[raw]
    return "FULL" if raw == "FULL" else "BASIC"


def _http_method(raw: Any) -> str:
    if raw is None:
        return "POST"
    if isinstance(raw, int) and 0 <= raw < len(HTTP_METHODS):
        raw = HTTP_METHODS[raw]
    if raw == "HTTP_METHOD_UNSPECIFIED":
        return "POST"
    if raw not in HTTP_METHODS:
        raise _invalid(f"httpRequest.httpMethod: unknown method {raw!r}")
    return raw


class CloudTasks:
    """The queues and tasks, and the dispatcher. Serve it over REST with `CloudTasksServer`."""

    def __init__(self, clock: Clock | None = None, *, reserve_names: bool = True):
        self.clock = clock or RealClock()
        self.reserve_names = reserve_names
        self._lock = threading.Condition()
        self._queues: dict[str, Queue] = {}
        self._reserved: set[str] = set()       # names of tasks that ran or were deleted
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._duplicates = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._dispatching: set[threading.Thread] = set()
        self.deliveries: list[Delivery] = []
        self.dropped: list[str] = []           # tasks deleted after their last allowed attempt
        self.create_requests: list[dict] = []  # every CreateTask call: {"parent", "task"}
        self.unavailable = False               # answer every API call 503 UNAVAILABLE

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> CloudTasks:
        with self._lock:
            if self._running:
                return self
            self._running = True
        self._thread = threading.Thread(target=self._schedule, name="cloudtasks-dispatcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._running = False
            self._lock.notify_all()
            dispatching = list(self._dispatching)
        if self._thread is not None:
            self._thread.join(timeout)
        for thread in dispatching:
            thread.join(timeout)

    # --- queues --------------------------------------------------------------------------------

    def create_queue(self, name: str, *, retry: RetryConfig | None = None, rate: RateLimits | None = None,
                     state: str = "RUNNING") -> dict:
        if not _QUEUE_NAME.match(name):
            raise _invalid(f"queue name must be projects/P/locations/L/queues/Q (letters, digits, hyphens), "
                           f"got {name!r}")
        if state not in ("RUNNING", "PAUSED"):
            raise _invalid(f"queue state must be RUNNING or PAUSED, got {state!r}")
        queue = Queue(name, retry or RetryConfig(), rate or RateLimits(), state)
        queue.retry.check()
        with self._lock:
            if name in self._queues:
                raise TasksApiError(409, "ALREADY_EXISTS", f"Queue already exists: {name}")
            self._queues[name] = queue
        return queue.to_json()

    def update_queue(self, name: str, *, retry: RetryConfig | None = None, rate: RateLimits | None = None) -> dict:
        with self._lock:
            queue = self._queue(name)
            if retry is not None:
                retry.check()
                queue.retry = retry
            if rate is not None:
                queue.rate = rate
            self._release_held(queue)
            return queue.to_json()

    def get_queue(self, name: str) -> dict:
        with self._lock:
            return self._queue(name).to_json()

    def list_queues(self, parent: str) -> dict:
        with self._lock:
            return {"queues": [q.to_json() for n, q in sorted(self._queues.items())
                               if n.startswith(parent + "/queues/")]}

    def delete_queue(self, name: str) -> dict:
        with self._lock:
            queue = self._queue(name)
            for task in queue.tasks.values():
                self._reserve(task.name)
            del self._queues[name]
        return {}

    def set_state(self, name: str, state: str) -> dict:
        with self._lock:
            queue = self._queue(name)
            queue.state = state
            if state == "RUNNING":
                self._release_held(queue)
            return queue.to_json()

    def purge(self, name: str) -> dict:
        with self._lock:
            queue = self._queue(name)
            for task in list(queue.tasks.values()):
                self._reserve(task.name)
            queue.tasks.clear()
            queue.held.clear()
            return queue.to_json()

    def _queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise _not_found(f"queue {name}")
        return queue

    # --- tasks ---------------------------------------------------------------------------------

    def create_task(self, parent: str, body: Any) -> dict:
        if not isinstance(body, dict) or not isinstance(body.get("task"), dict):
            raise _invalid("the request must be {\"task\": {...}}")
        raw = body["task"]
        view = _view(body.get("responseView"))
        if "appEngineHttpRequest" in raw:
            raise _invalid("App Engine tasks are not supported here; use httpRequest")
        request = raw.get("httpRequest")
        if not isinstance(request, dict):
            raise _invalid("task.httpRequest is required")
        url = request.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise _invalid(f"task.httpRequest.url must be an http(s) URL, got {url!r}")
        method = _http_method(request.get("httpMethod"))
        try:
            payload = base64.b64decode(request.get("body") or "", validate=True)
        except (ValueError, TypeError):
            raise _invalid("task.httpRequest.body must be base64") from None
        if payload and method not in _BODY_METHODS:
            raise _invalid(f"task.httpRequest.body is only allowed for POST, PUT and PATCH, not {method}")
        headers = request.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise _invalid("task.httpRequest.headers must map names to strings")
        if request.get("oauthToken") and request.get("oidcToken"):
            raise _invalid("task.httpRequest takes oauthToken or oidcToken, not both")
        deadline = parse_duration(raw.get("dispatchDeadline", DEFAULT_DISPATCH_DEADLINE), "task.dispatchDeadline")
        if not 15 <= deadline <= MAX_DISPATCH_DEADLINE:
            raise _invalid("task.dispatchDeadline must be between 15s and 1800s")
        now = self.clock.now()
        schedule = parse_rfc3339(raw["scheduleTime"], "task.scheduleTime") if raw.get("scheduleTime") else now
        with self._lock:
            self.create_requests.append({"parent": parent, "task": raw})
            queue = self._queue(parent)
            name = raw.get("name")
            if name:
                prefix, _, task_id = str(name).rpartition("/tasks/")
                if prefix != parent or not _TASK_ID.match(task_id):
                    raise _invalid(f"task.name must be {parent}/tasks/TASK_ID (letters, digits, '-', '_'), "
                                   f"got {name!r}")
                if name in queue.tasks or name in self._reserved:
                    raise TasksApiError(409, "ALREADY_EXISTS", "Requested entity already exists")
            else:
                name = f"{parent}/tasks/{next(self._ids):020d}"
            task = Task(name=name, queue=parent, schedule_time=max(schedule, now), create_time=now,
                        dispatch_deadline=deadline,
                        http={"method": method, "url": url, "headers": dict(headers), "body": payload,
                              "oauthToken": request.get("oauthToken"), "oidcToken": request.get("oidcToken")})
            if self._duplicates > 0:
                self._duplicates -= 1
                task.extra_deliveries = 1
            queue.tasks[name] = task
            self._push(task)
            return task.to_json(view)

    def get_task(self, name: str, view: Any = None) -> dict:
        with self._lock:
            return self._task(name).to_json(_view(view))

    def list_tasks(self, parent: str, view: Any = None) -> dict:
        with self._lock:
            queue = self._queue(parent)
            return {"tasks": [t.to_json(_view(view)) for _, t in sorted(queue.tasks.items())]}

    def delete_task(self, name: str) -> dict:
        with self._lock:
            task = self._task(name)
            self._finish(self._queues[task.queue], task)
        return {}

    def _task(self, name: str) -> Task:
        parent = name.rpartition("/tasks/")[0]
        task = self._queue(parent).tasks.get(name)
        if task is None:
            raise _not_found(f"task {name}")
        return task

    # --- switches for tests ------------------------------------------------------------------

    def duplicate_next(self, count: int = 1) -> None:
        """Deliver each of the next `count` tasks created once more after its first successful
        delivery: the at-least-once duplicate the service may send."""
        with self._lock:
            self._duplicates += count

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until no task is queued or being dispatched (paused queues' tasks excepted)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(q.tasks and q.state == "RUNNING" for q in self._queues.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    pending = [n for q in self._queues.values() for n in q.tasks]
                    raise TimeoutError(f"tasks still queued after {timeout:g} s: {pending[:5]}")
                self._lock.wait(min(left, 0.1))

    # --- dispatch ------------------------------------------------------------------------------

    def _push(self, task: Task) -> None:
        heapq.heappush(self._heap, (task.schedule_time, next(self._seq), task.name))
        self._lock.notify_all()

    def _reserve(self, name: str) -> None:
        if self.reserve_names:
            self._reserved.add(name)

    def _finish(self, queue: Queue, task: Task) -> None:
        queue.tasks.pop(task.name, None)
        self._reserve(task.name)
        self._lock.notify_all()

    def _release_held(self, queue: Queue) -> None:
        held, queue.held = queue.held, []
        for task in held:
            if task.name in queue.tasks:
                self._push(task)

    def _schedule(self) -> None:
        virtual = isinstance(self.clock, VirtualClock)
        with self._lock:
            while self._running:
                if not self._heap:
                    self._lock.wait(0.5)
                    continue
                due, _, name = self._heap[0]
                queue = self._queues.get(name.rpartition("/tasks/")[0])
                task = queue.tasks.get(name) if queue else None
                if task is None or task.schedule_time != due:
                    heapq.heappop(self._heap)        # deleted, purged, or rescheduled since
                    continue
                due = max(due, queue.next_dispatch)
                wait = due - self.clock.now()
                if wait > 0:
                    if virtual:
                        self.clock.sleep(wait)
                    else:
                        self._lock.wait(min(wait, 0.5))
                    continue
                heapq.heappop(self._heap)
                if queue.state != "RUNNING" or queue.in_flight >= queue.rate.max_concurrent_dispatches:
                    queue.held.append(task)
                    continue
                queue.in_flight += 1
                queue.next_dispatch = (
                    max(self.clock.now(), queue.next_dispatch) + 1.0 / queue.rate.max_dispatches_per_second
                )
                thread = threading.Thread(target=self._dispatch, args=(queue, task), daemon=True,
                                          name="cloudtasks-dispatch")
                self._dispatching.add(thread)
                thread.start()

    def _dispatch(self, queue: Queue, task: Task) -> None:
        with self._lock:
            duplicate, task.redelivery = task.redelivery, False
            task.dispatch_count += 1
            attempt = Attempt(schedule_time=task.schedule_time, dispatch_time=self.clock.now())
            if task.first_attempt is None:
                task.first_attempt = attempt
            task.last_attempt = attempt
            number = task.dispatch_count
        status, error = self._send(queue, task, number)
        with self._lock:
            self._dispatching.discard(threading.current_thread())
            now = self.clock.now()
            attempt.response_time = now
            attempt.response_status = status
            if status is not None:
                task.response_count += 1
            self.deliveries.append(Delivery(task.name, number, status, error, duplicate, now))
            queue.in_flight -= 1
            self._release_held(queue)
            if task.name not in queue.tasks:   # deleted while in flight
                self._lock.notify_all()
                return
            if status is not None and 200 <= status < 300:
                if task.extra_deliveries > 0:
                    task.extra_deliveries -= 1
                    task.redelivery = True
                    task.schedule_time = now
                    self._push(task)
                else:
                    self._finish(queue, task)
                return
            failures = task.dispatch_count
            retry = queue.retry
            out_of_attempts = retry.max_attempts != -1 and failures >= retry.max_attempts
            first = task.first_attempt.dispatch_time if task.first_attempt else now
            out_of_time = retry.max_retry_duration > 0 and now - first >= retry.max_retry_duration
            if out_of_attempts or out_of_time:
                self.dropped.append(task.name)
                self._finish(queue, task)
                return
            task.schedule_time = now + retry.backoff(failures)
            self._push(task)

    def _send(self, queue: Queue, task: Task, number: int) -> tuple[int | None, str | None]:
        """POST (or whatever the task says) the task's request; (HTTP status, error)."""
        parts = urlsplit(task.http["url"])
        headers = {k: v for k, v in task.http["headers"].items()
                   if k.lower() not in ("host", "content-length", "authorization")}
        headers.update({
            "User-Agent": "Google-Cloud-Tasks",
            "X-CloudTasks-QueueName": queue.name.rsplit("/", 1)[1],
            "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[1],
            "X-CloudTasks-TaskRetryCount": str(number - 1),
            "X-CloudTasks-TaskExecutionCount": str(task.response_count),
            "X-CloudTasks-TaskETA": f"{task.schedule_time:.6f}",
        })
        token = task.http.get("oauthToken") or task.http.get("oidcToken")
        if token:
            headers["Authorization"] = f"Bearer local-token-for-{token.get('serviceAccountEmail', 'unknown')}"
        body = task.http["body"] if task.http["method"] in _BODY_METHODS else None
        conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = conn_class(parts.netloc, timeout=task.dispatch_deadline)
        try:
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            conn.request(task.http["method"], path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, None
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()


# --- the REST API ----------------------------------------------------------------------------

_ROUTES = [
    ("POST", re.compile(rf"^/v2/(?P<parent>{_LOCATION})/queues$"), "create_queue"),
    ("GET", re.compile(rf"^/v2/(?P<parent>{_LOCATION})/queues$"), "list_queues"),
    ("GET", re.compile(rf"^/v2/(?P<name>{_QUEUE})$"), "get_queue"),
    ("DELETE", re.compile(rf"^/v2/(?P<name>{_QUEUE})$"), "delete_queue"),
    ("POST", re.compile(rf"^/v2/(?P<name>{_QUEUE}):(?P<verb>pause|resume|purge)$"), "queue_verb"),
    ("POST", re.compile(rf"^/v2/(?P<parent>{_QUEUE})/tasks$"), "create_task"),
    ("GET", re.compile(rf"^/v2/(?P<parent>{_QUEUE})/tasks$"), "list_tasks"),
    ("GET", re.compile(rf"^/v2/(?P<name>{_QUEUE}/tasks/[^/:]+)$"), "get_task"),
    ("DELETE", re.compile(rf"^/v2/(?P<name>{_QUEUE}/tasks/[^/:]+)$"), "delete_task"),
]


def _route(tasks: CloudTasks, method: str, path: str, query: dict, body: Any) -> dict:
    for verb, pattern, action in _ROUTES:
        match = pattern.match(path)
        if not match or verb != method:
            continue
        g = match.groupdict()
        view = (query.get("responseView") or [None])[0]
        if action == "create_queue":
            if not isinstance(body, dict) or not body.get("name"):
                raise _invalid("the queue needs a name")
            if not str(body["name"]).startswith(g["parent"] + "/queues/"):
                raise _invalid(f"queue name must be under {g['parent']}")
            return tasks.create_queue(body["name"], retry=RetryConfig.from_json(body.get("retryConfig")),
                                      rate=RateLimits.from_json(body.get("rateLimits")))
        if action == "list_queues":
            return tasks.list_queues(g["parent"])
        if action == "get_queue":
            return tasks.get_queue(g["name"])
        if action == "delete_queue":
            return tasks.delete_queue(g["name"])
        if action == "queue_verb":
            if g["verb"] == "purge":
                return tasks.purge(g["name"])
            return tasks.set_state(g["name"], "PAUSED" if g["verb"] == "pause" else "RUNNING")
        if action == "create_task":
            return tasks.create_task(g["parent"], body)
        if action == "list_tasks":
            return tasks.list_tasks(g["parent"], view)
        if action == "get_task":
            return tasks.get_task(g["name"], view)
        if action == "delete_task":
            return tasks.delete_task(g["name"])
    if any(p.match(path) for _, p, _ in _ROUTES):
        raise TasksApiError(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}")
    raise _not_found(path)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    tasks: CloudTasks

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        try:
            if self.tasks.unavailable:
                raise TasksApiError(503, "UNAVAILABLE", "The service is currently unavailable.")
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                raise _invalid("the request body is not JSON") from None
            self._reply(200, _route(self.tasks, method, parts.path, parse_qs(parts.query), body))
        except TasksApiError as exc:
            self._reply(exc.code, {"error": {"code": exc.code, "message": exc.message, "status": exc.status}})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


class CloudTasksServer:
    """`CloudTasks` served on `host:port` (port 0: a free one); starts and stops the dispatcher too."""

    def __init__(self, tasks: CloudTasks | None = None, host: str = "127.0.0.1", port: int = 0,
                 clock: Clock | None = None):
        self.tasks = tasks or CloudTasks(clock)
        handler = type("Handler", (_Handler,), {"tasks": self.tasks})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> CloudTasksServer:
        self.tasks.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="cloudtasks-api")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.tasks.stop()

    def __enter__(self) -> CloudTasksServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
