"""The operator layer (creations/operator.py) as the console calls it: plain data in, dataclasses
out. Finding by filter with pages, counts, bulk replay preview and progress, and a trace that
shows an execution that was started but never recorded on its creation."""
from __future__ import annotations

from datetime import timedelta

import pytest
from ops_stack import OpsStack, marker
from test_ops_safety import Books

from creations.errors import NotFound
from creations.model import CreationType, Status, utcnow
from creations.operator import BadRequest, CreationFilter, Operator
from creations.replay import prepare_replay
from creations.triggers import trigger_from_settings
from tests.store.test_attempts import Trigger

pytestmark = pytest.mark.xdist_group("ops")


@pytest.fixture
def books(tmp_path):
    b = Books(tmp_path / "data")
    yield b
    b.store.close()


def operator_on(books: Books, trigger: Trigger | None = None) -> Operator:
    return Operator(books.store, workflow="projects/p/locations/l/workflows/creation",
                    trigger_factory=(lambda: trigger) if trigger else None)


def test_find_applies_every_filter_before_the_limit_and_pages_newest_first(books):
    ann_ok = books.paid("ann")
    bob_storage = [books.failed("STORAGE_ERROR", retryable=True, uid="bob") for _ in range(3)]
    ann_policy = books.failed("CONTENT_POLICY", retryable=False, uid="ann")
    op = operator_on(books)

    page = op.find(CreationFilter(codes=("STORAGE_ERROR",)), limit=2)
    assert [c.id for c in page.items] == bob_storage[::-1][:2] and page.next_page_token
    rest = op.find(CreationFilter(codes=("STORAGE_ERROR",)), limit=2, page_token=page.next_page_token)
    assert [c.id for c in rest.items] == [bob_storage[0]] and rest.next_page_token is None

    assert [c.id for c in op.find(CreationFilter(uid="ann")).items] == [ann_policy, ann_ok.id]
    assert [c.id for c in op.find(CreationFilter(statuses=(Status.PENDING,))).items] == [ann_ok.id]
    assert op.find(CreationFilter(types=(CreationType.VIDEO,))).items == []
    assert op.find(CreationFilter(created_from=utcnow() + timedelta(minutes=1))).items == []
    assert [c.id for c in op.find(CreationFilter(ids=(ann_policy,))).items] == [ann_policy]
    with pytest.raises(NotFound, match="no creation nope"):
        op.find(CreationFilter(ids=(ann_policy, "nope")))
    with pytest.raises(BadRequest, match="unknown error code"):
        CreationFilter(codes=("STORAGE_EROR",))
    now = utcnow()
    with pytest.raises(BadRequest, match="time range is empty"):
        CreationFilter(created_from=now, created_before=now)

    counts = op.count_by_status()
    assert counts.counts == {"pending": 1, "failed": 4} and counts.complete


def test_bulk_replay_previews_then_replays_what_is_worth_it_with_progress(books):
    retry = [books.failed("PROVIDER_UNAVAILABLE", retryable=True) for _ in range(2)]
    final = books.failed("INVALID_REQUEST", retryable=False)
    trigger = Trigger()
    op = operator_on(books, trigger)

    preview = op.bulk_preview(CreationFilter())
    assert {p.creation_id for p in preview.to_replay} == set(retry) and preview.complete
    assert [(p.creation_id, p.error_code) for p in preview.not_worth] == [(final, "INVALID_REQUEST")]
    assert "INVALID_REQUEST" in preview.not_worth[0].reason
    assert preview.charge == 2 and preview.not_worth_by_code() == {"INVALID_REQUEST": 1}
    assert len(op.bulk_preview(CreationFilter(), limit=1).to_replay) == 1
    assert op.bulk_preview(CreationFilter(), limit=1).complete is False
    with pytest.raises(BadRequest):
        op.bulk_preview(CreationFilter(statuses=(Status.DRAFT,)))

    seen = []
    results = op.replay_bulk(CreationFilter(), actor="console:dana", reason="provider back", progress=seen.append)
    assert seen == results and all(r.started and r.attempt == 2 for r in results)
    assert sorted(trigger.started) == sorted((cid, 2) for cid in retry)
    for cid in retry:
        action = books.store.get_creation(cid).actions[-1]
        assert (action["actor"], action["reason"], action["action"]) == ("console:dana", "provider back", "replay")
    assert op.replay_bulk(CreationFilter(), actor="x") == []     # nothing failed and worth it is left
    assert books.store.get_creation(final).attempt == 1


def test_a_trace_shows_an_execution_started_but_never_recorded(ops_stack: OpsStack):
    user = ops_stack.new_user(3)
    creation_id = ops_stack.submit(user, f"a #blocked trace {marker()}")
    first = ops_stack.execution_name(creation_id)
    assert ops_stack.finish(creation_id)["state"] == "FAILED"
    # A replay that died between starting its execution and recording it.
    replayed = prepare_replay(ops_stack.store, creation_id, expected_attempt=1)
    trigger = trigger_from_settings(ops_stack.settings)
    try:
        second = trigger.start(replayed)
    finally:
        trigger.close()
    assert ops_stack.wait(second)["state"] == "FAILED"

    operator = Operator.from_settings(ops_stack.settings, ops_stack.store)
    try:
        trace = operator.trace(creation_id)
    finally:
        operator.close()
    assert [(e.name, e.recorded, e.state) for e in trace.executions] == [(first, True, "FAILED"),
                                                                         (second, False, "FAILED")]
    assert all(e.entries for e in trace.executions)
    assert [e.id for e in trace.ledger] == [f"{creation_id}:1:debit", f"{creation_id}:1:refund",
                                            f"{creation_id}:2:debit", f"{creation_id}:2:refund"]


def test_every_error_code_in_the_code_is_known_to_the_filter_or_never_recorded_on_a_creation():
    import re
    from pathlib import Path

    from creations.operator import KNOWN_ERROR_CODES

    root = Path(__file__).resolve().parents[2]
    found = set()
    for folder in ("creations", "steps"):
        for source in (root / folder).rglob("*.py"):
            found |= set(re.findall(r'\bcode\s*=\s*"([A-Z_]+)"', source.read_text()))
    # Errors raised to a caller (the API, the CLI), never written into a creation's `error`.
    never_recorded = {"ALREADY_EXISTS", "IDEMPOTENCY_CONFLICT", "TOO_MANY_ACTIVE", "NOT_REPLAYABLE",
                      "NOT_WORTH_REPLAYING", "REASON_REQUIRED", "BAD_REQUEST", "STORE_MISSING"}
    unclassified = found - KNOWN_ERROR_CODES - never_recorded
    assert not unclassified, f"add these codes to KNOWN_ERROR_CODES (or to never_recorded here): {unclassified}"
    assert "STORAGE_ERROR" in found and "TRIGGER_FAILED" in found   # the scan itself works
