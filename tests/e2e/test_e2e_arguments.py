"""The workflow refuses what it cannot act on before anything is charged or run: a bad argument
fails with INVALID_ARGUMENT, a creation that does not exist fails at read_creation."""
from __future__ import annotations

import json
import uuid

import pytest

from creations.model import Creation, CreationType
from tests.support.stack import Stack, jobs_started

pytestmark = pytest.mark.slow


@pytest.fixture
def pending(pipeline: Stack):
    """A user and a debited, pending creation whose execution was never started."""
    user = pipeline.new_user(4)
    creation = Creation(id=Creation.new_id(), uid=user.uid, type=CreationType.IMAGE,
                        prompt="an orchard in spring", options={"aspectRatio": "1:1", "numberOfImages": 1},
                        cost=pipeline.settings.cost_image)
    created = pipeline.store.create_with_debit(creation).creation
    return user, created


@pytest.mark.parametrize("argument, complaint", [
    ({}, '"creationId"'),
    ({"attempt": 1}, '"creationId"'),
    ({"creationId": "", "attempt": 1}, '"creationId"'),
    ({"creationId": 42, "attempt": 1}, '"creationId"'),
    ({"creationId": "{id}"}, '"attempt"'),
    ({"creationId": "{id}", "attempt": 0}, '"attempt"'),
    ({"creationId": "{id}", "attempt": "1"}, '"attempt"'),
    ({"creationId": "{id}", "attempt": 1.5}, '"attempt"'),
    (["{id}", 1], "JSON object"),
], ids=["empty", "no-id", "empty-id", "numeric-id", "no-attempt", "attempt-0", "string-attempt",
        "double-attempt", "list"])
def test_a_bad_argument_fails_with_invalid_argument_and_changes_nothing(pipeline: Stack, pending,
                                                                         argument, complaint):
    user, creation = pending
    argument = json.loads(json.dumps(argument).replace("{id}", creation.id))
    before = pipeline.store.get_creation(creation.id).to_dict()

    name = pipeline.start_workflow(argument)
    execution = pipeline.wait(name)

    assert execution["state"] == "FAILED"
    payload = json.loads(execution["error"]["payload"])
    assert payload["code"] == "INVALID_ARGUMENT"
    assert complaint in payload["message"]
    entries = pipeline.engine.step_entries(name)
    assert {e["step"] for e in entries} == {"init", "check_arguments"}   # it stopped there
    assert execution["error"]["stackTrace"]["elements"][0]["step"] == "check_arguments"
    assert jobs_started(entries) == 0
    assert pipeline.store.get_creation(creation.id).to_dict() == before
    assert pipeline.balance(user) == user.granted - creation.cost
    assert pipeline.store.audit() == []


def test_a_creation_that_does_not_exist_fails_at_read_creation(pipeline: Stack):
    missing = uuid.uuid4().hex
    name = pipeline.start_workflow({"creationId": missing, "attempt": 1})
    execution = pipeline.wait(name)

    assert execution["state"] == "FAILED"
    payload = json.loads(execution["error"]["payload"])
    assert "HttpError" in payload["tags"] and payload["code"] == 404
    entries = pipeline.engine.step_entries(name)
    assert entries[-1]["step"] == "read_creation"
    assert execution["error"]["stackTrace"]["elements"][0]["step"] == "read_creation"
    assert entries[-1]["stepType"] == "STEP_CONNECTOR_CALL" and entries[-1]["state"] == "STATE_FAILED"
    assert jobs_started(entries) == 0          # nothing charged, nothing run, nothing refunded
    assert pipeline.store.get_creation(missing) is None
    assert pipeline.store.audit() == []
