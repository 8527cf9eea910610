"""Throughput and latency of the API: POST /v1/creations and GET /v1/creations/{id}.

Starts uvicorn (`--workers 1` or 2) on loopback over the SQLite store, with the real `local`
trigger aimed at a loopback Executions API that records executions and answers at once, then
drives it from a separate load process (keep-alive connections on a thread pool) and prints requests per
second and p50/p99 latency next to the targets.

    .venv/bin/python bench/api_bench.py [--workers 1] [--concurrency 16] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_CREATES_PER_S = 300
TARGET_P99_MS = 100
SECRET = secrets.token_urlsafe(32)  # the explicit local secret the API refuses to run without


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingExecutions:
    """Answers `POST /v1/{workflow}/executions` like the Executions API and counts the calls.

    A bare asyncio HTTP/1.1 responder in a thread, so it costs the shared CPUs little."""

    def __init__(self):
        import asyncio

        self.count = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def handle(reader, writer):
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    length = 0
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        if name.strip().lower() == "content-length":
                            length = int(value)
                    await reader.readexactly(length)
                    self.count += 1
                    path = lines[0].split(" ")[1].split("?")[0]
                    parent = path[len("/v1/"):-len("/executions")]
                    body = json.dumps({"name": f"{parent}/executions/{uuid.uuid4()}", "state": "ACTIVE"}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        async def serve():
            await asyncio.start_server(handle, "127.0.0.1", self.port)
            started.set()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        started.wait(10)


def start_api(workers: int, env: dict[str, str]) -> tuple[list[subprocess.Popen], str]:
    """One uvicorn (`python -m api`, as deployed) or several processes accepting on one
    listening socket. Not `uvicorn --workers`: it binds a socket that does not say it is TCP, so
    asyncio leaves Nagle on and every keep-alive answer waits ~40 ms for a delayed ACK."""
    import httpx

    if workers == 1:
        port = free_port()
        procs = [subprocess.Popen(
            [sys.executable, "-m", "api"], cwd=ROOT,
            env={**env, "PHOENIX_HOST": "127.0.0.1", "PORT": str(port)})]
    else:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        procs = [subprocess.Popen([sys.executable, __file__, "--serve-fd", str(fd)], cwd=ROOT, env=env,
                                  pass_fds=(fd,)) for _ in range(workers)]
        listener.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return procs, url
        except httpx.HTTPError:
            time.sleep(0.1)
    for proc in procs:
        proc.kill()
    raise SystemExit("the API did not start")


def serve_fd(fd: int) -> int:
    """A server process of the multi-process mode: uvicorn on the inherited listening socket."""
    import uvicorn

    from api.main import create_app
    from api.server import server_config
    from creations.settings import Settings

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=fd)
    settings = Settings()
    app = create_app(settings, host=sock.getsockname()[0])
    uvicorn.Server(server_config(app, settings, access_log=False)).run(sockets=[sock])
    return 0


# --- the load process -------------------------------------------------------------------------


def _drive(url: str, tokens: list[str], concurrency: int, seconds: float, phase: str,
           ids: list[str], out: mp.Queue) -> None:
    """Runs in the load process: `concurrency` threads, each with its own keep-alive connection
    (http.client: the lightest client, so the CPUs go to the server) and its own user."""
    import http.client
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname, urlsplit(url).port
    stop_at = time.monotonic() + seconds

    def connect():
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def worker(n: int):
        latencies, created, errors = [], [], {}
        headers = {"Authorization": f"Bearer {tokens[n % len(tokens)]}", "Content-Type": "application/json"}
        if phase == "get" and not ids[n]:
            return latencies, created, errors
        conn = connect()
        i = 0
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                if phase == "post":
                    body = json.dumps({"type": "image", "prompt": f"bench picture {n}-{i}"}).encode()
                    conn.request("POST", "/v1/creations", body=body, headers=headers)
                else:
                    mine = ids[n]  # the creations this worker's user made
                    conn.request("GET", f"/v1/creations/{mine[i % len(mine)]}", headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                conn.close()
                conn = connect()
                continue
            latencies.append(time.perf_counter() - started)
            expected = 202 if phase == "post" else 200
            if response.status == expected and phase == "post":
                created.append((n, json.loads(data)["id"]))
            elif response.status != expected:
                errors[response.status] = errors.get(response.status, 0) + 1
            i += 1
        conn.close()
        return latencies, created, errors

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(worker, range(concurrency)))
    elapsed = time.monotonic() - began
    latencies = sorted(x for r in results for x in r[0])
    created = [x for r in results for x in r[1]]
    errors: dict = {}
    for r in results:
        for code, n in r[2].items():
            errors[code] = errors.get(code, 0) + n
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put({"latencies": latencies, "created": created, "errors": errors, "elapsed": elapsed,
             "load_cpu": usage.ru_utime + usage.ru_stime})


def run_phase(url, tokens, concurrency, seconds, phase, ids=(), server_pids=None) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_drive, args=(url, tokens, concurrency, seconds, phase, list(ids), out))
    cpu_before = server_cpu_seconds(server_pids) if server_pids else float("nan")
    proc.start()
    result = out.get()
    proc.join()
    result["server_cpu"] = (server_cpu_seconds(server_pids) if server_pids else float("nan")) - cpu_before
    return result


def server_cpu_seconds(root_pids: list[int]) -> float:
    """User+system CPU of the server process and its workers (Linux /proc; NaN elsewhere)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime+stime
        tree, total = set(root_pids), 0
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _) in stats.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        total = sum(stats[pid][1] for pid in tree if pid in stats)
        return total / ticks
    except (OSError, ValueError):
        return float("nan")


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def report(name: str, result: dict, throughput_target: float | None) -> None:
    n = len(result["latencies"])
    cpu_ms = result.get("server_cpu", float("nan")) / max(n, 1) * 1000
    rate = n / result["elapsed"]
    p50 = percentile(result["latencies"], 50) * 1000
    p99 = percentile(result["latencies"], 99) * 1000
    rate_target = f"(target >= {throughput_target:.0f}/s: {'ok' if rate >= throughput_target else 'MISSED'})" \
        if throughput_target else ""
    print(f"{name:<28} {n:>6} requests  {rate:8.1f} req/s {rate_target}")
    print(f"{'':<28} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms "
          f"(target p99 < {TARGET_P99_MS} ms: {'ok' if p99 < TARGET_P99_MS else 'MISSED'})")
    load_ms = result.get("load_cpu", float("nan")) / max(n, 1) * 1000
    print(f"{'':<28} CPU per request: server {cpu_ms:.2f} ms, load generator {load_ms:.2f} ms")
    if result["errors"]:
        print(f"{'':<28} non-success answers: {result['errors']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, choices=(1, 2))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fd is not None:
        return serve_fd(args.serve_fd)

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
        procs, url = start_api(args.workers, env)
        pids = [p.pid for p in procs]
        try:
            print(f"uvicorn workers={args.workers}, load: 1 process x {args.concurrency} connections, "
                  f"{args.seconds:.0f} s per phase, {os.cpu_count()} CPUs shared by server and load")
            warm = run_phase(url, tokens, args.concurrency, min(2.0, args.seconds), "post")
            posts = run_phase(url, tokens, args.concurrency, args.seconds, "post", server_pids=pids)
            report("POST /v1/creations", posts, TARGET_CREATES_PER_S)
            by_worker = [[cid for n, cid in posts["created"] if n == w] for w in range(args.concurrency)]
            gets = run_phase(url, tokens, args.concurrency, args.seconds, "get", by_worker,
                             server_pids=pids)
            report("GET /v1/creations/{id}", gets, None)
            accepted = len(warm["created"]) + len(posts["created"])
            print(f"creations accepted: {accepted}; executions started: {executions.count}")
            audit = store.audit()
            print(f"ledger audit: {'balanced' if not audit else audit[:3]}")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=20)
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
