"""Money under contention: many threads (and, for SQLite, processes) racing on one user's tokens."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from google.cloud import firestore

from creations.errors import InsufficientTokens, TooManyActive
from creations.store.firestore import FirestoreStore

from .records import make_creation


def race(n: int, action: Callable[[int], object]) -> list[object]:
    """Run action(0..n-1) on n threads released together; each result is a value or the exception."""
    barrier = threading.Barrier(n)

    def one(i: int) -> object:
        barrier.wait()
        try:
            return action(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each racer got
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def kinds(results: list[object]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        key = type(r).__name__ if isinstance(r, BaseException) else "ok"
        out[key] = out.get(key, 0) + 1
    return out


def test_32_concurrent_debits_for_10_tokens(store):
    store.grant("carol", 10, "signup:carol")
    results = race(32, lambda i: store.create_with_debit(make_creation("carol", cost=1)))

    assert kinds(results) == {"ok": 10, "InsufficientTokens": 22}
    assert all(r.balance == 0 for r in results if isinstance(r, InsufficientTokens))
    assert store.balance("carol") == 0
    assert len(store.list_creations("carol", limit=100)[0]) == 10
    assert store.audit() == []


def test_32_concurrent_refunds_of_one_attempt_refund_once(store):
    store.grant("carol", 10, "signup:carol")
    creation = store.create_with_debit(make_creation("carol", cost=10)).creation
    results = race(32, lambda i: store.refund(creation.id, 1))

    assert results.count(True) == 1 and results.count(False) == 31, kinds(results)
    assert store.balance("carol") == 10
    assert store.get_creation(creation.id).charge["refunded"] == {"1": True}
    assert store.audit() == []


def test_20_parallel_requests_with_one_idempotency_key_create_one_creation(store):
    store.grant("carol", 10, "signup:carol")
    results = race(20, lambda i: store.create_with_debit(make_creation("carol"), idempotency_key="tap-twice",
                                                         request_hash="same-body"))

    assert kinds(results) == {"ok": 20}
    assert len({r.creation.id for r in results}) == 1
    assert [r.replayed for r in results].count(False) == 1
    assert store.balance("carol") == 9
    assert store.audit() == []


def test_active_limit_holds_under_concurrency(store):
    store.grant("carol", 100, "signup:carol")
    results = race(12, lambda i: store.create_with_debit(make_creation("carol"), max_active=3))

    assert kinds(results) == {"ok": 3, "TooManyActive": 9}
    assert all(isinstance(r, TooManyActive) for r in results if isinstance(r, Exception))
    assert store.balance("carol") == 97


# --- across processes / clients: no in-process lock helps here ---------------------------------

def test_firestore_debits_from_separate_clients(firestore_emulator, firestore_project):
    """Separate clients (as separate API instances are) share no lock: the Firestore transaction alone
    must keep the books. One racer per client: the emulator breaks each lock cycle only after 2 s."""
    stores = [FirestoreStore(firestore.Client(project=firestore_project)) for _ in range(2)]
    stores[0].grant("dave", 1, "signup:dave")

    results = race(2, lambda i: stores[i].create_with_debit(make_creation("dave")))

    assert kinds(results) == {"ok": 1, "InsufficientTokens": 1}
    assert stores[1].balance("dave") == 0
    assert stores[1].audit() == []
    for s in stores:
        s.close()


def test_firestore_refunds_from_separate_clients(firestore_emulator, firestore_project):
    stores = [FirestoreStore(firestore.Client(project=firestore_project)) for _ in range(2)]
    stores[0].grant("dave", 3, "signup:dave")
    creation = stores[0].create_with_debit(make_creation("dave", cost=3)).creation

    results = race(2, lambda i: stores[i].refund(creation.id, 1))

    assert sorted(results) == [False, True], kinds(results)
    assert stores[1].balance("dave") == 3
    assert stores[1].audit() == []
    for s in stores:
        s.close()


_DEBIT_PROCESS = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from creations.errors import InsufficientTokens
    from creations.model import Creation, CreationType
    from creations.store.sqlite import SqliteStore

    path, go, count, ready = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    store = SqliteStore(path)
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
    made = refused = 0
    for _ in range(count):
        c = Creation(id=Creation.new_id(), uid="erin", type=CreationType.IMAGE, prompt="p", options={}, cost=1)
        try:
            store.create_with_debit(c)
            made += 1
        except InsufficientTokens:
            refused += 1
    print(json.dumps({"made": made, "refused": refused}))
""")


def test_sqlite_debits_from_separate_processes(tmp_path: Path):
    """Step jobs are separate processes on the same file: the file lock, not a Python lock, decides."""
    from creations.store.sqlite import SqliteStore

    path = tmp_path / "shared.sqlite3"
    store = SqliteStore(path)
    store.grant("erin", 10, "signup:erin")
    go = tmp_path / "go"
    repo = Path(__file__).resolve().parents[2]
    ready = [tmp_path / f"ready-{i}" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", _DEBIT_PROCESS, str(path), str(go), "8", str(r)],
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in ready]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # all four start racing together
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outcomes.append(json.loads(out))

    assert sum(o["made"] for o in outcomes) == 10
    assert sum(o["refused"] for o in outcomes) == 22
    assert store.balance("erin") == 0
    assert store.audit() == []
    store.close()
