"""A local Google Cloud Workflows: our own interpreter of the Workflows language, with
executions and step entries shaped like the Executions API and persisted in SQLite.

    engine = Engine(db_path="workflows.db", clock=VirtualClock(), connectors=registry)
    engine.deploy("creation", Path("workflows/creation.yaml"))
    execution = engine.run("creation", {"creation_id": "c1"})

The names below are imported on first use, so a command that needs only part of the engine
(checking a file, say) does not pay for the rest.

Modules, by concern: source (YAML with a line map) → compiler (+ scopes) → steps; interpreter
(+ parallel, retry, expressions, stdlib, connectors) runs a program; engine runs executions
and keeps them in database; executions shapes them for the API, filters lists them; server and
executions_grpc serve the Executions API; errors holds every error.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Clock": "clock", "RealClock": "clock", "VirtualClock": "clock",
    "ConnectorCall": "connectors", "ConnectorRegistry": "connectors",
    "Engine": "engine",
    "ArgumentTooLarge": "errors", "EngineError": "errors", "FailedPrecondition": "errors",
    "InvalidArgument": "errors", "LoadError": "errors", "NotFound": "errors",
    "WorkflowError": "errors",
    "load_file": "loader", "load_source": "loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'localcloud.workflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"localcloud.workflows.{module}"), name)
    globals()[name] = value
    return value
