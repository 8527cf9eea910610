"""On production settings with every step job a process of its own (as a Cloud Run container):
the jobs reach Firestore through FIRESTORE_EMULATOR_HOST in their environment, and a job killed
mid-run is retried without charging twice."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.parity.conftest import parity_stack
from tests.support.firestore import firestore_emulator  # noqa: F401
from tests.support.stack import Stack, job_runs, unique

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def parity(tmp_path_factory, firestore_emulator) -> Iterator[Stack]:  # noqa: F811
    with parity_stack(tmp_path_factory.mktemp("parity-processes"), firestore_emulator, "process") as stack:
        yield stack


def test_a_generate_job_killed_mid_run_is_retried_and_paid_once(stack: Stack):
    user = stack.new_user(3)
    creation_id = stack.submit(user, unique("a long exposure of city lights #slow"))
    pid, execution = stack.job_process("generate", creation_id)
    stack.wait_for_log(execution, "calling the generator")
    stack.kill(pid)                     # the container dies without recording anything

    done = stack.finish(creation_id)

    assert done.state == "SUCCEEDED", done.execution.get("error")
    assert [r["state"] for r in job_runs(done.entries, "generate_media")] == ["STATE_FAILED", "STATE_SUCCEEDED"]
    assert done.creation["status"] == "draft"
    assert [e.kind.value for e in stack.store.ledger(user.uid) if e.creation_id == creation_id] == ["debit"]
    assert stack.balance(user) == 3 - stack.settings.cost_image
