"""Loading workflows: every structural problem reported at once with file, line and step,
YAML read the way Cloud Workflows reads it, and the compiled form sharing literal values."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from localcloud.workflows import LoadError, load_file, load_source
from localcloud.workflows.steps import AssignStep, ForStep, ReturnStep
from localcloud.workflows.templates import Literal, compile_value


def problems(text: str, filename: str = "creation.yaml") -> list[str]:
    with pytest.raises(LoadError) as raised:
        load_source(text, filename)
    return raised.value.problems


def test_every_problem_is_reported_with_file_line_and_step():
    text = """\
main:
  steps:
    - init:
        assign:
          - x: 1
    - run_generate:
        call: sys.log
        args: {text: hi}
        retyr: 3
    - jump:
        next: nowhere
    - init:
        return: '${x +}'
"""
    found = problems(text)
    assert found == [
        "creation.yaml:9 step 'run_generate': unknown key 'retyr' (did you mean 'retry'?)",
        "creation.yaml:11 step 'jump': next: 'nowhere' is not a step of this workflow (a jump "
        "can go to a step of the same list of steps or of an enclosing one)",
        "creation.yaml:12 step 'init': duplicate step name in the same list of steps",
        "creation.yaml:13 step 'init': expression '${x +}' does not parse: unexpected end of "
        "expression at column 4 in expression ${x +}",
    ]


def test_yaml_syntax_error_names_the_line():
    found = problems("main:\n  steps:\n    - a:\n        assign: [x: 1\n")
    assert len(found) == 1
    assert found[0].startswith("creation.yaml:")
    assert "not valid YAML/JSON" in found[0]


def test_json_source_loads_and_errors_name_lines():
    program = load_source(json.dumps({"main": {"steps": [{"r": {"return": 1}}]}}), "w.json")
    assert list(program.routines) == ["main"]
    found = problems('{\n  "main": {\n    "steps": [\n      {"r": {"retrun": 1}}\n    ]\n  }\n}',
                     "w.json")
    assert found == ["w.json:4 step 'r': unknown key 'retrun' (did you mean 'return'?)"]


def test_yaml_scalars_follow_the_workflows_rules():
    program = load_source("""\
main:
  steps:
    - r:
        return: [yes, on, 010, 1e3, 2026-01-01, True, FALSE, null, ~, 0x1F]
""")
    step = program.main.block.steps[0]
    assert isinstance(step, ReturnStep)
    assert step.value.evaluate(None) == ["yes", "on", 10, 1000.0, "2026-01-01", True, False,
                                         None, None, 31]


def test_duplicate_map_keys_are_reported():
    found = problems("main:\n  steps:\n    - a:\n        assign:\n          - x: 1\n"
                     "        assign:\n          - y: 2\n")
    assert found == ["creation.yaml:6: duplicate key 'assign' (first at line 4)"]


def test_structural_rules_of_steps():
    text = """\
main:
  steps:
    - both:
        assign:
          - x: 1
        call: sys.log
    - orphan_args:
        assign:
          - y: 1
        args: {a: 1}
    - end:
        return: 1
    - loop:
        for:
          value: v
          in: [1]
          range: [1, 2]
          steps:
            - s: {assign: [{z: 1}]}
    - no_value:
        for:
          in: [1]
          steps:
            - s: {assign: [{z: 1}]}
    - fan:
        parallel:
          exception_policy: failFast
          branches:
            - a: {steps: [{s: {assign: [{q: 1}]}}]}
            - b: {steps: [{s: {return: 1}}]}
    - guarded:
        try:
          steps:
            - s: {raise: x}
        retry:
          predicate: ${retry.always}
          max_retries: 2
          backoff: {initial_delay: 1, max_delay: 2}
        except:
          as: e
          stpes: []
"""
    found = problems(text)
    expected_fragments = [
        (3, "step 'both': a step does one thing; found 'assign' and 'call'"),
        (10, "step 'orphan_args': 'args' needs 'call' in the same step"),
        (11, "step 'end': 'end' is reserved"),
        (14, "step 'loop': 'for' needs exactly one of 'in' (a list) or 'range'"),
        (21, "step 'no_value': 'for' needs 'value'"),
        (27, "step 'fan': exception_policy 'failFast': the only policy is continueAll"),
        (30, "step 's': 'return' is not allowed inside a parallel branch"),
        (35, "step 'guarded': retry backoff needs 'multiplier'"),
        (41, "step 'guarded': unknown key 'stpes' in 'except' (did you mean 'steps'?)"),
    ]
    assert len(found) == len(expected_fragments), found
    for (line, fragment), message in zip(expected_fragments, found):
        assert message.startswith(f"creation.yaml:{line} "), message
        assert fragment in message, message


def test_limits_checked_at_load():
    conditions = "\n".join(f"          - condition: ${{x == {i}}}\n            next: end"
                           for i in range(51))
    branches = "\n".join(f"          - b{i}:\n              steps:\n                - s: "
                         f"{{assign: [{{v: {i}}}]}}" for i in range(11))
    text = f"""\
main:
  steps:
    - init:
        assign:
          - x: 1
    - pick:
        switch:
{conditions}
    - fan:
        parallel:
          branches:
{branches}
"""
    found = problems(text)
    assert any("step 'pick': 51 conditions; at most 50" in p for p in found), found
    assert any("step 'fan': 11 branches; a parallel step has 2 to 10" in p for p in found), found


def test_jumps_cannot_enter_or_leave_a_parallel_branch():
    text = """\
main:
  steps:
    - fan:
        parallel:
          branches:
            - a:
                steps:
                  - inside_a:
                      assign: [{x: 1}]
                      next: after
            - b:
                steps:
                  - inside_b:
                      assign: [{y: 1}]
    - after:
        next: inside_b
"""
    found = problems(text)
    assert len(found) == 2
    assert "creation.yaml:10 step 'inside_a': next: 'after' is not a step of this parallel " \
           "branch" in found[0]
    assert "creation.yaml:16 step 'after': next: 'inside_b' is not a step of this workflow" \
           in found[1]


def test_break_in_parallel_for_is_rejected():
    found = problems("""\
main:
  steps:
    - fan:
        parallel:
          for:
            value: v
            in: [1, 2]
            steps:
              - stop:
                  next: break
""")
    assert found == ["creation.yaml:10 step 'stop': next: break is not allowed in a parallel "
                     "for loop (its iterations run concurrently); use continue to end an "
                     "iteration"]


def test_call_targets_are_checked():
    found = problems("""\
main:
  steps:
    - a:
        call: sys.slep
    - b:
        call: helper
        args: {x: 1, y: 2}
    - c:
        call: googleapis.run.v2.projects.locations.jobs.run
        args: {name: x}
helper:
  params: [x]
  steps:
    - r: {return: '${x}'}
""")
    assert len(found) == 2
    assert "step 'a': unknown call target 'sys.slep'" in found[0]
    assert "(did you mean 'sys.sleep'?)" in found[0]
    assert "step 'b': unknown argument 'y' for subworkflow 'helper'" in found[1]


def test_blocking_function_in_expression_is_rejected():
    found = problems("main:\n  steps:\n    - a:\n        return: ${sys.sleep(1)}\n")
    assert len(found) == 1 and "sys.sleep is a blocking call" in found[0]


def test_assignment_targets_are_parsed_at_load():
    found = problems("main:\n  steps:\n    - a:\n        assign:\n          - 1x: 2\n"
                     "          - m[: 3\n          - ok.b[\"c\"][i + 1]: 4\n")
    assert len(found) == 2
    assert "assign target: assignment target '1x' must start with a variable name" in found[0]
    assert "unclosed '['" in found[1]


def test_shape_errors_of_the_file():
    assert problems("just text") == [
        "creation.yaml:1: a workflow is a map with 'main' (and subworkflows) or a list of "
        "steps, not a string"]
    assert problems("helper:\n  steps:\n    - r: {return: 1}\n") == [
        "creation.yaml:1: no 'main' workflow: give a 'main' with 'steps' (and subworkflows "
        "beside it), or a plain list of steps"]
    assert problems("") == ["creation.yaml: the file is empty"]
    too_big = "main:\n  steps:\n" + "".join(f"    - s{i}:\n        return: {'x' * 60}\n"
                                             for i in range(2000))
    found = problems(too_big)
    assert len(found) == 1 and "Cloud Workflows accepts at most 131072" in found[0]


def test_load_file_reads_paths_and_reports_missing_files(tmp_path: Path):
    path = tmp_path / "flow.yaml"
    path.write_text("- r:\n    return: 7\n")
    program = load_file(path)
    assert program.filename == "flow.yaml"
    assert program.main.block.steps[0].value.evaluate(None) == 7
    with pytest.raises(LoadError) as raised:
        load_file(tmp_path / "missing.yaml")
    assert "cannot read the workflow file" in raised.value.problems[0]


def test_literal_values_are_compiled_once_and_shared():
    value = {"a": [1, {"b": "c"}], "d": "plain"}
    template = compile_value(value)
    assert isinstance(template, Literal)
    assert template.evaluate(None) is value
    mixed = compile_value({"fixed": value, "dynamic": "${x}"})
    scope = type("Scope", (), {"get_var": lambda self, name: 42})()
    out = mixed.evaluate(scope)
    assert out == {"fixed": value, "dynamic": 42}
    assert out["fixed"] is value


def test_compiled_program_structure():
    program = load_source("""\
helper:
  params: [a, b: 2]
  steps:
    - r: {return: '${a + b}'}
main:
  params: [args]
  steps:
    - loop:
        for:
          value: v
          index: i
          range: [1, 3]
          steps:
            - s:
                assign:
                  - m.k[0]: ${v}
""")
    assert list(program.routines) == ["main", "helper"]
    assert program.routines["helper"].param_names == ["a", "b"]
    loop = program.main.block.steps[0]
    assert isinstance(loop, ForStep) and loop.value_name == "v" and loop.index_name == "i"
    inner = loop.block.steps[0]
    assert isinstance(inner, AssignStep)
    target, _ = inner.items[0]
    assert target.name == "m" and target.keys[0] == "k" and not target.simple
