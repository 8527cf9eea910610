"""Production parity against the embedded configuration, side by side, in one run.

    .venv/bin/python bench/parity_bench.py [--creations 20] [--sequential 5] [--jobs inprocess|process]

Runs the local stack twice with instant generation and the real clock: the SQLite configuration
(`phoenix dev`: embedded SQLite store, the API starting executions directly) and the parity
configuration (`phoenix dev --store firestore --trigger tasks`: Google's Firestore emulator as the
store, the workflow's Firestore connector forwarded to the emulator's REST API, the API enqueuing
a Cloud Tasks task that the local Cloud Tasks delivers to the Executions API). Each run makes one
warm-up creation, then K creations one after another (the creation time with nothing else in
flight), then N image creations at once (from N/5 users, under the per-user limit) and prints:

- creation time one at a time, p50 and max: from the POST to the end of its execution;
- throughput: creations per second, first POST to the end of the last execution;
- creation time, p50 / p99: from a creation's POST to the end of its execution (the draft);
- Firestore operations per creation (parity run), counted from the emulator's traffic:
  * the adapter's (API and step jobs, through google-cloud-firestore over gRPC): every RPC passes
    through a metering proxy in front of the emulator (localcloud/firestore_meter.py), which
    counts billable document reads (each document a lookup or query returns, one per empty
    query) and writes (each write a commit applied);
  * the workflow's (the Firestore connector, REST): every request forwarded to the emulator by
    the connector binding (devstack/firestore_connector.py), one read per documents.get.
  Totals are over the N concurrent creations only (after the users' grants, the warm-up and the
  lone creations), divided by N.

Step jobs run in-process by default (`--jobs process` runs each as a subprocess, as a container:
slower, and the per-creation Firestore figures are the same since every process goes through the
proxy). Prints figures only; asserts nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from api.auth import make_local_token  # noqa: E402
from devstack.stack import WORKFLOW_ID, LocalStack, StackConfig  # noqa: E402
from localcloud.firestore_emulator import EmulatorNotInstalled  # noqa: E402

PER_USER = 5


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run(label: str, count: int, sequential: int, jobs: str, **config) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"parity-bench-{label}-") as tmp:
        stack = LocalStack(StackConfig(data_dir=Path(tmp), port=0, jobs_mode=jobs, instant_generation=True,
                                       extra_settings={"max_active_per_user": PER_USER}, **config))
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            stack.start()
            try:
                return measure(stack, count, sequential)
            finally:
                stack.stop()


def measure(stack: LocalStack, count: int, sequential: int) -> dict:
    clients = []
    for _ in range((count + PER_USER - 1) // PER_USER + 1):
        uid = f"bench-{uuid.uuid4().hex[:10]}"
        stack.store.grant(uid, 1000, f"grant:{uid}")
        token = make_local_token(uid, stack.settings.local_auth_secret)
        clients.append(httpx.Client(base_url=stack.urls["api"], timeout=300.0,
                                    headers={"Authorization": f"Bearer {token}"}))
    try:
        def post(job: tuple[httpx.Client, str]) -> tuple[str | None, float, float, str]:
            """(creation id or None, when posted, how long the POST took, its status)."""
            client, prompt = job
            at = time.time()
            try:
                response = client.post("/v1/creations", json={"type": "image", "prompt": prompt})
            except httpx.HTTPError as exc:
                return None, at, time.time() - at, type(exc).__name__
            took = time.time() - at
            if response.status_code != 202:
                return None, at, took, f"{response.status_code} {response.json().get('error', {}).get('code')}"
            return response.json()["id"], at, took, "202"

        warm = post((clients[-1], "warm-up"))[0]
        if warm is None:
            raise SystemExit("the warm-up creation was refused")
        wait_all(stack, [warm])
        meter = stack.firestore_meter
        connector = stack.firestore_connector
        lone_adapter = meter.snapshot() if meter else {}
        lone_connector = dict(connector.counts) if connector else {}

        # One at a time first: the creation time with nothing else in flight.
        alone = []
        for i in range(sequential):
            cid, at, _, status = post((clients[-1], f"parity bench alone {i}"))
            if cid is None:
                raise SystemExit(f"a lone creation was refused: {status}")
            alone.append(ts(wait_all(stack, [cid])[cid]["endTime"]) - at)
        if meter:
            lone_adapter = _delta(meter.snapshot(), lone_adapter)
            lone_connector = _delta(connector.counts, lone_connector)
        adapter_before = meter.snapshot() if meter else {}
        connector_before = dict(connector.counts) if connector else {}

        jobs = [(clients[i // PER_USER], f"parity bench {i}") for i in range(count)]
        started = time.time()
        with ThreadPoolExecutor(max_workers=32) as pool:
            answers = list(pool.map(post, jobs))
        submitted = [(cid, at) for cid, at, _, _ in answers if cid is not None]
        executions = wait_all(stack, [cid for cid, _ in submitted])
        ends = {cid: ts(e["endTime"]) for cid, e in executions.items()}
        states = [e["state"] for e in executions.values()]
        times = [ends[cid] - at for cid, at in submitted]
        posts = [took for _, _, took, _ in answers]
        refused: dict[str, int] = {}
        for _, _, _, status in answers:
            if status != "202":
                refused[status] = refused.get(status, 0) + 1
        figures = {
            "count": count,
            "succeeded": states.count("SUCCEEDED"),
            "refused": refused,
            "rate": states.count("SUCCEEDED") / (max(ends.values(), default=started + 1) - started),
            "p50": percentile(times, 50),
            "p99": percentile(times, 99),
            "post_p50": percentile(posts, 50),
            "post_p99": percentile(posts, 99),
            "audit": stack.store.audit(),
            "alone_p50": percentile(alone, 50),
            "alone_max": max(alone, default=float("nan")),
        }
        if meter:
            figures["firestore"] = {"adapter": _delta(meter.snapshot(), adapter_before),
                                    "workflow": _delta(connector.counts, connector_before),
                                    "lone_adapter": lone_adapter, "lone_workflow": lone_connector}
        return figures
    finally:
        for client in clients:
            client.close()


def _delta(after, before) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in dict(after).items()}


def wait_all(stack: LocalStack, creation_ids: list[str], timeout: float = 600) -> dict[str, dict]:
    """creation id -> its ended execution (found by label: the tasks trigger records no name)."""
    deadline = time.monotonic() + timeout
    wanted = set(creation_ids)
    found: dict[str, str] = {}
    while len(found) < len(wanted):
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(wanted) - len(found)} creations never got an execution")
        for execution in stack.engine.list_executions(WORKFLOW_ID, page_size=1000)[0]:
            cid = execution.get("labels", {}).get("creation-id")
            if cid in wanted:
                found[cid] = execution["name"]
        if len(found) < len(wanted):
            time.sleep(0.05)
    return {cid: stack.engine.wait(name, timeout=max(1.0, deadline - time.monotonic()))
            for cid, name in found.items()}


def per_creation(counts: dict[str, int], key: str, n: int) -> str:
    return f"{counts.get(key, 0) / n:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creations", type=int, default=20)
    parser.add_argument("--sequential", type=int, default=5, help="creations made one at a time first")
    parser.add_argument("--jobs", choices=("inprocess", "process"), default="inprocess")
    args = parser.parse_args(argv)
    n = args.creations

    sqlite = run("sqlite", n, args.sequential, args.jobs, store="sqlite", trigger="local")
    try:
        parity = run("parity", n, args.sequential, args.jobs, store="firestore", trigger="tasks",
                     meter_firestore=True)
    except EmulatorNotInstalled as exc:
        print(f"parity run skipped: {exc}")
        parity = None

    print(f"{args.sequential} image creations one at a time, then {n} submitted at once; instant generation, "
          f"{args.jobs} step jobs, real clock")
    print(f"{'one at a time':<44} {'p50 s':>7} {'max s':>7}")
    print(f"{'  sqlite store, trigger local':<44} {sqlite['alone_p50']:>7.2f} {sqlite['alone_max']:>7.2f}")
    if parity:
        print(f"{'  firestore emulator, trigger tasks (parity)':<44} {parity['alone_p50']:>7.2f} "
              f"{parity['alone_max']:>7.2f}")
    print(f"{n} at once")
    print(f"{'configuration':<44} {'drafts':>7} {'creations/s':>12} {'p50 s':>7} {'p99 s':>7} "
          f"{'POST p50':>9} {'POST p99':>9}  audit")
    rows = [("sqlite store, trigger local", sqlite)]
    if parity:
        rows.append(("firestore emulator, trigger tasks (parity)", parity))
    for label, f in rows:
        audit = "clean" if not f["audit"] else f"{len(f['audit'])} findings"
        drafts = f"{f['succeeded']}/{f['count']}"
        print(f"{label:<44} {drafts:>7} {f['rate']:>12.2f} {f['p50']:>7.2f} {f['p99']:>7.2f} "
              f"{f['post_p50']:>9.2f} {f['post_p99']:>9.2f}  {audit}")
        if f["refused"]:
            print(f"{'':<44} refused: {f['refused']}")
    if parity:
        counts = parity["firestore"]
        print("Firestore operations per creation (parity run, counted at the emulator):")
        for label, adapter, workflow, k in (
                ("one at a time", counts["lone_adapter"], counts["lone_workflow"], args.sequential),
                (f"{n} at once", counts["adapter"], counts["workflow"], n)):
            if not k:
                continue
            reads = (adapter.get("reads", 0) + workflow.get("reads", 0)) / k
            writes = (adapter.get("writes", 0) + workflow.get("writes", 0)) / k
            print(f"  {label}: {reads:.1f} reads, {writes:.1f} writes")
            print(f"    adapter (API + jobs, gRPC through the metering proxy): reads "
                  f"{per_creation(adapter, 'reads', k)}, writes {per_creation(adapter, 'writes', k)}; RPCs "
                  + ", ".join(f"{key.split('.', 1)[1]} {v / k:.1f}" for key, v in sorted(adapter.items())
                              if key.startswith("calls.")))
            print(f"    workflow (Firestore connector, REST): reads {per_creation(workflow, 'reads', k)}, "
                  f"writes {per_creation(workflow, 'writes', k)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
