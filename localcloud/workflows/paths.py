"""Assignment targets (`a`, `a.b["c"]`, `l[2]`, `m[key_expr]`) and assignment by value.

Assignment never changes a container in place: it copies only the containers along the assigned
path and shares everything else, so `a: ${b}` then `a.x: 1` leaves `b` alone, and the cost of an
assignment does not grow with the size of unrelated data.
"""
from __future__ import annotations

import re
from typing import Any

from localcloud.workflows.errors import index_error, type_error
from localcloud.workflows.expressions import compile_expression

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TargetSyntaxError(ValueError):
    """An assignment target that does not parse."""


class Target:
    """A parsed assignment target: a variable name and a path of keys below it. Each key is a
    str (from `.name`) or a compiled expression (from `[...]`)."""

    __slots__ = ("text", "name", "keys", "simple")

    def __init__(self, text: str, name: str, keys: list[Any]):
        self.text = text
        self.name = name
        self.keys = keys
        self.simple = not keys

    def evaluate_keys(self, scope: Any) -> list[Any]:
        return [k if type(k) is str else k.evaluate(scope) for k in self.keys]


def parse_target(text: str) -> Target:
    """Parse `name(.ident | [expr])*`; raises TargetSyntaxError (or the expression module's
    ExpressionSyntaxError for a bracketed expression that does not parse)."""
    if type(text) is not str:
        raise TargetSyntaxError(f"an assignment target must be a string, got {text!r}")
    s = text.strip()
    m = _IDENT_RE.match(s)
    if not m:
        raise TargetSyntaxError(f"assignment target {text!r} must start with a variable name")
    name = m.group(0)
    pos = m.end()
    keys: list[Any] = []
    n = len(s)
    while pos < n:
        c = s[pos]
        if c == ".":
            m = _IDENT_RE.match(s, pos + 1)
            if not m:
                raise TargetSyntaxError(f"assignment target {text!r}: expected a key name after '.'")
            keys.append(m.group(0))
            pos = m.end()
        elif c == "[":
            end = _closing_bracket(s, pos, text)
            inner = s[pos + 1:end].strip()
            if not inner:
                raise TargetSyntaxError(f"assignment target {text!r}: empty []")
            keys.append(compile_expression(inner))
            pos = end + 1
        elif c.isspace():
            pos += 1
        else:
            raise TargetSyntaxError(f"assignment target {text!r}: unexpected {c!r}")
    return Target(text, name, keys)


def _closing_bracket(s: str, start: int, text: str) -> int:
    depth = 0
    quote = ""
    i = start
    while i < len(s):
        c = s[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise TargetSyntaxError(f"assignment target {text!r}: unclosed '['")


def assign_path(root: Any, keys: list[Any], value: Any, target_text: str) -> Any:
    """The new value of the root variable after assigning `value` at `keys` below it. Copies
    each container on the path; a missing map key on the way is created as an empty map."""
    # Walk down, remembering the containers to copy.
    chain = []
    node = root
    last = len(keys) - 1
    for depth, key in enumerate(keys):
        t = type(node)
        if t is dict:
            if type(key) is not str:
                raise type_error(f"{target_text}: map keys must be strings, got {_tname(key)}")
            chain.append((node, key))
            child = node.get(key, _MISSING)
            if child is _MISSING:
                if depth == last:
                    node = None
                    continue
                child = {}
            node = child
        elif t is list:
            if type(key) is not int:
                raise type_error(f"{target_text}: list indexes must be integers, got {_tname(key)}")
            if key < 0 or key >= len(node):
                raise index_error(f"{target_text}: list index {key} out of range "
                                  f"(length {len(node)})")
            chain.append((node, key))
            node = node[key]
        else:
            raise type_error(f"{target_text}: cannot assign a key of a {_tname(node)} value")
    # Rebuild upwards, copying each container once.
    new = value
    for container, key in reversed(chain):
        copy = container.copy()
        copy[key] = new
        new = copy
    return new


_MISSING = object()


def _tname(value: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "double", str: "string",
            list: "list", dict: "map", bytes: "bytes"}.get(type(value), type(value).__name__)
