"""Google Cloud connectors (`call: googleapis.*`) as bindings: the engine knows no Google API;
whoever composes the local cloud binds a handler per connector name.

A handler takes a `ConnectorCall` and returns the call's result, or raises WorkflowError (for a
failed long-running operation, the documented OperationError shape: `{"tags":
["OperationError"], "message": ..., "operation": {...}}`). `call.poll(check)` implements the
connector's polling of a long-running operation with its `polling_policy` and `timeout`, through
the engine's clock; each poll is a billable step and is counted on the step entry.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from localcloud.workflows.errors import ExecutionCancelled, WorkflowError, system_error, type_error

DEFAULT_TIMEOUT = 1800
DEFAULT_POLLING = {"initial_delay": 1.0, "multiplier": 1.25, "max_delay": 60.0}
MAX_TIMEOUT = 31_536_000

Handler = Callable[["ConnectorCall"], Any]


class ConnectorCall:
    """One connector call as its handler sees it."""

    def __init__(self, name: str, args: dict, connector_params: dict, ctx: Any, entry: Any):
        self.name = name
        self.args = args
        self.connector_params = connector_params
        self._ctx = ctx
        self.clock = ctx.clock
        self.execution_id = ctx.execution_id
        self.polls = 0
        self._entry = entry
        self._started = ctx.clock.now()

    def check_cancelled(self) -> None:
        self._ctx.check_cancelled()

    def log(self, severity: str, payload: Any) -> None:
        self._ctx.log(severity, payload)

    @property
    def timeout(self) -> float:
        return self.connector_params["timeout"]

    @property
    def deadline(self) -> float:
        return self._started + self.timeout

    def poll(self, check: Callable[[], Any]) -> Any:
        """Call `check` until it returns something other than None, sleeping between calls
        per `polling_policy` (initial_delay, then x multiplier up to max_delay). Raises
        TimeoutError (the language's) when `check` still returns None at `timeout` seconds
        after the call began."""
        policy = self.connector_params["polling_policy"]
        delay = float(policy["initial_delay"])
        multiplier = float(policy["multiplier"])
        max_delay = float(policy["max_delay"])
        while True:
            self.check_cancelled()
            result = check()
            self._count_poll()
            if result is not None:
                return result
            remaining = self.deadline - self.clock.now()
            if remaining <= 0:
                raise WorkflowError.tagged(
                    "TimeoutError", f"{self.name}: the operation did not finish within the "
                                    f"connector timeout of {self.timeout:g} s "
                                    f"(after {self.polls} polls)")
            # The last wait is cut at the deadline, where one final check runs.
            self.clock.sleep(min(delay, remaining))
            delay = min(delay * multiplier, max_delay)

    def record_polls(self, count: int) -> None:
        """Count polls the handler made (or would have made) without `poll()`, e.g. one that
        waited for its operation another way: they are billed and reported like polls."""
        if type(count) is not int or count < 0:
            raise ValueError(f"record_polls needs a non-negative integer, got {count!r}")
        if count:
            self._count_poll(count)

    def _count_poll(self, count: int = 1) -> None:
        self.polls += count
        run = self._ctx.run
        run.polls += count
        run.extra_billable += count
        entry = self._entry
        if entry is not None:
            if entry.meta is None:
                entry.meta = {}
            entry.meta["connectorPolls"] = self.polls


class ConnectorRegistry:
    """Connector name -> handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()

    def bind(self, name: str, handler: Handler) -> None:
        if not name.startswith("googleapis."):
            raise ValueError(f"connector names start with 'googleapis.', got {name!r}")
        if not callable(handler):
            raise TypeError(f"the handler of {name} must be callable")
        with self._lock:
            self._handlers[name] = handler

    def unbind(self, name: str) -> None:
        with self._lock:
            self._handlers.pop(name, None)

    def bound(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, name: str) -> bool:
        return name in self._handlers

    def invoke(self, name: str, args: Any, frame: Any, entry: Any) -> Any:
        handler = self._handlers.get(name)
        if handler is None:
            raise WorkflowError.tagged(
                "SystemError", f"connector {name} is not bound in this engine; bind a handler "
                               f"with ConnectorRegistry.bind({name!r}, handler)")
        if type(args) is not dict:
            raise type_error(f"{name}: args must be a map")
        args = dict(args)
        params = connector_params(name, args.pop("connector_params", None))
        call = ConnectorCall(name, args, params, frame.ctx, entry)
        try:
            return handler(call)
        except (WorkflowError, ExecutionCancelled):
            raise
        except Exception as exc:
            raise system_error(name, exc) from exc


def connector_params(name: str, raw: Any) -> dict:
    """`connector_params` with the documented defaults filled in."""
    if raw is None:
        raw = {}
    if type(raw) is not dict:
        raise type_error(f"{name}: connector_params must be a map")
    out = dict(raw)
    timeout = out.get("timeout", DEFAULT_TIMEOUT)
    if type(timeout) not in (int, float) or not 0 < timeout <= MAX_TIMEOUT:
        raise type_error(f"{name}: connector_params.timeout must be a number of seconds in "
                         f"(0, {MAX_TIMEOUT}], got {timeout!r}")
    out["timeout"] = timeout
    polling = out.get("polling_policy") or {}
    if type(polling) is not dict:
        raise type_error(f"{name}: connector_params.polling_policy must be a map")
    merged = dict(DEFAULT_POLLING)
    for key, value in polling.items():
        if key not in DEFAULT_POLLING:
            raise type_error(f"{name}: unknown polling_policy key {key!r} "
                             f"(initial_delay, multiplier, max_delay)")
        if type(value) not in (int, float) or value < 0:
            raise type_error(f"{name}: polling_policy.{key} must be a non-negative number")
        merged[key] = value
    out["polling_policy"] = merged
    skip = out.get("skip_polling", False)
    if type(skip) is not bool:
        raise type_error(f"{name}: connector_params.skip_polling must be a boolean")
    out["skip_polling"] = skip
    return out
