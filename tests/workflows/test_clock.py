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


RETRIED_TWICE = """\
main:
  steps:
    - init:
        assign:
          - tries: 0
    - flaky:
        try:
          steps:
            - count:
                assign:
                  - tries: ${tries + 1}
            - fail_twice:
                switch:
                  - condition: ${tries < 3}
                    raise: not yet
        retry:
          predicate: ${retry.always}
          max_retries: 2
          backoff: {initial_delay: 600, max_delay: 600, multiplier: 1}
    - done:
        return: ${tries}
"""


def test_a_faster_real_clock_runs_declared_backoffs_sooner_and_every_report_says_so():
    from localcloud.workflows import Engine

    with Engine(clock=RealClock(speed=10_000)) as engine:
        engine.deploy("flaky", RETRIED_TWICE)
        # Two backoffs of 600 s each: at 10,000x they take 0.12 s of wall time in all.
        execution = engine.run("flaky", timeout=60)
        assert execution["state"] == "SUCCEEDED" and execution["result"] == "3"
        assert execution["localStats"]["clockSpeed"] == 10_000
        retries = [e for e in engine.step_entries(execution["name"]) if e["stepType"] == "STEP_RETRY"]
        assert [e["details"] for e in retries] == [{"delaySeconds": 600, "clockSpeed": 10_000}] * 2
        notice = engine.logs(execution["name"])[0]
        assert notice["severity"] == "NOTICE" and "10000x faster" in notice["textPayload"]


def test_the_wall_clock_reports_no_speed():
    from localcloud.workflows import Engine

    with Engine(clock=RealClock()) as engine:
        engine.deploy("quick", "- done:\n    return: 1\n")
        execution = engine.run("quick", timeout=30)
        assert "clockSpeed" not in execution["localStats"]
        assert engine.logs(execution["name"]) == []


def test_a_clock_speed_must_be_positive():
    for speed in (0, -2, "fast"):
        try:
            RealClock(speed=speed)
        except ValueError as exc:
            assert "positive number" in str(exc)
        else:
            raise AssertionError(f"RealClock(speed={speed!r}) was accepted")
