"""One local stack for the console's tests, the console app over it, and an HTTP client.

The stack comes from the shared test support layer (tests.support.stack: in-process step jobs, a
VirtualClock, so the workflow's retry backoffs cost no wall time). The console is built the way
`phoenix console` builds it, from the stack's settings: its store, its engine's Executions REST
API and its job logs. Under `-n 2 --dist loadgroup` these tests run on one worker (group
"console"); the root conftest audits the stack's ledger after every test.
"""
from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from phoenix.console.cli import Console
from tests.support.stack import Stack, running_stack

OPERATOR = "console-test-operator"


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("console-stack"), jobs_mode="inprocess") as driver:
        yield driver


@pytest.fixture(scope="session")
def console(stack: Stack) -> Iterator[Console]:
    built = Console(stack.settings, store=stack.store, storage=stack.storage, data_dir=stack.data_dir,
                    operator=OPERATOR)
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
