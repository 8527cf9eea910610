"""What creation.yaml reads from Firestore exists in what the Firestore adapter writes.

The YAML is parsed for its Firestore connector calls (the document names they build and the
variables their results land in) and for every field path its expressions read from those
variables (`doc.fields.a.stringValue`, `map.get(doc, ["fields", "a", ...])`). Each path is then
looked up in real documents: written by the API and the jobs through the Firestore client,
served by the emulator's REST API (the connector's wire format) under the production names.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from devstack.stack import PROJECT, WORKFLOW_FILE
from tests.support.stack import Stack, unique

FIRESTORE_CALL = re.compile(r"^googleapis\.firestore\.v1\.projects\.databases\.documents\.(\w+)$")
TYPED = {"stringValue", "integerValue", "booleanValue", "doubleValue", "timestampValue", "mapValue",
         "arrayValue", "nullValue", "bytesValue", "referenceValue", "geoPointValue"}


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def firestore_calls(source: dict) -> list[dict]:
    """Every Firestore connector call: {method, args, result}."""
    calls = []
    for node in _walk(source):
        if isinstance(node, dict) and isinstance(node.get("call"), str):
            match = FIRESTORE_CALL.match(node["call"])
            if match:
                calls.append({"method": match.group(1), "args": node.get("args") or {}, "result": node.get("result")})
    return calls


def expressions(source: dict) -> list[str]:
    return [node for node in _walk(source) if isinstance(node, str) and "${" in node]


def field_paths(source: dict, variables: set[str]) -> set[tuple[str, ...]]:
    """The paths below `fields` that expressions read from the documents in `variables`."""
    paths: set[tuple[str, ...]] = set()
    names = "|".join(map(re.escape, sorted(variables)))
    dotted = re.compile(rf"\b(?:{names})\.fields\.([A-Za-z_][\w.]*)")
    listed = re.compile(rf"map\.get\(\s*(?:{names})\s*,\s*\[([^\]]*)\]\s*\)")
    for text in expressions(source):
        for match in dotted.finditer(text):
            paths.add(tuple(match.group(1).split(".")))
        for match in listed.finditer(text):
            keys = tuple(k.strip().strip('"\'') for k in match.group(1).split(","))
            assert keys[0] == "fields", f"{text}: a document read that does not start at its fields"
            paths.add(keys[1:])
    return paths


def collections_read(source: dict) -> set[str]:
    """The collections of the document names the YAML builds (`documentsParent + "creations/" ...`)."""
    found = set()
    for text in expressions(source):
        found.update(re.findall(r'documentsParent\s*\+\s*"([^"/]+)/"', text))
    return found


def resolve(document: dict, path: tuple[str, ...]) -> Any:
    """The value at `path` (field names and REST type keys alternating) in a REST document."""
    node: Any = document.get("fields", {})
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise KeyError(key)
        node = node[key]
    return node


def test_the_yaml_reads_only_creations_by_get():
    source = yaml.safe_load(WORKFLOW_FILE.read_text())
    calls = firestore_calls(source)
    assert calls, "creation.yaml makes no Firestore connector call"
    assert {c["method"] for c in calls} == {"get"}
    assert collections_read(source) == {"creations"}
    # Every get lands in a variable the checks below follow.
    assert all(c["result"] for c in calls)


def test_every_field_the_yaml_reads_exists_in_what_the_adapter_writes(stack: Stack):
    source = yaml.safe_load(WORKFLOW_FILE.read_text())
    variables = {c["result"] for c in firestore_calls(source)}
    paths = field_paths(source, variables)
    assert paths, "no document field read found in creation.yaml"
    assert all(path[-1] in TYPED for path in paths), paths

    user = stack.new_user(2)
    failed_id = stack.submit(user, unique("a storm #blocked"))
    assert stack.finish(failed_id).state == "FAILED"
    draft_id = stack.submit(user, unique("a calm sea"))
    assert stack.finish(draft_id).state == "SUCCEEDED"

    # The documents by the names the YAML builds, from the emulator's REST API.
    parent = f"projects/{PROJECT}/databases/{stack.settings.firestore_database}/documents/"
    assert stack.settings.firestore_project == PROJECT
    forward = stack.stack.firestore_connector.forward
    failed = forward("get", {"name": f"{parent}creations/{failed_id}"})
    draft = forward("get", {"name": f"{parent}creations/{draft_id}"})

    missing = []
    for path in sorted(paths):
        try:
            resolve(failed, path)
        except KeyError:
            missing.append(".".join(path))
    assert missing == [], f"creation.yaml reads fields the adapter does not write: {missing}"
    assert resolve(failed, ("error", "mapValue", "fields", "retryable", "booleanValue")) is False
    # Before any failure the fields exist too: `error` is null (the predicate's "nothing recorded").
    for field in sorted({path[0] for path in paths}):
        assert field in draft["fields"], f"a draft's document has no {field!r}"
    assert draft["fields"]["error"] == {"nullValue": None}
    assert draft["fields"]["attempt"] == {"integerValue": "1"}
