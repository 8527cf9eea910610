"""Value trees of a workflow (assign values, call args, return and raise values), compiled once
at load time: every `${...}` string becomes a compiled expression, and a subtree without any
expression becomes a `Literal` that evaluates to the very same object, never a copy. Values are
immutable by convention (assignment copies only the containers along its path), so sharing a
literal between steps and executions is safe.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localcloud.workflows.errors import type_error
from localcloud.workflows.expressions import compile_expression, expression_source, is_expression


class Template:
    """A value tree to evaluate against a scope."""

    __slots__ = ()
    has_expressions = True

    def evaluate(self, scope: Any) -> Any:
        raise NotImplementedError


class Literal(Template):
    __slots__ = ("value",)
    has_expressions = False

    def __init__(self, value: Any):
        self.value = value

    def evaluate(self, scope: Any) -> Any:
        return self.value


class ExpressionTemplate(Template):
    __slots__ = ("expression", "source", "evaluate")

    def __init__(self, source: str):
        self.source = source
        self.expression = compile_expression(source)
        # Bound once: evaluating a template is then a single call.
        self.evaluate = self.expression.evaluate


class MapTemplate(Template):
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[Any, Template]]):
        # key: a str, or an ExpressionTemplate for a dynamic `${...}` key
        self.items = items

    def evaluate(self, scope: Any) -> dict:
        out = {}
        for key, value in self.items:
            if type(key) is not str:
                key = key.evaluate(scope)
                if type(key) is not str:
                    raise type_error(f"a map key must be a string, got {type(key).__name__}")
            out[key] = value.evaluate(scope)
        return out


class ListTemplate(Template):
    __slots__ = ("items",)

    def __init__(self, items: list[Template]):
        self.items = items

    def evaluate(self, scope: Any) -> list:
        return [item.evaluate(scope) for item in self.items]


def compile_value(value: Any, report: Callable[[str], None] | None = None) -> Template:
    """Compile a loaded value tree. Expression syntax errors raise (ExpressionSyntaxError),
    or, with `report`, are passed to it and the offending subtree compiles to a literal."""
    t = type(value)
    if t is str:
        if is_expression(value):
            return _expression(value, report)
        return Literal(value)
    if t is dict:
        items = []
        dynamic = False
        for key, item in value.items():
            compiled = compile_value(item, report)
            if type(key) is str and is_expression(key):
                key_template = _expression(key, report)
                if key_template.has_expressions:
                    dynamic = True
                    items.append((key_template, compiled))
                    continue
            if compiled.has_expressions:
                dynamic = True
            items.append((key, compiled))
        return MapTemplate(items) if dynamic else Literal(value)
    if t is list:
        items = [compile_value(item, report) for item in value]
        if any(item.has_expressions for item in items):
            return ListTemplate(items)
        return Literal(value)
    return Literal(value)


def _expression(text: str, report: Callable[[str], None] | None) -> Template:
    source = expression_source(text)
    if report is None:
        return ExpressionTemplate(source)
    try:
        return ExpressionTemplate(source)
    except Exception as exc:  # ExpressionSyntaxError, named by the loader
        report(f"expression {text!r} does not parse: {exc}")
        return Literal(None)
