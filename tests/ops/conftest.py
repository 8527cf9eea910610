"""One local stack for the operator CLI's tests, and `ops`: `phoenix ops ...` run in-process.

The stack (devstack.stack.LocalStack) starts once per pytest process on free ports, with in-process
step jobs and a VirtualClock, so the workflow's retry backoffs cost no wall time. `ops` points the
CLI's settings at it the way an operator's shell would: PHOENIX_* environment variables. Under
`-n 2 --dist loadgroup` these tests run on one worker: each module is in xdist group "ops".
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

import pytest
from ops_stack import OpsRun, OpsStack

from devstack.stack import LocalStack, StackConfig, settings_env
from localcloud.workflows import VirtualClock
from phoenix.ops import main as ops_main


@pytest.fixture(scope="session")
def ops_stack(tmp_path_factory) -> Iterator[OpsStack]:
    config = StackConfig(data_dir=tmp_path_factory.mktemp("ops-stack"), port=0, jobs_mode="inprocess",
                         clock=VirtualClock())
    stack = LocalStack(config).start()
    driver = OpsStack(stack)
    try:
        yield driver
    finally:
        driver.close()
        stack.stop()


@pytest.fixture
def ops_env(ops_stack: OpsStack, monkeypatch) -> dict[str, str]:
    """The PHOENIX_* environment that reaches the stack (and nothing else of the caller's)."""
    for name in list(os.environ):
        if name.startswith("PHOENIX_"):
            monkeypatch.delenv(name)
    env = settings_env(ops_stack.settings)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def ops(ops_env, capsys) -> Callable[..., OpsRun]:
    """`ops("trace", id)` runs `phoenix ops trace ID` in this process and returns what it did."""

    def run(*argv: str) -> OpsRun:
        capsys.readouterr()
        code = ops_main(list(argv))
        out, err = capsys.readouterr()
        return OpsRun(code, out, err)

    return run


@pytest.fixture(autouse=True)
def _books_balance(request):
    """After every test that ran creations, the ledger of the whole stack balances."""
    yield
    if "ops_stack" in request.fixturenames:
        findings = request.getfixturevalue("ops_stack").store.audit()
        assert findings == [], f"the ledger audit found discrepancies: {findings}"
