"""Throughput and latency of the API: POST /v1/creations and GET /v1/creations/{id}.

Starts uvicorn (`--workers 1` or 2) on loopback over the SQLite store, with the real `local`
trigger aimed at a loopback Executions API that records executions and answers at once, then
drives it from a separate load process (httpx clients on a thread pool) and prints requests per
second and p50/p99 latency next to the targets.

    .venv/bin/python bench/api_bench.py [--workers 1] [--concurrency 16] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_CREATES_PER_S = 300
TARGET_P99_MS = 100
SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingExecutions:
    """Answers `POST /v1/{workflow}/executions` like the Executions API and counts the calls."""

    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.count += 1
                parent = self.path.split("?")[0][len("/v1/"):-len("/executions")]
                body = json.dumps({"name": f"{parent}/executions/{uuid.uuid4()}", "state": "ACTIVE"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def start_api(workers: int, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the API did not start")


# --- the load process -------------------------------------------------------------------------


def _drive(url: str, tokens: list[str], concurrency: int, seconds: float, phase: str,
           ids: list[str], out: mp.Queue) -> None:
    """Runs in the load process: `concurrency` threads, each with its own client and user."""
    import httpx

    stop_at = time.monotonic() + seconds

    def worker(n: int):
        latencies, created, errors = [], [], {}
        token = tokens[n % len(tokens)]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            i = 0
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                if phase == "post":
                    r = client.post("/v1/creations", json={"type": "image", "prompt": f"bench picture {n}-{i}"})
                else:
                    r = client.get(f"/v1/creations/{ids[(n * 7919 + i) % len(ids)]}")
                latencies.append(time.perf_counter() - started)
                ok = r.status_code == (202 if phase == "post" else 200)
                if ok and phase == "post":
                    created.append(r.json()["id"])
                elif not ok:
                    errors[r.status_code] = errors.get(r.status_code, 0) + 1
                i += 1
        return latencies, created, errors

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(worker, range(concurrency)))
    elapsed = time.monotonic() - began
    latencies = sorted(x for r in results for x in r[0])
    created = [x for r in results for x in r[1]]
    errors: dict[int, int] = {}
    for r in results:
        for code, n in r[2].items():
            errors[code] = errors.get(code, 0) + n
    out.put({"latencies": latencies, "created": created, "errors": errors, "elapsed": elapsed})


def run_phase(url, tokens, concurrency, seconds, phase, ids=()) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_drive, args=(url, tokens, concurrency, seconds, phase, list(ids), out))
    proc.start()
    result = out.get()
    proc.join()
    return result


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def report(name: str, result: dict, throughput_target: float | None) -> None:
    n = len(result["latencies"])
    rate = n / result["elapsed"]
    p50 = percentile(result["latencies"], 50) * 1000
    p99 = percentile(result["latencies"], 99) * 1000
    rate_target = f"(target >= {throughput_target:.0f}/s: {'ok' if rate >= throughput_target else 'MISSED'})" \
        if throughput_target else ""
    print(f"{name:<28} {n:>6} requests  {rate:8.1f} req/s {rate_target}")
    print(f"{'':<28} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms "
          f"(target p99 < {TARGET_P99_MS} ms: {'ok' if p99 < TARGET_P99_MS else 'MISSED'})")
    if result["errors"]:
        print(f"{'':<28} non-success answers: {result['errors']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, choices=(1, 2))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args(argv)

    from api.auth import make_local_token
    from creations.store.sqlite import SqliteStore

    executions = RecordingExecutions()
    with tempfile.TemporaryDirectory(prefix="api-bench-") as tmp:
        db = Path(tmp) / "bench.sqlite3"
        store = SqliteStore(db)
        uids = [f"bench-{n}" for n in range(args.users)]
        for uid in uids:
            store.grant(uid, 10**9, f"bench-grant-{uid}")
        tokens = [make_local_token(uid, SECRET) for uid in uids]
        env = {
            **os.environ,
            "PHOENIX_SQLITE_PATH": str(db), "PHOENIX_AUTH_MODE": "local", "PHOENIX_LOCAL_AUTH_SECRET": SECRET,
            "PHOENIX_TRIGGER": "local", "PHOENIX_LOCAL_ENGINE_URL": executions.url,
            "PHOENIX_MAX_ACTIVE_PER_USER": str(10**9),
            "PHOENIX_S3_ENDPOINT_URL": "http://127.0.0.1:9", "PHOENIX_S3_ACCESS_KEY_ID": "bench",
            "PHOENIX_S3_SECRET_ACCESS_KEY": "bench",
        }
        proc, url = start_api(args.workers, env)
        try:
            print(f"uvicorn workers={args.workers}, load: 1 process x {args.concurrency} threads, "
                  f"{args.seconds:.0f} s per phase, {os.cpu_count()} CPUs shared by server and load")
            warm = run_phase(url, tokens, args.concurrency, min(2.0, args.seconds), "post")
            posts = run_phase(url, tokens, args.concurrency, args.seconds, "post")
            report("POST /v1/creations", posts, TARGET_CREATES_PER_S)
            gets = run_phase(url, tokens, args.concurrency, args.seconds, "get", posts["created"])
            report("GET /v1/creations/{id}", gets, None)
            accepted = len(warm["created"]) + len(posts["created"])
            print(f"creations accepted: {accepted}; executions started: {executions.count}")
            audit = store.audit()
            print(f"ledger audit: {'balanced' if not audit else audit[:3]}")
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
