"""The compiled form of a workflow: routines, blocks of steps, and one class per kind of step,
each knowing how to run itself against a frame (see interpreter.Frame).

A step's `execute(frame, entry)` returns None to go on (to its `next`, or the following step),
or a control signal: a `Goto` resolved at load time, `END`, `BREAK`, `CONTINUE` or a `Return`.
Blocks hand a signal up until the block that holds its target (or the loop or routine that
consumes it) takes it.
"""
from __future__ import annotations

from typing import Any

from localcloud.workflows.errors import WorkflowError, type_error
from localcloud.workflows.templates import Template

# --- control signals -------------------------------------------------------------------------

class Signal:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


END = Signal("end")
BREAK = Signal("break")
CONTINUE = Signal("continue")


class Goto:
    """A jump to `block.steps[index]`, resolved at load time."""

    __slots__ = ("block", "index", "name")

    def __init__(self, block: Block, index: int, name: str):
        self.block = block
        self.index = index
        self.name = name

    def __repr__(self) -> str:
        return f"Goto({self.name})"


class Return:
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


# --- structure -------------------------------------------------------------------------------

class Block:
    """A list of steps run in order. `parent` is the block whose step holds this one."""

    __slots__ = ("steps", "parent", "kind")

    def __init__(self, steps: list[Step], parent: Block | None, kind: str):
        self.steps = steps
        self.parent = parent
        self.kind = kind   # routine | nested | for | branch | try | except | condition


NO_DEFAULT = object()


class Routine:
    """`main` or a subworkflow."""

    def __init__(self, name: str, params: list[tuple[str, Any]], line: int):
        self.name = name
        self.params = params            # [(name, Template | NO_DEFAULT)]
        self.param_names = [p for p, _ in params]
        self.block: Block | None = None
        self.line = line


class Program:
    """A loaded workflow: its routines, `main` first."""

    def __init__(self, filename: str, routines: dict[str, Routine], source: str):
        self.filename = filename
        self.routines = routines
        self.main = routines["main"]
        self.source = source


# --- steps -----------------------------------------------------------------------------------

class Step:
    """A named step. `kind` is its REST step type (None: records no entry of its own)."""

    __slots__ = ("name", "line", "next", "kind")
    kind_default: str | None = None

    def __init__(self, name: str, line: int):
        self.name = name
        self.line = line
        self.next: Any = None
        self.kind = self.kind_default

    def execute(self, frame: Any, entry: Any) -> Any:
        raise NotImplementedError


class AssignStep(Step):
    __slots__ = ("items",)
    kind_default = "STEP_ASSIGN"

    def __init__(self, name: str, line: int, items: list):
        super().__init__(name, line)
        self.items = items   # [(paths.Target, Template)]

    def execute(self, frame, entry):
        for target, template in self.items:
            value = template.evaluate(frame)
            if target.simple:
                frame.set_var(target.name, value)
            else:
                frame.assign(target, value)
        if len(self.items) > 1:
            frame.run.extra_billable += len(self.items) - 1
        return None


class _ResultMixin:
    __slots__ = ()

    def _store(self, frame, value):
        target = self.result
        if target is not None:
            if target.simple:
                frame.set_var(target.name, value)
            else:
                frame.assign(target, value)


class StdlibCallStep(_ResultMixin, Step):
    __slots__ = ("function", "target", "args", "result")

    def __init__(self, name, line, target: str, function: Any, args: Template | None,
                 result):
        super().__init__(name, line)
        self.kind = "STEP_CALL" if target.startswith("http.") else "STEP_STD_LIB_CALL"
        self.target = target
        self.function = function
        self.args = args
        self.result = result

    def execute(self, frame, entry):
        kwargs = self.args.evaluate(frame) if self.args is not None else None
        value = frame.call_stdlib(self.target, self.function, None, kwargs)
        self._store(frame, value)
        return None


class SubworkflowCallStep(_ResultMixin, Step):
    __slots__ = ("target", "routine", "args", "result")
    kind_default = "STEP_SUBWORKFLOW_CALL"

    def __init__(self, name, line, target: str, args: Template | None, result):
        super().__init__(name, line)
        self.target = target
        self.routine: Routine | None = None   # resolved once all routines are known
        self.args = args
        self.result = result

    def execute(self, frame, entry):
        kwargs = self.args.evaluate(frame) if self.args is not None else {}
        value = frame.call_routine(self.routine, None, kwargs, entry)
        self._store(frame, value)
        return None


class ConnectorCallStep(_ResultMixin, Step):
    __slots__ = ("target", "args", "result")
    kind_default = "STEP_CONNECTOR_CALL"

    def __init__(self, name, line, target: str, args: Template | None, result):
        super().__init__(name, line)
        self.target = target
        self.args = args
        self.result = result

    def execute(self, frame, entry):
        args = self.args.evaluate(frame) if self.args is not None else {}
        value = frame.call_connector(self.target, args, entry)
        self._store(frame, value)
        return None


class Condition:
    __slots__ = ("test", "body", "next", "line")

    def __init__(self, test: Template, body: Block | None, next_: Any, line: int):
        self.test = test
        self.body = body
        self.next = next_
        self.line = line


class SwitchStep(Step):
    __slots__ = ("conditions",)
    kind_default = "STEP_SWITCH"

    def __init__(self, name, line, conditions: list[Condition]):
        super().__init__(name, line)
        self.conditions = conditions

    def execute(self, frame, entry):
        for cond in self.conditions:
            value = cond.test.evaluate(frame)
            if value is True:
                if cond.body is not None:
                    signal = frame.run_block(cond.body, entry)
                    if signal is not None:
                        return signal
                return cond.next
            if value is not False:
                raise type_error(f"step '{self.name}': a switch condition must be a boolean, "
                                 f"got {_type_name(value)}")
        return None


class BlockStep(Step):
    """`steps:` (kind None) or the matched body of a switch condition (STEP_CONDITION)."""

    __slots__ = ("block",)

    def __init__(self, name, line, block: Block | None = None, kind: str | None = None):
        super().__init__(name, line)
        self.block = block
        self.kind = kind

    def execute(self, frame, entry):
        return frame.run_block(self.block, entry)


class GotoStep(Step):
    """A step with only `next`."""

    __slots__ = ()
    kind_default = "STEP_GOTO"

    def execute(self, frame, entry):
        return None


class ReturnStep(Step):
    __slots__ = ("value",)
    kind_default = "STEP_RETURN"

    def __init__(self, name, line, value: Template):
        super().__init__(name, line)
        self.value = value

    def execute(self, frame, entry):
        return Return(self.value.evaluate(frame))


class RaiseStep(Step):
    __slots__ = ("value",)
    kind_default = "STEP_RAISE"

    def __init__(self, name, line, value: Template):
        super().__init__(name, line)
        self.value = value

    def execute(self, frame, entry):
        raise WorkflowError(self.value.evaluate(frame))


class ForStep(Step):
    __slots__ = ("value_name", "index_name", "items", "range", "block")
    kind_default = "STEP_FOR"

    def __init__(self, name, line, value_name: str, index_name: str | None,
                 items: Template | None, range_: Any, block: Block | None = None):
        super().__init__(name, line)
        self.value_name = value_name
        self.index_name = index_name
        self.items = items        # Template of a list, or None
        self.range = range_       # Template of [a, b], or a list of two Templates, or None
        self.block = block

    def iterate(self, frame):
        """The values to loop over (a list, or a lazy range)."""
        if self.items is not None:
            items = self.items.evaluate(frame)
            if type(items) is not list:
                raise type_error(f"step '{self.name}': for 'in' needs a list, got "
                                 f"{_type_name(items)} (iterate a map with keys(map))")
            return items
        if type(self.range) is list:
            bounds = [t.evaluate(frame) for t in self.range]
        else:
            bounds = self.range.evaluate(frame)
        if type(bounds) is not list or len(bounds) != 2:
            raise type_error(f"step '{self.name}': for 'range' needs a list of two numbers")
        start, stop = bounds
        for b in bounds:
            if type(b) is not int and type(b) is not float:
                raise type_error(f"step '{self.name}': for 'range' bounds must be numbers, got "
                                 f"{_type_name(b)}")
        return _inclusive_range(start, stop)

    def execute(self, frame, entry):
        items = self.iterate(frame)
        return frame.run_loop(self, items, entry)


def _inclusive_range(start, stop):
    if type(start) is int and type(stop) is int:
        return range(start, stop + 1)
    return _float_range(start, stop)


def _float_range(start, stop):
    value = start
    while value <= stop:
        yield value
        value += 1


class TryStep(Step):
    __slots__ = ("body", "retry", "except_as", "except_block")
    kind_default = "STEP_TRY_RETRY_EXCEPT"

    def __init__(self, name, line):
        super().__init__(name, line)
        self.body: Block | None = None
        self.retry = None                  # retry.RetryPolicy | None
        self.except_as: str | None = None
        self.except_block: Block | None = None

    def execute(self, frame, entry):
        attempt = 0
        while True:
            try:
                return frame.run_block(self.body, entry)
            except WorkflowError as error:
                if self.retry is not None and self.retry.should_retry(frame, error, attempt):
                    frame.wait_retry(self, self.retry.delay(frame, attempt), attempt + 1, error,
                                     entry)
                    attempt += 1
                    continue
                if self.except_block is None and self.except_as is None:
                    raise
                caught = error
                break
        return frame.run_except(self, caught, entry)


class ParallelStep(Step):
    __slots__ = ("branches", "loop", "shared", "concurrency_limit", "continue_all")

    def __init__(self, name, line):
        super().__init__(name, line)
        self.branches: list[tuple[str, Block]] | None = None
        self.loop: ForStep | None = None
        self.shared: tuple[str, ...] = ()
        self.concurrency_limit: Template | None = None
        self.continue_all = False

    def execute(self, frame, entry):
        from localcloud.workflows.parallel import run_parallel
        return run_parallel(self, frame, entry)


def _type_name(value: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "double",
            str: "string", list: "list", dict: "map", bytes: "bytes"}.get(type(value),
                                                                         type(value).__name__)
