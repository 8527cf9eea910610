"""Time the operator layer's searches on an SQLite store of N creations (default 10,000): the
first page of everything, a page of one status, a filter the store cannot narrow (an error code
that matches 1 in 100, so the filter scans), counts per status and a bulk replay preview.

Run: .venv/bin/python bench/operator_bench.py [N]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from creations.model import Creation, CreationError, CreationType, Status  # noqa: E402
from creations.operator import CreationFilter, Operator  # noqa: E402
from creations.store.sqlite import SqliteStore  # noqa: E402


def fill(store: SqliteStore, n: int) -> None:
    store.grant("bench-user", n + 10, "bench:grant")
    for i in range(n):
        creation = store.create_with_debit(Creation(
            id=Creation.new_id(), uid="bench-user", type=CreationType.IMAGE if i % 3 else CreationType.VIDEO,
            prompt="a lighthouse at dusk", options={}, cost=1)).creation
        if i % 4 == 0:
            code, retryable = ("STORAGE_ERROR", True) if i % 100 == 0 else ("CONTENT_POLICY", False)
            store.refund(creation.id, 1, fail_with=CreationError(code=code, message="m", step="generate",
                                                                 retryable=retryable))
        elif i % 4 == 1:
            store.update_creation(creation.id, lambda c: (c.transition(Status.PROCESSING), c)[1])


def timed(label: str, fn, repeat: int = 5) -> None:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - start)
    print(f"  {label:<58} median {statistics.median(runs) * 1000:8.1f} ms   ({result})")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "phoenix.sqlite3")
        start = time.perf_counter()
        fill(store, n)
        print(f"operator layer on SQLite, {n:,} creations (filled in {time.perf_counter() - start:.1f} s)")
        op = Operator(store, workflow="projects/p/locations/l/workflows/creation")
        timed("find: newest 50, no filter", lambda: len(op.find(limit=50).items))
        timed("find: newest 50 failed", lambda: len(op.find(CreationFilter(statuses=(Status.FAILED,)), limit=50).items))
        timed("find: 50 failed with STORAGE_ERROR (1 in 100, scanned)",
              lambda: len(op.find(CreationFilter(statuses=(Status.FAILED,), codes=("STORAGE_ERROR",)), limit=50).items))
        timed("count per status (whole store)", lambda: op.count_by_status().counts)
        timed("bulk replay preview of every failed creation (limit 100)",
              lambda: len(op.bulk_preview(CreationFilter(), limit=100).to_replay), repeat=3)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
