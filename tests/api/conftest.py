"""The API served by uvicorn on loopback over real local pieces: the SQLite store in a temp dir,
the S3 server (moto), and a loopback Executions API that records the executions it is asked to
start (`settings.trigger = "local"` points the real trigger at it)."""
from __future__ import annotations

import pytest
from api_stack import serving_api
from executions_server import ExecutionsRestServer

from localcloud.s3server import S3Server


@pytest.fixture(scope="session")
def s3():
    with S3Server() as server:
        yield server


@pytest.fixture(scope="module")
def executions():
    server = ExecutionsRestServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(tmp_path_factory, s3, executions):
    """The API with the trigger built from settings: `local`, aimed at the recording Executions API."""
    with serving_api(tmp_path_factory.mktemp("api"), s3, executions) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _executions_healthy(request):
    yield
    if "executions" in request.fixturenames:
        request.getfixturevalue("executions").fail_status = None
