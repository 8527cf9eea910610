"""Soak: the API and the pipeline under a steady load for a long while; is anything growing?

    .venv/bin/python bench/soak_bench.py [--seconds 600] [--rate 2] [--users 20]
                                         [--jobs-mode inprocess|process] [--sample-every 60]

Starts the local stack on loopback (real clock, instant generation), then for `--seconds`
submits `--rate` image creations a second, spread over `--users` users, polls each creation's
status once a second until it ends, downloads each draft's media once, and lists a user's drafts
every 5 s. Prints, every `--sample-every` seconds and at the end: requests served (by answer),
creations ended, and the resident memory and open files of the stack's process and of its S3
stand-in, so a leak shows as a figure that keeps growing. At the end it checks the books (the
ledger audit) and that no creation is left pending or processing. Loopback only; bounded by
`--seconds` (at most 3,600). Prints figures only.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from api.auth import make_local_token  # noqa: E402
from creations.model import Status  # noqa: E402
from devstack.stack import LocalStack, StackConfig  # noqa: E402

TERMINAL = ("draft", "failed")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def s3_pid() -> int | None:
    """The S3 stand-in: the child of this process running localcloud.s3durable."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            cmd = open(f"/proc/{entry}/cmdline", "rb").read()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[1] == me and b"localcloud.s3durable" in cmd:
            return int(entry)
    return None


class Soak:
    def __init__(self, stack: LocalStack, users: int):
        self.stack = stack
        self.answers: collections.Counter = collections.Counter()   # (endpoint, status) -> count
        self.post_ms: list[float] = []
        self.ended: collections.Counter = collections.Counter()
        self.active: set[str] = set()
        self.lock = threading.Lock()
        api = stack.urls["api"]
        self.clients = []
        for n in range(users):
            uid = f"soak-{n}"
            stack.store.grant(uid, 1_000_000, f"grant:soak:{n}")
            token = make_local_token(uid, stack.settings.local_auth_secret)
            self.clients.append(httpx.Client(base_url=api, timeout=30.0, headers={"Authorization": f"Bearer {token}"}))
        self.media = httpx.Client(timeout=30.0)

    def count(self, endpoint: str, status: int) -> None:
        with self.lock:
            self.answers[(endpoint, status)] += 1

    def submit(self, client: httpx.Client, n: int) -> None:
        started = time.perf_counter()
        response = client.post("/v1/creations", json={"type": "image", "prompt": f"soak tile {n}"})
        elapsed = (time.perf_counter() - started) * 1000
        self.count("POST /v1/creations", response.status_code)
        if response.status_code != 202:
            return
        with self.lock:
            self.post_ms.append(elapsed)
            self.active.add(response.json()["id"])
        self.follow(client, response.json()["id"])

    def follow(self, client: httpx.Client, creation_id: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(1.0)
            response = client.get(f"/v1/creations/{creation_id}")
            self.count("GET /v1/creations/{id}", response.status_code)
            if response.status_code != 200:
                continue
            body = response.json()
            if body["status"] in TERMINAL:
                if body["status"] == "draft":
                    media = self.media.get(body["media"]["url"])
                    self.count("GET media", media.status_code)
                with self.lock:
                    self.ended[body["status"]] += 1
                    self.active.discard(creation_id)
                return

    def list_drafts(self, client: httpx.Client) -> None:
        response = client.get("/v1/creations")
        self.count("GET /v1/creations", response.status_code)

    def served(self) -> int:
        with self.lock:
            return sum(self.answers.values())


def sample(label: str, soak: Soak, started: float, s3: int | None) -> dict:
    me = os.getpid()
    figures = {"rss": rss_kib(me), "files": open_files(me),
               "s3_rss": rss_kib(s3) if s3 else 0, "s3_files": open_files(s3) if s3 else 0}
    print(f"  {label:>6}  t={time.monotonic() - started:6.0f} s  requests {soak.served():6d}  "
          f"ended {sum(soak.ended.values()):5d}  stack RSS {figures['rss'] / 1024:6.1f} MiB  "
          f"open files {figures['files']:4d}  S3 RSS {figures['s3_rss'] / 1024:6.1f} MiB  "
          f"S3 open files {figures['s3_files']:3d}", flush=True)
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--rate", type=float, default=2.0, help="creations submitted per second")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--jobs-mode", choices=("inprocess", "process"), default="inprocess")
    p.add_argument("--sample-every", type=float, default=60.0)
    args = p.parse_args()
    if not 1 <= args.seconds <= 3600 or not 0 < args.rate <= 50 or not 1 <= args.users <= 1000:
        p.error("--seconds 1..3600, --rate up to 50 a second, --users 1..1000")

    with tempfile.TemporaryDirectory(prefix="phoenix-soak-") as tmp:
        config = StackConfig(data_dir=Path(tmp), port=0, jobs_mode=args.jobs_mode, instant_generation=True,
                             inprocess_log=Path(tmp) / "jobs.log")
        stack = LocalStack(config).start()
        soak = Soak(stack, args.users)
        pool = ThreadPoolExecutor(max_workers=64)
        try:
            print(f"soak: {args.seconds:g} s at {args.rate:g} creations/s over {args.users} users, "
                  f"{args.jobs_mode} jobs, instant generation, loopback only", flush=True)
            s3 = s3_pid()
            started = time.monotonic()
            first = sample("start", soak, started, s3)
            users = itertools.cycle(soak.clients)
            next_sample = started + args.sample_every
            next_list = started + 5.0
            for n in itertools.count():
                due = started + n / args.rate
                now = time.monotonic()
                if due - started >= args.seconds:
                    break
                if due > now:
                    time.sleep(due - now)
                pool.submit(soak.submit, next(users), n)
                if time.monotonic() >= next_list:
                    pool.submit(soak.list_drafts, next(users))
                    next_list += 5.0
                if time.monotonic() >= next_sample:
                    sample("", soak, started, s3)
                    next_sample += args.sample_every
            pool.shutdown(wait=True)     # every creation followed to its end
            last = sample("end", soak, started, s3)
            stuck = stack.store.find_creations(statuses=[Status.PENDING, Status.PROCESSING], limit=10_000)
            findings = stack.store.audit()
            by_endpoint: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
            for (endpoint, status), n in sorted(soak.answers.items()):
                by_endpoint[endpoint][status] += n
            print("\nrequests served:", soak.served())
            for endpoint, statuses in by_endpoint.items():
                print(f"  {endpoint:<26} " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())))
            if soak.post_ms:
                q = statistics.quantiles(soak.post_ms, n=100)
                print(f"POST /v1/creations latency: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms")
            print(f"creations ended: {dict(soak.ended)}; left pending or processing: {len(stuck)}")
            print(f"stack process RSS: {first['rss'] / 1024:.1f} MiB at start, {last['rss'] / 1024:.1f} MiB at end; "
                  f"open files {first['files']} -> {last['files']}")
            print(
                f"S3 stand-in RSS: {first['s3_rss'] / 1024:.1f} MiB at start, {last['s3_rss'] / 1024:.1f} MiB at end; "
                f"open files {first['s3_files']} -> {last['s3_files']}"
            )
            print(f"ledger audit: {'clean' if not findings else findings}")
        finally:
            for client in soak.clients:
                client.close()
            soak.media.close()
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
