"""Clocks of the engine: every wait of an execution (backoff, `sys.sleep`, connector polling)
goes through one of these, so tests can skip time instead of spending it.

`RealClock` is the wall clock. `VirtualClock` skips time: a sleep returns at once and moves
time forward. Each thread that runs workflow code follows its own timeline (`timeline()`), so
two parallel branches that each sleep 5 s take 5 s of virtual time in all, not 10, and a branch
queued behind a concurrency limit starts when its slot frees. The clock's `now()` seen from any
other thread is the latest point any timeline has reached.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

# 2026-01-01T00:00:00Z: a fixed start, so virtual timestamps are reproducible.
DEFAULT_VIRTUAL_START = 1_767_225_600.0


class Clock:
    """What the engine needs from a clock. Subclasses override `now` and `_sleep`."""

    def now(self) -> float:
        """Seconds since the epoch (float)."""
        raise NotImplementedError

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> None:
        """Wait `seconds`; a set `interrupt` event ends a real wait early."""
        raise NotImplementedError

    @contextlib.contextmanager
    def timeline(self, start: float | None = None) -> Iterator[None]:
        """Run the body on its own timeline starting at `start` (default: now). A no-op on
        the wall clock."""
        yield

    def position(self) -> float:
        """Where the calling thread's timeline stands (the wall clock: now)."""
        return self.now()

    def advance_to(self, when: float) -> None:
        """Move the calling thread's timeline forward to `when` (joins of parallel work)."""


class RealClock(Clock):
    """The wall clock. With `speed` above 1 its waits (backoffs, `sys.sleep`, polling) take that
    many times less wall time than the workflow declares, so a demo of a retry does not make
    anyone wait; timestamps stay wall-clock time. The engine says so wherever it reports: a
    NOTICE line in each execution's log, `clockSpeed` in its localStats and in each retry's
    step entry."""

    def __init__(self, speed: float = 1.0):
        if not (isinstance(speed, (int, float)) and speed > 0):
            raise ValueError(f"the clock speed must be a positive number, not {speed!r}")
        self.speed = float(speed)

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> None:
        if seconds <= 0:
            return
        seconds /= self.speed
        if interrupt is None:
            time.sleep(seconds)
        else:
            interrupt.wait(seconds)


class VirtualClock(Clock):
    """A clock whose sleeps return at once and advance virtual time (thread-safe)."""

    def __init__(self, start: float = DEFAULT_VIRTUAL_START):
        self._lock = threading.Lock()
        self._latest = float(start)
        self._local = threading.local()

    def now(self) -> float:
        here = getattr(self._local, "t", None)
        return self._latest if here is None else here

    position = now

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> None:
        if seconds <= 0:
            return
        here = getattr(self._local, "t", None)
        with self._lock:
            if here is None:
                self._latest += seconds
                return
            here += seconds
            self._local.t = here
            if here > self._latest:
                self._latest = here

    def advance(self, seconds: float) -> None:
        """Move time forward from outside any execution (tests)."""
        with self._lock:
            self._latest += seconds

    def advance_to(self, when: float) -> None:
        here = getattr(self._local, "t", None)
        with self._lock:
            if here is not None and when > here:
                self._local.t = when
            if when > self._latest:
                self._latest = when

    @contextlib.contextmanager
    def timeline(self, start: float | None = None) -> Iterator[None]:
        previous = getattr(self._local, "t", None)
        self._local.t = self._latest if start is None else float(start)
        try:
            yield
        finally:
            self._local.t = previous
