"""Conformance suite: every case in tests/workflows/conformance/*.yaml (format in README.md there)
runs as one pytest case on a fresh engine with a VirtualClock, so waits cost no wall time and
`expect.elapsed` is exact.

Beyond the README format, a case may say `expect: {load_error: ["text", ...]}`: the workflow
must not load, and each text must appear in one of the loader's messages. Cases may call
these test connectors, bound in every engine here:

- `googleapis.conformance.v1.echo`: returns `{args, connector_params}` as the handler saw them;
- `googleapis.conformance.v1.operations.wait`: a long-running operation that is done after
  `args.polls` checks (polled with the call's polling_policy), then returns `{done: true,
  polls: N}`, or raises OperationError when `args.fail` is true.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from localcloud.workflows import ConnectorRegistry, Engine, LoadError, VirtualClock, WorkflowError
from localcloud.workflows.source import parse_document

CASES_DIR = Path(__file__).parent / "conformance"


def _load_cases() -> list[dict]:
    cases: list[dict] = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        value, _ = parse_document(path.read_text(encoding="utf-8"), path.name)
        assert type(value) is list, f"{path.name}: a conformance file is a list of cases"
        for case in value:
            case["_file"] = path.name
            cases.append(case)
    return cases


CASES = _load_cases()


def test_case_names_are_unique_and_documented():
    names = [c.get("name") for c in CASES]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"duplicate case names: {duplicates}"
    for case in CASES:
        assert case.get("doc"), f"{case['_file']}: case {case.get('name')} has no doc"
        assert "workflow" in case and "expect" in case, f"case {case.get('name')} is incomplete"


def conformance_connectors() -> ConnectorRegistry:
    registry = ConnectorRegistry()

    def echo(call):
        return {"args": call.args, "connector_params": call.connector_params}

    def wait_operation(call):
        needed = call.args.get("polls", 1)
        state = {"checks": 0}

        def check():
            state["checks"] += 1
            return state["checks"] if state["checks"] >= needed else None

        polls = call.poll(check)
        if call.args.get("fail"):
            raise WorkflowError({"tags": ["OperationError"],
                                 "message": "the long-running operation failed",
                                 "operation": {"name": "operations/conformance", "done": True,
                                               "error": {"code": 9,
                                                         "message": "exit code 1"}}})
        return {"done": True, "polls": polls}

    registry.bind("googleapis.conformance.v1.echo", echo)
    registry.bind("googleapis.conformance.v1.operations.wait", wait_operation)
    return registry


def same(actual: Any, expected: Any) -> bool:
    """Equality that tells integers from doubles and booleans from numbers."""
    if type(expected) is float and type(actual) is float:
        return actual == expected or (math.isnan(actual) and math.isnan(expected))
    if type(actual) is not type(expected):
        return False
    if type(expected) is dict:
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k])
                                                        for k in expected)
    if type(expected) is list:
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected))
    return actual == expected


@pytest.mark.parametrize("case", CASES, ids=[str(c.get("name")) for c in CASES])
def test_conformance(case: dict) -> None:
    expect = case["expect"]
    clock = VirtualClock()
    engine = Engine(clock=clock, connectors=conformance_connectors())
    try:
        source = json.dumps(case["workflow"])
        if "load_error" in expect:
            with pytest.raises(LoadError) as raised:
                engine.deploy("conformance", source, env=case.get("env"))
            wanted = expect["load_error"]
            wanted = [wanted] if isinstance(wanted, str) else wanted
            for text in wanted:
                assert any(text in p for p in raised.value.problems), (
                    f"no loader message contains {text!r}: {raised.value.problems}")
            return
        engine.deploy("conformance", source, env=case.get("env"))
        before = clock.now()
        execution = engine.run("conformance", case.get("args"), timeout=60)
        elapsed = clock.now() - before
        if "result" in expect:
            assert execution["state"] == "SUCCEEDED", (
                f"expected success, got {execution['state']}: {execution.get('error')}")
            result = json.loads(execution["result"])
            assert same(result, expect["result"]), f"result {result!r} != {expect['result']!r}"
        if "error" in expect:
            assert execution["state"] == "FAILED", (
                f"expected failure, got {execution['state']}: {execution.get('result')}")
            payload = json.loads(execution["error"]["payload"])
            for key, wanted in expect["error"].items():
                if key == "value":
                    assert same(payload, wanted), f"error {payload!r} != {wanted!r}"
                elif key == "tags":
                    assert type(payload) is dict, f"error {payload!r} is not a map"
                    missing = [t for t in wanted if t not in (payload.get("tags") or [])]
                    assert not missing, f"error tags {payload.get('tags')} lack {missing}"
                elif key == "message_contains":
                    assert wanted in str(payload.get("message", "")), (
                        f"error message {payload.get('message')!r} lacks {wanted!r}")
                else:
                    assert same(payload.get(key), wanted), (
                        f"error {key} is {payload.get(key)!r}, expected {wanted!r}")
        if "elapsed" in expect:
            assert abs(elapsed - expect["elapsed"]) < 1e-6, (
                f"elapsed {elapsed} s of the test clock, expected {expect['elapsed']}")
    finally:
        engine.shutdown()
