"""Runs a compiled workflow: frames (variable scopes), blocks of steps, subworkflow calls,
loops, retries and the per-execution state (step count, variable memory, cancellation).

A `Frame` is also the scope the expressions evaluate against (`get_var`, `call_function`).
Variables hold values by reference; assignment to a path copies only the containers on that
path (paths.assign_path), so no value is ever deep-copied.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from localcloud.workflows import limits
from localcloud.workflows.errors import (
    ExecutionCancelled,
    WorkflowError,
    key_error,
    resource_limit_error,
    system_error,
    type_error,
)
from localcloud.workflows.history import History
from localcloud.workflows.limits import estimate_size
from localcloud.workflows.paths import assign_path
from localcloud.workflows.stdlib import STDLIB
from localcloud.workflows.steps import BREAK, CONTINUE, NO_DEFAULT, Goto, Program, Return, Routine


class CancelToken:
    """Cancellation of an execution or of the branches of one parallel step. Cancelling a
    token cancels its children and wakes their real-time sleeps."""

    __slots__ = ("cancelled", "reason", "event", "children", "lock")

    def __init__(self) -> None:
        self.cancelled = False
        self.reason = ""
        self.event = threading.Event()
        self.children: list[CancelToken] = []
        self.lock = threading.Lock()

    def cancel(self, reason: str = "cancelled") -> None:
        with self.lock:
            if self.cancelled:
                return
            self.cancelled = True
            self.reason = reason
            children = list(self.children)
        self.event.set()
        for child in children:
            child.cancel(reason)

    def child(self) -> CancelToken:
        token = CancelToken()
        with self.lock:
            self.children.append(token)
            cancelled, reason = self.cancelled, self.reason
        if cancelled:
            token.cancel(reason)
        return token

    def discard(self, child: CancelToken) -> None:
        with self.lock:
            try:
                self.children.remove(child)
            except ValueError:
                pass

    def check(self) -> None:
        if self.cancelled:
            raise ExecutionCancelled(self.reason)


class ExecutionClock:
    """The clock one thread of an execution sees: waits go through the engine's clock and end
    early (raising ExecutionCancelled) when the execution is cancelled."""

    __slots__ = ("base", "token")

    def __init__(self, base: Any, token: CancelToken):
        self.base = base
        self.token = token

    def now(self) -> float:
        return self.base.now()

    def sleep(self, seconds: float) -> None:
        if type(seconds) not in (int, float):
            raise type_error(f"sleep needs a number of seconds, got {seconds!r}")
        self.token.check()
        self.base.sleep(seconds, self.token.event)
        self.token.check()


class CallContext:
    """What the standard library and connectors get from the engine (clock, env, log,
    cancellation), one per thread of an execution."""

    __slots__ = ("run", "clock", "env", "token", "execution_id")

    def __init__(self, run: Run, token: CancelToken):
        self.run = run
        self.token = token
        self.clock = ExecutionClock(run.clock, token)
        self.env = run.env
        self.execution_id = run.execution_id

    def log(self, severity: str, payload: Any) -> None:
        self.run.log(severity, payload)

    def check_cancelled(self) -> None:
        self.token.check()


class Run:
    """The state of one running execution."""

    def __init__(self, program: Program, execution_id: str, clock: Any, env: Mapping[str, str],
                 connectors: Any, history: History, log: Callable[[str, Any], None],
                 token: CancelToken | None = None, max_steps: int = limits.STEPS_PER_EXECUTION):
        self.program = program
        self.execution_id = execution_id
        self.clock = clock
        self.env = env
        self.connectors = connectors
        self.history = history
        self.log = log
        self.token = token or CancelToken()
        self.max_steps = max_steps
        self.steps = itertools.count(1)
        self.steps_done = 0
        self.extra_billable = 0     # assign items beyond the first, connector polls
        self.polls = 0
        self.var_bytes = 0
        self.shared_lock = threading.RLock()
        self.ctx = CallContext(self, self.token)

    def execute(self, argument: Any) -> Any:
        """Run `main` with the execution argument; returns its result or raises
        WorkflowError (with `wf_stack`) or ExecutionCancelled."""
        main = self.program.main
        frame = Frame(self, main, 1, self.ctx, 0)
        if main.param_names:
            frame.set_var(main.param_names[0], argument)
        try:
            signal = frame.run_block(main.block, None)
        except WorkflowError as error:
            frame.trace(error)
            raise
        finally:
            # the run is over: taking one more number from the counter tells how many ran
            self.steps_done = next(self.steps) - 1
        return signal.value if signal.__class__ is Return else None


class Frame:
    """The scope of one routine call (or one parallel branch, see BranchFrame)."""

    __slots__ = ("run", "routine", "routine_name", "vars", "sizes", "depth", "ctx", "token",
                 "current", "entry", "parallel_depth", "history")

    def __init__(self, run: Run, routine: Routine, depth: int, ctx: CallContext,
                 parallel_depth: int):
        self.run = run
        self.routine = routine
        self.routine_name = routine.name
        self.vars: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}
        self.depth = depth
        self.ctx = ctx
        self.token = ctx.token
        self.current = None
        self.entry = None
        self.parallel_depth = parallel_depth
        self.history = run.history

    # -- the scope protocol of expressions
    def get_var(self, name: str) -> Any:
        try:
            return self.vars[name]
        except KeyError:
            raise key_error(f"variable '{name}' is not defined") from None

    def has_var(self, name: str) -> bool:
        return name in self.vars

    def call_function(self, name: str, args: list) -> Any:
        routine = self.run.program.routines.get(name)
        if routine is not None:
            return self.call_routine(routine, args, None, self.entry)
        function = STDLIB.get(name)
        if function is None:
            raise key_error(f"function '{name}' is not defined (not a subworkflow of this "
                            f"workflow nor a standard library function)")
        return self.call_stdlib(name, function, args, None)

    # -- variables
    def set_var(self, name: str, value: Any) -> None:
        size = estimate_size(value)
        sizes = self.sizes
        run = self.run
        delta = size - sizes.get(name, 0)
        if delta > 0 and run.var_bytes + delta > limits.VARIABLES_BYTES:
            raise resource_limit_error(
                f"assigning '{name}' would bring the execution's variables to about "
                f"{run.var_bytes + delta} bytes; the limit is {limits.VARIABLES_BYTES}")
        run.var_bytes += delta
        sizes[name] = size
        self.vars[name] = value

    set_local = set_var

    def assign(self, target: Any, value: Any) -> None:
        """Assign to a path below a variable (`a.b[0]`), copying only the path."""
        root = self.get_var(target.name)
        keys = target.evaluate_keys(self)
        self.set_var(target.name, assign_path(root, keys, value, target.text))

    def snapshot(self) -> frozenset:
        return frozenset(self.vars)

    def drop_new(self, before: frozenset) -> None:
        """Remove the variables created since `before` (end of a loop or except block)."""
        variables = self.vars
        if len(variables) == len(before):
            return
        sizes = self.sizes
        freed = 0
        for name in [n for n in variables if n not in before]:
            del variables[name]
            freed += sizes.pop(name, 0)
        self.run.var_bytes -= freed

    def release(self) -> None:
        """The frame ends: its variables no longer count towards the memory limit."""
        self.run.var_bytes -= sum(self.sizes.values())

    # -- running steps
    def run_block(self, block: Any, parent: Any) -> Any:
        """Run a block from its first step; returns None when it falls off its end, or the
        signal (jump, break, continue, end, return) it cannot handle itself."""
        run = self.run
        history = self.history
        steps = block.steps
        n = len(steps)
        i = 0
        token = self.token
        while i < n:
            step = steps[i]
            if token.cancelled:
                raise ExecutionCancelled(token.reason)
            self.current = step
            kind = step.kind
            if kind is None:
                signal = step.execute(self, parent)
            else:
                if next(run.steps) > run.max_steps:
                    raise resource_limit_error(
                        f"the execution ran more than {run.max_steps} steps")
                with history.record(self.routine_name, step.name, kind, parent) as entry:
                    self.entry = entry
                    signal = step.execute(self, entry)
            if signal is None:
                signal = step.next
                if signal is None:
                    i += 1
                    continue
            if signal.__class__ is Goto and signal.block is block:
                i = signal.index
                continue
            return signal
        return None

    def run_loop(self, step: Any, items: Any, entry: Any) -> Any:
        """A sequential `for`: loop variables and variables created in the body are local."""
        before = self.snapshot()
        history = self.history
        token = self.token
        body = step.block
        value_name = step.value_name
        index_name = step.index_name
        set_local = self.set_local
        try:
            for index, item in enumerate(items):
                if token.cancelled:
                    raise ExecutionCancelled(token.reason)
                with history.record(self.routine_name, step.name, "STEP_FOR_ITERATION", entry,
                                    {"progressType": "PROGRESS_TYPE_FOR",
                                     "progressNumber": index}) as iteration:
                    set_local(value_name, item)
                    if index_name is not None:
                        set_local(index_name, index)
                    signal = self.run_block(body, iteration)
                if signal is None or signal is CONTINUE:
                    continue
                if signal is BREAK:
                    break
                return signal
            return None
        finally:
            self.drop_new(before)

    def wait_retry(self, step: Any, delay: float, attempt: int, error: WorkflowError,
                   entry: Any) -> None:
        meta = {"progressType": "PROGRESS_TYPE_RETRY", "progressNumber": attempt,
                "delaySeconds": delay}
        speed = getattr(self.run.clock, "speed", 1)
        if speed != 1:   # a local clock that runs waits faster says so in the step history
            meta["clockSpeed"] = speed
        with self.history.record(self.routine_name, step.name, "STEP_RETRY", entry, meta):
            self.ctx.clock.sleep(delay)

    def run_except(self, step: Any, error: WorkflowError, entry: Any) -> Any:
        before = self.snapshot()
        try:
            with self.history.record(self.routine_name, step.name, "STEP_EXCEPT",
                                     entry) as handler:
                if step.except_as is not None:
                    self.set_local(step.except_as, error.value)
                signal = None
                if step.except_block is not None and step.except_block.steps:
                    signal = self.run_block(step.except_block, handler)
        finally:
            self.drop_new(before)
        return signal

    # -- calls
    def call_routine(self, routine: Routine, args: list | None, kwargs: dict | None,
                     parent: Any) -> Any:
        depth = self.depth + 1
        if depth > limits.CALL_DEPTH:
            raise WorkflowError.tagged(
                "RecursionError", f"calling '{routine.name}' would nest subworkflow calls "
                                  f"{depth} deep; the limit is {limits.CALL_DEPTH}")
        frame = Frame(self.run, routine, depth, self.ctx, self.parallel_depth)
        try:
            frame.bind(args, kwargs)
            try:
                signal = frame.run_block(routine.block, parent)
            except WorkflowError as error:
                frame.trace(error)
                raise
        finally:
            frame.release()
        return signal.value if signal.__class__ is Return else None

    def bind(self, args: list | None, kwargs: dict | None) -> None:
        routine = self.routine
        names = routine.param_names
        if args:
            if len(args) > len(names):
                raise type_error(f"subworkflow '{routine.name}' takes {len(names)} argument(s), "
                                 f"got {len(args)}")
            for name, value in zip(names, args):
                self.set_var(name, value)
        if kwargs:
            if type(kwargs) is not dict:
                raise type_error(f"arguments of '{routine.name}' must be a map")
            for name, value in kwargs.items():
                if name not in names:
                    raise type_error(f"subworkflow '{routine.name}' has no parameter '{name}'")
                self.set_var(name, value)
        for name, default in routine.params:
            if name not in self.vars:
                if default is NO_DEFAULT:
                    raise type_error(f"missing argument '{name}' for subworkflow "
                                     f"'{routine.name}'")
                self.set_var(name, default.evaluate(self))

    def call_stdlib(self, name: str, function: Any, args: list | None,
                    kwargs: dict | None) -> Any:
        try:
            return function.invoke(self.ctx, args, kwargs)
        except WorkflowError:
            raise
        except RecursionError:
            raise
        except Exception as exc:
            raise system_error(name, exc) from exc

    def call_connector(self, name: str, args: dict, entry: Any) -> Any:
        return self.run.connectors.invoke(name, args, self, entry)

    def call_predicate(self, name: str, value: Any) -> Any:
        routine = self.run.program.routines[name]
        return self.call_routine(routine, [value], None, self.entry)

    # -- errors
    def trace(self, error: WorkflowError) -> None:
        """Add this frame's current step to the error's stack trace (innermost first)."""
        stack = error.__dict__.get("wf_stack")
        if stack is None:
            stack = error.wf_stack = []
        step = self.current
        stack.append({"step": step.name if step is not None else "",
                      "routine": self.routine_name,
                      "position": {"line": step.line if step is not None else self.routine.line}})


class BranchFrame(Frame):
    """The scope of one parallel branch or iteration: its own variables, read access to the
    enclosing scope, and write access only to the variables listed in `shared`."""

    __slots__ = ("parent", "shared")

    def __init__(self, parent: Frame, ctx: CallContext, shared: frozenset):
        Frame.__init__(self, parent.run, parent.routine, parent.depth, ctx,
                       parent.parallel_depth + 1)
        self.parent = parent
        self.shared = shared

    def get_var(self, name: str) -> Any:
        try:
            return self.vars[name]
        except KeyError:
            return self.parent.get_var(name)

    def has_var(self, name: str) -> bool:
        return name in self.vars or self.parent.has_var(name)

    def set_var(self, name: str, value: Any) -> None:
        if name in self.vars:
            Frame.set_var(self, name, value)
        elif name in self.shared:
            with self.run.shared_lock:
                self.parent.set_var(name, value)
        elif self.parent.has_var(name):
            raise type_error(f"variable '{name}' belongs to the scope around the parallel step; "
                             f"list it in 'shared' to assign it from a branch")
        else:
            Frame.set_var(self, name, value)

    def set_local(self, name: str, value: Any) -> None:
        Frame.set_var(self, name, value)

    def assign(self, target: Any, value: Any) -> None:
        name = target.name
        if name not in self.vars and name in self.shared:
            keys = target.evaluate_keys(self)
            with self.run.shared_lock:   # read, change and write the shared variable at once
                root = self.parent.get_var(name)
                self.parent.set_var(name, assign_path(root, keys, value, target.text))
            return
        Frame.assign(self, target, value)
