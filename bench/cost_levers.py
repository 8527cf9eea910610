"""What each lever of the design would save, by re-running the cost model with it changed.

    .venv/bin/python bench/cost_levers.py [--images 5000] [--videos 1000]

Measures the creation scenarios once (the local stack on the Firestore emulator, as `phoenix
cost` does), then prices the month at the given volume and at 100× that, for the deployment as
it is and with one lever changed at a time: the polling policy of jobs.run, the light jobs' size,
merging the light steps into fewer jobs, and a faster job start. Prints the month's total, the
Workflows and Cloud Run lines, and the latency per type, side by side. Figures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.costs import cli, measure, model, plan  # noqa: E402
from devstack.costs.model import Assumptions, JobSize  # noqa: E402

LIGHT = ("creation-debit-check", "creation-mark-processing", "creation-finalize", "creation-refund")
MERGED_AWAY = ("creation-mark-processing", "creation-upload", "creation-finalize")  # folded into their neighbours


def merged(profiles, measured):
    """Debit + mark processing as one job, thumbnail + upload + finalize as one: three job calls fewer
    per happy creation, each taking its billable steps (counted from the executions) with it."""
    out = {}
    for name, profile in profiles.items():
        run = measured.runs[name]
        per_call = run.job_call_steps / len(run.jobs)
        kept = tuple(j for j in profile.jobs if j.job not in MERGED_AWAY)
        gone = len(profile.jobs) - len(kept)
        out[name] = dataclasses.replace(profile, jobs=kept,
                                        workflow_steps=round(profile.workflow_steps - gone * per_call))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--videos", type=int, default=1000)
    args = p.parse_args()
    measured = measure.measure()
    profiles = cli.profiles_from(measured)
    sizes = plan.read()
    prices = model.load_prices()
    base = Assumptions(failure_rate=0.02)
    policy = measured.polling_policy
    small = {job: (JobSize(0.5, 0.5, s.task_timeout_seconds, s.secrets) if job in LIGHT else s)
             for job, s in sizes.items()}
    levers = [
        ("as deployed (polling 2 s x1.5 <= 15 s)", profiles, sizes, policy, base),
        (
            "polling: Google's default 1 s x1.25 <= 60 s",
            profiles,
            sizes,
            {"initial_delay": 1.0, "multiplier": 1.25, "max_delay": 60.0},
            base,
        ),
        (
            "polling: 5 s x2 <= 60 s",
            profiles,
            sizes,
            {"initial_delay": 5.0, "multiplier": 2.0, "max_delay": 60.0},
            base,
        ),
        ("light jobs at 0.5 vCPU / 512 MiB", profiles, small, policy, base),
        ("light steps merged: 3 jobs a creation fewer", merged(profiles, measured), sizes, policy, base),
        ("job start 5 s instead of 10 s", profiles, sizes, policy, dataclasses.replace(base, job_start_seconds=5)),
    ]
    for scale in (1, 100):
        volumes = {"image": args.images * scale, "video": args.videos * scale}
        print(f"\n{volumes['image']:,} images + {volumes['video']:,} videos a month, 2% failing")
        print(f"  {'lever':<46} {'month':>11} {'Workflows':>11} {'Cloud Run':>11} {'image s':>8} {'video s':>8}")
        for label, prof, sz, pol, a in levers:
            r = cli.report(prof, sz, pol, a, prices, volumes)
            lines, lat = r["month"]["lines"], r["per_creation"]
            print(f"  {label:<46} ${r['month']['total']:>10,.2f} ${lines['Workflows steps']:>10,.2f} "
                  f"${lines['Cloud Run jobs']:>10,.2f} {lat['image']['latency_seconds']['total']:>8.0f} "
                  f"{lat['video']['latency_seconds']['total']:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
