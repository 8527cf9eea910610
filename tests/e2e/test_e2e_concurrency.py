"""Many creations at once, through the API: every one ends terminal and the books are exact."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.stack import Stack

pytestmark = pytest.mark.slow

# (users, creations per user, of which #blocked): in-process 50 creations, process mode 8 (each
# step is a Python process start there; 2 cores). A user may have 5 creations running at once.
SHAPES = {"inprocess": (10, 5, 1), "process": (4, 2, 1)}
BLOCKED_USERS = 3          # the first users each send one #blocked prompt


def test_concurrent_creations_all_end_terminal_with_an_exact_ledger(pipeline: Stack):
    users_count, per_user, blocked_per_user = SHAPES[pipeline.mode]
    users = [pipeline.new_user(10) for _ in range(users_count)]
    requests = []
    for u, user in enumerate(users):
        for n in range(per_user):
            blocked = u < BLOCKED_USERS and n < blocked_per_user
            tag = " #blocked" if blocked else ""
            requests.append((user, f"tile {u}.{n} of a mosaic{tag}", blocked))

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(lambda r: pipeline.submit(r[0], r[1]), requests))
    executions = [pipeline.wait(pipeline.execution_name(cid)) for cid in ids]

    cost = pipeline.settings.cost_image
    drafts: dict[str, int] = {user.uid: 0 for user in users}
    for (user, _, blocked), cid, execution in zip(requests, ids, executions):
        out = pipeline.creation_out(user, cid)
        record = pipeline.store.get_creation(cid)
        if blocked:
            assert execution["state"] == "FAILED"
            assert out["status"] == "failed" and out["error"]["code"] == "CONTENT_POLICY"
            assert record.charge == {"debited": {"1": True}, "refunded": {"1": True}}
            assert pipeline.refunds(user, cid) == 1
        else:
            assert execution["state"] == "SUCCEEDED", (cid, execution.get("error"))
            assert out["status"] == "draft"
            assert pipeline.storage.head(record.media["key"]).sha256 == record.media["sha256"]
            assert record.charge == {"debited": {"1": True}, "refunded": {}}
            drafts[user.uid] += 1
    assert sum(drafts.values()) == len(requests) - min(BLOCKED_USERS, users_count) * blocked_per_user
    for user in users:
        assert pipeline.balance(user) == user.granted - cost * drafts[user.uid]
    assert pipeline.store.audit() == []
