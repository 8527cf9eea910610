"""One local stack for the operator CLI's tests, and `ops`: `phoenix ops ...` run in-process.

The stack starts once per pytest process (tests.support.stack: in-process step jobs, a
VirtualClock). `ops` points the CLI's settings at it the way an operator's shell would: PHOENIX_*
environment variables. Under `-n 2 --dist loadgroup` these tests run on one worker: each module
is in xdist group "ops".
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from ops_stack import OpsRun, OpsStack

from devstack.stack import settings_env
from phoenix.ops import main as ops_main
from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("ops-stack"), jobs_mode="inprocess") as driver:
        yield driver


@pytest.fixture(scope="session")
def ops_stack(stack: Stack) -> OpsStack:
    """The same stack under the name and shape the operator tests have long used."""
    return OpsStack(stack)


@pytest.fixture
def ops_env(stack: Stack, monkeypatch) -> dict[str, str]:
    """The PHOENIX_* environment that reaches the stack (and nothing else of the caller's)."""
    for name in list(os.environ):
        if name.startswith("PHOENIX_"):
            monkeypatch.delenv(name)
    env = settings_env(stack.settings)
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
