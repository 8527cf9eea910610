"""A chaos run of the local stack: many creations with random faults, kills and restarts, then
the money invariants checked. Used by tests/chaos (bounded) and bench/chaos_bench.py (figures).

    report = run_chaos(data_dir, seed=..., creations=200, kills=2)
    assert report.violations == []

The stack is `phoenix dev` in a process group of its own (in-process jobs, instant generation, a
virtual clock), started with the fault switches below; each creation's prompt carries the
markers of the faults it meets (or a generation-server tag), chosen at random from the seed.
Every POST carries an Idempotency-Key; some are sent twice on purpose, and every POST cut off by
a kill is sent again after the restart. At the end, creations whose execution ended without a
terminal state (an engine restart ends them; or resumes them, where the engine does) are settled
by the reconciler, as `phoenix ops reconcile` does, and then:

- nothing is pending or processing;
- every draft is charged exactly once (one debit, no refund) and its media downloads, with the
  recorded SHA-256;
- every failure is refunded exactly once (each debited attempt has one refund);
- the ledger audit is clean, and each user's balance is the grant less the drafts' cost;
- each Idempotency-Key made one creation: sending it twice answered the same creation.
"""
from __future__ import annotations

import collections
import hashlib
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

from creations.joblog import JobLog
from creations.model import EntryKind, Status
from creations.pipeline import StepServices
from creations.reconcile import Action, Reconciler
from creations.settings import Settings
from creations.triggers import executions_reader_from_settings, workflow_path
from devstack.stack import BUCKET, PROJECT, REGION, WORKFLOW_ID
from tests.support.devprocess import DevProcess

# Fault menu: marker -> (switch given to `phoenix dev --fault`, what it is, whether the creation
# can still become a draft). A marker "#x" in a prompt turns its switch on for that creation.
SWITCHES: dict[str, tuple[str | None, str, bool]] = {
    "#cf-gen-fail1": ("generate:fail:1", "generate fails once", True),
    "#cf-gen-fail": ("generate:fail", "generate fails every time", False),
    "#cf-thumb-crash": ("thumbnail:crash_after:1", "thumbnail crashes after its work", True),
    "#cf-up-crash": ("upload:crash_after:1", "upload crashes after its work", True),
    "#cf-fin-crash": ("finalize:crash_after:1", "finalize crashes after its work", True),
    "#cf-twice": ("*:twice", "every job runs twice", True),
    "#cf-s3-1": ("upload:storage_down:1", "storage down for one upload", True),
    "#cf-store-1": ("mark-processing:store_down:1", "store down for one job", True),
    "#cf-fin-store": ("finalize:store_down:2", "store down for two finalize runs", True),
    "#cf-gen-down": ("generate:generation_down:1", "generation service down once", True),
    "#cf-refund-crash": ("refund:crash_after:1", "refund crashes after its work", True),
    "#flaky": (None, "provider answers 503 twice", True),
    "#blocked": (None, "content policy refusal", False),
    "#down": (None, "provider down for good", False),
}
# (marker, weight); "" is no fault. A refund fault is paired with a failing generate.
MENU = [("", 40), ("#cf-gen-fail1", 6), ("#cf-gen-fail", 4), ("#cf-thumb-crash", 5), ("#cf-up-crash", 5),
        ("#cf-fin-crash", 5), ("#cf-twice", 6), ("#cf-s3-1", 3), ("#cf-store-1", 4), ("#cf-fin-store", 3),
        ("#cf-gen-down", 4), ("#cf-refund-crash #cf-gen-fail", 3), ("#flaky", 4), ("#blocked", 5), ("#down", 3)]
USERS = 20
GRANT = 1000
SETTLE_TIMEOUT = 240.0


@dataclass
class Planned:
    key: str                 # Idempotency-Key
    user: int
    type: str
    prompt: str
    markers: tuple[str, ...]
    send_twice: bool
    ids: list[str] = field(default_factory=list)   # every creation id an answer named

    @property
    def may_draft(self) -> bool:
        return all(SWITCHES[m][2] for m in self.markers)


@dataclass
class ChaosReport:
    seed: int
    creations: int = 0
    drafts: int = 0
    failed: int = 0
    faults: collections.Counter = field(default_factory=collections.Counter)
    kills: collections.Counter = field(default_factory=collections.Counter)
    duplicates_sent: int = 0
    sent_again: int = 0
    reconciled: int = 0
    wall_seconds: float = 0.0
    phases: collections.Counter = field(default_factory=collections.Counter)   # phase -> seconds
    violations: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"chaos seed {self.seed}",
            f"creations {self.creations}: {self.drafts} drafts, {self.failed} failed",
            f"faults injected {sum(self.faults.values())}: "
            + ", ".join(f"{SWITCHES[m][1]} {n}" for m, n in sorted(self.faults.items())),
            f"stack kills {sum(self.kills.values())}: " + ", ".join(f"{k} {n}" for k, n in sorted(self.kills.items())),
            f"duplicate POSTs {self.duplicates_sent}; POSTs sent again (answer lost to a kill) {self.sent_again}",
            f"creations settled by the reconciler {self.reconciled}",
            f"violations {len(self.violations)}",
            f"wall time {self.wall_seconds:.1f} s ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items()) + ")",
        ]


def dev_flags() -> list[str]:
    flags = ["--in-process", "--instant", "--clock", "virtual"]
    for marker, (switch, _, _) in SWITCHES.items():
        if switch is not None:
            flags += ["--fault", f"{switch}@{marker}"]
    return flags


def plan(rng: random.Random, creations: int) -> list[Planned]:
    choices, weights = zip(*MENU)
    out = []
    for n in range(creations):
        picked = rng.choices(choices, weights)[0]
        markers = tuple(picked.split())
        type_ = "video" if rng.random() < 0.1 else "image"
        prompt = f"chaos tile {n} {uuid.UUID(int=rng.getrandbits(128)).hex[:8]} {' '.join(markers)}".strip()
        out.append(Planned(key=f"chaos-{n}-{rng.getrandbits(32):08x}", user=n % USERS, type=type_, prompt=prompt,
                           markers=markers, send_twice=rng.random() < 0.08))
    return out


class ChaosRun:
    def __init__(self, data_dir: Path, seed: int, creations: int, kills: int, batch: int = 40):
        self.data_dir = Path(data_dir)
        self.rng = random.Random(seed)
        self.report = ChaosReport(seed=seed)
        self.planned = plan(self.rng, creations)
        self.kills = kills
        self.batch = batch
        self.dev: DevProcess | None = None
        self.clients: dict[int, httpx.Client] = {}
        self.lock = threading.Lock()
        self.env = {"PHOENIX_MAX_ACTIVE_PER_USER": "1000"}

    # --- the stack ---------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        self.dev = DevProcess(self.data_dir, *dev_flags(), env=self.env).start()
        for client in self.clients.values():
            client.close()
        self.clients = {u: self.dev.client(f"chaos-user-{u}") for u in range(USERS)}
        self.report.phases["stack starts"] += time.monotonic() - began

    def kill(self, how: str) -> None:
        assert self.dev is not None
        if how == "sigkill":
            self.dev.crash()
        else:
            try:
                code = self.dev.interrupt()
            except AssertionError:       # it did not stop in time, and was killed
                how = "ctrl-c, then sigkill"
                code = 0
            if code != 0:
                with self.lock:
                    self.report.violations.append(f"phoenix dev exited {code} on Ctrl-C (0 expected)")
        with self.lock:
            self.report.kills[how] += 1

    # --- creations ---------------------------------------------------------------------------

    def post(self, p: Planned) -> bool:
        """POST it (twice when planned); False when the answer was lost (the stack went away)."""
        body = {"type": p.type, "prompt": p.prompt}
        if p.type == "video":
            body["options"] = {"durationSeconds": 4}
        for _ in range(2 if p.send_twice else 1):
            try:
                response = self.clients[p.user].post("/v1/creations", json=body, headers={"Idempotency-Key": p.key})
            except httpx.TransportError:
                return False
            if response.status_code >= 500:
                return False
            if response.status_code != 202:
                with self.lock:
                    self.report.violations.append(
                        f"{p.key}: POST answered {response.status_code} {response.text[:200]}"
                    )
                return True
            with self.lock:
                p.ids.append(response.json()["id"])
        return True

    def run(self) -> ChaosReport:
        started = time.monotonic()
        store = None
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            store_path = self.data_dir / "phoenix.sqlite3"
            from creations.store.sqlite import SqliteStore

            store = SqliteStore(store_path)
            for u in range(USERS):
                store.grant(f"chaos-user-{u}", GRANT, f"grant:chaos-user-{u}")
            self.start()
            batches = [self.planned[i:i + self.batch] for i in range(0, len(self.planned), self.batch)]
            kill_at = set(self.rng.sample(range(len(batches)), min(self.kills, len(batches))))
            for index, batch in enumerate(batches):
                began = time.monotonic()
                self._send(batch, kill=index in kill_at)
                self.report.phases["submitting, restarts included"] += time.monotonic() - began
            began = time.monotonic()
            self._settle(store)
            self.report.phases["settling"] += time.monotonic() - began
            began = time.monotonic()
            self._check(store)
            self.report.phases["checking"] += time.monotonic() - began
        finally:
            for client in self.clients.values():
                client.close()
            if self.dev is not None and self.dev.proc is not None and self.dev.proc.poll() is None:
                self.dev.interrupt()
            if store is not None:
                store.close()
        self.report.wall_seconds = time.monotonic() - started
        return self.report

    def _send(self, batch: list[Planned], *, kill: bool) -> None:
        killer = None
        if kill:
            how = self.rng.choice(["sigkill", "ctrl-c"])
            delay = self.rng.uniform(0.05, 1.0)
            killer = threading.Timer(delay, self.kill, args=(how,))
            killer.start()
        with ThreadPoolExecutor(max_workers=12) as pool:
            sent = list(pool.map(self.post, batch))
        if killer is not None:
            killer.join()
            self.start()
        # What a client does with a POST whose answer it never got: send it again, same key.
        lost = [p for p, ok in zip(batch, sent) if not ok]
        for _ in range(3):
            if not lost:
                return
            self.report.sent_again += len(lost)
            with ThreadPoolExecutor(max_workers=12) as pool:
                again = list(pool.map(self.post, lost))
            lost = [p for p, ok in zip(lost, again) if not ok]
        for p in lost:
            self.report.violations.append(f"{p.key}: POST unanswered after three tries")

    def _settle(self, store) -> None:
        """Until nothing is pending or processing: let running executions end; creations whose
        execution ended without a terminal state are compensated by the reconciler."""
        assert self.dev is not None
        settings = Settings(store="sqlite", sqlite_path=self.data_dir / "phoenix.sqlite3", trigger="local",
                            local_engine_url=self.dev.urls["executions"], gcp_project=PROJECT, gcp_region=REGION,
                            workflow_name=WORKFLOW_ID, s3_endpoint_url=self.dev.urls["s3"], s3_region="us-east-1",
                            s3_bucket=BUCKET, s3_access_key_id="local", s3_secret_access_key="local")
        reader = executions_reader_from_settings(settings)
        log_file = open(self.data_dir / "reconcile.log", "a", encoding="utf-8")
        services = StepServices(settings, store=store, log=JobLog(log_file))
        reconciler = Reconciler(store, reader, services, log=services.log.bind(command="chaos"),
                                workflow=workflow_path(PROJECT, REGION, WORKFLOW_ID))
        deadline = time.monotonic() + SETTLE_TIMEOUT
        try:
            while True:
                stuck = store.find_creations(statuses=[Status.PENDING, Status.PROCESSING], limit=10_000)
                if not stuck:
                    return
                if time.monotonic() > deadline:
                    self.report.violations.append(
                        f"{len(stuck)} creations still pending or processing after {SETTLE_TIMEOUT:g} s: "
                        + ", ".join(c.id for c in stuck[:5]))
                    return
                for r in reconciler.run(older_than=timedelta(0), limit=10_000, dry_run=False):
                    if r.action is Action.COMPENSATED:
                        self.report.reconciled += 1
                time.sleep(0.5)
        finally:
            services.close()
            reader.close()
            log_file.close()

    def _check(self, store) -> None:
        r = self.report
        v = r.violations
        by_id = {}
        for p in self.planned:
            for marker in p.markers:
                r.faults[marker] += 1
            if p.send_twice:
                r.duplicates_sent += 1
            distinct = set(p.ids)
            if len(distinct) != 1:
                v.append(f"Idempotency-Key {p.key} answered {len(distinct)} creations: {sorted(distinct)}")
                continue
            by_id[distinct.pop()] = p
        spent: collections.Counter = collections.Counter()
        http = httpx.Client(timeout=30.0)
        try:
            for u in range(USERS):
                uid = f"chaos-user-{u}"
                entries = store.ledger(uid)
                mine = []
                token = None
                while True:
                    items, token = store.list_creations(uid, limit=100, page_token=token)
                    mine += items
                    if not token:
                        break
                unknown = [c.id for c in mine if c.id not in by_id]
                if unknown:
                    v.append(f"{uid}: creations no Idempotency-Key answered (a duplicate?): {unknown}")
                for c in mine:
                    p = by_id.get(c.id)
                    debits = {e.attempt for e in entries if e.creation_id == c.id and e.kind is EntryKind.DEBIT}
                    refunds = [e.attempt for e in entries if e.creation_id == c.id and e.kind is EntryKind.REFUND]
                    if len(refunds) != len(set(refunds)):
                        v.append(f"{c.id}: an attempt refunded twice: {refunds}")
                    r.creations += 1
                    if c.status is Status.DRAFT:
                        r.drafts += 1
                        if len(debits) - len(set(refunds)) != 1:
                            v.append(f"{c.id}: a draft charged {len(debits) - len(set(refunds))} times")
                        if p is not None and not p.may_draft:
                            v.append(f"{c.id}: a draft despite {p.markers}")
                        self._check_media(http, c, v)
                        spent[uid] += c.cost
                    elif c.status is Status.FAILED:
                        r.failed += 1
                        if set(refunds) != debits:
                            v.append(f"{c.id}: failed, debited {sorted(debits)}, refunded {sorted(refunds)}")
                    else:
                        v.append(f"{c.id}: left {c.status.value}")
                balance = store.balance(uid)
                if balance != GRANT - spent[uid]:
                    v.append(f"{uid}: balance {balance}, expected {GRANT} - {spent[uid]} spent on drafts")
        finally:
            http.close()
        missing = [p.key for p in self.planned if p.ids and p.ids[0] not in by_id.keys()]
        if missing:
            v.append(f"accepted but not found: {missing[:5]}")
        findings = store.audit()
        if findings:
            v.append(f"ledger audit: {findings}")

    def _check_media(self, http: httpx.Client, creation, v: list[str]) -> None:
        uid = creation.uid
        client = self.clients[int(uid.rsplit("-", 1)[1])]
        out = client.get(f"/v1/creations/{creation.id}")
        if out.status_code != 200 or not out.json().get("media"):
            v.append(f"{creation.id}: a draft without media in the API ({out.status_code})")
            return
        media = http.get(out.json()["media"]["url"])
        if media.status_code != 200:
            v.append(f"{creation.id}: media answered {media.status_code}")
        elif hashlib.sha256(media.content).hexdigest() != creation.media["sha256"]:
            v.append(f"{creation.id}: media differs from its recorded SHA-256")


def run_chaos(data_dir: Path, *, seed: int, creations: int = 200, kills: int = 2) -> ChaosReport:
    return ChaosRun(data_dir, seed, creations, kills).run()
