"""The local stack on production settings: Google's Firestore emulator as the store of the API,
the jobs and the operator tools, the workflow's Firestore connector forwarded to the emulator's
own REST API, and the Cloud Tasks trigger (the local Cloud Tasks delivering to the Executions
API). One emulator and one stack for the module (xdist group `parity`, so one worker runs them
all), on a VirtualClock so the YAML's and the queues' backoffs cost no wall time; the emulator's
documents are wiped before each test (after the previous test's ledger audit).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.stack import PROJECT
from localcloud.cloudtasks import RetryConfig
from tests.support.firestore import firestore_emulator  # noqa: F401 - the session's emulator
from tests.support.stack import Stack, running_stack

# Every test of this directory shares the module's stack: keep them on one xdist worker.
PARITY = pytest.mark.xdist_group("parity")
MAX_ACTIVE = 20


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/parity/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(PARITY)


def parity_stack(data_dir, emulator, jobs_mode: str):
    """The stack on production settings, on `emulator`, with step jobs run as `jobs_mode` says."""
    config = dict(store="firestore", trigger="tasks", firestore_emulator=emulator,
                  # Production's queue retry config, on the virtual clock.
                  queue_retry=RetryConfig(max_attempts=10, min_backoff=1.0, max_backoff=60.0, max_doublings=4),
                  extra_settings={"max_active_per_user": MAX_ACTIVE})
    return running_stack(data_dir, jobs_mode=jobs_mode, **config)


@pytest.fixture(scope="module")
def parity(tmp_path_factory, firestore_emulator) -> Iterator[Stack]:  # noqa: F811
    """Step jobs in-process (fast); tests/parity/test_parity_processes.py runs them as processes."""
    with parity_stack(tmp_path_factory.mktemp("parity"), firestore_emulator, "inprocess") as stack:
        yield stack


@pytest.fixture
def stack(parity: Stack, firestore_emulator) -> Iterator[Stack]:  # noqa: F811
    """The module's stack with an empty Firestore; every task delivered and every execution
    ended when the test is over."""
    # A busy machine (or the emulator finishing a lock timeout) can hold a reset up: be patient.
    for attempt in range(3):
        try:
            firestore_emulator.reset(PROJECT, timeout=30)
            break
        except OSError:
            if attempt == 2:
                raise
    yield parity
    parity.stack.tasks.tasks.wait_idle(60)
    for execution in parity.engine.list_executions("creation", filter='state="ACTIVE"')[0]:
        parity.wait(execution["name"])
