"""Clocks: virtual time that tests can skip, timelines for concurrent branches, and real
sleeps that a cancellation interrupts."""
from __future__ import annotations

import threading
import time

from localcloud.workflows import RealClock, VirtualClock
from localcloud.workflows.clock import DEFAULT_VIRTUAL_START


def test_virtual_sleep_advances_time_at_once():
    clock = VirtualClock(start=1000.0)
    started = time.monotonic()
    clock.sleep(3600)
    assert clock.now() == 4600.0
    assert time.monotonic() - started < 1
    assert VirtualClock().now() == DEFAULT_VIRTUAL_START


def test_virtual_sleeps_from_many_threads_all_count():
    clock = VirtualClock(start=0.0)
    threads = [threading.Thread(target=lambda: [clock.sleep(1) for _ in range(100)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.now() == 800.0


def test_timelines_overlap_and_join():
    clock = VirtualClock(start=0.0)
    ends = []

    def branch(seconds):
        with clock.timeline(0.0):
            clock.sleep(seconds)
            ends.append(clock.position())

    threads = [threading.Thread(target=branch, args=(s,)) for s in (5, 7, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ends) == [2.0, 5.0, 7.0]
    assert clock.now() == 7.0   # seen from outside: the furthest timeline
    with clock.timeline(1.0):
        clock.advance_to(max(ends))
        assert clock.now() == 7.0


def test_real_sleep_ends_when_interrupted():
    clock = RealClock()
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    clock.sleep(30, stop)
    assert time.monotonic() - started < 10
    assert abs(clock.now() - time.time()) < 1
