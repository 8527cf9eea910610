"""Change notification for live status streams: "something a subscriber may care about changed".

A subscriber registers a `wake` callback (called from any thread, must be quick and never raise)
and re-reads what it follows through the store when woken; a notification carries no data, so
a missed or merged wake-up never loses a change, only delays it to the next one (or to the
subscriber's own slow re-read).

- SQLite (`SqliteChanges`): commits of this process wake subscribers at once (the store calls
  its commit hooks). Commits of other processes (the step jobs) are seen by one watcher thread
  per process that reads `PRAGMA data_version` on its own connection every `check_seconds`:
  the counter lives in the WAL index (shared memory), so a check reads no page of the database,
  and the store is re-read only when something committed. The watcher runs only while someone
  subscribes.
- Firestore (`FirestoreChanges`): a snapshot listener per subscription, on the creation's
  document or on the user's active-creations query (the query the API's active limit uses, so
  its composite index already exists). Firestore pushes changes; nothing polls.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("creations.changes")

Wake = Callable[[], None]
Unsubscribe = Callable[[], None]


class ChangeFeed(Protocol):
    def subscribe(self, uid: str, creation_id: str | None, wake: Wake) -> Unsubscribe:
        """Call `wake` whenever the creation (or, with creation_id None, any of the user's active
        creations) may have changed, and once soon after subscribing. Returns the unsubscribe."""


class SqliteChanges:
    """Wake-ups for a SqliteStore: its own commits at once, other processes' within check_seconds."""

    def __init__(self, store, *, check_seconds: float = 0.1):
        self.store = store
        self.check_seconds = check_seconds
        self._wakes: dict[int, Wake] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        store.commit_hooks.append(self._wake_all)

    def subscribe(self, uid: str, creation_id: str | None, wake: Wake) -> Unsubscribe:
        with self._lock:
            key = self._next
            self._next += 1
            self._wakes[key] = wake
            if self._watcher is None or not self._watcher.is_alive():
                self._stop = threading.Event()
                self._watcher = threading.Thread(target=self._watch, args=(self._stop,),
                                                 name="sqlite-changes", daemon=True)
                self._watcher.start()
        wake()

        def unsubscribe() -> None:
            with self._lock:
                self._wakes.pop(key, None)
                if not self._wakes:
                    self._stop.set()
                    self._watcher = None

        return unsubscribe

    def close(self) -> None:
        with self._lock:
            self._wakes.clear()
            self._stop.set()
        try:
            self.store.commit_hooks.remove(self._wake_all)
        except ValueError:
            pass

    def _wake_all(self) -> None:
        with self._lock:
            wakes = list(self._wakes.values())
        for wake in wakes:
            try:
                wake()
            except Exception:  # noqa: BLE001 - one subscriber must not break the others or a commit
                log.exception("a change subscriber failed")

    def _watch(self, stop: threading.Event) -> None:
        conn = None
        try:
            conn = sqlite3.connect(self.store.path, timeout=5, isolation_level=None, check_same_thread=False)
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while not stop.wait(self.check_seconds):
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    self._wake_all()
        except sqlite3.Error as exc:
            # Subscribers still re-read on their own slow schedule; say why they got slower.
            log.warning("watching %s for changes stopped: %s", self.store.path, exc)
        finally:
            if conn is not None:
                conn.close()


class FirestoreChanges:
    """Wake-ups from Firestore snapshot listeners (one per subscription)."""

    def __init__(self, store):
        self.store = store

    def subscribe(self, uid: str, creation_id: str | None, wake: Wake) -> Unsubscribe:
        def on_snapshot(*_args) -> None:
            wake()

        if creation_id is not None:
            watch = self.store.client.collection("creations").document(creation_id).on_snapshot(on_snapshot)
        else:
            watch = self.store.active_query(uid).on_snapshot(on_snapshot)
        # The first snapshot arrives on the listener's thread and wakes the subscriber then.
        return watch.unsubscribe

    def close(self) -> None:
        """Listeners end with their subscriptions."""


def changes_for(store, *, check_seconds: float = 0.1) -> ChangeFeed:
    """The change feed of a store adapter."""
    from .sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return SqliteChanges(store, check_seconds=check_seconds)
    from .firestore import FirestoreStore

    if isinstance(store, FirestoreStore):
        return FirestoreChanges(store)
    raise TypeError(f"no change feed for a {type(store).__name__}")
