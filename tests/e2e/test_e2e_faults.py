"""The local stack's fault switches, each as the workflow meets it: a job that fails once is
retried, one that fails for good is refunded once, one that crashes after its work or runs twice
changes nothing more, and a job that finds the store or the generation service down is retried."""
from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.faults import Fault, FaultSpecError
from devstack.stack import ROOT
from tests.support.stack import INPROCESS, Stack, job_runs, marker

pytestmark = pytest.mark.slow
in_process = pytest.mark.parametrize("pipeline", [INPROCESS], indirect=True)


def states(outcome, step: str) -> list[str]:
    return [r["state"] for r in job_runs(outcome.entries, step)]


@in_process
@pytest.mark.parametrize("kind, job, step", [
    ("fail", "generate", "generate_media"),
    ("crash_after", "upload", "upload_media"),
    ("store_down", "mark-processing", "mark_processing"),
    ("generation_down", "generate", "generate_media"),
], ids=["fails-once", "crashes-after-its-work", "store-down", "generation-down"])
def test_a_job_that_misbehaves_once_is_run_again_and_the_draft_is_paid_once(pipeline: Stack, kind, job, step):
    user = pipeline.new_user(3)
    tag = marker()
    with pipeline.fault(kind, job, marker=tag, times=1):
        creation_id = pipeline.submit(user, f"a lantern in the snow {tag}")
        outcome = pipeline.finish(creation_id)

    assert outcome.state == "SUCCEEDED", outcome.execution.get("error")
    assert states(outcome, step) == ["STATE_FAILED", "STATE_SUCCEEDED"]
    assert outcome.creation["status"] == "draft"
    assert pipeline.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit"]
    assert pipeline.balance(user) == user.granted - pipeline.settings.cost_image


@in_process
def test_a_job_that_fails_for_good_exhausts_its_retries_and_is_refunded_once(pipeline: Stack):
    user = pipeline.new_user(3)
    tag = marker()
    with pipeline.fault("fail", "thumbnail", marker=tag):
        creation_id = pipeline.submit(user, f"a lantern in the rain {tag}")
        outcome = pipeline.finish(creation_id)

    assert outcome.state == "FAILED"
    assert set(states(outcome, "make_thumbnail")) == {"STATE_FAILED"} and len(states(outcome, "make_thumbnail")) > 1
    assert outcome.creation["status"] == "failed"
    assert pipeline.refunds(user, creation_id) == 1
    assert pipeline.balance(user) == user.granted


@in_process
def test_every_job_run_twice_makes_one_draft_paid_once(pipeline: Stack):
    user = pipeline.new_user(3)
    tag = marker()
    with pipeline.fault("twice", marker=tag):
        creation_id = pipeline.submit(user, f"a lantern at dusk {tag}")
        outcome = pipeline.finish(creation_id)

    assert outcome.state == "SUCCEEDED", outcome.execution.get("error")
    assert pipeline.faults.injected["twice"] >= 6
    assert outcome.creation["status"] == "draft"
    assert pipeline.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit"]
    assert len(pipeline.stored_keys(f"media/{user.uid}/{creation_id}/")) == 2


@in_process
def test_a_refund_that_crashes_after_its_work_is_retried_and_refunds_once(pipeline: Stack):
    user = pipeline.new_user(3)
    tag = marker()
    with pipeline.fault("crash_after", "refund", marker=tag, times=1):
        creation_id = pipeline.submit(user, f"a lantern #blocked {tag}")
        outcome = pipeline.finish(creation_id)

    assert outcome.state == "FAILED"
    assert states(outcome, "refund_tokens") == ["STATE_FAILED", "STATE_SUCCEEDED"]
    assert pipeline.ledger_ids(user, creation_id) == [f"{creation_id}:1:debit", f"{creation_id}:1:refund"]
    assert pipeline.balance(user) == user.granted


def test_a_fault_switch_that_cannot_be_understood_is_refused_with_the_reason():
    parsed = Fault.parse("upload:storage_down@[tag]")
    assert (parsed.job, parsed.kind, parsed.times, parsed.marker) == ("upload", "storage_down", None, "[tag]")
    for spec, reason in [("upload", "JOB:KIND"), ("upload:melt", "unknown fault kind"),
                         ("upload:fail:x", "whole number"), ("upload:fail:0", "1 or more")]:
        with pytest.raises(FaultSpecError, match=reason):
            Fault.parse(spec)
    done = subprocess.run([sys.executable, "-m", "phoenix.cli", "dev", "--fault", "upload:melt"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown fault kind 'melt'" in done.stderr
