"""Scope analysis of a compiled workflow: which variables a step defines in its scope, and which
assignments of a parallel branch reach the scope around it.

Cloud Workflows refuses, at deploy time, a parallel branch that assigns a variable of the
enclosing scope not listed in the step's `shared`; `parallel_write_problems` finds every such
assignment.
"""
from __future__ import annotations

from localcloud.workflows.steps import (
    AssignStep,
    Block,
    BlockStep,
    ConnectorCallStep,
    ForStep,
    ParallelStep,
    StdlibCallStep,
    Step,
    SubworkflowCallStep,
    SwitchStep,
    TryStep,
)


def parallel_write_problems(block: Block, defined: set[str]) -> list[tuple[Step, str]]:
    """(step, message) for each assignment, in a branch of a parallel step of `block`, to a
    variable of the enclosing scope that the step does not list in `shared`. Variables count as
    enclosing when assigned before the parallel step outside any loop or except block (those
    scopes are local), or when they are in `defined` (params)."""
    problems: list[tuple[Step, str]] = []
    _check(block, set(defined), problems)
    return problems


def _check(block: Block, defined: set[str], problems: list[tuple[Step, str]]) -> None:
    local = set(defined)
    for step in block.steps:
        if isinstance(step, ParallelStep):
            bodies = ([b for _, b in step.branches or []] if step.loop is None
                      else [step.loop.block] if step.loop.block is not None else [])
            for body in bodies:
                for name, where in _writes(body):
                    if name in local and name not in step.shared:
                        problems.append((where, f"assigns '{name}', a variable of the scope "
                                                f"around parallel step '{step.name}'; list it in "
                                                f"that step's 'shared'"))
                inner = set(local)
                if step.loop is not None:
                    inner |= {step.loop.value_name} | (
                        {step.loop.index_name} if step.loop.index_name else set())
                _check(body, inner, problems)
        elif isinstance(step, ForStep):
            if step.block is not None:
                _check(step.block, local | {step.value_name} | (
                    {step.index_name} if step.index_name else set()), problems)
        else:
            for child in _child_blocks(step):
                _check(child, local, problems)
            if isinstance(step, TryStep) and step.except_block is not None:
                _check(step.except_block,
                       local | ({step.except_as} if step.except_as else set()), problems)
        local |= _defines(step)


def _child_blocks(step: Step) -> list[Block]:
    """Blocks of a step that share its scope (not loops, branches or except blocks)."""
    if isinstance(step, BlockStep):
        return [step.block] if step.block is not None else []
    if isinstance(step, SwitchStep):
        return [c.body for c in step.conditions if c.body is not None]
    if isinstance(step, TryStep):
        return [step.body] if step.body is not None else []
    return []


def _assigned(step: Step) -> list[str]:
    if isinstance(step, AssignStep):
        return [target.name for target, _ in step.items]
    result = getattr(step, "result", None) if isinstance(
        step, (StdlibCallStep, SubworkflowCallStep, ConnectorCallStep)) else None
    return [result.name] if result is not None else []


def _defines(step: Step) -> set[str]:
    """Variables a step leaves defined in its scope."""
    names = set(_assigned(step))
    for child in _child_blocks(step):
        for inner in child.steps:
            names |= _defines(inner)
    return names


def _writes(block: Block) -> list[tuple[str, Step]]:
    """(variable, step) for every assignment in a branch body that may reach the enclosing
    scope: loop variables and except `as` names are local and left out, and so are nested
    parallel steps (they have their own `shared`)."""
    out: list[tuple[str, Step]] = []
    for step in block.steps:
        out.extend((name, step) for name in _assigned(step))
        if isinstance(step, ParallelStep):
            continue
        children = list(_child_blocks(step))
        local: set[str] = set()
        if isinstance(step, ForStep) and step.block is not None:
            children.append(step.block)
            local = {step.value_name, step.index_name}
        if isinstance(step, TryStep) and step.except_block is not None:
            children.append(step.except_block)
            local = {step.except_as}
        for child in children:
            out.extend((n, s) for n, s in _writes(child) if n not in local)
    return out
