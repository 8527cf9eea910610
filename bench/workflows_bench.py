"""Benchmark of the local Workflows engine, with persistence on (a SQLite file).

    .venv/bin/python bench/workflows_bench.py [--quick]

Prints: per-step cost (µs) of assign, a standard-library call, a switch and a subworkflow call;
executions per second of a small workflow; a loop growing a list to 400 and to 4,000 items
(both times and their ratio). Targets are printed next to the figures, not asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localcloud.workflows import Engine, RealClock  # noqa: E402

BODY_STEPS = 20   # identical steps per loop iteration: the loop's own cost is spread over them


def step_workflow(kind: str, iterations: int) -> str:
    """A loop of `iterations` x BODY_STEPS steps of one kind (JSON text)."""
    if kind == "assign":
        step = {"assign": [{"x": "${x + 1}"}]}
    elif kind == "call":
        step = {"call": "math.abs", "args": {"x": "${x}"}, "result": "y"}
    elif kind == "switch":
        step = {"switch": [{"condition": "${x < 0}", "next": "end"}]}
    elif kind == "subworkflow":
        step = {"call": "identity", "args": {"v": "${x}"}, "result": "y"}
    else:
        raise ValueError(kind)
    body = [{f"s{i}": step} for i in range(BODY_STEPS)]
    return json.dumps({
        "main": {"steps": [
            {"init": {"assign": [{"x": 1}, {"y": 0}]}},
            {"loop": {"for": {"value": "i", "range": [1, iterations], "steps": body}}},
            {"done": {"return": "${x}"}},
        ]},
        "identity": {"params": ["v"], "steps": [{"back": {"return": "${v}"}}]},
    })


def growing_list_workflow(n: int) -> str:
    return json.dumps({"main": {"steps": [
        {"init": {"assign": [{"items": []}]}},
        {"grow": {"for": {"value": "i", "range": [1, n], "steps": [
            {"add": {"assign": [{"items": "${list.concat(items, i)}"}]}}]}}},
        {"done": {"return": "${len(items)}"}},
    ]}})


SMALL_WORKFLOW = json.dumps({"main": {"params": ["args"], "steps": [
    {"init": {"assign": [{"n": "${args.n}"}]}},
    {"double": {"assign": [{"n": "${n * 2}"}]}},
    {"done": {"return": "${n}"}},
]}})


def timed_run(engine: Engine, workflow_id: str, argument=None) -> float:
    started = time.perf_counter()
    execution = engine.run(workflow_id, argument)
    engine.db.flush()   # count the writing of its step entries too
    elapsed = time.perf_counter() - started
    assert execution["state"] == "SUCCEEDED", execution.get("error")
    return elapsed


def best_of(engine: Engine, workflow_id: str, repeats: int) -> float:
    return min(timed_run(engine, workflow_id) for _ in range(repeats))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    iterations = 100 if args.quick else 500
    repeats = 3 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(db_path=str(Path(tmp) / "bench.db"), clock=RealClock())
        try:
            print(f"per-step cost, persistence on ({iterations * BODY_STEPS} steps per run, "
                  f"best of {repeats}; target < 20 µs per simple step):")
            for kind in ("assign", "call", "switch", "subworkflow"):
                engine.deploy(f"steps-{kind}", step_workflow(kind, iterations))
                seconds = best_of(engine, f"steps-{kind}", repeats)
                per_step = seconds / (iterations * BODY_STEPS) * 1e6
                note = " (a call step + the callee's return step)" if kind == "subworkflow" else ""
                target = "" if kind == "subworkflow" else \
                    ("  ok" if per_step < 20 else "  OVER TARGET")
                print(f"  {kind:<12} {per_step:8.1f} µs/step{note}{target}")

            engine.deploy("small", SMALL_WORKFLOW)
            count = 200 if args.quick else 1000
            timed_run(engine, "small", {"n": 1})
            started = time.perf_counter()
            names = [engine.start("small", {"n": i}) for i in range(count)]
            for name in names:
                assert engine.wait(name)["state"] == "SUCCEEDED"
            engine.db.flush()
            elapsed = time.perf_counter() - started
            print(f"executions per second (3-step workflow, {count} executions, "
                  f"max_concurrent={engine.max_concurrent}): {count / elapsed:8.0f}")

            times = {}
            for n in (400, 4000):
                engine.deploy(f"grow-{n}", growing_list_workflow(n))
                times[n] = statistics.median(timed_run(engine, f"grow-{n}")
                                             for _ in range(repeats))
            ratio = times[4000] / times[400]
            print(f"loop growing a list to 400 items:   {times[400] * 1000:8.1f} ms "
                  f"(target < 40 ms){'  ok' if times[400] < 0.040 else '  OVER TARGET'}")
            print(f"loop growing a list to 4,000 items: {times[4000] * 1000:8.1f} ms")
            print(f"ratio 4,000 / 400: {ratio:.1f}x (linear would be 10x)")
        finally:
            engine.shutdown(wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
