"""Chaos: hundreds of creations through the local stack with random faults in their step jobs,
duplicate submissions, and the whole stack killed (SIGKILL) or stopped (Ctrl-C) and restarted
mid-load. Whatever happened, the money holds (tests.support.chaos lists the invariants).

The seed is printed; rerun one with PHOENIX_CHAOS_SEED=<seed>. PHOENIX_CHAOS_CREATIONS and
PHOENIX_CHAOS_KILLS make the run bigger or smaller.
"""
from __future__ import annotations

import os
import random

import pytest

from tests.support.chaos import run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_random_faults_kills_and_duplicates_leave_every_creation_settled_and_paid_exactly_once(tmp_path):
    seed = int(os.environ.get("PHOENIX_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    creations = int(os.environ.get("PHOENIX_CHAOS_CREATIONS", "200"))
    kills = int(os.environ.get("PHOENIX_CHAOS_KILLS", "2"))
    print(f"chaos seed {seed} (rerun with PHOENIX_CHAOS_SEED={seed})")

    report = run_chaos(tmp_path / "stack", seed=seed, creations=creations, kills=kills)

    print("\n".join(report.lines()))
    assert report.creations == creations, f"seed {seed}: {report.creations} creations stored, {creations} sent"
    assert report.violations == [], f"seed {seed}:\n" + "\n".join(report.violations)
    # The run did what it says: faults met, the stack killed, both endings seen.
    assert sum(report.kills.values()) == kills
    assert report.drafts > 0 and report.failed > 0
