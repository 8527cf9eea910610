"""How long the console's pages take with 10,000 creations in the store.

Starts the local stack (in-process jobs, instant generation, a virtual clock), runs two real creations (a draft
and a `#down` failure) so creation pages have real executions and step entries, then seeds N
creations (default 10,000: 100 users, spread over two days; ~70% drafts, ~25% failed with a mix of
error codes, the rest pending or processing) into the stack's SQLite store through the store's own
operations (create_with_debit, update_creation, refund), each pointing at one of the two real
executions. Then times each page, rendered by the console app (FastAPI, in-process ASGI client:
server time, no browser): the first request and the median of 5.

Seeding turns SQLite's per-commit fsync off (PRAGMA synchronous = OFF) for speed; the timed reads
do not write. Run: .venv/bin/python bench/console_bench.py [N]
"""
from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from api.auth import make_local_token  # noqa: E402
from creations.model import Creation, CreationError, CreationType, Status, utcnow  # noqa: E402
from devstack.stack import LocalStack, StackConfig  # noqa: E402
from localcloud.workflows import VirtualClock  # noqa: E402

USERS = 100
CODES = [("PROVIDER_UNAVAILABLE", True), ("STORAGE_ERROR", True), ("CONTENT_POLICY", False),
         ("MEDIA_TIMEOUT", True)]


def run_real(stack: LocalStack, uid: str, prompt: str) -> Creation:
    stack.store.grant(uid, 5, f"grant:{uid}:{prompt}")
    token = make_local_token(uid, stack.settings.local_auth_secret)
    response = httpx.post(f"{stack.urls['api']}/v1/creations", json={"type": "image", "prompt": prompt},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    response.raise_for_status()
    creation_id = response.json()["id"]
    deadline = time.monotonic() + 300
    while True:
        c = stack.store.get_creation(creation_id)
        if c.status.terminal and c.execution_ids:
            stack.engine.wait(c.execution_ids[-1], timeout=300)
            return stack.store.get_creation(creation_id)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{creation_id} did not finish")
        time.sleep(0.1)


def seed(store, n: int, draft: Creation, failed: Creation) -> dict[str, int]:
    store._db().execute("PRAGMA synchronous = OFF")  # seeding speed only
    rng = random.Random(7)
    now = utcnow()
    for u in range(USERS):
        store.grant(f"bench-user-{u:03d}", 100_000, f"grant:bench-user-{u:03d}")
    counts: dict[str, int] = {}
    for i in range(n):
        uid = f"bench-user-{i % USERS:03d}"
        video = rng.random() < 0.2
        c = Creation(id=Creation.new_id(), uid=uid, type=CreationType.VIDEO if video else CreationType.IMAGE,
                     prompt=f"bench prompt {i}", options={}, cost=10 if video else 1,
                     created_at=now - timedelta(seconds=rng.uniform(0, 2 * 86400)))
        c.updated_at = c.created_at
        store.create_with_debit(c)
        roll = rng.random()
        if roll < 0.70:
            status, source = Status.DRAFT, draft
        elif roll < 0.95:
            status, source = Status.FAILED, failed
        else:
            status, source = (Status.PENDING if roll < 0.97 else Status.PROCESSING), draft

        def mutate(cur: Creation, status=status, source=source) -> Creation:
            cur.execution_ids = list(source.execution_ids)
            if status in (Status.PROCESSING, Status.DRAFT):
                cur.transition(Status.PROCESSING)
            if status is Status.DRAFT:
                cur.transition(Status.DRAFT)
                cur.checkpoints = dict(source.checkpoints)
                cur.media = dict(source.media or {})
            cur.updated_at = cur.created_at + timedelta(seconds=30)
            return cur

        store.update_creation(c.id, mutate)
        if status is Status.FAILED:
            code, retryable = CODES[i % len(CODES)]
            store.refund(c.id, 1, fail_with=CreationError(code, f"bench failure {code}", "generate", retryable))
        counts[status.value] = counts.get(status.value, 0) + 1
    store._db().execute("PRAGMA synchronous = FULL")
    return counts


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    from fastapi.testclient import TestClient

    from phoenix.console.cli import Console

    with tempfile.TemporaryDirectory() as tmp:
        # A virtual clock: the #down creation's retry backoffs (15 s, 60 s) cost no wall time.
        stack = LocalStack(StackConfig(data_dir=Path(tmp), port=0, jobs_mode="inprocess", instant_generation=True,
                                       clock=VirtualClock(), inprocess_log=Path(tmp) / "jobs.log")).start()
        try:
            draft = run_real(stack, "bench-real", "a lighthouse at dawn")
            failed = run_real(stack, "bench-real", "a harbour #down")
            assert draft.status is Status.DRAFT and failed.status is Status.FAILED
            started = time.monotonic()
            counts = seed(stack.store, n, draft, failed)
            print(f"seeded {n} creations in {time.monotonic() - started:.1f} s: {counts}")
            console = Console(stack.settings, store=stack.store, storage=stack.storage, data_dir=Path(tmp),
                              operator="bench")
            http = TestClient(console.app, base_url="http://127.0.0.1:8090")
            page = http.get("/creations", params={"size": "50"})
            deep_token = None
            url, params = "/creations", {"size": "500"}
            for _ in range(10):  # the token 5,000 creations down
                body = http.get(url, params=params).text
                start = body.find('id="next-page" href="')
                if start < 0:
                    break
                url = body[start + len('id="next-page" href="'):].split('"', 1)[0].replace("&amp;", "&")
                params = None
            deep_token = url
            assert page.status_code == 200
            pages = [
                ("overview  /", "/"),
                ("creations /creations (newest 50, counts)", "/creations"),
                ("creations ?status=failed", "/creations?status=failed"),
                ("creations ?code=CONTENT_POLICY (scanned)", "/creations?code=CONTENT_POLICY"),
                ("creations ?type=video&uid=bench-user-007", "/creations?type=video&uid=bench-user-007"),
                ("creations 5,000 down (page token)", deep_token.replace("size=500", "size=50")),
                ("creations ?q=<creation id>", f"/creations?q={failed.id}"),
                ("creations ?q=<execution id>", f"/creations?q={failed.execution_ids[-1].rsplit('/', 1)[1]}"),
                ("creation  #down (timeline, logs)", f"/creations/{failed.id}"),
                ("creation  draft (media)", f"/creations/{draft.id}"),
                ("creation  JSON download", f"/creations/{failed.id}/trace.json"),
                ("users     /users (audit)", "/users"),
                ("user      100 creations' ledger", "/users/bench-user-007"),
                ("replay    preview", f"/creations/{failed.id}/replay"),
                ("bulk      preview (status=failed, 100)", "/bulk-replay?status=failed"),
                ("reconcile preview", "/reconcile?older_than=0"),
            ]
            print(f"{'page':<44} {'first':>9} {'median of 5':>12}")
            for label, url in pages:
                t0 = time.perf_counter()
                response = http.get(url)
                first = (time.perf_counter() - t0) * 1000
                assert response.status_code == 200, (url, response.status_code, response.text[:500])
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    http.get(url)
                    times.append((time.perf_counter() - t0) * 1000)
                print(f"{label:<44} {first:7.0f} ms {statistics.median(times):9.0f} ms", flush=True)
            console.close()
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
