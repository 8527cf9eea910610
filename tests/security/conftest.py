"""The security tests drive the API the way tests/api does: uvicorn on loopback over the SQLite
store, the S3 server and the recording Executions API. Those fixtures are reused from tests/api."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))  # api_stack, executions_server

from tests.api.conftest import _executions_healthy, api, executions, s3  # noqa: E402,F401
