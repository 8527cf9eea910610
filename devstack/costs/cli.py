"""`phoenix cost`: what a creation costs and how long it takes on Google Cloud, from real executions.

    phoenix cost [--images 5000] [--videos 1000] [--job-start-seconds 10] [--failure-rate 0.02]
                 [--image-seconds 10] [--video-seconds 90] [--job-runs-per-minute 60] [--json]

Runs the four creation scenarios (image, video, content-policy refusal, one transient retry) on
the local stack on production settings (Firestore emulator, Cloud Tasks), counts what they did, prices it with the job
sizes deploy.sh deploys and the list prices in devstack/costs/prices.toml, and prints the cost per
creation and per month beside the replaced system, the latency a user sees, and which limit caps
throughput first. Estimates, not a quote. Exit status: 0 printed; 2 bad arguments, or what the
model needs (the emulator, deploy.sh) is missing.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any

from devstack.costs import model
from devstack.costs.model import Assumptions, JobRun, Profile, Usage

HAPPY = {"image": "image", "video": "video"}
FAILED = "content policy"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="phoenix cost", description=__doc__.split("\n\n")[2].replace("\n", " "))
    p.add_argument("--images", type=_count, default=5000, help="images a month (default 5000)")
    p.add_argument("--videos", type=_count, default=1000, help="videos a month (default 1000)")
    p.add_argument(
        "--job-start-seconds",
        type=_seconds,
        default=10.0,
        help="seconds from a job run request to its container running (default 10; public measurements 8-50+)",
    )
    p.add_argument("--image-seconds", type=_seconds, default=10.0, help="Imagen generation time (default 10)")
    p.add_argument("--video-seconds", type=_seconds, default=90.0, help="Veo generation time (default 90)")
    p.add_argument("--failure-rate", type=_share, default=0.02,
                   help="share of creations that fail and are refunded, 0-1 (default 0.02)")
    p.add_argument("--job-runs-per-minute", type=_positive, default=60,
                   help="the region's quota on Cloud Run job run requests per minute (default 60; undocumented)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of creations") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} creations: give 0 or more")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError("give 1 or more")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value:g} s: give 0 or more seconds")
    return value


def _share(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value:g} is not a share between 0 and 1 (2% is 0.02)")
    return value


# --- from measurement to profiles --------------------------------------------------------------


def profiles_from(measurement) -> dict[str, Profile]:
    out = {}
    for name, run in measurement.runs.items():
        jobs = tuple(JobRun(c.job, c.seconds) for c in run.jobs)
        out[name] = Profile(name=name, type=run.scenario.type, workflow_steps=run.workflow_steps, jobs=jobs,
                            firestore_reads=run.firestore["reads"], firestore_writes=run.firestore["writes"],
                            executions=run.executions)
    return out


def no_free_tier(prices: dict[str, Any]) -> dict[str, Any]:
    """The prices with every free tier at zero: the marginal cost of one more creation."""
    out = copy.deepcopy(prices)
    for section in out.values():
        if isinstance(section, dict):
            for key in section:
                if key.startswith("free_"):
                    section[key] = 0
    return out


def report(profiles: dict[str, Profile], sizes, policy, a: Assumptions, prices, volumes) -> dict[str, Any]:
    a.check()
    marginal = no_free_tier(prices)
    per: dict[str, Any] = {}
    usages: dict[str, Usage] = {}
    for name, profile in profiles.items():
        u = model.usage_of(profile, sizes, policy, a, prices)
        usages[name] = u
        per[name] = {
            "type": profile.type,
            "workflow_steps": profile.workflow_steps,
            "connector_polls": round(u.steps - profile.workflow_steps),
            "job_runs": int(u.job_runs),
            "vcpu_seconds": round(u.vcpu_seconds, 2),
            "gib_seconds": round(u.gib_seconds, 2),
            "firestore": {"reads": profile.firestore_reads, "writes": profile.firestore_writes},
            "tasks_operations": u.tasks_operations,
            "secret_accesses": u.secret_accesses,
            "cost_usd": model.price_month(u, marginal, fixed_secret_versions=0, scheduler_jobs=0).lines,
            "latency_seconds": model.latency(profile, policy, a),
        }
        per[name]["cost_usd_total"] = sum(per[name]["cost_usd"].values())
    happy = {kind: usages[scenario] for kind, scenario in HAPPY.items()}

    def month_bill(vols: dict[str, int]) -> model.Bill:
        return model.price_month(model.month_usage(vols, happy, usages[FAILED], a.failure_rate), prices)

    bill = month_bill(volumes)
    replaced = model.replaced_month(volumes, prices)
    total = sum(volumes.values())
    mix = {k: v / total for k, v in volumes.items()} if total else {"image": 5 / 6, "video": 1 / 6}
    lat = {kind: per[scenario]["latency_seconds"]["total"] for kind, scenario in HAPPY.items()}
    caps = model.capacity({k: profiles[s] for k, s in HAPPY.items()}, volumes if total else {"image": 5, "video": 1},
                          lat, a)
    # The replaced worker was always warm: the generation, then a thumbnail and an upload that take
    # it well under a second (bench/steps_bench.py, in-process); no job starts, no polls.
    replaced_latency = {kind: model.generation_seconds(profiles[s], a) for kind, s in HAPPY.items()}
    return {
        "estimate": "list prices; estimates, not a quote",
        "prices_checked": prices.get("checked"),
        "volumes": volumes,
        "assumptions": a.__dict__,
        "polling_policy": policy,
        "per_creation": per,
        "month": {"lines": bill.lines, "total": bill.total},
        "replaced": {**replaced, "latency_seconds": replaced_latency},
        "break_even_creations_per_month": model.break_even(lambda v: month_bill(v).total, replaced["fixed"], mix=mix),
        "capacity_per_minute": caps,
        "binds_first": min(caps, key=caps.get),
        "average_demand_per_minute": total / (model.DAYS_PER_MONTH * 24 * 60),
    }


# --- printing ----------------------------------------------------------------------------------


def render(r: dict[str, Any]) -> str:
    per = r["per_creation"]
    names = list(per)
    out = [f"phoenix cost: estimates from list prices (devstack/costs/prices.toml, checked {r['prices_checked']}); "
           "not a quote",
           f"counted from executions of workflows/creation.yaml on the local engine; job start "
           f"{r['assumptions']['job_start_seconds']:g} s, Imagen {r['assumptions']['image_seconds']:g} s, "
           f"Veo {r['assumptions']['video_seconds']:g} s", ""]
    width = max(len(n) for n in names) + 2
    out.append("per creation".ljust(24) + "".join(n.rjust(width) for n in names))

    def row(label: str, values: list[str]) -> None:
        out.append(label.ljust(24) + "".join(v.rjust(width) for v in values))

    row("Workflows steps", [f"{per[n]['workflow_steps']}+{per[n]['connector_polls']} polls" for n in names])
    row("Cloud Run job runs", [str(per[n]["job_runs"]) for n in names])
    row("vCPU-s / GiB-s", [f"{per[n]['vcpu_seconds']:.1f}/{per[n]['gib_seconds']:.1f}" for n in names])
    row("Firestore reads/writes", [f"{per[n]['firestore']['reads']}/{per[n]['firestore']['writes']}" for n in names])
    row("Cloud Tasks operations", [f"{per[n]['tasks_operations']:g}" for n in names])
    row("secret accesses", [f"{per[n]['secret_accesses']:g}" for n in names])
    row("cost, no free tier", [f"${per[n]['cost_usd_total']:.5f}" for n in names])
    row("latency (s)", [f"{per[n]['latency_seconds']['total']:.0f}" for n in names])
    row("  of which job starts", [f"{per[n]['latency_seconds']['job_starts']:.0f}" for n in names])
    row("  work", [f"{per[n]['latency_seconds']['work']:.0f}" for n in names])
    row("  poll lag", [f"{per[n]['latency_seconds']['poll_lag']:.0f}" for n in names])

    v = r["volumes"]
    out += ["", f"a month of {v['image']:,} images + {v['video']:,} videos, "
                f"{r['assumptions']['failure_rate']:.0%} failing (free tiers applied)"]
    for service, usd in r["month"]["lines"].items():
        out.append(f"  {service:<22} ${usd:>10,.2f}")
    out.append(f"  {'total':<22} ${r['month']['total']:>10,.2f}")
    rep = r["replaced"]
    out += ["", f"replaced system: ${rep['fixed']:,.2f} a month fixed (Redis + VPC connector, before any work); "
                f"its own projection of this one at this volume: ${rep['projection']:,.2f} (job seconds only)"]
    be = r["break_even_creations_per_month"]
    out.append(
        f"break-even: this costs less than the replaced system's fixed bill below {be:,} creations a month at this mix"
        if be
        else "break-even: not reached below 10^9 creations a month"
    )
    out.append("latency a user sees, against the replaced system's always-warm worker: "
               + ", ".join(f"{kind} {per[HAPPY[kind]]['latency_seconds']['total']:.0f} s vs "
                           f"{rep['latency_seconds'][kind]:.0f} s" for kind in HAPPY))
    out += ["", "capacity (creations per minute at this mix):"]
    for limit, value in sorted(r["capacity_per_minute"].items(), key=lambda kv: kv[1]):
        out.append(f"  {value:>10,.1f}  {limit}")
    demand, cap = r["average_demand_per_minute"], r["capacity_per_minute"][r["binds_first"]]
    out.append(
        f"binds first: {r['binds_first']}; this volume averages {demand:,.1f} creations a minute"
        + (
            " (over it even on average: raise the quota)"
            if demand > cap
            else f" ({demand / cap:.0%} of it: peaks above it are throttled, "
            "jobs.run answers 429 and the connector retries)"
        )
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from devstack.costs import measure, plan
    from localcloud.firestore_emulator import EmulatorError

    a = Assumptions(job_start_seconds=args.job_start_seconds, image_seconds=args.image_seconds,
                    video_seconds=args.video_seconds, failure_rate=args.failure_rate,
                    job_runs_per_minute=args.job_runs_per_minute)
    try:
        sizes = plan.read()
        measured = measure.measure()
    except (plan.PlanError, EmulatorError) as exc:
        print(f"phoenix cost: {exc}", file=sys.stderr)
        return 2
    r = report(profiles_from(measured), sizes, measured.polling_policy, a, model.load_prices(),
               {"image": args.images, "video": args.videos})
    print(json.dumps(r, indent=2) if args.json else render(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
