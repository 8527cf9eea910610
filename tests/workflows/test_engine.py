"""The engine as its users drive it: deploy, start, wait, cancel, list, step entries and logs,
persisted across engine instances, with bounded concurrency and the documented limits."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from localcloud.workflows import (
    ArgumentTooLarge,
    ConnectorRegistry,
    Engine,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RealClock,
    VirtualClock,
    WorkflowError,
)
from localcloud.workflows.executions import parse_rfc3339
from localcloud.workflows.paths import assign_path

REPO = Path(__file__).resolve().parents[2]

FAILING = """\
main:
  params: [args]
  steps:
    - init:
        assign:
          - n: ${args.n}
    - go:
        call: helper
        args:
          n: ${n}
        result: r
    - done:
        return: ${r}
helper:
  params: [n]
  steps:
    - check:
        switch:
          - condition: ${n < 0}
            raise:
              code: 7
              message: negative
    - back:
        return: ${n * 2}
"""

SLEEPY = """\
- note:
    call: sys.log
    args:
      text: going to sleep
- wait:
    call: sys.sleep
    args:
      seconds: 30
- done:
    return: woke
"""


@pytest.fixture
def engine():
    engine = Engine(clock=VirtualClock())
    yield engine
    engine.shutdown()


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_execution_in_the_executions_api_shape(engine: Engine):
    revision = engine.deploy("orders", FAILING)
    name = engine.start("orders", {"n": 21}, labels={"kind": "image"})
    assert name.startswith("projects/phoenix-local/locations/us-central1/workflows/orders/"
                           "executions/")
    execution = engine.wait(name)
    assert execution["state"] == "SUCCEEDED"
    assert json.loads(execution["result"]) == 42
    assert json.loads(execution["argument"]) == {"n": 21}
    assert execution["labels"] == {"kind": "image"}
    assert execution["workflowRevisionId"] == revision
    assert execution["duration"] == "0s"
    assert parse_rfc3339(execution["endTime"]) >= parse_rfc3339(execution["startTime"])
    assert execution["localStats"]["steps"] == 5


def test_failed_execution_error_has_payload_context_and_stack(engine: Engine):
    engine.deploy("orders", FAILING)
    execution = engine.run("orders", {"n": -1})
    assert execution["state"] == "FAILED"
    error = execution["error"]
    assert json.loads(error["payload"]) == {"code": 7, "message": "negative"}
    assert error["stackTrace"]["elements"] == [
        {"step": "check", "routine": "helper", "position": {"line": "19"}},
        {"step": "go", "routine": "main", "position": {"line": "7"}},
    ]
    assert error["context"].splitlines() == [
        "negative",
        'in step "check", routine "helper", line: 19',
        'in step "go", routine "main", line: 7',
    ]
    entries = engine.step_entries(execution["name"])
    failed = [(e["routine"], e["step"], e["stepType"]) for e in entries
              if e["state"] == "STATE_FAILED"]
    assert failed == [("main", "go", "STEP_SUBWORKFLOW_CALL"), ("helper", "check", "STEP_SWITCH"),
                      ("helper", "check", "STEP_RAISE")]
    assert json.loads(entries[-1]["exception"]["payload"]) == {"code": 7, "message": "negative"}


def test_step_entries_in_the_rest_shape(engine: Engine):
    engine.deploy("orders", FAILING)
    execution = engine.run("orders", {"n": 2})
    entries = engine.step_entries(execution["name"])
    assert [(e["entryId"], e["routine"], e["step"], e["stepType"]) for e in entries] == [
        ("1", "main", "init", "STEP_ASSIGN"),
        ("2", "main", "go", "STEP_SUBWORKFLOW_CALL"),
        ("3", "helper", "check", "STEP_SWITCH"),
        ("4", "helper", "back", "STEP_RETURN"),
        ("5", "main", "done", "STEP_RETURN"),
    ]
    assert all(e["state"] == "STATE_SUCCEEDED" for e in entries)
    assert entries[2]["navigationInfo"] == {"parent": "2"}
    assert entries[0]["name"] == execution["name"] + "/stepEntries/1"
    assert "createTime" in entries[0] and "updateTime" in entries[0]


def test_executions_persist_across_engines(tmp_path: Path):
    db = tmp_path / "workflows.db"
    first = Engine(db_path=db, clock=VirtualClock())
    first.deploy("greeter", """\
main:
  params: [args]
  steps:
    - log:
        call: sys.log
        args:
          json: {who: '${args.who}'}
          severity: INFO
    - r:
        return: ${sys.get_env("GREETING") + " " + args.who}
""", env={"GREETING": "hello"})
    name = first.start("greeter", {"who": "Ann"})
    done = first.wait(name)
    entries = first.step_entries(name)
    logs = first.logs(name)
    first.shutdown()

    second = Engine(db_path=db, clock=VirtualClock())
    try:
        assert second.get_execution(name) == done
        assert second.step_entries(name) == entries
        assert second.logs(name) == logs
        assert logs[0]["severity"] == "INFO" and logs[0]["jsonPayload"] == {"who": "Ann"}
        page, token = second.list_executions("greeter")
        assert [e["name"] for e in page] == [name] and token is None
        # the deployment outlives the engine too: start again without deploying
        again = second.run("greeter", {"who": "Bo"})
        assert json.loads(again["result"]) == "hello Bo"
        assert again["workflowRevisionId"] == done["workflowRevisionId"]
    finally:
        second.shutdown()


def _kill_engine_mid_sleep(db: Path, source: str, argument: dict) -> str:
    """Start `source` in an engine in another process, SIGKILL it once the execution sleeps in
    step 'wait'; returns the execution's name."""
    script = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
from localcloud.workflows import Engine
engine = Engine(db_path={str(db)!r})
engine.deploy("sleepy", {source!r})
name = engine.start("sleepy", {argument!r})
while engine.get_execution(name)["state"] != "ACTIVE":
    time.sleep(0.01)
while engine.get_execution(name).get("status", {{}}).get("currentSteps", [{{}}])[0].get("step") != "wait":
    time.sleep(0.01)
engine.db.flush()
print(name, flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        name = proc.stdout.readline().strip()
        assert name, "the engine process did not start its execution"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return name


def test_an_execution_interrupted_by_a_dead_engine_runs_again_from_its_start(tmp_path: Path):
    db = tmp_path / "workflows.db"
    source = ("main:\n  params: [args]\n  steps:\n"
              "    - note: {call: sys.log, args: {text: going to sleep}}\n"
              "    - wait: {call: sys.sleep, args: {seconds: 30}}\n"
              "    - done: {return: '${args}'}\n")
    name = _kill_engine_mid_sleep(db, source, {"n": 7})
    engine = Engine(db_path=db, clock=VirtualClock())
    try:
        assert engine.get_execution(name)["state"] == "ACTIVE"   # nobody has resumed it yet
        assert engine.resume_interrupted() == [name]
        execution = engine.wait(name, timeout=30)
        assert execution["state"] == "SUCCEEDED"
        assert json.loads(execution["result"]) == {"n": 7}       # the same argument
        entries = [(e["entryId"], e["step"], e["state"]) for e in engine.step_entries(name)]
        assert entries == [("1", "note", "STATE_SUCCEEDED"), ("2", "wait", "STATE_CANCELLED"),
                           ("3", "note", "STATE_SUCCEEDED"), ("4", "wait", "STATE_SUCCEEDED"),
                           ("5", "done", "STATE_SUCCEEDED")]
        logs = [line.get("textPayload") for line in engine.logs(name)]
        assert logs[0] == "going to sleep" and logs[2] == "going to sleep"
        assert "runs again from its first step with the same argument" in logs[1]
        assert engine.resume_interrupted() == []                # resumed once
    finally:
        engine.shutdown()


def test_an_interrupted_execution_whose_revision_no_longer_loads_fails(tmp_path: Path):
    db = tmp_path / "workflows.db"
    name = _kill_engine_mid_sleep(db, SLEEPY, {})
    engine = Engine(db_path=db)
    try:
        engine.db.execute("UPDATE revisions SET source = '- broken: {retyr: 1}'")
        assert engine.resume_interrupted() == []
        execution = engine.get_execution(name)
        assert execution["state"] == "FAILED"
        payload = json.loads(execution["error"]["payload"])
        assert payload["tags"] == ["SystemError"]
        assert "no longer loads" in payload["message"]
    finally:
        engine.shutdown()


def test_second_engine_on_same_file_leaves_running_executions_alone(tmp_path: Path):
    db = tmp_path / "workflows.db"
    release = threading.Event()
    registry = ConnectorRegistry()
    registry.bind("googleapis.test.v1.block", lambda call: release.wait(10) and "released")
    first = Engine(db_path=db, connectors=registry)
    try:
        first.deploy("w", "- c:\n    call: googleapis.test.v1.block\n    result: r\n"
                          "- d:\n    return: ${r}\n")
        name = first.start("w")
        # Until the stored row says ACTIVE (what a second engine reads), not only the live record.
        wait_for(lambda: first.db.execution(name.rsplit("/", 1)[1])["state"] == "ACTIVE")
        second = Engine(db_path=db)
        try:
            assert second.get_execution(name)["state"] == "ACTIVE"
            assert second.resume_interrupted() == []     # running elsewhere: not interrupted
        finally:
            second.shutdown()
        release.set()
        assert json.loads(first.wait(name, 10)["result"]) == "released"
    finally:
        first.shutdown()


def test_executions_beyond_max_concurrent_wait_queued():
    entered = threading.Semaphore(0)
    release = threading.Event()

    def handler(call):
        entered.release()
        release.wait(10)
        return "ok"

    registry = ConnectorRegistry()
    registry.bind("googleapis.test.v1.block", handler)
    engine = Engine(connectors=registry, max_concurrent=2)
    try:
        engine.deploy("w", "- c:\n    call: googleapis.test.v1.block\n    result: r\n"
                           "- d:\n    return: ${r}\n")
        names = [engine.start("w") for _ in range(4)]
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
        states = sorted(engine.get_execution(n)["state"] for n in names)
        assert states == ["ACTIVE", "ACTIVE", "QUEUED", "QUEUED"]
        assert not entered.acquire(timeout=0.2), "a third execution ran beyond max_concurrent"
        release.set()
        assert [engine.wait(n, 10)["state"] for n in names] == ["SUCCEEDED"] * 4
    finally:
        release.set()
        engine.shutdown()


def test_parallel_concurrency_limit_bounds_running_branches():
    lock = threading.Lock()
    running = {"now": 0, "max": 0}
    pair = threading.Barrier(2, timeout=10)

    def work(call):
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        try:
            pair.wait()   # two branches must be inside at the same time to get past this
        finally:
            with lock:
                running["now"] -= 1
        return call.args["n"]

    registry = ConnectorRegistry()
    registry.bind("googleapis.test.v1.work", work)
    engine = Engine(connectors=registry)
    try:
        engine.deploy("fan", """\
- init:
    assign:
      - out: {}
- fan:
    parallel:
      shared: [out]
      concurrency_limit: 2
      for:
        value: n
        range: [1, 6]
        steps:
          - run:
              call: googleapis.test.v1.work
              args: {n: '${n}'}
              result: r
          - keep:
              assign:
                - out[string(n)]: ${r}
- done:
    return: ${len(out)}
""")
        execution = engine.run("fan", timeout=30)
        assert execution["state"] == "SUCCEEDED", execution.get("error")
        assert json.loads(execution["result"]) == 6
        assert running["max"] == 2
    finally:
        engine.shutdown()


def test_cancel_stops_a_sleeping_execution():
    engine = Engine(clock=RealClock())
    try:
        engine.deploy("sleepy", SLEEPY)
        name = engine.start("sleepy")
        wait_for(lambda: engine.get_execution(name).get("status", {}).get(
            "currentSteps", [{}])[0].get("step") == "wait")
        execution = engine.cancel(name)
        assert execution["state"] == "CANCELLED"
        assert "error" not in execution
        states = {e["step"]: e["state"] for e in engine.step_entries(name)}
        assert states == {"note": "STATE_SUCCEEDED", "wait": "STATE_CANCELLED"}
        with pytest.raises(FailedPrecondition):
            engine.cancel(name)
    finally:
        engine.shutdown()


def test_cancel_a_queued_execution():
    release = threading.Event()
    registry = ConnectorRegistry()
    registry.bind("googleapis.test.v1.block", lambda call: release.wait(10))
    engine = Engine(connectors=registry, max_concurrent=1)
    try:
        engine.deploy("w", "- c:\n    call: googleapis.test.v1.block\n")
        running = engine.start("w")
        queued = engine.start("w")
        wait_for(lambda: engine.get_execution(running)["state"] == "ACTIVE")
        assert engine.get_execution(queued)["state"] == "QUEUED"
        assert engine.cancel(queued)["state"] == "CANCELLED"   # at once: it never ran
        assert engine.get_execution(running)["state"] == "ACTIVE"
        release.set()
        assert engine.wait(running, 10)["state"] == "SUCCEEDED"
        cancelled = engine.wait(queued, 10)
        assert cancelled["state"] == "CANCELLED" and "startTime" not in cancelled
        assert engine.step_entries(queued) == []
    finally:
        release.set()
        engine.shutdown()


def test_list_executions_filters_and_pages():
    clock = VirtualClock()
    engine = Engine(clock=clock)
    try:
        engine.deploy("orders", FAILING)
        first = engine.run("orders", {"n": 1}, labels={"kind": "image"})
        clock.advance(60)
        second = engine.run("orders", {"n": -1}, labels={"kind": "video"})
        clock.advance(60)
        third = engine.run("orders", {"n": 3}, labels={"kind": "video"})
        names = [third["name"], second["name"], first["name"]]

        def listed(**kwargs):
            page, token = engine.list_executions("orders", **kwargs)
            return [e["name"] for e in page], token

        assert listed() == (names, None)
        assert listed(filter='state="FAILED"') == ([second["name"]], None)
        assert listed(filter='labels.kind="video" AND state="SUCCEEDED"') == ([third["name"]],
                                                                              None)
        assert listed(filter=f'startTime>"{first["startTime"]}"') == (names[:2], None)
        page, token = listed(page_size=2)
        assert page == names[:2] and token
        assert listed(page_size=2, page_token=token) == (names[2:], None)
        basic, _ = engine.list_executions("orders", view="BASIC")
        assert "argument" not in basic[0] and "result" not in basic[0]
        assert basic[0]["state"] == "SUCCEEDED"
        with pytest.raises(InvalidArgument):
            engine.list_executions("orders", filter="colour=blue")
    finally:
        engine.shutdown()


def test_deploy_revisions_and_env_rules(engine: Engine):
    first = engine.deploy("w", "- r:\n    return: 1\n")
    assert engine.deploy("w", "- r:\n    return: 1\n") == first
    second = engine.deploy("w", "- r:\n    return: 2\n")
    assert second != first and second.startswith("000002-")
    for env in ({"GOOGLE_X": "1"}, {"WORKFLOWS_Y": "1"}, {"1BAD": "x"},
                {f"K{i}": "v" for i in range(21)}):
        with pytest.raises(InvalidArgument):
            engine.deploy("w", "- r:\n    return: 1\n", env=env)
    with pytest.raises(NotFound):
        engine.start("never-deployed")
    with pytest.raises(InvalidArgument):
        engine.deploy("bad id!", "- r:\n    return: 1\n")


def test_builtin_environment_variables(engine: Engine):
    revision = engine.deploy("env-check", """\
- r:
    return:
      - ${sys.get_env("GOOGLE_CLOUD_PROJECT_ID")}
      - ${sys.get_env("GOOGLE_CLOUD_PROJECT_NUMBER")}
      - ${sys.get_env("GOOGLE_CLOUD_LOCATION")}
      - ${sys.get_env("GOOGLE_CLOUD_SERVICE_ACCOUNT_NAME")}
      - ${sys.get_env("GOOGLE_CLOUD_WORKFLOW_ID")}
      - ${sys.get_env("GOOGLE_CLOUD_WORKFLOW_REVISION_ID")}
      - ${sys.get_env("GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID")}
      - ${sys.get_env("TIER")}
""", env={"TIER": "gold"})
    execution = engine.run("env-check")
    values = json.loads(execution["result"])
    assert values == [
        "phoenix-local", engine.project_number, "us-central1", engine.service_account,
        "env-check", revision, execution["name"].rsplit("/", 1)[1], "gold"]
    assert values[1].isdigit() and len(values[1]) == 12


def test_argument_limit(engine: Engine):
    engine.deploy("w", "main:\n  params: [args]\n  steps:\n    - r:\n        return: 1\n")
    with pytest.raises(ArgumentTooLarge) as raised:
        engine.start("w", {"blob": "x" * (32 * 1024)})
    assert "ResourceLimitError" in str(raised.value)
    with pytest.raises(InvalidArgument):
        engine.start("w", "{not json")
    assert engine.run("w", '{"ok": true}')["state"] == "SUCCEEDED"


def test_step_limit_of_an_execution(engine: Engine):
    engine.deploy("endless", """\
- init:
    assign:
      - i: 0
- spin:
    for:
      value: v
      range: [1, 50001]
      steps:
        - a:
            assign:
              - i: ${i + 1}
        - b:
            assign:
              - i: ${i + 1}
""")
    execution = engine.run("endless", timeout=120)
    assert execution["state"] == "FAILED"
    payload = json.loads(execution["error"]["payload"])
    assert payload["tags"] == ["ResourceLimitError"]
    assert "more than 100000 steps" in payload["message"]
    assert execution["localStats"]["steps"] == 100_001


def test_memory_of_ended_scopes_is_released():
    engine = Engine(clock=VirtualClock())
    try:
        # each call builds ~300 KB in the subworkflow's scope; two calls fit only if the
        # first call's variables stop counting when it returns
        engine.deploy("w", """\
main:
  steps:
    - first:
        call: build
        result: a
    - second:
        call: build
        result: b
    - r:
        return: ${[a, b]}
build:
  steps:
    - init:
        assign:
          - chunk: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
          - parts: []
    - grow:
        for:
          value: i
          range: [1, 4500]
          steps:
            - add:
                assign:
                  - parts: ${list.concat(parts, chunk)}
    - done:
        return: ${len(parts)}
""")
        execution = engine.run("w", timeout=60)
        assert execution["state"] == "SUCCEEDED", execution.get("error")
        assert json.loads(execution["result"]) == [4500, 4500]
    finally:
        engine.shutdown()


def test_connector_calls_record_polls_and_billing():
    registry = ConnectorRegistry()
    seen = {}

    def run_job(call):
        seen["args"] = call.args
        seen["params"] = call.connector_params
        seen["execution"] = call.execution_id
        checks = iter([None, None, None, {"state": "done"}])
        result = call.poll(lambda: next(checks))
        call.record_polls(2)   # e.g. polls of a second operation it waited for another way
        return result

    registry.bind("googleapis.run.v2.projects.locations.jobs.run", run_job)
    clock = VirtualClock()
    engine = Engine(clock=clock, connectors=registry)
    try:
        engine.deploy("jobs", """\
- run:
    call: googleapis.run.v2.projects.locations.jobs.run
    args:
      name: projects/p/locations/l/jobs/generate
      connector_params:
        polling_policy: {initial_delay: 10, multiplier: 2, max_delay: 30}
    result: op
- done:
    return: ${op.state}
""")
        before = clock.now()
        execution = engine.run("jobs")
        assert json.loads(execution["result"]) == "done"
        assert clock.now() - before == 10 + 20 + 30
        assert seen["args"] == {"name": "projects/p/locations/l/jobs/generate"}
        assert seen["params"]["polling_policy"] == {"initial_delay": 10, "multiplier": 2,
                                                    "max_delay": 30}
        assert seen["params"]["timeout"] == 1800
        assert execution["name"].endswith(seen["execution"])
        entry = engine.step_entries(execution["name"])[0]
        assert entry["stepType"] == "STEP_CONNECTOR_CALL" and entry["connectorPolls"] == 6
        assert execution["localStats"] == {"steps": 2, "billableSteps": 8, "connectorPolls": 6}
    finally:
        engine.shutdown()


def test_unbound_connector_names_itself(engine: Engine):
    engine.deploy("w", "- c:\n    call: googleapis.firestore.v1.projects.databases.documents.get"
                       "\n    args: {name: x}\n")
    execution = engine.run("w")
    payload = json.loads(execution["error"]["payload"])
    assert "googleapis.firestore.v1.projects.databases.documents.get is not bound" in \
        payload["message"]


def test_connector_handler_errors():
    registry = ConnectorRegistry()

    def failing(call):
        raise WorkflowError({"tags": ["OperationError"], "message": "job failed",
                             "operation": {"name": "op-1"}})

    def broken(call):
        raise RuntimeError("handler bug")

    registry.bind("googleapis.test.v1.failing", failing)
    registry.bind("googleapis.test.v1.broken", broken)
    engine = Engine(clock=VirtualClock(), connectors=registry)
    try:
        engine.deploy("w", """\
main:
  params: [args]
  steps:
    - pick:
        switch:
          - condition: ${args.which == "failing"}
            call: googleapis.test.v1.failing
          - condition: true
            call: googleapis.test.v1.broken
""")
        failed = json.loads(engine.run("w", {"which": "failing"})["error"]["payload"])
        assert failed == {"tags": ["OperationError"], "message": "job failed",
                          "operation": {"name": "op-1"}}
        bug = json.loads(engine.run("w", {"which": "broken"})["error"]["payload"])
        assert bug["tags"] == ["SystemError"] and "handler bug" in bug["message"]
    finally:
        engine.shutdown()
    with pytest.raises(ValueError):
        registry.bind("run.jobs", failing)


def test_non_json_result_fails(engine: Engine):
    engine.deploy("w", '- r:\n    return: ${base64.decode("aGk=")}\n')
    execution = engine.run("w")
    assert execution["state"] == "FAILED"
    assert json.loads(execution["error"]["payload"])["tags"] == ["TypeError"]


def test_get_unknown_execution(engine: Engine):
    with pytest.raises(NotFound):
        engine.get_execution("projects/p/locations/l/workflows/w/executions/nope")
    with pytest.raises(NotFound):
        engine.get_execution("garbage")


def test_assignment_copies_only_the_path():
    big = list(range(1000))
    untouched = {"deep": [1, 2]}
    root = {"big": big, "other": untouched, "small": {"a": 1, "list": [0, 1]}}
    new = assign_path(root, ["small", "list", 1], "x", "root.small.list[1]")
    assert new["big"] is big and new["other"] is untouched
    assert new["small"]["list"] == [0, "x"] and root["small"]["list"] == [0, 1]
    assert new is not root and new["small"] is not root["small"]


def test_shutdown_cancels_running_executions():
    engine = Engine(clock=RealClock())
    engine.deploy("sleepy", SLEEPY)
    name = engine.start("sleepy")
    wait_for(lambda: engine.get_execution(name)["state"] == "ACTIVE")
    started = time.monotonic()
    engine.shutdown()
    assert time.monotonic() - started < 25, "shutdown waited for the 30 s sleep"
    with pytest.raises(FailedPrecondition):
        engine.start("sleepy")


def test_retry_values_may_be_expressions():
    clock = VirtualClock()
    engine = Engine(clock=clock)
    try:
        engine.deploy("w", """\
main:
  params: [args]
  steps:
    - init:
        assign:
          - attempts: 0
    - guarded:
        try:
          steps:
            - count:
                assign:
                  - attempts: ${attempts + 1}
            - fail:
                raise: again
        retry:
          predicate: ${retry.always}
          max_retries: ${args.retries}
          backoff:
            initial_delay: ${args.delay}
            max_delay: 100
            multiplier: 1
        except:
          as: e
          steps:
            - r:
                return: ${attempts}
""")
        before = clock.now()
        execution = engine.run("w", {"retries": 4, "delay": 5})
        assert json.loads(execution["result"]) == 5
        assert clock.now() - before == 20
    finally:
        engine.shutdown()
