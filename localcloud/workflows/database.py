"""SQLite persistence of the engine: deployed revisions, executions, step entries and logs.

One connection, guarded by a lock (it may be ":memory:", which exists only on that
connection). Execution rows are written at once (they are few and readers rely on them); step
entries and log lines are queued and written in batches by a writer thread, so persisting them
costs the running step an append. `flush()` waits until everything queued so far is stored.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections import deque
from typing import Any

from localcloud.workflows.history import IN_PROGRESS, Entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS revisions (
    workflow_id TEXT NOT NULL,
    revision_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    filename TEXT NOT NULL,
    source TEXT NOT NULL,
    env TEXT NOT NULL,
    create_time REAL NOT NULL,
    PRIMARY KEY (workflow_id, revision_id)
);
CREATE TABLE IF NOT EXISTS executions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    workflow_id TEXT NOT NULL,
    revision_id TEXT NOT NULL,
    state TEXT NOT NULL,
    argument TEXT,
    result TEXT,
    error TEXT,
    create_time REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    labels TEXT NOT NULL,
    call_log_level TEXT NOT NULL,
    stats TEXT,
    owner TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions (workflow_id, seq);
CREATE TABLE IF NOT EXISTS step_entries (
    key INTEGER PRIMARY KEY,          -- (execution seq << 32) + entry id
    entry_id INTEGER NOT NULL,
    routine TEXT NOT NULL,
    step TEXT NOT NULL,
    step_type TEXT NOT NULL,
    state TEXT NOT NULL,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    exception TEXT,
    parent INTEGER,
    meta TEXT
);
CREATE TABLE IF NOT EXISTS logs (
    key INTEGER PRIMARY KEY,          -- (execution seq << 32) + line number
    time REAL NOT NULL,
    severity TEXT NOT NULL,
    text_payload TEXT,
    json_payload TEXT
);
"""

EXECUTION_COLUMNS = ("seq", "id", "workflow_id", "revision_id", "state", "argument", "result",
                     "error", "create_time", "start_time", "end_time", "labels",
                     "call_log_level", "stats", "owner")


KEY_SHIFT = 32   # row keys of step entries and log lines: (execution seq << 32) + number


def key_base(execution_seq: int) -> int:
    return execution_seq << KEY_SHIFT


class LogLine(tuple):
    """(key, time, severity, text_payload, json_payload) queued for the writer."""

    __slots__ = ()


def dumps(value: Any) -> str:
    """JSON text of a value; bytes and other non-JSON values become their text form."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_fallback)
    except RuntimeError:   # a dict changed while being encoded: encode a copy
        return json.dumps(_copy(value), ensure_ascii=False, separators=(",", ":"),
                          default=_fallback)
    except ValueError:     # NaN / Infinity
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_fallback,
                          allow_nan=True)


def _fallback(value: Any) -> Any:
    if isinstance(value, bytes):
        import base64
        return base64.b64encode(value).decode("ascii")
    return repr(value)


def _copy(value: Any) -> Any:
    if type(value) is dict:
        return {k: _copy(v) for k, v in list(value.items())}
    if type(value) is list:
        return [_copy(v) for v in list(value)]
    return value


def _row(e: Entry) -> tuple:
    return (e.key, e.id, e.routine, e.step, e.type, e.state, e.created, e.updated,
            None if e.error is None else dumps(e.error), e.parent,
            dumps(e.meta) if e.meta else None)


def owner_tag(engine_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{engine_id}"


class Database:
    def __init__(self, path: str):
        self.path = str(path)
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        with self.lock:
            if self.path != ":memory:":
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.conn.executescript(SCHEMA)
        self.queue: deque = deque()
        self.append = self.queue.append
        self._wake = threading.Event()
        self._open: list[Entry] = []   # entries stored while in progress, to store again
        self._stopping = False
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="wf-db-writer", daemon=True)
        self._writer.start()

    # -- batched writes
    def _write_loop(self) -> None:
        while True:
            self._wake.wait(0.05)
            self._wake.clear()
            try:
                self._drain()
            except Exception as exc:  # keep writing later batches; report this one
                import sys
                print(f"workflows engine: writing step entries failed: {exc!r}", file=sys.stderr)
            if self._stopping and not self.queue and not any(
                    e.state is not IN_PROGRESS for e in self._open):
                return

    def _drain(self) -> None:
        """Store what was queued: each new step entry once, and again when an entry stored
        while in progress has finished."""
        queue = self.queue
        if not queue and not self._open:
            return
        entries: list[Entry] = []
        logs: list[LogLine] = []
        barriers: list[threading.Event] = []
        popleft = queue.popleft
        while True:
            try:
                item = popleft()
            except IndexError:
                break
            kind = type(item)
            if kind is Entry:
                entries.append(item)
            elif kind is LogLine:
                logs.append(item)
            else:
                barriers.append(item)
        still_open = []
        finished = []
        for entry in self._open:
            if entry.state is IN_PROGRESS:
                still_open.append(entry)
            else:
                finished.append(entry)
        rows = []
        for entry in entries:
            if entry.state is IN_PROGRESS:
                still_open.append(entry)
            rows.append(_row(entry))
        rows.extend(_row(entry) for entry in finished)
        self._open = still_open
        try:
            if rows or logs:
                with self.lock:
                    self.conn.execute("BEGIN")
                    try:
                        if rows:
                            self.conn.executemany(
                                "INSERT OR REPLACE INTO step_entries VALUES "
                                "(?,?,?,?,?,?,?,?,?,?,?)", rows)
                        if logs:
                            self.conn.executemany(
                                "INSERT OR REPLACE INTO logs VALUES (?,?,?,?,?)", logs)
                        self.conn.execute("COMMIT")
                    except BaseException:
                        self.conn.execute("ROLLBACK")
                        raise
        finally:
            for barrier in barriers:
                barrier.set()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued before this call is stored."""
        if self._closed:
            return
        barrier = threading.Event()
        self.queue.append(barrier)
        self._wake.set()
        barrier.wait(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._stopping = True
        self._wake.set()
        self._writer.join(30)
        self._closed = True
        with self.lock:
            self.conn.close()

    # -- direct reads and writes
    def execute(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def insert_revision(self, row: tuple) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO revisions VALUES (?,?,?,?,?,?,?)", row)

    def latest_revision(self, workflow_id: str) -> tuple | None:
        rows = self.execute("SELECT workflow_id, revision_id, seq, filename, source, env, "
                            "create_time FROM revisions WHERE workflow_id=? ORDER BY seq DESC "
                            "LIMIT 1", (workflow_id,))
        return rows[0] if rows else None

    def revision(self, workflow_id: str, revision_id: str) -> tuple | None:
        rows = self.execute("SELECT workflow_id, revision_id, seq, filename, source, env, "
                            "create_time FROM revisions WHERE workflow_id=? AND revision_id=?",
                            (workflow_id, revision_id))
        return rows[0] if rows else None

    def insert_execution(self, fields: dict) -> int:
        """Insert an execution row; returns its seq."""
        columns = [c for c in EXECUTION_COLUMNS if c in fields]
        with self.lock:
            cursor = self.conn.execute(f"INSERT INTO executions ({','.join(columns)}) VALUES "
                                       f"({','.join('?' * len(columns))})",
                                       tuple(fields[c] for c in columns))
            return cursor.lastrowid

    def update_execution(self, execution_id: str, fields: dict) -> None:
        assignments = ",".join(f"{c}=?" for c in fields)
        with self.lock:
            self.conn.execute(f"UPDATE executions SET {assignments} WHERE id=?",
                              (*fields.values(), execution_id))

    def execution(self, execution_id: str) -> dict | None:
        rows = self.execute(f"SELECT {','.join(EXECUTION_COLUMNS)} FROM executions WHERE id=?",
                            (execution_id,))
        return dict(zip(EXECUTION_COLUMNS, rows[0])) if rows else None

    def executions(self, workflow_id: str) -> list[dict]:
        rows = self.execute(f"SELECT {','.join(EXECUTION_COLUMNS)} FROM executions "
                            f"WHERE workflow_id=? ORDER BY seq DESC", (workflow_id,))
        return [dict(zip(EXECUTION_COLUMNS, r)) for r in rows]

    def step_entries(self, execution_seq: int) -> list[tuple]:
        low = key_base(execution_seq)
        return self.execute("SELECT entry_id, routine, step, step_type, state, create_time, "
                            "update_time, exception, parent, meta FROM step_entries "
                            "WHERE key > ? AND key < ? ORDER BY key",
                            (low, low + (1 << KEY_SHIFT)))

    def logs(self, execution_seq: int) -> list[tuple]:
        low = key_base(execution_seq)
        return self.execute("SELECT key, time, severity, text_payload, json_payload FROM logs "
                            "WHERE key > ? AND key < ? ORDER BY key",
                            (low, low + (1 << KEY_SHIFT)))

    def orphaned(self, is_alive) -> list[dict]:
        """Executions left QUEUED or ACTIVE by an engine that is no longer running."""
        rows = self.execute(f"SELECT {','.join(EXECUTION_COLUMNS)} FROM executions "
                            f"WHERE state IN ('QUEUED', 'ACTIVE')")
        found = [dict(zip(EXECUTION_COLUMNS, r)) for r in rows]
        return [r for r in found if not is_alive(r["owner"])]

    def end_open_entries(self, execution_seq: int, now: float, state: str) -> None:
        """Give the entries an interrupted run left in progress their final `state`."""
        low = key_base(execution_seq)
        with self.lock:
            self.conn.execute("UPDATE step_entries SET state=?, update_time=? "
                              "WHERE key > ? AND key < ? AND state=?",
                              (state, now, low, low + (1 << KEY_SHIFT), IN_PROGRESS))

    def last_numbers(self, execution_seq: int) -> tuple[int, int]:
        """(the last step entry id, the last log line key) stored for an execution; 0 if none."""
        low, high = key_base(execution_seq), key_base(execution_seq + 1)
        entry = self.execute("SELECT MAX(entry_id) FROM step_entries WHERE key > ? AND key < ?",
                             (low, high))[0][0]
        log = self.execute("SELECT MAX(key) FROM logs WHERE key > ? AND key < ?", (low, high))[0][0]
        return entry or 0, log or 0
