"""Latency from a store write to the matching server-sent event, on each store.

The API (uvicorn on loopback) streams GET /v1/creations/{id}/events; the bench writes the
creation's pending -> processing transition and times until the `processing` event is read:
- SQLite, write in the API's process (the store's commit hook wakes the stream);
- SQLite, write in another process (as a step job: seen by the PRAGMA data_version watcher);
- Firestore (Google's emulator, started here; skipped when not installed): the stream's
  snapshot listener.
Run: .venv/bin/python bench/events_bench.py [N]
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from api.auth import make_local_token  # noqa: E402
from api.main import create_app  # noqa: E402
from creations.model import Creation, CreationType  # noqa: E402
from creations.settings import Settings  # noqa: E402
from creations.store.sqlite import SqliteStore  # noqa: E402
from localcloud.firestore_emulator import EmulatorNotInstalled, FirestoreEmulator  # noqa: E402
from tests.support.sse import Stream, parse  # noqa: E402
from tests.support.transitions import to_processing  # noqa: E402

SECRET = "bench-secret"
UID = "bench-user"

# A step-like writer in another process: reads creation ids on stdin, commits processing, prints the time.
WRITER = """
import sys, time
from creations.store.sqlite import SqliteStore
from tests.support.transitions import to_processing
store = SqliteStore(sys.argv[1])
for line in sys.stdin:
    store.update_creation(line.strip(), to_processing)
    print(time.time(), flush=True)
"""


def serve(app) -> tuple[str, uvicorn.Server]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def measure(name: str, settings: Settings, store, n: int, write) -> None:
    """`write(creation_id)` commits processing and returns the wall time of the commit."""
    url, server = serve(create_app(settings, store=store, trigger=object(), storage=None))
    store.grant(UID, n + 10, f"bench-grant-{time.time_ns()}")
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {make_local_token(UID, SECRET)}"},
                          timeout=httpx.Timeout(10, read=30))
    latencies = []
    for _ in range(n + 1):
        creation = store.create_with_debit(Creation(id=Creation.new_id(), uid=UID, type=CreationType.IMAGE,
                                                    prompt="a lighthouse", options={}, cost=1)).creation
        stream = Stream(0)
        with client.stream("GET", f"/v1/creations/{creation.id}/events") as response:
            written = None
            for event in parse(response.iter_lines(), stream):
                if event.json["status"] == "pending":
                    time.sleep(0.05)  # let the stream settle into its wait, as it would between steps
                    written = write(creation.id)
                elif event.json["status"] == "processing":
                    latencies.append((time.time() - written) * 1000)
                    break
    latencies = sorted(latencies[1:])  # the first one warms up connections and listeners
    print(f"{name:<34} write -> event: median {statistics.median(latencies):7.2f} ms   "
          f"p90 {latencies[int(len(latencies) * 0.9) - 1]:7.2f} ms   max {latencies[-1]:7.2f} ms   (n={n})")
    client.close()
    server.should_exit = True


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(sqlite_path=Path(tmp) / "bench.sqlite3", auth_mode="local", local_auth_secret=SECRET,
                            max_active_per_user=10_000)
        store = SqliteStore(settings.sqlite_path)

        def in_process(creation_id: str) -> float:
            store.update_creation(creation_id, to_processing)
            return time.time()

        measure("sqlite, write in the API process", settings, store, n, in_process)

        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(settings.sqlite_path)], cwd=ROOT,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})

        def other_process(creation_id: str) -> float:
            writer.stdin.write(creation_id + "\n")
            writer.stdin.flush()
            return float(writer.stdout.readline())

        measure(f"sqlite, write in another process (check every {settings.events_change_check_seconds}s)",
                settings, store, n, other_process)
        writer.stdin.close()
        writer.wait()
        store.close()

    try:
        emulator = FirestoreEmulator().start()
    except EmulatorNotInstalled as exc:
        print(f"firestore: skipped ({exc})")
        return
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
        from google.cloud import firestore

        from creations.store.firestore import FirestoreStore

        settings = Settings(store="firestore", firestore_project="bench-events", auth_mode="local",
                            local_auth_secret=SECRET, max_active_per_user=10_000)
        store = FirestoreStore(firestore.Client(project="bench-events"))

        def firestore_write(creation_id: str) -> float:
            store.update_creation(creation_id, to_processing)
            return time.time()

        measure("firestore emulator (snapshot listener)", settings, store, n, firestore_write)
        store.close()
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
