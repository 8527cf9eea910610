"""A local Google Cloud Workflows: our own interpreter of the Workflows language, with
executions and step entries shaped like the Executions API and persisted in SQLite.

    engine = Engine(db_path="workflows.db", clock=VirtualClock(), connectors=registry)
    engine.deploy("creation", Path("workflows/creation.yaml"))
    execution = engine.run("creation", {"creation_id": "c1"})
"""
from localcloud.workflows.clock import Clock, RealClock, VirtualClock
from localcloud.workflows.connectors import ConnectorCall, ConnectorRegistry
from localcloud.workflows.errors import LoadError, WorkflowError
from localcloud.workflows.executions import (
    ArgumentTooLarge,
    Engine,
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from localcloud.workflows.loader import load_file, load_source

__all__ = [
    "ArgumentTooLarge", "Clock", "ConnectorCall", "ConnectorRegistry", "Engine", "EngineError",
    "FailedPrecondition", "InvalidArgument", "LoadError", "NotFound", "RealClock",
    "VirtualClock", "WorkflowError", "load_file", "load_source",
]
