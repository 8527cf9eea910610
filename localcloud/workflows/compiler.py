"""Compiling a workflow's values (from `source`) into its runnable form (`steps`), checking its
structure as it goes.

Every structural problem is collected and reported at once (`LoadError.problems`), each naming
file, line and step: `creation.yaml:42 step 'run_generate': unknown key 'retyr' (did you mean
'retry'?)`. Expressions are compiled here, once.
"""
from __future__ import annotations

import difflib
import re
from typing import Any

from localcloud.workflows import limits
from localcloud.workflows.errors import LoadError
from localcloud.workflows.paths import NAME_RE, TargetSyntaxError, parse_target
from localcloud.workflows.retry import compile_retry
from localcloud.workflows.scopes import parallel_write_problems
from localcloud.workflows.source import Meta
from localcloud.workflows.stdlib import STDLIB
from localcloud.workflows.steps import (
    BREAK,
    CONTINUE,
    END,
    NO_DEFAULT,
    AssignStep,
    Block,
    BlockStep,
    Condition,
    ConnectorCallStep,
    ForStep,
    Goto,
    GotoStep,
    ParallelStep,
    Program,
    RaiseStep,
    ReturnStep,
    Routine,
    StdlibCallStep,
    Step,
    SubworkflowCallStep,
    SwitchStep,
    TryStep,
)
from localcloud.workflows.templates import Literal, Template, compile_value

STEP_KINDS = ("assign", "call", "switch", "for", "parallel", "raise", "return", "try", "steps")
STEP_KEYS = frozenset(STEP_KINDS + ("args", "result", "next", "retry", "except"))
CONDITION_KEYS = STEP_KEYS | {"condition"}
RESERVED_NEXT = {"end": END, "break": BREAK, "continue": CONTINUE}


def compile_program(tree: Any, meta: Meta, filename: str, source: str) -> Program:
    """The compiled program of a parsed document; raises LoadError listing every problem."""
    return _Compiler(filename, meta, source).program(tree)


class _Ctx:
    """Where a block sits: its routine, the innermost loop, parallel boundaries."""

    __slots__ = ("routine", "loop", "in_branch")

    def __init__(self, routine: str, loop: str | None = None, in_branch: bool = False):
        self.routine = routine
        self.loop = loop            # None | "for" | "parallel_for"
        self.in_branch = in_branch

    def with_loop(self, loop: str) -> _Ctx:
        return _Ctx(self.routine, loop, self.in_branch)

    def branch(self, loop: str | None = None) -> _Ctx:
        return _Ctx(self.routine, loop, True)


class _Compiler:
    def __init__(self, filename: str, meta: Meta, source: str):
        self.filename = filename
        self.meta = meta
        self.source = source
        self.problems: list[tuple[int, str]] = []
        self.routine_names: set[str] = set()
        self.block_names: dict[int, dict[str, int]] = {}
        self.block_boundary: dict[int, bool] = {}
        self.pending_next: list[tuple[Any, str, str, Block, int, str]] = []
        self.pending_calls: list[tuple[SubworkflowCallStep, Any, int]] = []
        self.routines: dict[str, Routine] = {}

    # -- reporting
    def problem(self, line: int, message: str, step: str | None = None,
                routine: str | None = None) -> None:
        where = f"{self.filename}:{line}"
        if step is not None:
            where += f" step '{step}'"
        elif routine is not None:
            where += f" routine '{routine}'"
        self.problems.append((line, f"{where}: {message}"))

    def fail(self) -> LoadError:
        return LoadError([text for _, text in sorted(self.problems, key=lambda p: p[0])])

    def value(self, raw: Any, line: int, step: str | None) -> Template:
        return compile_value(raw, lambda msg: self.problem(line, msg, step))

    # -- program
    def program(self, tree: Any) -> Program:
        if type(tree) is list:
            routines = {"main": {"steps": tree}}
            self.meta.lines[id(routines["main"])] = self.meta.line(tree, default=1)
            self.meta.keep.append(routines)
        elif type(tree) is dict:
            routines = tree
            if "main" not in routines:
                self.problem(1, "no 'main' workflow: give a 'main' with 'steps' (and "
                                "subworkflows beside it), or a plain list of steps")
                raise self.fail()
        else:
            raise LoadError([f"{self.filename}:1: a workflow is a map with 'main' (and "
                             f"subworkflows) or a list of steps, not {_kind(tree)}"])
        self.routine_names = set(routines)
        for name, body in routines.items():
            line = self.meta.line(routines, name, 1)
            routine = self.routine(name, body, line)
            if routine is not None:
                self.routines[name] = routine
        self.resolve_calls()
        self.resolve_next()
        for routine in self.routines.values():
            if routine.block is not None:
                for step, message in parallel_write_problems(routine.block,
                                                             set(routine.param_names)):
                    self.problem(step.line, message, step=step.name)
        if self.problems:
            raise self.fail()
        # main first, for readers of the compiled form
        ordered = {"main": self.routines["main"]}
        ordered.update(self.routines)
        return Program(self.filename, ordered, self.source)

    def routine(self, name: str, body: Any, line: int) -> Routine | None:
        if not NAME_RE.match(name):
            self.problem(line, f"workflow name {name!r} must be letters, digits and "
                               f"underscores, starting with a letter or underscore")
        if type(body) is not dict:
            self.problem(line, f"a workflow is a map with 'params' and 'steps', not "
                               f"{_kind(body)}", routine=name)
            return None
        line = self.meta.line(body, default=line)
        for key in body:
            if key not in ("params", "steps"):
                self.problem(self.meta.line(body, key, line),
                             f"unknown key {key!r}{_suggest(key, ('params', 'steps'))}; a "
                             f"workflow has 'params' and 'steps'", routine=name)
        params = self.params(name, body.get("params"), self.meta.line(body, "params", line))
        routine = Routine(name, params, line)
        steps = body.get("steps")
        if steps is None:
            self.problem(line, "missing 'steps'", routine=name)
            return routine
        routine.block = self.block(steps, None, "routine", _Ctx(name),
                                   self.meta.line(body, "steps", line), owner=None)
        return routine

    def params(self, routine: str, raw: Any, line: int) -> list[tuple[str, Any]]:
        if raw is None:
            return []
        if type(raw) is not list:
            self.problem(line, "'params' must be a list of names", routine=routine)
            return []
        limit = 1 if routine == "main" else limits.SUBWORKFLOW_PARAMS
        if len(raw) > limit:
            self.problem(line, f"{len(raw)} params; at most {limit} "
                               f"{'(main takes one argument, a map)' if routine == 'main' else ''}"
                         .rstrip(), routine=routine)
        out: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for item in raw:
            if type(item) is str:
                name, default = item, NO_DEFAULT
            elif type(item) is dict and len(item) == 1:
                name, raw_default = next(iter(item.items()))
                default = self.value(raw_default, line, None)
            else:
                self.problem(line, f"a param is a name or `name: default`, not {item!r}",
                             routine=routine)
                continue
            if not NAME_RE.match(name):
                self.problem(line, f"param name {name!r} is not a valid variable name",
                             routine=routine)
            if name in seen:
                self.problem(line, f"param {name!r} listed twice", routine=routine)
            seen.add(name)
            out.append((name, default))
        return out

    # -- blocks
    def block(self, raw: Any, parent: Block | None, kind: str, ctx: _Ctx, line: int,
              owner: str | None) -> Block:
        block = Block([], parent, kind)
        names: dict[str, int] = {}
        self.block_names[id(block)] = names
        self.block_boundary[id(block)] = kind in ("routine", "branch")
        if type(raw) is not list:
            self.problem(line, f"'steps' must be a list of steps, not {_kind(raw)}", step=owner,
                         routine=None if owner else ctx.routine)
            return block
        line = self.meta.line(raw, default=line)
        if not raw:
            self.problem(line, "'steps' is empty; give at least one step", step=owner,
                         routine=None if owner else ctx.routine)
        for item in raw:
            item_line = self.meta.line(item, default=line)
            if type(item) is not dict or len(item) != 1:
                self.problem(item_line, "each step is a map with exactly one key, the step "
                                        f"name (got {_kind(item)}"
                                        f"{' with keys ' + ', '.join(map(repr, item)) if type(item) is dict else ''})",
                             step=owner, routine=None if owner else ctx.routine)
                continue
            name, body = next(iter(item.items()))
            step_line = self.meta.line(item, name, item_line)
            if name in RESERVED_NEXT:
                self.problem(step_line, f"{name!r} is reserved (next: {name}); choose another "
                                        "step name", step=name)
            if name in names:
                self.problem(step_line, "duplicate step name in the same list of steps",
                             step=name)
            step = self.step(name, body, step_line, block, ctx)
            if step is None:
                continue
            names.setdefault(name, len(block.steps))
            block.steps.append(step)
        return block

    # -- steps
    def step(self, name: str, body: Any, line: int, block: Block, ctx: _Ctx,
             allow_next: bool = True) -> Step | None:
        if type(body) is not dict:
            self.problem(line, f"a step body is a map (assign, call, switch, ...), not "
                               f"{_kind(body)}", step=name)
            return None
        unknown = [key for key in body if key not in STEP_KEYS]
        for key in unknown:
            self.problem(self.meta.line(body, key, line),
                         f"unknown key {key!r}{_suggest(key, STEP_KEYS)}", step=name)
        kinds = [k for k in STEP_KINDS if k in body]
        if len(kinds) > 1:
            self.problem(line, "a step does one thing; found " + " and ".join(map(repr, kinds)),
                         step=name)
        for dependent, needs in (("args", "call"), ("result", "call"), ("retry", "try"),
                                 ("except", "try")):
            if dependent in body and needs not in body:
                self.problem(self.meta.line(body, dependent, line),
                             f"{dependent!r} needs {needs!r} in the same step", step=name)
        kind = kinds[0] if kinds else None
        if kind is None:
            if "next" not in body:
                if unknown:
                    return None
                self.problem(line, "empty step: give it assign, call, switch, for, parallel, "
                                   "raise, return, try, steps or next", step=name)
                return None
            step: Step | None = GotoStep(name, line)
        else:
            step = getattr(self, "step_" + kind)(name, body, line, block, ctx)
        if step is None:
            return None
        if "next" in body and allow_next:
            self.want_next(step, "next", body["next"], block, self.meta.line(body, "next", line),
                           name, ctx)
        return step

    def want_next(self, holder: Any, attr: str, target: Any, block: Block, line: int,
                  step: str, ctx: _Ctx) -> None:
        if type(target) is not str:
            self.problem(line, f"'next' must be a step name, end, break or continue, not "
                               f"{_kind(target)}", step=step)
            return
        if target in ("break", "continue"):
            if ctx.loop is None:
                self.problem(line, f"next: {target} is only allowed inside a for loop", step=step)
                return
            if ctx.loop == "parallel_for" and target == "break":
                self.problem(line, "next: break is not allowed in a parallel for loop (its "
                                   "iterations run concurrently); use continue to end an "
                                   "iteration", step=step)
                return
        if target in RESERVED_NEXT:
            setattr(holder, attr, RESERVED_NEXT[target])
            return
        self.pending_next.append((holder, attr, target, block, line, step))

    def resolve_next(self) -> None:
        for holder, attr, target, block, line, step in self.pending_next:
            b: Block | None = block
            found = None
            while b is not None:
                index = self.block_names.get(id(b), {}).get(target)
                if index is not None:
                    found = Goto(b, index, target)
                    break
                if self.block_boundary.get(id(b)):
                    break
                b = b.parent
            if found is None:
                where = "this parallel branch" if b is not None and b.kind == "branch" else \
                    "this workflow"
                self.problem(line, f"next: {target!r} is not a step of {where} (a jump can go "
                                   f"to a step of the same list of steps or of an enclosing "
                                   f"one)", step=step)
                continue
            setattr(holder, attr, found)

    def resolve_calls(self) -> None:
        for step, args, line in self.pending_calls:
            routine = self.routines.get(step.target)
            if routine is None:
                continue
            step.routine = routine
            if type(args) is dict:
                for key in args:
                    if key not in routine.param_names:
                        self.problem(line, f"unknown argument {key!r} for subworkflow "
                                           f"'{routine.name}' (params: "
                                           f"{', '.join(routine.param_names) or 'none'})",
                                     step=step.name)
                for param, default in routine.params:
                    if default is NO_DEFAULT and param not in args:
                        self.problem(line, f"missing argument {param!r} for subworkflow "
                                           f"'{routine.name}' (it has no default)",
                                     step=step.name)

    def target(self, raw: Any, line: int, step: str, what: str):
        try:
            return parse_target(raw)
        except TargetSyntaxError as exc:
            self.problem(line, f"{what}: {exc}", step=step)
        except Exception as exc:  # ExpressionSyntaxError inside [...]
            self.problem(line, f"{what}: {raw!r} does not parse: {exc}", step=step)
        return None

    def name(self, raw: Any, line: int, step: str, what: str) -> str | None:
        if type(raw) is not str or not NAME_RE.match(raw):
            self.problem(line, f"{what} must be a variable name (letters, digits, underscores), "
                               f"not {raw!r}", step=step)
            return None
        return raw

    # assign
    def step_assign(self, name, body, line, block, ctx):
        raw = body["assign"]
        step_line, line = line, self.meta.line(body, "assign", line)
        if type(raw) is not list or not raw:
            self.problem(line, "'assign' must be a non-empty list of `target: value` items",
                         step=name)
            return None
        if len(raw) > limits.ASSIGN_ITEMS:
            self.problem(line, f"{len(raw)} assignments in one step; at most "
                               f"{limits.ASSIGN_ITEMS} (split the step)", step=name)
        items = []
        for item in raw:
            item_line = self.meta.line(item, default=line)
            if type(item) is not dict or len(item) != 1:
                self.problem(item_line, "each assign item is a map with one key, "
                                        "`target: value`", step=name)
                continue
            key, value = next(iter(item.items()))
            target = self.target(key, item_line, name, "assign target")
            template = self.value(value, item_line, name)
            if target is not None:
                items.append((target, template))
        return AssignStep(name, step_line, items)

    # call
    def step_call(self, name, body, line, block, ctx):
        target = body["call"]
        step_line, line = line, self.meta.line(body, "call", line)
        args = body.get("args")
        args_line = self.meta.line(body, "args", line)
        if args is not None and type(args) is not dict:
            self.problem(args_line, f"'args' must be a map of argument names to values, not "
                                    f"{_kind(args)}", step=name)
            args = None
        args_template = self.value(args, args_line, name) if args is not None else None
        result = None
        if "result" in body:
            result = self.target(body["result"], self.meta.line(body, "result", line), name,
                                 "result")
        if type(target) is not str or not target:
            self.problem(line, f"'call' must name a function, subworkflow or connector, not "
                               f"{target!r}", step=name)
            return None
        if target in self.routine_names:
            step = SubworkflowCallStep(name, step_line, target, args_template, result)
            self.pending_calls.append((step, args, args_line))
            return step
        if target.startswith("googleapis."):
            if not re.match(r"^googleapis(\.[A-Za-z0-9_]+)+$", target):
                self.problem(line, f"connector name {target!r} is malformed", step=name)
            return ConnectorCallStep(name, step_line, target, args_template, result)
        function = STDLIB.get(target)
        if function is None:
            self.problem(line, f"unknown call target {target!r}: not a subworkflow of this "
                               f"file, a standard library function or a connector "
                               f"(googleapis.*){_suggest(target, list(STDLIB) + sorted(self.routine_names))}",
                         step=name)
            return None
        return StdlibCallStep(name, step_line, target, function, args_template, result)

    # switch
    def step_switch(self, name, body, line, block, ctx):
        raw = body["switch"]
        step_line, line = line, self.meta.line(body, "switch", line)
        if type(raw) is not list or not raw:
            self.problem(line, "'switch' must be a non-empty list of conditions", step=name)
            return None
        if len(raw) > limits.SWITCH_CONDITIONS:
            self.problem(line, f"{len(raw)} conditions; at most {limits.SWITCH_CONDITIONS}",
                         step=name)
        conditions = []
        for item in raw:
            c_line = self.meta.line(item, default=line)
            if type(item) is not dict or "condition" not in item:
                self.problem(c_line, "each switch item is a map with 'condition' (and next, "
                                     "steps, assign, call, return or raise)", step=name)
                continue
            for key in item:
                if key not in CONDITION_KEYS:
                    self.problem(self.meta.line(item, key, c_line),
                                 f"unknown key {key!r} in a condition"
                                 f"{_suggest(key, CONDITION_KEYS)}", step=name)
            test_raw = item["condition"]
            if type(test_raw) is bool:
                test: Template = Literal(test_raw)
            elif type(test_raw) is str and test_raw.startswith("${"):
                test = self.value(test_raw, c_line, name)
            else:
                self.problem(c_line, f"a condition is an expression ${{...}} or true/false, "
                                     f"not {test_raw!r}", step=name)
                test = Literal(False)
            rest = {k: v for k, v in item.items() if k not in ("condition", "next")}
            self.meta.lines[id(rest)] = c_line
            self.meta.key_lines[id(rest)] = self.meta.key_lines.get(id(item), {})
            self.meta.keep.append(rest)
            body_block = None
            if rest:
                body_block = Block([], block, "condition")
                self.block_names[id(body_block)] = {}
                if set(rest) == {"steps"}:
                    inner = self.block(rest["steps"], body_block, "nested", ctx,
                                       self.meta.line(item, "steps", c_line), owner=name)
                    body_block.steps.append(BlockStep(name, c_line, inner, "STEP_CONDITION"))
                else:
                    inline = self.step(name, rest, c_line, body_block, ctx, allow_next=False)
                    if inline is not None:
                        body_block.steps.append(inline)
            cond = Condition(test, body_block, None, c_line)
            if "next" in item:
                self.want_next(cond, "next", item["next"], block,
                               self.meta.line(item, "next", c_line), name, ctx)
            conditions.append(cond)
        return SwitchStep(name, step_line, conditions)

    # for
    def step_for(self, name, body, line, block, ctx):
        step_line, line = line, self.meta.line(body, "for", line)
        loop = self.for_loop(name, body["for"], line, block, ctx, parallel=False)
        if loop is not None:
            loop.line = step_line
        return loop

    def for_loop(self, name, raw, line, block, ctx, parallel: bool) -> ForStep | None:
        if type(raw) is not dict:
            self.problem(line, "'for' must be a map with value, in or range, and steps",
                         step=name)
            return None
        allowed = ("value", "index", "in", "range", "steps")
        for key in raw:
            if key not in allowed:
                self.problem(self.meta.line(raw, key, line),
                             f"unknown key {key!r} in 'for'{_suggest(key, allowed)}", step=name)
        value_name = None
        if "value" not in raw:
            self.problem(line, "'for' needs 'value', the loop variable", step=name)
        else:
            value_name = self.name(raw["value"], line, name, "for 'value'")
        index_name = None
        if "index" in raw:
            index_name = self.name(raw["index"], line, name, "for 'index'")
        items = range_ = None
        if ("in" in raw) == ("range" in raw):
            self.problem(line, "'for' needs exactly one of 'in' (a list) or 'range' "
                               "([start, end], both included)", step=name)
        elif "in" in raw:
            raw_in = raw["in"]
            if type(raw_in) is list or (type(raw_in) is str and raw_in.startswith("${")):
                items = self.value(raw_in, self.meta.line(raw, "in", line), name)
            else:
                self.problem(self.meta.line(raw, "in", line),
                             f"for 'in' must be a list or an expression giving a list, not "
                             f"{raw_in!r}", step=name)
        else:
            raw_range = raw["range"]
            r_line = self.meta.line(raw, "range", line)
            if type(raw_range) is list and len(raw_range) == 2 and all(
                    type(b) in (int, float) or (type(b) is str and b.startswith("${"))
                    for b in raw_range):
                range_ = [self.value(b, r_line, name) for b in raw_range]
            elif type(raw_range) is str and raw_range.startswith("${"):
                range_ = self.value(raw_range, r_line, name)
            else:
                self.problem(r_line, f"for 'range' must be [start, end] (numbers or "
                                     f"expressions), not {raw_range!r}", step=name)
        loop = ForStep(name, line, value_name or "_", index_name, items, range_)
        if "steps" not in raw:
            self.problem(line, "'for' needs 'steps'", step=name)
            loop.block = Block([], block, "for")
        else:
            inner_ctx = ctx.branch("parallel_for") if parallel else ctx.with_loop("for")
            loop.block = self.block(raw["steps"], block, "branch" if parallel else "for",
                                    inner_ctx, self.meta.line(raw, "steps", line), owner=name)
        return loop

    # parallel
    def step_parallel(self, name, body, line, block, ctx):
        raw = body["parallel"]
        step_line, line = line, self.meta.line(body, "parallel", line)
        if type(raw) is not dict:
            self.problem(line, "'parallel' must be a map with branches or for", step=name)
            return None
        allowed = ("exception_policy", "shared", "concurrency_limit", "branches", "for")
        for key in raw:
            if key not in allowed:
                self.problem(self.meta.line(raw, key, line),
                             f"unknown key {key!r} in 'parallel'{_suggest(key, allowed)}",
                             step=name)
        step = ParallelStep(name, step_line)
        policy = raw.get("exception_policy")
        if policy is not None and policy != "continueAll":
            self.problem(self.meta.line(raw, "exception_policy", line),
                         f"exception_policy {policy!r}: the only policy is continueAll",
                         step=name)
        step.continue_all = policy == "continueAll"
        shared = raw.get("shared", [])
        if type(shared) is not list:
            self.problem(line, "'shared' must be a list of variable names", step=name)
            shared = []
        step.shared = tuple(n for n in (self.name(s, line, name, "a shared variable")
                                        for s in shared) if n)
        if "concurrency_limit" in raw:
            limit = raw["concurrency_limit"]
            c_line = self.meta.line(raw, "concurrency_limit", line)
            if type(limit) is int and limit > 0:
                step.concurrency_limit = Literal(limit)
            elif type(limit) is str and limit.startswith("${"):
                step.concurrency_limit = self.value(limit, c_line, name)
            else:
                self.problem(c_line, f"concurrency_limit must be a positive integer, not "
                                     f"{limit!r}", step=name)
        if ("branches" in raw) == ("for" in raw):
            self.problem(line, "'parallel' needs exactly one of 'branches' or 'for'", step=name)
            return step
        if "for" in raw:
            step.kind = "STEP_PARALLEL_FOR"
            step.loop = self.for_loop(name, raw["for"], self.meta.line(raw, "for", line), block,
                                      ctx, parallel=True)
            return step
        step.kind = "STEP_PARALLEL_BRANCH"
        branches = raw["branches"]
        b_line = self.meta.line(raw, "branches", line)
        low, high = limits.PARALLEL_BRANCHES
        if type(branches) is not list:
            self.problem(b_line, "'branches' must be a list of named branches", step=name)
            return step
        if not low <= len(branches) <= high:
            self.problem(b_line, f"{len(branches)} branches; a parallel step has {low} to "
                                 f"{high}", step=name)
        step.branches = []
        seen: set[str] = set()
        for item in branches:
            i_line = self.meta.line(item, default=b_line)
            if type(item) is not dict or len(item) != 1:
                self.problem(i_line, "each branch is a map with one key, the branch name",
                             step=name)
                continue
            branch_name, branch_body = next(iter(item.items()))
            if branch_name in seen:
                self.problem(i_line, f"duplicate branch name {branch_name!r}", step=name)
            seen.add(branch_name)
            if type(branch_body) is not dict or set(branch_body) != {"steps"}:
                self.problem(i_line, f"branch {branch_name!r} must be a map with only "
                                     f"'steps'", step=name)
                continue
            inner = self.block(branch_body["steps"], block, "branch", ctx.branch(),
                               self.meta.line(branch_body, "steps", i_line), owner=branch_name)
            step.branches.append((branch_name, inner))
        return step

    # raise / return
    def step_raise(self, name, body, line, block, ctx):
        return RaiseStep(name, line, self.value(body["raise"], self.meta.line(body, "raise", line),
                                                name))

    def step_return(self, name, body, line, block, ctx):
        r_line = self.meta.line(body, "return", line)
        if ctx.in_branch:
            self.problem(r_line, "'return' is not allowed inside a parallel branch or "
                                 "iteration; assign a shared variable instead", step=name)
        return ReturnStep(name, line, self.value(body["return"], r_line, name))

    # try
    def step_try(self, name, body, line, block, ctx):
        raw = body["try"]
        t_line = self.meta.line(body, "try", line)
        step = TryStep(name, line)
        if type(raw) is list:
            step.body = self.block(raw, block, "try", ctx, t_line, owner=name)
        elif type(raw) is dict and set(raw) == {"steps"}:
            step.body = self.block(raw["steps"], block, "try", ctx,
                                   self.meta.line(raw, "steps", t_line), owner=name)
        elif type(raw) is dict:
            step.body = Block([], block, "try")
            self.block_names[id(step.body)] = {}
            inner = self.step(name, raw, t_line, step.body, ctx)
            if inner is not None:
                step.body.steps.append(inner)
        else:
            self.problem(t_line, f"'try' must be a step (e.g. call/args/result) or "
                                 f"`steps: [...]`, not {_kind(raw)}", step=name)
            step.body = Block([], block, "try")
        if "retry" in body:
            r_line = self.meta.line(body, "retry", line)
            step.retry = compile_retry(body["retry"], self.routine_names,
                                       lambda msg: self.problem(r_line, msg, step=name))
        if "except" in body:
            raw_except = body["except"]
            e_line = self.meta.line(body, "except", line)
            if type(raw_except) is not dict:
                self.problem(e_line, "'except' must be a map with 'as' and 'steps'", step=name)
            else:
                for key in raw_except:
                    if key not in ("as", "steps"):
                        self.problem(self.meta.line(raw_except, key, e_line),
                                     f"unknown key {key!r} in 'except'"
                                     f"{_suggest(key, ('as', 'steps'))}", step=name)
                if "as" in raw_except:
                    step.except_as = self.name(raw_except["as"], e_line, name, "except 'as'")
                if "steps" in raw_except:
                    step.except_block = self.block(raw_except["steps"], block, "except", ctx,
                                                   self.meta.line(raw_except, "steps", e_line),
                                                   owner=name)
                else:
                    step.except_block = Block([], block, "except")
        return step

    # steps
    def step_steps(self, name, body, line, block, ctx):
        inner = self.block(body["steps"], block, "nested", ctx, self.meta.line(body, "steps", line),
                           owner=name)
        return BlockStep(name, line, inner, None)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a map", list: "a list", str: "a string", int: "a number", float: "a number",
            bool: "a boolean"}.get(type(value), type(value).__name__)


def _suggest(word: Any, choices: Any) -> str:
    if type(word) is not str:
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
