"""The whole local stack for end-to-end tests, once per jobs mode.

`pipeline` is parametrized over the two jobs modes of the Cloud Run Jobs connector: "process"
(each step is `python -m steps.<name>` in a subprocess, like a container) and "inprocess" (the
same steps in the engine's threads). Each mode's stack is started once per pytest process, on
free ports, with its data dir under pytest's temp dir and a VirtualClock, so the YAML's retry
backoffs (15 s, 60 s, ...) cost no wall time. Under `-n 2 --dist loadgroup` each mode's tests run
on one worker (xdist group `e2e_<mode>`).

A test that needs one mode only says so with `@pytest.mark.parametrize("pipeline", [PROCESS],
indirect=True)`.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import INPROCESS, PROCESS, Stack, running_stack


@pytest.fixture(scope="session", params=[PROCESS, INPROCESS])
def pipeline(request, tmp_path_factory) -> Iterator[Stack]:
    mode = request.param
    with running_stack(tmp_path_factory.mktemp(f"stack-{mode}"), jobs_mode=mode) as stack:
        yield stack
