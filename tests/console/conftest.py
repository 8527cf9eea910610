"""One local stack for the console's tests, the console app over it, and an HTTP client.

The stack is the operator CLI tests' driver (tests/ops/ops_stack.py): in-process step jobs and a
VirtualClock, so the workflow's retry backoffs cost no wall time. The console is built the way
`phoenix console` builds it, from the stack's settings, reading its store, its engine's Executions
REST API and its job logs. Under `-n 2 --dist loadgroup` these tests run on one worker.
"""
from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from devstack.stack import LocalStack, StackConfig
from localcloud.workflows import VirtualClock
from phoenix.console.cli import Console
from tests.ops.ops_stack import OpsStack

OPERATOR = "console-test-operator"


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[OpsStack]:
    config = StackConfig(data_dir=tmp_path_factory.mktemp("console-stack"), port=0, jobs_mode="inprocess",
                         clock=VirtualClock())
    local = LocalStack(config).start()
    driver = OpsStack(local)
    try:
        yield driver
    finally:
        driver.close()
        local.stop()


@pytest.fixture(scope="session")
def console(stack: OpsStack) -> Iterator[Console]:
    built = Console(stack.settings, store=stack.store, storage=stack.stack.storage,
                    data_dir=stack.stack.config.data_dir, operator=OPERATOR)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def client(console: Console) -> Iterator[httpx.Client]:
    """An HTTP client of the console app that keeps its cookies (the CSRF cookie among them)."""
    from fastapi.testclient import TestClient

    with TestClient(console.app, base_url="http://127.0.0.1:8090") as http:
        yield http


@pytest.fixture(autouse=True)
def _books_balance(request):
    yield
    if "stack" in request.fixturenames:
        findings = request.getfixturevalue("stack").store.audit()
        assert findings == [], f"the ledger audit found discrepancies: {findings}"
