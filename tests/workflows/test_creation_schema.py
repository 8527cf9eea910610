"""workflows/creation.yaml validates against Google's published JSON Schema of the Workflows
language (gcw_schema/), so what the local engine runs is also what Cloud Workflows will deploy.

One exemption, which the syntax reference allows: the keys of a raised map are the workflow's
own. The schema describes `code` in a raised map as Google's integer code; creation.yaml raises
its own string codes (INVALID_ARGUMENT, CONTENT_POLICY, ...) under that key.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CREATION = REPO / "workflows" / "creation.yaml"
SCHEMA = Path(__file__).resolve().parent / "gcw_schema" / "workflows.json"


def without_own_keys_of_raised_maps(node: Any) -> Any:
    """A copy of a workflow without the string `code` of each raised map (see the module doc)."""
    if isinstance(node, list):
        return [without_own_keys_of_raised_maps(item) for item in node]
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "raise" and isinstance(value, dict) and isinstance(value.get("code"), str):
                value = {k: v for k, v in value.items() if k != "code"}
            out[key] = without_own_keys_of_raised_maps(value)
        return out
    return node


def schema_problems(workflow: Any) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    problems = []
    for error in validator.iter_errors(without_own_keys_of_raised_maps(workflow)):
        # A failed oneOf/anyOf says little; its sub-errors say where and why (some of them
        # only that another alternative did not match either).
        for leaf in _leaves(error):
            problems.append(f"{'/'.join(map(str, leaf.absolute_path))}: {leaf.message[:200]}")
    return problems


def _leaves(error: jsonschema.ValidationError):
    if not error.context:
        yield error
    for sub in error.context:
        yield from _leaves(sub)


@pytest.fixture(scope="module")
def creation() -> dict:
    return yaml.safe_load(CREATION.read_text())


def test_creation_yaml_validates_against_the_published_schema(creation):
    assert schema_problems(creation) == []


def test_an_expression_where_the_schema_wants_an_integer_is_caught(creation):
    # connector_params.timeout must be a literal integer: Cloud Workflows refuses an expression.
    broken = copy.deepcopy(creation)
    call = broken["run_step"]["steps"][0]["run_job"]["try"]
    call["args"]["connector_params"]["timeout"] = "${timeoutSeconds + 120}"
    problems = schema_problems(broken)
    assert any("connector_params/timeout" in p and "integer" in p for p in problems), problems


def test_only_string_codes_of_raised_maps_are_exempt(creation):
    broken = copy.deepcopy(creation)
    broken["main"]["steps"][0]["init"]["retyr"] = 3          # a misspelt key is still caught
    problems = schema_problems(broken)
    assert any("retyr" in p for p in problems), problems
