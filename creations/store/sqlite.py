"""The embedded store: one SQLite file, safe across threads and processes.

Every write is a `BEGIN IMMEDIATE` transaction (the write lock is taken before the first read, so
two writers never both read a balance and then both spend it); WAL lets readers run alongside the
writer; `busy_timeout` makes a writer wait for the lock instead of failing. Each thread (and each
process: step jobs are subprocesses on the same file) gets its own connection.

A creation is stored as its JSON document plus the columns queries need (uid, status, timestamps).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from ..errors import (
    CreationsError,
    IdempotencyConflict,
    InsufficientTokens,
    NotFound,
    StaleAttempt,
    StoreUnavailable,
    TooManyActive,
)
from ..model import Creation, CreationError, EntryKind, LedgerEntry, Status, utcnow
from .audit import ChargeRecord, find_discrepancies
from .base import AuditFinding, CreateResult, Store
from .paging import MAX_SEARCH_PAGE_SIZE, check_limit, decode_page_token, encode_page_token
from .records import as_utc, check_id, checked_update, idempotency_doc_id, new_creation_record, settle_refund

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    uid    TEXT PRIMARY KEY,
    tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS creations (
    id         TEXT PRIMARY KEY,
    uid        TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS creations_by_user ON creations (uid, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS creations_by_user_status ON creations (uid, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS creations_by_status ON creations (status, updated_at, id);
CREATE TABLE IF NOT EXISTS ledger (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    uid         TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('grant', 'debit', 'refund')),
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    creation_id TEXT,
    attempt     INTEGER,
    at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_user ON ledger (uid, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    key          TEXT PRIMARY KEY,
    uid          TEXT NOT NULL,
    request_hash TEXT,
    creation_id  TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
"""


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced: when its thread ends, it is closed and forgotten."""


def _ts(value: datetime) -> str:
    """A timestamp as fixed-width UTC text, so text order is time order."""
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _owner_and_time(where: list[str], params: list, uid, created_from, created_before) -> None:
    """The user and creation-time conditions of the operator queries, added to `where` / `params`."""
    if uid is not None:
        where.append("uid = ?")
        params.append(uid)
    if created_from is not None:
        where.append("created_at >= ?")
        params.append(_ts(created_from))
    if created_before is not None:
        where.append("created_at < ?")
        params.append(_ts(created_before))


def _parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class SqliteStore(Store):
    """The Store in one SQLite file at `path` (created with its parent directory if missing)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_seconds: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout = busy_timeout_seconds
        self._local = threading.local()
        # Weak: a finished thread's connection is closed when the thread's locals go away.
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._connections_lock = threading.Lock()
        # SQLite admits one writer at a time. Threads of this process queue on this lock instead
        # of on SQLite's busy handler, which sleeps in steps of up to 100 ms and makes a long
        # tail under load; other processes still meet at SQLite's own lock (BEGIN IMMEDIATE).
        self._write_lock = threading.Lock()
        self._closed = False
        # Called after each commit of this process (quick, never raising): the change feed.
        self.commit_hooks: list[Callable[[], None]] = []
        with self._tx() as db:
            if db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    # --- connections and transactions ------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable("the store was closed")
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # A new thread, or a forked child that must not share its parent's connection.
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False, factory=_Connection)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed debit or refund survives a power cut, not only a process crash.
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the SQLite store at {self.path}: {exc}") from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._connections_lock:
            self._connections.add(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the write lock is held from the start (BEGIN IMMEDIATE)."""
        with self._write_lock:
            yield from self._locked_tx()

    def _locked_tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"the SQLite store at {self.path} stayed locked: {exc}") from exc
        try:
            yield db
        except sqlite3.OperationalError as exc:
            db.execute("ROLLBACK")
            raise StoreUnavailable(f"the SQLite store at {self.path} failed mid-transaction: {exc}") from exc
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreUnavailable(f"could not commit to the SQLite store at {self.path}: {exc}") from exc
        for hook in list(self.commit_hooks):
            hook()

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"could not read the SQLite store at {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._connections_lock:
            for conn in list(self._connections):
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._closed = True

    # --- rows --------------------------------------------------------------------------------

    @staticmethod
    def _get(db: sqlite3.Connection, creation_id: str) -> Creation | None:
        row = db.execute("SELECT doc FROM creations WHERE id = ?", (creation_id,)).fetchone()
        return Creation.from_dict(json.loads(row[0])) if row else None

    @staticmethod
    def _balance(db: sqlite3.Connection, uid: str) -> int:
        row = db.execute("SELECT tokens FROM users WHERE uid = ?", (uid,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _set_balance(db: sqlite3.Connection, uid: str, tokens: int) -> None:
        db.execute("INSERT INTO users (uid, tokens) VALUES (?, ?) "
                   "ON CONFLICT (uid) DO UPDATE SET tokens = excluded.tokens", (uid, tokens))

    @staticmethod
    def _put(db: sqlite3.Connection, creation: Creation, *, insert: bool = False) -> None:
        values = (creation.uid, creation.status.value, _ts(creation.created_at), _ts(creation.updated_at),
                  json.dumps(creation.to_dict(), separators=(",", ":")), creation.id)
        if insert:
            db.execute("INSERT INTO creations (uid, status, created_at, updated_at, doc, id) "
                       "VALUES (?, ?, ?, ?, ?, ?)", values)
        else:
            db.execute("UPDATE creations SET uid = ?, status = ?, created_at = ?, updated_at = ?, doc = ? "
                       "WHERE id = ?", values)

    @staticmethod
    def _add_entry(db: sqlite3.Connection, entry: LedgerEntry) -> None:
        db.execute("INSERT INTO ledger (id, uid, kind, amount, creation_id, attempt, at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (entry.id, entry.uid, entry.kind.value, entry.amount, entry.creation_id, entry.attempt,
                    _ts(entry.at)))

    @staticmethod
    def _entry(row: tuple) -> LedgerEntry:
        id_, uid, kind, amount, creation_id, attempt, at = row
        return LedgerEntry(id=id_, uid=uid, kind=EntryKind(kind), amount=int(amount), creation_id=creation_id,
                           attempt=attempt, at=_parse_ts(at))

    _ENTRY_COLUMNS = "id, uid, kind, amount, creation_id, attempt, at"

    # --- creations and money -------------------------------------------------------------------

    def create_with_debit(self, creation, *, idempotency_key=None, request_hash=None, max_active=None):
        record = new_creation_record(creation)
        key = idempotency_doc_id(record.uid, idempotency_key) if idempotency_key is not None else None
        with self._tx() as db:
            if key is not None:
                row = db.execute("SELECT request_hash, creation_id FROM idempotency WHERE key = ?",
                                 (key,)).fetchone()
                if row is not None:
                    if row[0] != request_hash:
                        raise IdempotencyConflict(
                            "this Idempotency-Key was already used for a different request; "
                            "send a new key for a new request")
                    first = self._get(db, row[1])
                    if first is None:
                        raise NotFound(f"the creation {row[1]} made for this Idempotency-Key was deleted")
                    return CreateResult(creation=first, balance=self._balance(db, record.uid), replayed=True)
            if max_active is not None:
                (active,) = db.execute(
                    "SELECT COUNT(*) FROM creations WHERE uid = ? AND status IN (?, ?)",
                    (record.uid, Status.PENDING.value, Status.PROCESSING.value)).fetchone()
                if active >= max_active:
                    raise TooManyActive(
                        f"{active} creations are already pending or processing (the limit is {max_active}); "
                        "wait for one to finish")
            balance = self._balance(db, record.uid)
            if balance < record.cost:
                raise InsufficientTokens(
                    f"not enough tokens: this {record.type.value} costs {record.cost} and the balance is {balance}",
                    balance=balance, cost=record.cost)
            try:
                self._put(db, record, insert=True)
                self._add_entry(db, LedgerEntry(id=LedgerEntry.debit_id(record.id, 1), uid=record.uid,
                                                kind=EntryKind.DEBIT, amount=record.cost,
                                                creation_id=record.id, attempt=1))
            except sqlite3.IntegrityError as exc:
                raise CreationsError(f"a creation with id {record.id} already exists (or existed)",
                                     code="ALREADY_EXISTS") from exc
            self._set_balance(db, record.uid, balance - record.cost)
            if key is not None:
                db.execute("INSERT INTO idempotency (key, uid, request_hash, creation_id, created_at) "
                           "VALUES (?, ?, ?, ?, ?)", (key, record.uid, request_hash, record.id, _ts(utcnow())))
        return CreateResult(creation=record, balance=balance - record.cost, replayed=False)

    def get_creation(self, creation_id: str) -> Creation | None:
        rows = self._read("SELECT doc FROM creations WHERE id = ?", (creation_id,))
        return Creation.from_dict(json.loads(rows[0][0])) if rows else None

    def list_creations(self, uid, *, status=None, limit=20, page_token=None):
        check_limit(limit)
        where, params = ["uid = ?"], [uid]
        if status is not None:
            where.append("status = ?")
            params.append(Status(status).value)
        if page_token:
            after_at, after_id = decode_page_token(page_token)
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [_ts(after_at), _ts(after_at), after_id]
        rows = self._read(f"SELECT doc FROM creations WHERE {' AND '.join(where)} "
                          "ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit + 1))
        items = [Creation.from_dict(json.loads(r[0])) for r in rows[:limit]]
        token = encode_page_token(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        return items, token

    def update_creation(self, creation_id: str, mutate: Callable[[Creation], Creation | None]) -> Creation:
        with self._tx() as db:
            current = self._get(db, creation_id)
            if current is None:
                raise NotFound(f"creation {creation_id} does not exist")
            changed = mutate(Creation.from_dict(current.to_dict()))
            if changed is None:
                return current
            changed = checked_update(current, changed)
            self._put(db, changed)
        return changed

    def delete_creation(self, creation_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM creations WHERE id = ?", (creation_id,))

    def debit(self, creation_id: str, attempt: int) -> bool:
        with self._tx() as db:
            creation = self._get(db, creation_id)
            if creation is None:
                raise NotFound(f"creation {creation_id} does not exist")
            if attempt != creation.attempt:
                raise StaleAttempt(f"attempt {attempt} is not current: creation {creation_id} is at "
                                   f"attempt {creation.attempt}")
            entry_id = LedgerEntry.debit_id(creation_id, attempt)
            if db.execute("SELECT 1 FROM ledger WHERE id = ?", (entry_id,)).fetchone():
                return False
            balance = self._balance(db, creation.uid)
            if balance < creation.cost:
                raise InsufficientTokens(
                    f"not enough tokens: attempt {attempt} costs {creation.cost} and the balance is {balance}",
                    balance=balance, cost=creation.cost)
            self._add_entry(db, LedgerEntry(id=entry_id, uid=creation.uid, kind=EntryKind.DEBIT,
                                            amount=creation.cost, creation_id=creation_id, attempt=attempt))
            self._set_balance(db, creation.uid, balance - creation.cost)
            creation.charge["debited"][str(attempt)] = True
            creation.updated_at = utcnow()
            self._put(db, creation)
        return True

    def refund(self, creation_id: str, attempt: int, *, fail_with: CreationError | None = None) -> bool:
        with self._tx() as db:
            may_refund, creation, marked = settle_refund(self._get(db, creation_id), attempt, fail_with)
            if not may_refund:
                return False
            row = db.execute(f"SELECT {self._ENTRY_COLUMNS} FROM ledger WHERE id = ?",
                             (LedgerEntry.debit_id(creation_id, attempt),)).fetchone()
            refund_id = LedgerEntry.refund_id(creation_id, attempt)
            refunded = row is not None and not db.execute("SELECT 1 FROM ledger WHERE id = ?", (refund_id,)).fetchone()
            if refunded:
                debit = self._entry(row)
                self._add_entry(db, LedgerEntry(id=refund_id, uid=debit.uid, kind=EntryKind.REFUND,
                                                amount=debit.amount, creation_id=creation_id, attempt=attempt))
                self._set_balance(db, debit.uid, self._balance(db, debit.uid) + debit.amount)
                if creation is not None:
                    creation.charge["refunded"][str(attempt)] = True
            if creation is not None and (refunded or marked):
                creation.updated_at = utcnow()
                self._put(db, creation)
        return refunded

    # --- users and the ledger ----------------------------------------------------------------

    def grant(self, uid: str, amount: int, entry_id: str) -> int:
        check_id("uid", uid)
        check_id("ledger entry id", entry_id)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError(f"a grant must be a positive whole number of tokens, got {amount!r}")
        with self._tx() as db:
            row = db.execute(f"SELECT {self._ENTRY_COLUMNS} FROM ledger WHERE id = ?", (entry_id,)).fetchone()
            if row is not None:
                existing = self._entry(row)
                if (existing.uid, existing.kind, existing.amount) != (uid, EntryKind.GRANT, amount):
                    raise IdempotencyConflict(f"ledger entry {entry_id} already exists for a different move "
                                              f"({existing.kind.value} of {existing.amount} to {existing.uid})")
                return self._balance(db, uid)
            self._add_entry(db, LedgerEntry(id=entry_id, uid=uid, kind=EntryKind.GRANT, amount=amount))
            balance = self._balance(db, uid) + amount
            self._set_balance(db, uid, balance)
        return balance

    def balance(self, uid: str) -> int:
        rows = self._read("SELECT tokens FROM users WHERE uid = ?", (uid,))
        return int(rows[0][0]) if rows else 0

    def ledger(self, uid: str) -> list[LedgerEntry]:
        rows = self._read(f"SELECT {self._ENTRY_COLUMNS} FROM ledger WHERE uid = ? ORDER BY seq", (uid,))
        return [self._entry(r) for r in rows]

    def audit(self) -> list[AuditFinding]:
        # One read transaction, so balances, ledger and charges are one consistent snapshot.
        db = self._db()
        db.execute("BEGIN")
        try:
            balances = {uid: int(t) for uid, t in db.execute("SELECT uid, tokens FROM users")}
            entries = [self._entry(r) for r in db.execute(f"SELECT {self._ENTRY_COLUMNS} FROM ledger")]
            charges = []
            for (doc,) in db.execute("SELECT doc FROM creations"):
                d = json.loads(doc)
                charge = d.get("charge") or {}
                charges.append(ChargeRecord(d["id"], d["uid"], charge.get("debited") or {},
                                            charge.get("refunded") or {}))
        finally:
            db.execute("COMMIT")
        return find_discrepancies(balances, entries, charges)

    # --- operations ----------------------------------------------------------------------------

    def find_creations(self, *, statuses, updated_before=None, limit=100):
        values = [Status(s).value for s in statuses]
        if not values:
            return []
        where = [f"status IN ({', '.join('?' * len(values))})"]
        params: list = list(values)
        if updated_before is not None:
            where.append("updated_at < ?")
            params.append(_ts(updated_before))
        rows = self._read(f"SELECT doc FROM creations WHERE {' AND '.join(where)} "
                          "ORDER BY updated_at, id LIMIT ?", (*params, int(limit)))
        return [Creation.from_dict(json.loads(r[0])) for r in rows]

    def search_creations(self, *, statuses=None, uid=None, created_from=None, created_before=None,
                         limit=100, page_token=None):
        check_limit(limit, MAX_SEARCH_PAGE_SIZE)
        where: list[str] = []
        params: list = []
        if statuses is not None:
            values = [Status(s).value for s in statuses]
            if not values:
                return [], None
            where.append(f"status IN ({', '.join('?' * len(values))})")
            params += values
        _owner_and_time(where, params, uid, created_from, created_before)
        if page_token:
            after_at, after_id = decode_page_token(page_token)
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params += [_ts(after_at), _ts(after_at), after_id]
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._read(f"SELECT doc FROM creations {clause}ORDER BY created_at DESC, id DESC LIMIT ?",
                          (*params, limit + 1))
        items = [Creation.from_dict(json.loads(r[0])) for r in rows[:limit]]
        token = encode_page_token(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        return items, token

    def count_creations(self, *, uid=None, created_from=None, created_before=None, types=None, codes=None):
        where, params = [], []
        for path, values in (("$.type", types), ("$.error.code", codes)):
            if values is not None:
                if not values:
                    return {s.value: 0 for s in Status}
                where.append(f"json_extract(doc, '{path}') IN ({', '.join('?' * len(values))})")
                params += list(values)
        _owner_and_time(where, params, uid, created_from, created_before)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        counts = {s.value: 0 for s in Status}
        for status, n in self._read(f"SELECT status, COUNT(*) FROM creations {clause}GROUP BY status", tuple(params)):
            counts[status] = int(n)
        return counts
