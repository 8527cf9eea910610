"""A crash of the whole local stack costs time, not the user's creation: the stack is SIGKILLed
(every process of it) while a creation's generate job runs; the next start of the stack on the
same data dir runs the interrupted execution again from its start, and the creation ends as a
draft, paid for once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devstack.stack import ROOT, LocalStack, StackConfig
from localcloud.workflows import VirtualClock

pytestmark = pytest.mark.slow

USER = "restart-user"
GRANT = 5

# Runs in a process of its own: starts the stack, submits a creation through the API, prints the
# ids once its generate job is running (#slow: the local generator takes 3 s), then waits to die.
CRASHING_STACK = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import httpx
    from api.auth import make_local_token
    from devstack.stack import LocalStack, StackConfig

    stack = LocalStack(StackConfig(data_dir=Path(sys.argv[1]), port=0, jobs_mode="inprocess")).start()
    stack.store.grant({user!r}, {grant}, "test:welcome-grant")
    token = make_local_token({user!r}, stack.settings.local_auth_secret)
    answer = httpx.post(stack.urls["api"] + "/v1/creations", timeout=30,
                        json={{"type": "image", "prompt": "a slow tide under the moon #slow"}},
                        headers={{"Authorization": "Bearer " + token, "Idempotency-Key": "restart-1"}})
    creation_id = answer.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        record = stack.store.get_creation(creation_id)
        names = record.execution_ids if record else []
        running = names and any(e["routine"] == "main" and e["step"] == "generate_media"
                                and e["state"] == "STATE_IN_PROGRESS"
                                for e in stack.engine.step_entries(names[-1]))
        if running:
            stack.engine.db.flush()
            print("generating:", json.dumps({{"creation": creation_id, "execution": names[-1]}}), flush=True)
            break
        time.sleep(0.05)
    time.sleep(600)
""").format(user=USER, grant=GRANT)


def crash_mid_generation(data_dir: Path) -> tuple[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_STACK, str(data_dir)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        ids = None
        for line in proc.stdout:   # the in-process jobs log to stdout too
            if line.startswith("generating: "):
                ids = json.loads(line.removeprefix("generating: "))
                break
        assert ids, "the stack did not start the creation's generate job"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the whole stack: API, engine, jobs, S3 stand-in
        proc.wait(30)
    return ids["creation"], ids["execution"]


def test_a_creation_interrupted_by_a_crash_of_the_stack_is_finished_after_restart(tmp_path: Path):
    creation_id, execution = crash_mid_generation(tmp_path)

    config = StackConfig(data_dir=tmp_path, port=0, jobs_mode="inprocess", clock=VirtualClock())
    with LocalStack(config) as stack:
        assert stack.resumed == [execution]
        finished = stack.engine.wait(execution, timeout=120)

        assert finished["state"] == "SUCCEEDED", finished.get("error")
        creation = stack.store.get_creation(creation_id)
        assert creation.status.value == "draft" and creation.execution_ids == [execution]
        assert creation.media and stack.storage.head(creation.media["key"]) is not None
        # Paid once, refunded never: the re-run's debit check found attempt 1 paid.
        ledger = [(entry.kind.value, entry.amount) for entry in stack.store.ledger(USER)]
        assert ledger == [("grant", GRANT), ("debit", 1)]
        assert stack.store.balance(USER) == GRANT - 1
        assert stack.store.audit() == []
        # The step history keeps the interrupted run (its generate cancelled) before the re-run.
        generates = [e["state"] for e in stack.engine.step_entries(execution)
                     if e["routine"] == "main" and e["step"] == "generate_media"
                     and e["stepType"] == "STEP_SUBWORKFLOW_CALL"]
        assert generates == ["STATE_CANCELLED", "STATE_SUCCEEDED"]
        notes = [line.get("textPayload", "") for line in stack.engine.logs(execution)]
        assert any("runs again from its first step" in note for note in notes)
