"""The engine: deploy workflows, run executions in a bounded thread pool, and answer for them
(get, wait, cancel, list, step entries, logs), persisted in SQLite so they outlive the process.

An engine that stopped (a crash, a kill) leaves its QUEUED and ACTIVE executions behind. The next
engine on the same database runs them again, from their first step with the same argument and
the revision they started on, when asked to (`resume_interrupted()`, called by whoever has bound
the connectors): the execution keeps its name, its step entries so far (the interrupted ones
marked cancelled) and its logs, and gains a WARNING log line saying it was re-run. That is safe
only for workflows whose steps may run twice, like creation.yaml's (idempotent, fenced by
attempt); Cloud Workflows itself never loses an execution to a restart of the platform.
"""
from __future__ import annotations

import atexit
import base64
import hashlib
import itertools
import json
import os
import queue
import re
import socket
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from localcloud.workflows import limits
from localcloud.workflows.clock import Clock, RealClock
from localcloud.workflows.connectors import ConnectorRegistry
from localcloud.workflows.database import Database, LogLine, dumps, key_base, owner_tag
from localcloud.workflows.errors import (
    ArgumentTooLarge,
    ExecutionCancelled,
    FailedPrecondition,
    InvalidArgument,
    LoadError,
    NotFound,
    WorkflowError,
)
from localcloud.workflows.executions import (
    ACTIVE,
    CALL_LOG_LEVELS,
    CANCELLED,
    FAILED,
    QUEUED,
    SUCCEEDED,
    basic_view,
    error_payload,
    execution_from_live,
    execution_from_row,
    log_entry,
    run_stats,
    step_entry,
)
from localcloud.workflows.filters import order, parse_filter
from localcloud.workflows.history import CANCELLED as ENTRY_CANCELLED
from localcloud.workflows.history import History
from localcloud.workflows.interpreter import CancelToken, Run
from localcloud.workflows.loader import load_source
from localcloud.workflows.steps import Program

_WORKFLOW_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_RE = re.compile(r"^[a-z0-9_-]{0,63}$")

# Engines alive in this process, so that opening a second engine on the same database does
# not mistake the first one's running executions for interrupted ones.
_LIVE_ENGINES: weakref.WeakValueDictionary[str, Engine] = weakref.WeakValueDictionary()


class Deployment:
    """A revision of a workflow, compiled."""

    def __init__(self, workflow_id: str, revision_id: str, program: Program, env: dict[str, str],
                 seq: int):
        self.workflow_id = workflow_id
        self.revision_id = revision_id
        self.program = program
        self.env = env
        self.seq = seq


class LiveExecution:
    """An execution this engine runs (or queued)."""

    def __init__(self, execution_id: str, deployment: Deployment, argument: Any,
                 argument_text: str | None, labels: dict, call_log_level: str, created: float):
        self.id = execution_id
        self.deployment = deployment
        self.argument = argument
        self.argument_text = argument_text
        self.labels = labels
        self.call_log_level = call_log_level
        self.created = created
        self.started: float | None = None
        self.ended: float | None = None
        self.state = QUEUED
        self.result: str | None = None
        self.error: dict | None = None
        self.token = CancelToken()
        self.done = threading.Event()
        self.lock = threading.Lock()   # QUEUED -> ACTIVE (a worker) or -> CANCELLED (cancel)
        self.run: Run | None = None
        self.stats: dict | None = None
        self.seq = 0
        self.first_entry_id = 1        # after a restart: past the entries of the earlier run
        self.first_log_key = 0         # after a restart: past the log lines written so far


class _Workers:
    """A fixed set of daemon threads running executions in order of submission: at most
    `size` run at once, the others wait (QUEUED). Daemon threads never hold up the exit of
    the process; an execution cut short that way is interrupted, and a later engine on the
    same database runs it again (`Engine.resume_interrupted`)."""

    def __init__(self, size: int, run: Callable[[Any], None]):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._run = run
        self._size = size
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, item: Any) -> None:
        self._queue.put(item)
        with self._lock:
            if len(self._threads) < self._size:
                thread = threading.Thread(target=self._loop, daemon=True,
                                          name=f"wf-execution-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._run(item)
            except Exception as exc:  # keep the worker: the next execution must still run
                print(f"workflows engine: an execution could not be recorded: {exc!r}",
                      file=sys.stderr)

    def stop(self, timeout: float) -> None:
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout)


def _flush_at_exit() -> None:
    for engine in list(_LIVE_ENGINES.values()):
        try:
            engine.db.flush(timeout=5)
        except Exception:
            pass


atexit.register(_flush_at_exit)


class Engine:
    """A local Cloud Workflows: deploy, start, get, wait, cancel, list, step entries, logs."""

    def __init__(self, db_path: str | Path = ":memory:", clock: Clock | None = None,
                 connectors: ConnectorRegistry | None = None, max_concurrent: int = 50,
                 project_id: str = "phoenix-local", location: str = "us-central1",
                 project_number: str | None = None, service_account: str | None = None,
                 log_sink: Callable[[str, dict], None] | None = None,
                 max_steps: int = limits.STEPS_PER_EXECUTION):
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.clock = clock or RealClock()
        self.connectors = connectors if connectors is not None else ConnectorRegistry()
        self.project_id = project_id
        self.location = location
        self.project_number = project_number or str(
            int(hashlib.sha256(project_id.encode()).hexdigest(), 16) % 10**12).zfill(12)
        self.service_account = service_account or (
            f"projects/{project_id}/serviceAccounts/"
            f"{self.project_number}-compute@developer.gserviceaccount.com")
        self.max_concurrent = max_concurrent
        self.max_steps = max_steps
        self.log_sink = log_sink
        self.engine_id = uuid.uuid4().hex
        self._owner = owner_tag(self.engine_id)
        self._lock = threading.Lock()
        self._deployments: dict[str, Deployment] = {}
        self._live: dict[str, LiveExecution] = {}
        self._closed = False
        self.db = Database(str(db_path))
        _LIVE_ENGINES[self.engine_id] = self
        self._pool = _Workers(max_concurrent, self._execute)

    # -- names
    def workflow_name(self, workflow_id: str) -> str:
        return f"projects/{self.project_id}/locations/{self.location}/workflows/{workflow_id}"

    def execution_name(self, workflow_id: str, execution_id: str) -> str:
        return f"{self.workflow_name(workflow_id)}/executions/{execution_id}"

    def _parse_name(self, name: str) -> tuple[str, str]:
        parts = name.strip("/").split("/")
        if (len(parts) == 8 and parts[0] == "projects" and parts[2] == "locations"
                and parts[4] == "workflows" and parts[6] == "executions"):
            return parts[5], parts[7]
        if len(parts) == 1 and parts[0]:
            row = self.db.execution(parts[0])
            if row is not None:
                return row["workflow_id"], parts[0]
        raise NotFound(f"no execution named {name!r} (expected projects/P/locations/L/"
                       f"workflows/W/executions/ID)")

    # -- deploy
    def deploy(self, workflow_id: str, source: str | Path,
               env: Mapping[str, str] | None = None) -> str:
        """Load and check `source` (a Path, or the text of a YAML/JSON workflow; a str naming
        an existing .yaml/.yml/.json file is read as a file) and make it the workflow's
        current revision. Raises LoadError (every problem) or InvalidArgument (bad env)."""
        self._check_open()
        if not _WORKFLOW_ID_RE.match(workflow_id or ""):
            raise InvalidArgument(f"workflow id {workflow_id!r}: letters, digits, '-' and '_', "
                                  f"starting with a letter, at most 64 characters")
        text, filename = _read_source(source, workflow_id)
        user_env = _check_env(env)
        program = load_source(text, filename)
        env_text = json.dumps(user_env, sort_keys=True)
        digest = hashlib.sha256((text + "\0" + env_text).encode()).hexdigest()
        with self._lock:
            latest = self.db.latest_revision(workflow_id)
            if latest is not None and latest[4] == text and latest[5] == env_text:
                revision_id, seq = latest[1], latest[2]
            else:
                seq = (latest[2] if latest else 0) + 1
                revision_id = f"{seq:06d}-{digest[:3]}"
                self.db.insert_revision((workflow_id, revision_id, seq, filename, text, env_text,
                                         self.clock.now()))
            self._deployments[workflow_id] = Deployment(workflow_id, revision_id, program,
                                                        user_env, seq)
        return revision_id

    def _deployment(self, workflow_id: str) -> Deployment:
        with self._lock:
            deployment = self._deployments.get(workflow_id)
            if deployment is not None:
                return deployment
            row = self.db.latest_revision(workflow_id)
            if row is None:
                raise NotFound(f"workflow {workflow_id!r} is not deployed")
            deployment = _compiled(row)
            self._deployments[workflow_id] = deployment
            return deployment

    # -- start
    def start(self, workflow_id: str, argument: Any = None, labels: Mapping[str, str] | None = None,
              call_log_level: str = "CALL_LOG_LEVEL_UNSPECIFIED") -> str:
        """Start an execution; returns its name. `argument` is a JSON value (usually a map)
        or JSON text; over 32 KB raises ArgumentTooLarge."""
        self._check_open()
        deployment = self._deployment(workflow_id)
        if isinstance(argument, (bytes, str)):
            text = argument.decode() if isinstance(argument, bytes) else argument
            if text.strip():
                try:
                    argument = json.loads(text)
                except ValueError as exc:
                    raise InvalidArgument(f"the argument is not valid JSON: {exc}") from None
            else:
                argument = None
        try:
            argument_text = json.dumps(argument, ensure_ascii=False, separators=(",", ":"),
                                       allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"the argument must be a JSON value: {exc}") from None
        size = len(argument_text.encode("utf-8"))
        if size > limits.ARGUMENT_BYTES:
            raise ArgumentTooLarge(f"ResourceLimitError: the execution argument is {size} bytes; "
                                   f"the limit is {limits.ARGUMENT_BYTES}")
        labels = _check_labels(labels)
        if call_log_level not in CALL_LOG_LEVELS:
            raise InvalidArgument(f"callLogLevel {call_log_level!r}: one of "
                                  f"{', '.join(CALL_LOG_LEVELS)}")
        execution_id = str(uuid.uuid4())
        execution = LiveExecution(execution_id, deployment, argument,
                                  argument_text if argument is not None else None, labels,
                                  call_log_level, self.clock.now())
        execution.seq = self.db.insert_execution({
            "id": execution_id, "workflow_id": workflow_id,
            "revision_id": deployment.revision_id, "state": QUEUED,
            "argument": execution.argument_text, "create_time": execution.created,
            "labels": json.dumps(labels), "call_log_level": call_log_level,
            "owner": self._owner,
        })
        with self._lock:
            self._live[execution_id] = execution
        self._pool.submit(execution)
        return self.execution_name(workflow_id, execution_id)

    def run(self, workflow_id: str, argument: Any = None, timeout: float | None = None,
            **kwargs: Any) -> dict:
        """Start an execution and wait for it."""
        return self.wait(self.start(workflow_id, argument, **kwargs), timeout)

    # -- after a restart
    def resume_interrupted(self) -> list[str]:
        """Run again, from their first step, the executions an engine that is gone left QUEUED
        or ACTIVE on this database; returns their names. Call it once the connectors the
        workflows use are bound. An execution whose revision no longer loads fails instead."""
        self._check_open()
        host = socket.gethostname()
        now = self.clock.now()
        names = []
        for row in self.db.orphaned(lambda owner: _owner_alive(owner, host)):
            name = self.execution_name(row["workflow_id"], row["id"])
            self.db.end_open_entries(row["seq"], now, ENTRY_CANCELLED)
            revision = self.db.revision(row["workflow_id"], row["revision_id"])
            try:
                if revision is None:
                    raise LoadError([f"revision {row['revision_id']} of workflow "
                                     f"{row['workflow_id']!r} is not stored"])
                deployment = _compiled(revision)
            except LoadError as exc:
                error = error_payload(WorkflowError.tagged(
                    "SystemError", f"the local engine stopped while this execution was "
                                   f"{row['state']}, and its workflow no longer loads: {exc}"))
                self.db.update_execution(row["id"], {"state": FAILED, "end_time": now,
                                                     "error": json.dumps(error)})
                continue
            argument = json.loads(row["argument"]) if row["argument"] is not None else None
            execution = LiveExecution(row["id"], deployment, argument, row["argument"],
                                      json.loads(row["labels"]), row["call_log_level"],
                                      row["create_time"])
            execution.seq = row["seq"]
            last_entry_id, last_log_key = self.db.last_numbers(row["seq"])
            execution.first_entry_id = last_entry_id + 1
            execution.first_log_key = max(key_base(row["seq"]), last_log_key) + 1
            self.db.update_execution(row["id"], {"state": QUEUED, "owner": self._owner})
            self._log(name, execution, iter([execution.first_log_key]), "WARNING",
                      f"the local engine stopped while this execution was {row['state']}; it "
                      f"runs again from its first step with the same argument")
            with self._lock:
                self._live[execution.id] = execution
            self._pool.submit(execution)
            names.append(name)
        return names

    # -- running
    def _env(self, deployment: Deployment, execution_id: str) -> dict[str, str]:
        env = dict(deployment.env)
        env.update({
            "GOOGLE_CLOUD_PROJECT_ID": self.project_id,
            "GOOGLE_CLOUD_PROJECT_NUMBER": self.project_number,
            "GOOGLE_CLOUD_LOCATION": self.location,
            "GOOGLE_CLOUD_SERVICE_ACCOUNT_NAME": self.service_account,
            "GOOGLE_CLOUD_WORKFLOW_ID": deployment.workflow_id,
            "GOOGLE_CLOUD_WORKFLOW_REVISION_ID": deployment.revision_id,
            "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID": execution_id,
        })
        return env

    def _execute(self, execution: LiveExecution) -> None:
        with execution.lock:
            if execution.state != QUEUED:   # cancelled while it waited
                return
            execution.state = ACTIVE
        try:
            with self.clock.timeline():
                self._execute_on_timeline(execution)
        finally:
            self._ended(execution)

    def _ended(self, execution: LiveExecution) -> None:
        execution.done.set()
        with self._lock:
            self._live.pop(execution.id, None)

    def _log(self, name: str, execution: LiveExecution, keys: Any, severity: str,
             payload: Any) -> None:
        when = self.clock.now()
        if type(payload) is str:
            line = LogLine((next(keys), when, severity, payload, None))
        elif type(payload) is dict:
            line = LogLine((next(keys), when, severity, None, dumps(payload)))
        else:
            line = LogLine((next(keys), when, severity, dumps(payload), None))
        self.db.append(line)
        if self.log_sink is not None:
            self.log_sink(name, log_entry(line))

    def _execute_on_timeline(self, execution: LiveExecution) -> None:
        deployment = execution.deployment
        name = self.execution_name(deployment.workflow_id, execution.id)
        execution.started = self.clock.now()
        self.db.update_execution(execution.id, {"state": ACTIVE,
                                                "start_time": execution.started})
        base = key_base(execution.seq)
        log_keys = itertools.count(max(base, execution.first_log_key) + 1)
        speed = getattr(self.clock, "speed", 1)
        if speed != 1:
            self._log(name, execution, log_keys, "NOTICE",
                      f"the local clock runs waits {speed:g}x faster than declared (a 60 s "
                      f"backoff takes {60 / speed:g} s); timestamps are wall-clock time")

        def log(severity: str, payload: Any) -> None:
            self._log(name, execution, log_keys, severity, payload)

        history = History(base, self.db.append, self.clock.now, execution.first_entry_id)
        run = Run(deployment.program, execution.id, self.clock,
                  self._env(deployment, execution.id), self.connectors, history, log,
                  execution.token, self.max_steps)
        execution.run = run
        try:
            value = run.execute(execution.argument)
            try:
                execution.result = json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                                              allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise WorkflowError.tagged("TypeError", f"the workflow result cannot be "
                                                        f"returned as JSON: {exc}") from None
            execution.state = SUCCEEDED
        except WorkflowError as error:
            execution.state = FAILED
            execution.error = error_payload(error)
        except ExecutionCancelled:
            execution.state = CANCELLED
        except BaseException as exc:  # an engine defect: the execution fails, the engine lives
            execution.state = FAILED
            execution.error = error_payload(WorkflowError.tagged(
                "SystemError", f"internal error of the local engine: {type(exc).__name__}: "
                               f"{exc}"))
        execution.ended = self.clock.now()
        execution.stats = run_stats(run, speed)
        fields: dict[str, Any] = {"state": execution.state, "end_time": execution.ended,
                                  "stats": json.dumps(execution.stats)}
        if execution.result is not None:
            fields["result"] = execution.result
        if execution.error is not None:
            fields["error"] = json.dumps(execution.error)
        self.db.update_execution(execution.id, fields)

    # -- reading
    def get_execution(self, name: str, view: str = "FULL") -> dict:
        workflow_id, execution_id = self._parse_name(name)
        with self._lock:
            live = self._live.get(execution_id)
        if live is not None:
            return execution_from_live(self.execution_name(workflow_id, execution_id), live, view)
        row = self.db.execution(execution_id)
        if row is None or row["workflow_id"] != workflow_id:
            raise NotFound(f"execution {name!r} does not exist")
        return execution_from_row(self.execution_name(workflow_id, execution_id), row, view)

    def wait(self, name: str, timeout: float | None = None) -> dict:
        """Wait until the execution ends (or `timeout` seconds pass) and return it."""
        _, execution_id = self._parse_name(name)
        with self._lock:
            live = self._live.get(execution_id)
        if live is not None:
            live.done.wait(timeout)
        return self.get_execution(name)

    def cancel(self, name: str, timeout: float = 10.0) -> dict:
        """Cancel a QUEUED or ACTIVE execution; returns it once it stopped (or after
        `timeout` seconds). Cancelling an ended execution raises FailedPrecondition."""
        _, execution_id = self._parse_name(name)
        with self._lock:
            live = self._live.get(execution_id)
        if live is None:
            current = self.get_execution(name)
            raise FailedPrecondition(f"execution {name} is {current['state']}; only a QUEUED or "
                                     f"ACTIVE execution can be cancelled")
        self._cancel(live, "the execution was cancelled")
        live.done.wait(timeout)
        return self.get_execution(name)

    def _cancel(self, execution: LiveExecution, reason: str) -> None:
        with execution.lock:
            queued = execution.state == QUEUED
            if queued:   # it never ran: it ends here, and its worker will skip it
                execution.state = CANCELLED
                execution.ended = self.clock.now()
        execution.token.cancel(reason)
        if queued:
            self.db.update_execution(execution.id, {"state": CANCELLED,
                                                    "end_time": execution.ended})
            self._ended(execution)

    def list_executions(self, workflow_id: str, filter: str | None = None,
                        page_size: int = 100, page_token: str | None = None,
                        view: str = "FULL", order_by: str | None = None
                        ) -> tuple[list[dict], str | None]:
        """Executions of a workflow, newest first, as (page, next_page_token); `filter` and
        `order_by` as filters.py reads them."""
        if page_size is None or page_size <= 0:
            page_size = 100
        page_size = min(page_size, 1000)
        offset = 0
        if page_token:
            try:
                offset = int(base64.urlsafe_b64decode(page_token.encode()).decode())
            except ValueError:
                raise InvalidArgument(f"bad page token {page_token!r}") from None
        terms = parse_filter(filter) if filter else []
        rows = self.db.executions(workflow_id)
        with self._lock:
            live = dict(self._live)
        items = []
        for row in rows:
            name = self.execution_name(row["workflow_id"], row["id"])
            execution = live.get(row["id"])
            item = (execution_from_live(name, execution, "FULL") if execution
                    else execution_from_row(name, row, "FULL"))
            if all(term(item) for term in terms):
                items.append(item)
        if order_by:
            items = order(items, order_by)
        page = items[offset:offset + page_size]
        next_token = None
        if offset + page_size < len(items):
            next_token = base64.urlsafe_b64encode(str(offset + page_size).encode()).decode()
        if view == "BASIC":
            page = [basic_view(item) for item in page]
        return page, next_token

    def step_entries(self, name: str) -> list[dict]:
        """The execution's step entries, in the order they began."""
        workflow_id, execution_id = self._parse_name(name)
        seq = self._seq(name, execution_id)
        self.db.flush()
        prefix = self.execution_name(workflow_id, execution_id)
        return [step_entry(prefix, row) for row in self.db.step_entries(seq)]

    def logs(self, name: str) -> list[dict]:
        """Lines written by `sys.log` (and the engine's own notes), oldest first."""
        _, execution_id = self._parse_name(name)
        seq = self._seq(name, execution_id)
        self.db.flush()
        return [log_entry(LogLine(row)) for row in self.db.logs(seq)]

    def _seq(self, name: str, execution_id: str) -> int:
        with self._lock:
            live = self._live.get(execution_id)
        if live is not None:
            return live.seq
        row = self.db.execution(execution_id)
        if row is None:
            raise NotFound(f"execution {name!r} does not exist")
        return row["seq"]

    # -- lifecycle
    def shutdown(self, wait: bool = False, timeout: float = 30.0) -> None:
        """Stop the engine. Running and queued executions are cancelled unless `wait`."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            running = list(self._live.values())
        if not wait:
            for execution in running:
                self._cancel(execution, "the engine shut down")
        for execution in running:
            execution.done.wait(timeout)
        self._pool.stop(timeout)
        self.db.close()
        _LIVE_ENGINES.pop(self.engine_id, None)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition("the engine is shut down")


# --- helpers -------------------------------------------------------------------------------------

def _compiled(revision: tuple) -> Deployment:
    workflow_id, revision_id, seq, filename, text, env_text, _ = revision
    return Deployment(workflow_id, revision_id, load_source(text, filename), json.loads(env_text),
                      seq)


def _owner_alive(owner: str, host: str) -> bool:
    try:
        owner_host, pid_text, engine_id = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if owner_host != host:
        return True   # another machine's engine: not ours to judge
    if pid == os.getpid():
        return engine_id in _LIVE_ENGINES
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_source(source: str | Path, workflow_id: str) -> tuple[str, str]:
    if isinstance(source, Path) or (
            isinstance(source, str) and "\n" not in source
            and source.lower().endswith((".yaml", ".yml", ".json")) and os.path.isfile(source)):
        path = Path(source)
        try:
            return path.read_text(encoding="utf-8"), path.name
        except OSError as exc:
            raise LoadError([f"{path}: cannot read the workflow file: {exc}"]) from exc
    if not isinstance(source, str):
        raise InvalidArgument("source must be the workflow text or a Path to it")
    return source, f"{workflow_id}.yaml"


def _check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(env or {})
    if len(env) > limits.USER_ENV_VARS:
        raise InvalidArgument(f"{len(env)} environment variables; at most "
                              f"{limits.USER_ENV_VARS}")
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_KEY_RE.match(key):
            raise InvalidArgument(f"environment variable name {key!r}: letters, digits and "
                                  f"underscores, not starting with a digit")
        if key.upper().startswith(("GOOGLE", "WORKFLOWS")):
            raise InvalidArgument(f"environment variable {key!r}: names starting with GOOGLE or "
                                  f"WORKFLOWS are reserved")
        if not isinstance(value, str):
            raise InvalidArgument(f"environment variable {key!r}: the value must be a string")
    return env


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    labels = dict(labels or {})
    if len(labels) > limits.LABELS:
        raise InvalidArgument(f"{len(labels)} labels; at most {limits.LABELS}")
    for key, value in labels.items():
        if not isinstance(key, str) or not key or not _LABEL_RE.match(key):
            raise InvalidArgument(f"label key {key!r}: lowercase letters, digits, '_' and '-', "
                                  f"at most 63 characters")
        if not isinstance(value, str) or not _LABEL_RE.match(value):
            raise InvalidArgument(f"label {key}={value!r}: the value must be lowercase letters, "
                                  f"digits, '_' and '-', at most 63 characters")
    return labels
