"""The one money path (creations/attempts.py) and the operators' search, on both store adapters:
starting an attempt, compensating a trigger failure in one transaction, the replay rules, the
operator action recorded on the creation, and search_creations' filters and pages."""
from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from creations.attempts import (
    AttemptNotStarted,
    NotWorthReplaying,
    ReasonRequired,
    replay,
    replay_preview,
    start_attempt,
    worth_replaying,
)
from creations.errors import InvalidOptions, NotFound
from creations.model import Creation, CreationError, EntryKind, Status
from creations.replay import NotReplayable
from creations.triggers import TriggerFailed
from tests.store.records import make_creation


class Trigger:
    """A trigger (creations.triggers.Trigger) that starts nothing: it answers a name, or fails."""

    def __init__(self, fail: Exception | None = None):
        self.fail = fail
        self.started: list[tuple[str, int]] = []

    def start(self, creation: Creation) -> str | None:
        if self.fail is not None:
            raise self.fail
        self.started.append((creation.id, creation.attempt))
        return f"projects/p/locations/l/workflows/creation/executions/{creation.id}-{creation.attempt}"


def paid_creation(store, uid="alice", tokens=10, **fields) -> Creation:
    store.grant(uid, tokens, f"grant:{uid}:{Creation.new_id()}")
    return store.create_with_debit(make_creation(uid, **fields)).creation


def failed_creation(store, code: str, *, retryable: bool, uid="alice", tokens=10) -> Creation:
    """Failed and refunded the way the pipeline's refund step leaves it."""
    creation = paid_creation(store, uid, tokens)
    store.refund(creation.id, 1, fail_with=CreationError(code=code, message=f"{code} happened", step="generate",
                                                         retryable=retryable))
    return store.get_creation(creation.id)


def kinds(store, uid: str, creation_id: str) -> list[str]:
    return [e.kind.value for e in store.ledger(uid) if e.creation_id == creation_id]


# --- start_attempt ---------------------------------------------------------------------------


def test_a_started_attempt_records_its_execution(store):
    creation = paid_creation(store)
    trigger = Trigger()
    started = start_attempt(store, trigger, creation)
    assert started.execution.endswith(f"/executions/{creation.id}-1") and started.recorded
    assert store.get_creation(creation.id).execution_ids == [started.execution]
    assert store.get_creation(creation.id).status is Status.PENDING
    assert kinds(store, "alice", creation.id) == ["debit"]


def test_a_trigger_failure_fails_and_refunds_the_attempt_in_one_transaction(store):
    creation = paid_creation(store, tokens=5)
    with pytest.raises(AttemptNotStarted) as raised:
        start_attempt(store, Trigger(TriggerFailed("the queue said 503")), creation,
                      failure_message="the generation could not be started", retryable_on_failure=False)
    assert raised.value.refunded is True
    after = store.get_creation(creation.id)
    assert after.status is Status.FAILED
    assert after.error == CreationError(code="TRIGGER_FAILED", message="the generation could not be started",
                                        step="trigger", retryable=False)
    assert after.charge == {"debited": {"1": True}, "refunded": {"1": True}}
    assert raised.value.creation.to_dict() == after.to_dict()
    assert store.balance("alice") == 5
    assert kinds(store, "alice", creation.id) == ["debit", "refund"]
    assert store.audit() == []


def test_an_unexpected_trigger_error_is_compensated_too(store):
    creation = paid_creation(store, tokens=3)
    with pytest.raises(AttemptNotStarted) as raised:
        start_attempt(store, Trigger(RuntimeError("boom")), creation)
    assert raised.value.cause == "boom"
    assert store.get_creation(creation.id).status is Status.FAILED
    assert store.balance("alice") == 3


# --- the replay rules -------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "retryable", "worth"), [
    ("STORAGE_ERROR", True, True),
    ("PROVIDER_UNAVAILABLE", True, True),
    ("UNKNOWN", True, True),
    ("CONTENT_POLICY", False, False),
    ("INVALID_REQUEST", False, False),
    ("INSUFFICIENT_TOKENS", False, False),
    ("TRIGGER_FAILED", False, False),     # the API told the user; they may have resubmitted
    ("TRIGGER_FAILED", True, True),       # a replay that could not start: nothing was charged
    ("CONTENT_POLICY", True, False),      # the code alone says it is final
    ("MEDIA_ERROR", False, False),
])
def test_worth_replaying_is_decided_by_the_code_and_retryable(code, retryable, worth):
    creation = make_creation(status=Status.FAILED,
                             error=CreationError(code=code, message="m", step="s", retryable=retryable))
    assert worth_replaying(creation)[0] is worth


def test_replay_of_a_retryable_failure_starts_the_next_attempt_and_records_who(store):
    failed = failed_creation(store, "STORAGE_ERROR", retryable=True)
    trigger = Trigger()
    done = replay(store, trigger, failed.id, actor="ops@example", reason="storage is back")
    assert trigger.started == [(failed.id, 2)]
    after = store.get_creation(failed.id)
    assert (after.status, after.attempt, after.error) == (Status.PENDING, 2, None)
    assert after.execution_ids == [done.execution]
    [action] = after.actions
    assert {k: action[k] for k in ("actor", "action", "reason", "attempt", "previousError")} == {
        "actor": "ops@example", "action": "replay", "reason": "storage is back", "attempt": 2,
        "previousError": "STORAGE_ERROR"}
    # Nothing is charged by the replay itself: the workflow's debit_check pays attempt 2.
    assert kinds(store, "alice", failed.id) == ["debit", "refund"]


@pytest.mark.parametrize("code", ["CONTENT_POLICY", "INVALID_REQUEST", "TRIGGER_FAILED"])
def test_a_final_failure_is_not_replayed_unless_forced_with_a_reason(store, code):
    failed = failed_creation(store, code, retryable=False)
    trigger = Trigger()
    with pytest.raises(NotWorthReplaying, match="not worth replaying"):
        replay(store, trigger, failed.id, actor="ops")
    with pytest.raises(ReasonRequired):
        replay(store, trigger, failed.id, actor="ops", force=True, reason="  ")
    assert trigger.started == []
    assert store.get_creation(failed.id).to_dict() == failed.to_dict()

    done = replay(store, trigger, failed.id, actor="ops", force=True, reason="the user asked, ticket 42")
    assert done.forced and trigger.started == [(failed.id, 2)]
    [action] = store.get_creation(failed.id).actions
    assert (action["action"], action["reason"], action["actor"]) == (
        "replay (forced)",
        "the user asked, ticket 42",
        "ops",
    )


def test_a_forced_replay_that_cannot_start_stays_not_retryable_and_charges_nothing(store):
    failed = failed_creation(store, "CONTENT_POLICY", retryable=False, tokens=4)
    with pytest.raises(AttemptNotStarted) as raised:
        replay(store, Trigger(TriggerFailed("down")), failed.id, actor="ops", force=True, reason="retry")
    after = store.get_creation(failed.id)
    assert (after.status, after.attempt) == (Status.FAILED, 2)
    assert (after.error.code, after.error.retryable) == ("TRIGGER_FAILED", False)
    assert raised.value.refunded is False      # attempt 2 was never paid
    assert store.balance("alice") == 4
    assert worth_replaying(after)[0] is False  # a bulk replay will not pick it up


def test_replay_refuses_unknown_running_and_already_replayed_creations(store):
    trigger = Trigger()
    with pytest.raises(NotFound):
        replay(store, trigger, "no-such-id", actor="ops")
    running = paid_creation(store)
    with pytest.raises(NotReplayable, match="is pending"):
        replay(store, trigger, running.id, actor="ops")
    failed = failed_creation(store, "STORAGE_ERROR", retryable=True)
    replay(store, trigger, failed.id, actor="ops", expected_attempt=1)
    with pytest.raises(NotReplayable):
        replay(store, trigger, failed.id, actor="ops", expected_attempt=1)
    assert trigger.started == [(failed.id, 2)]


def test_the_preview_says_why_what_it_charges_and_what_it_skips(store):
    failed = failed_creation(store, "STORAGE_ERROR", retryable=True, tokens=7)
    preview = replay_preview(failed, store=store)
    assert (preview.worth, preview.charge, preview.balance, preview.next_attempt) == (True, 1, 7, 2)
    assert [s.will for s in preview.steps] == ["run"] * 6   # no checkpoints yet
    final = failed_creation(store, "CONTENT_POLICY", retryable=False)
    blocked = replay_preview(final, store=store)
    assert not blocked.worth and blocked.needs_force and "CONTENT_POLICY" in blocked.reason
    draft = paid_creation(store)
    assert replay_preview(draft).replayable is False


def test_actions_survive_every_later_write(store):
    failed = failed_creation(store, "UNKNOWN", retryable=True)
    replay(store, Trigger(), failed.id, actor="ops", reason="first")
    store.update_creation(failed.id, lambda c: (c.transition(Status.PROCESSING), c)[1])
    after = store.get_creation(failed.id)
    assert [a["reason"] for a in after.actions] == ["first"]
    assert Creation.from_dict(after.to_dict()).actions == after.actions


# --- search_creations ----------------------------------------------------------------------------


def test_search_finds_any_users_creations_newest_first_with_filters_and_pages(store):
    made = []
    for uid in ["ann", "bob", "ann", "cy", "ann"]:
        made.append(paid_creation(store, uid=uid, tokens=5))
    failed = failed_creation(store, "STORAGE_ERROR", retryable=True, uid="bob")
    everyone, token = store.search_creations(limit=100)
    ids = [c.id for c in everyone]
    expected = sorted([*made, failed], key=lambda c: (c.created_at, c.id), reverse=True)
    assert ids == [c.id for c in expected] and token is None

    anns, _ = store.search_creations(uid="ann", limit=100)
    assert {c.id for c in anns} == {made[0].id, made[2].id, made[4].id}
    failures, _ = store.search_creations(statuses=[Status.FAILED], limit=100)
    assert [c.id for c in failures] == [failed.id]
    assert store.search_creations(statuses=[], limit=10) == ([], None)

    first, token = store.search_creations(limit=2)
    second, token2 = store.search_creations(limit=2, page_token=token)
    third, token3 = store.search_creations(limit=2, page_token=token2)
    assert [c.id for c in first + second + third] == ids and token3 is None

    middle = expected[2].created_at
    newer, _ = store.search_creations(created_from=middle, limit=100)
    assert [c.id for c in newer] == ids[:3]
    older, _ = store.search_creations(created_before=middle, limit=100)
    assert [c.id for c in older] == ids[3:]
    assert store.search_creations(created_from=middle + timedelta(days=1), limit=10) == ([], None)

    with pytest.raises(InvalidOptions):
        store.search_creations(limit=0)
    with pytest.raises(InvalidOptions):
        store.search_creations(page_token="not-a-token")


def test_refund_entries_of_the_money_path_are_the_pipelines(store):
    creation = paid_creation(store, tokens=2)
    with pytest.raises(AttemptNotStarted):
        start_attempt(store, Trigger(TriggerFailed("x")), creation)
    assert [e.kind for e in store.ledger("alice") if e.creation_id == creation.id] == [
        EntryKind.DEBIT,
        EntryKind.REFUND,
    ]
    assert [e.id for e in store.ledger("alice") if e.creation_id == creation.id] == [
        f"{creation.id}:1:debit", f"{creation.id}:1:refund"]


def test_every_search_query_has_its_composite_index():
    import json
    from datetime import datetime

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    from creations.store.firestore import FirestoreStore
    from tests.store.test_indexes import INDEXES, covered, shape

    offline = FirestoreStore(firestore.Client(project="index-check", credentials=AnonymousCredentials()))
    indexes = json.loads(INDEXES.read_text())["indexes"]
    now = datetime.now(UTC)
    queries = {
        "everything": offline.search_query(),
        "by status": offline.search_query(["failed"]),
        "by status and time": offline.search_query(["failed", "draft"], None, now - timedelta(hours=1), now),
        "by user": offline.search_query(None, "u"),
        "by user and status": offline.search_query(["failed"], "u"),
        "by user, status and time": offline.search_query(["failed"], "u", now),
    }
    missing = [name for name, q in queries.items() if not covered(*shape(q), indexes)]
    assert not missing, f"firestore.indexes.json lacks an index for: {missing}"
