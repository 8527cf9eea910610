"""Time one create_with_debit (the money transaction behind every POST /creations) on each store.

SQLite: a file in a temp dir (WAL, synchronous=FULL). Firestore: Google's emulator on loopback,
started here (skipped when not installed). Run: .venv/bin/python bench/store_bench.py [N]
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import timeit
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from creations.model import Creation, CreationType  # noqa: E402
from creations.store.base import Store  # noqa: E402
from creations.store.sqlite import SqliteStore  # noqa: E402
from localcloud.firestore_emulator import EmulatorNotInstalled, FirestoreEmulator  # noqa: E402


def bench(name: str, store: Store, n: int) -> None:
    store.grant("bench-user", n + 10, "bench:grant")

    def once() -> None:
        store.create_with_debit(Creation(id=Creation.new_id(), uid="bench-user", type=CreationType.IMAGE,
                                         prompt="a lighthouse at dusk", options={"aspectRatio": "1:1"}, cost=1),
                                idempotency_key=uuid.uuid4().hex, request_hash="h", max_active=None)

    once()  # warm up (connections, JIT of the emulator)
    times = timeit.repeat(once, number=1, repeat=n)
    ms = sorted(t * 1000 for t in times)
    print(f"{name:<22} create_with_debit: median {statistics.median(ms):6.2f} ms   "
          f"p90 {ms[int(len(ms) * 0.9) - 1]:6.2f} ms   min {ms[0]:6.2f} ms   (n={n})")
    assert store.audit() == []


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.sqlite3")
        bench("sqlite (file, FULL)", store, n)
        store.close()
    try:
        emulator = FirestoreEmulator()
    except EmulatorNotInstalled as exc:
        print(f"firestore: skipped: {exc}")
        return
    with emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.address
        from google.cloud import firestore

        from creations.store.firestore import FirestoreStore

        store = FirestoreStore(firestore.Client(project=f"bench-{uuid.uuid4().hex[:8]}"))
        bench("firestore (emulator)", store, n)
        store.close()


if __name__ == "__main__":
    main()
