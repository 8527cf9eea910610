"""The expression language inside `${...}`: tokenizer, parser and compiler.

Each expression is parsed once into a small AST and compiled into nested Python closures, so
evaluating it is a handful of function calls, with no tree walk and no `eval`. Variables and
function calls go through the `scope` the interpreter passes to `evaluate`:
`scope.get_var(name)` and `scope.call_function(dotted_name, args)`.

Operator precedence, high to low (as documented for Cloud Workflows):
`() . []`; `not`, unary `-`; `* / // %`; `+ -`; `< <= > >= == != in`; `and`; `or`.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from localcloud.workflows import values as V
from localcloud.workflows.errors import index_error, key_error, type_error
from localcloud.workflows.stdlib import BLOCKING_FUNCTIONS

__all__ = [
    "Expression",
    "ExpressionSyntaxError",
    "compile_expression",
    "expression_source",
    "is_expression",
]


class ExpressionSyntaxError(Exception):
    """An expression that does not parse. `column` is 1-based within the text inside `${}`."""

    def __init__(self, what: str, column: int, source: str):
        super().__init__(f"{what} at column {column} in expression ${{{source}}}")
        self.what = what
        self.column = column
        self.source = source


class Expression:
    """A compiled expression. `evaluate(scope)` returns its value or raises `WorkflowError`."""

    def __init__(self, source: str, fn: Callable[[Any], Any]):
        self.source = source
        # The compiled closure itself serves as `evaluate`: one call less per evaluation.
        self.evaluate = fn

    def evaluate(self, scope: Any) -> Any:  # noqa: F811 - shadowed per instance in __init__
        return self.__dict__["evaluate"](scope)

    def __repr__(self) -> str:
        return f"Expression(${{{self.source}}})"


def is_expression(value: Any) -> bool:
    """True for a string that is one whole `${...}` expression (GCW has no interpolation)."""
    return type(value) is str and value.startswith("${") and value.endswith("}")


def expression_source(value: str) -> str:
    """The text between `${` and the final `}`."""
    return value[2:-1]


@functools.lru_cache(maxsize=8192)
def compile_expression(source: str) -> Expression:
    """Parse and compile the text inside `${...}`; raises ExpressionSyntaxError."""
    if type(source) is not str:
        raise TypeError("expression source must be a string")
    tokens = _tokenize(source)
    try:
        node = _Parser(source, tokens).parse()
        return Expression(source, _compile(node, source))
    except RecursionError:
        raise ExpressionSyntaxError("expression is nested too deeply", 1, source) from None


# --- tokens ------------------------------------------------------------------------------------

_INT, _DOUBLE, _STR, _NAME, _OP, _END = "int", "double", "string", "name", "op", "end"

_NUMBER = re.compile(r"(?:\d+\.\d+|\d+|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TWO_CHAR_OPS = {"//", "==", "!=", "<=", ">="}
_ONE_CHAR_OPS = set("+-*/%<>()[]{},:.")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
            "r": "\r", "t": "\t"}
_OPERAND_END = {_INT, _DOUBLE, _STR, _NAME}

_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_AND = {"and", "AND"}
_OR = {"or", "OR"}
_NOT = {"not", "NOT"}
_KEYWORDS = _TRUE | _FALSE | _AND | _OR | _NOT | {"null", "in"}


def _tokenize(src: str) -> list[tuple[str, Any, int]]:
    tokens: list[tuple[str, Any, int]] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t\r\n":
            i += 1
            continue
        after_operand = bool(tokens) and (tokens[-1][0] in _OPERAND_END
                                          or tokens[-1][1] in (")", "]", "}"))
        if c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit() and not after_operand):
            m = _NUMBER.match(src, i)
            text = m.group()
            if any(ch in text for ch in ".eE"):
                tokens.append((_DOUBLE, float(text), i))
            else:
                tokens.append((_INT, int(text), i))
            i = m.end()
            if i < n and (src[i].isalnum() or src[i] == "_"):
                raise ExpressionSyntaxError(f"invalid number {src[tokens[-1][2]:i + 1]!r}",
                                            tokens[-1][2] + 1, src)
            continue
        if c.isalpha() or c == "_":
            m = _IDENT.match(src, i)
            if m is None:
                raise ExpressionSyntaxError(f"unexpected character {c!r}", i + 1, src)
            tokens.append((_NAME, m.group(), i))
            i = m.end()
            continue
        if c == '"' or c == "'":
            start = i
            text, i = _scan_string(src, i)
            tokens.append((_STR, text, start))
            continue
        two = src[i:i + 2]
        if two in _TWO_CHAR_OPS:
            tokens.append((_OP, two, i))
            i += 2
            continue
        if c in _ONE_CHAR_OPS:
            tokens.append((_OP, c, i))
            i += 1
            continue
        if c == "=":
            raise ExpressionSyntaxError("unexpected '=' (compare with '==')", i + 1, src)
        if c == "!":
            raise ExpressionSyntaxError("unexpected '!' (use 'not' or '!=')", i + 1, src)
        if c == "&" or c == "|":
            raise ExpressionSyntaxError(f"unexpected {c!r} (use 'and' / 'or')", i + 1, src)
        raise ExpressionSyntaxError(f"unexpected character {c!r}", i + 1, src)
    tokens.append((_END, None, n))
    return tokens


def _scan_string(src: str, start: int) -> tuple[str, int]:
    """Read a quoted string starting at `start`; returns (text, index after closing quote)."""
    quote = src[start]
    out: list[str] = []
    i, n = start + 1, len(src)
    while i < n:
        c = src[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= n:
                break
            e = src[i + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
                continue
            if e == "u":
                code = _hex4(src, i + 2)
                if code is None:
                    raise ExpressionSyntaxError("invalid \\u escape (needs 4 hex digits)",
                                                i + 1, src)
                i += 6
                if 0xD800 <= code <= 0xDBFF and src[i:i + 2] == "\\u":
                    low = _hex4(src, i + 2)
                    if low is not None and 0xDC00 <= low <= 0xDFFF:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                out.append(chr(code))
                continue
            raise ExpressionSyntaxError(f"unknown escape sequence '\\{e}'", i + 1, src)
        out.append(c)
        i += 1
    raise ExpressionSyntaxError("unterminated string", start + 1, src)


def _hex4(src: str, i: int) -> int | None:
    digits = src[i:i + 4]
    if len(digits) == 4 and all(d in "0123456789abcdefABCDEF" for d in digits):
        return int(digits, 16)
    return None


# --- parser ------------------------------------------------------------------------------------
#
# AST nodes are tuples whose first item names the kind:
#   ("const", value)            ("var", name)              ("list", [nodes])
#   ("map", [(key, node)])      ("attr", node, name)       ("index", node, node)
#   ("call", dotted_name, [nodes], column)                 ("neg", node)   ("not", node)
#   ("bin", op, left, right)    ("and", left, right)       ("or", left, right)

_COMPARISON = {"<", "<=", ">", ">=", "==", "!="}
_BIG = V.INT64_MAX + 1  # 9223372036854775808, valid only right after a unary minus


class _Parser:
    def __init__(self, source: str, tokens: list[tuple[str, Any, int]]):
        self.source = source
        self.tokens = tokens
        self.pos = 0

    # helpers
    def peek(self) -> tuple[str, Any, int]:
        return self.tokens[self.pos]

    def advance(self) -> tuple[str, Any, int]:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def error(self, what: str, tok: tuple[str, Any, int] | None = None) -> ExpressionSyntaxError:
        tok = tok or self.peek()
        return ExpressionSyntaxError(what, tok[2] + 1, self.source)

    def describe(self, tok: tuple[str, Any, int]) -> str:
        kind, value, _ = tok
        if kind == _END:
            return "end of expression"
        if kind == _STR:
            return f"string {value!r}"
        if kind in (_INT, _DOUBLE):
            return f"number {value!r}"
        return repr(value)

    def expect_op(self, op: str) -> tuple[str, Any, int]:
        tok = self.peek()
        if tok[0] == _OP and tok[1] == op:
            return self.advance()
        raise self.error(f"expected {op!r} but found {self.describe(tok)}")

    def at_op(self, op: str) -> bool:
        tok = self.tokens[self.pos]
        return tok[0] == _OP and tok[1] == op

    def at_word(self, words: set[str]) -> bool:
        tok = self.tokens[self.pos]
        return tok[0] == _NAME and tok[1] in words

    # grammar
    def parse(self) -> tuple:
        if self.peek()[0] == _END:
            raise self.error("empty expression")
        node = self.parse_or()
        tok = self.peek()
        if tok[0] != _END:
            raise self.error(f"unexpected {self.describe(tok)}")
        _check_no_big(node, self)
        return node

    def parse_or(self) -> tuple:
        node = self.parse_and()
        while self.at_word(_OR):
            self.advance()
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self) -> tuple:
        node = self.parse_comparison()
        while self.at_word(_AND):
            self.advance()
            node = ("and", node, self.parse_comparison())
        return node

    def parse_comparison(self) -> tuple:
        node = self.parse_additive()
        while True:
            tok = self.peek()
            if tok[0] == _OP and tok[1] in _COMPARISON:
                self.advance()
                node = ("bin", tok[1], node, self.parse_additive())
            elif tok[0] == _NAME and tok[1] == "in":
                self.advance()
                node = ("bin", "in", node, self.parse_additive())
            else:
                return node

    def parse_additive(self) -> tuple:
        node = self.parse_multiplicative()
        while True:
            tok = self.peek()
            if tok[0] == _OP and tok[1] in ("+", "-"):
                self.advance()
                node = ("bin", tok[1], node, self.parse_multiplicative())
            else:
                return node

    def parse_multiplicative(self) -> tuple:
        node = self.parse_unary()
        while True:
            tok = self.peek()
            if tok[0] == _OP and tok[1] in ("*", "/", "//", "%"):
                self.advance()
                node = ("bin", tok[1], node, self.parse_unary())
            else:
                return node

    def parse_unary(self) -> tuple:
        tok = self.peek()
        if tok[0] == _NAME and tok[1] in _NOT:
            self.advance()
            operand = self.parse_unary()
            if operand[0] == "const" and type(operand[1]) is bool:
                return ("const", not operand[1])
            return ("not", operand)
        if tok[0] == _OP and tok[1] == "-":
            self.advance()
            operand = self.parse_unary()
            if operand[0] == "big":
                return ("const", -_BIG)
            if operand[0] == "const" and type(operand[1]) is float:
                return ("const", -operand[1])
            if operand[0] == "const" and type(operand[1]) is int and -operand[1] <= V.INT64_MAX:
                return ("const", -operand[1])
            return ("neg", operand)
        return self.parse_postfix()

    def parse_postfix(self) -> tuple:
        node = self.parse_primary()
        while True:
            tok = self.peek()
            if tok[0] != _OP:
                return node
            if tok[1] == ".":
                self.advance()
                name_tok = self.peek()
                if name_tok[0] != _NAME:
                    raise self.error(f"expected a name after '.' but found "
                                     f"{self.describe(name_tok)}")
                self.advance()
                node = ("attr", node, name_tok[1])
            elif tok[1] == "[":
                self.advance()
                if self.at_op("]"):
                    raise self.error("expected an index or key inside '[]'")
                index = self.parse_or()
                self.expect_op("]")
                node = ("index", node, index)
            elif tok[1] == "(":
                name = _dotted_name(node)
                if name is None:
                    raise self.error("only named functions can be called", tok)
                self.advance()
                args = []
                if not self.at_op(")"):
                    while True:
                        args.append(self.parse_or())
                        if self.at_op(","):
                            self.advance()
                            if self.at_op(")"):
                                raise self.error("expected an argument after ','")
                            continue
                        break
                self.expect_op(")")
                if name in BLOCKING_FUNCTIONS or name.startswith("googleapis."):
                    raise ExpressionSyntaxError(
                        f"{name} is a blocking call and cannot be used in an expression; "
                        f"call it from a call step", tok[2] + 1 - len(name), self.source)
                node = ("call", name, args, tok[2] + 1)
            else:
                return node

    def parse_primary(self) -> tuple:
        tok = self.advance()
        kind, value, _ = tok
        if kind == _INT:
            if value > V.INT64_MAX:
                if value == _BIG:
                    return ("big", tok)
                raise self.error(f"integer literal {value} is out of the 64-bit range", tok)
            return ("const", value)
        if kind == _DOUBLE:
            if value == float("inf"):
                raise self.error("number literal is out of the double range", tok)
            return ("const", value)
        if kind == _STR:
            return ("const", value)
        if kind == _NAME:
            if value in _TRUE:
                return ("const", True)
            if value in _FALSE:
                return ("const", False)
            if value == "null":
                return ("const", None)
            if value in _KEYWORDS:
                raise self.error(f"unexpected keyword {value!r}", tok)
            return ("var", value)
        if kind == _OP:
            if value == "(":
                node = self.parse_or()
                self.expect_op(")")
                return node
            if value == "[":
                items = []
                if not self.at_op("]"):
                    while True:
                        items.append(self.parse_or())
                        if self.at_op(","):
                            self.advance()
                            continue
                        break
                self.expect_op("]")
                return ("list", items)
            if value == "{":
                entries: list[tuple[str, tuple]] = []
                seen: set[str] = set()
                if not self.at_op("}"):
                    while True:
                        key_tok = self.advance()
                        if key_tok[0] != _STR:
                            raise self.error("map keys must be string literals", key_tok)
                        if key_tok[1] in seen:
                            raise self.error(f"duplicate map key {key_tok[1]!r}", key_tok)
                        seen.add(key_tok[1])
                        self.expect_op(":")
                        entries.append((key_tok[1], self.parse_or()))
                        if self.at_op(","):
                            self.advance()
                            continue
                        break
                self.expect_op("}")
                return ("map", entries)
        if kind == _END:
            raise self.error("unexpected end of expression", tok)
        raise self.error(f"unexpected {self.describe(tok)}", tok)


def _dotted_name(node: tuple) -> str | None:
    parts = []
    while node[0] == "attr":
        parts.append(node[2])
        node = node[1]
    if node[0] != "var":
        return None
    parts.append(node[1])
    return ".".join(reversed(parts))


def _check_no_big(node: Any, parser: _Parser) -> None:
    """9223372036854775808 is only valid as the operand of unary minus (folded already)."""
    if type(node) is tuple:
        if node and node[0] == "big":
            raise parser.error(f"integer literal {_BIG} is out of the 64-bit range", node[1])
        for child in node[1:]:
            _check_no_big(child, parser)
    elif type(node) is list:
        for child in node:
            _check_no_big(child, parser)


# --- runtime access ----------------------------------------------------------------------------

def _lookup(container: Any, key: Any) -> Any:
    """`container[key]`: map by string key, list by non-negative integer index."""
    t = type(container)
    if t is dict:
        if type(key) is not str:
            raise type_error(f"map keys are strings; cannot look up a {V.type_name(key)} key")
        try:
            return container[key]
        except KeyError:
            raise key_error(f"key not found: {key}") from None
    if t is list:
        if type(key) is not int:
            raise type_error(f"list indices must be integers, not {V.type_name(key)}")
        if 0 <= key < len(container):
            return container[key]
        raise index_error(f"list index out of range: {key} (list length {len(container)})")
    raise type_error(f"cannot index a {V.type_name(container)} value with "
                     f"{'[' + repr(key) + ']' if type(key) is not str else repr(key)}")


def _field(container: Any, name: str) -> Any:
    """`container.name`: only maps have fields."""
    if type(container) is dict:
        try:
            return container[name]
        except KeyError:
            raise key_error(f"key not found: {name}") from None
    raise type_error(f"cannot access field '{name}' of a {V.type_name(container)} value")


# --- compiler ----------------------------------------------------------------------------------

def _compile(node: tuple, source: str) -> Callable[[Any], Any]:
    kind = node[0]
    if kind == "const":
        value = node[1]
        return lambda scope: value
    if kind == "var":
        name = node[1]
        return lambda scope: scope.get_var(name)
    if kind == "attr" or kind == "index":
        path = _static_path(node)
        if path is not None:
            return _compile_path(*path)
        base = _compile(node[1], source)
        if kind == "attr":
            field = node[2]
            return lambda scope: _field(base(scope), field)
        index = _compile(node[2], source)
        return lambda scope: _lookup(base(scope), index(scope))
    if kind == "list":
        items = tuple(_compile(n, source) for n in node[1])
        return lambda scope: [item(scope) for item in items]
    if kind == "map":
        entries = tuple((k, _compile(n, source)) for k, n in node[1])
        return lambda scope: {k: item(scope) for k, item in entries}
    if kind == "call":
        return _compile_call(node[1], [_compile(n, source) for n in node[2]])
    if kind == "neg":
        operand = _compile(node[1], source)
        return lambda scope: V.negate(operand(scope))
    if kind == "not":
        operand = _compile(node[1], source)

        def not_(scope):
            value = operand(scope)
            if value is True:
                return False
            if value is False:
                return True
            return V.logical_not(value)
        return not_
    if kind == "and":
        return _compile_and(_compile(node[1], source), _compile(node[2], source))
    if kind == "or":
        return _compile_or(_compile(node[1], source), _compile(node[2], source))
    if kind == "bin":
        return _compile_binary(node[1], node[2], node[3], source)
    raise AssertionError(f"unknown node {kind}")


def _static_path(node: tuple) -> tuple[str, tuple] | None:
    """`a.b[0]["c"]` with literal keys becomes (variable, keys) for one flat lookup loop."""
    keys = []
    while node[0] in ("attr", "index"):
        if node[0] == "attr":
            keys.append(("f", node[2]))
        else:
            idx = node[2]
            if idx[0] != "const" or type(idx[1]) not in (int, str):
                return None
            keys.append(("i", idx[1]))
        node = node[1]
    if node[0] != "var":
        return None
    return node[1], tuple(reversed(keys))


def _compile_path(name: str, keys: tuple) -> Callable[[Any], Any]:
    if len(keys) == 1:
        how, key = keys[0]
        if how == "f":
            def field1(scope):
                v = scope.get_var(name)
                if type(v) is dict and key in v:
                    return v[key]
                return _field(v, key)
            return field1

        def index1(scope):
            return _lookup(scope.get_var(name), key)
        return index1

    def path(scope):
        v = scope.get_var(name)
        for how, key in keys:
            if how == "f" and type(v) is dict and key in v:
                v = v[key]
            elif how == "f":
                v = _field(v, key)
            else:
                v = _lookup(v, key)
        return v
    return path


def _compile_call(name: str, args: list[Callable]) -> Callable[[Any], Any]:
    if not args:
        return lambda scope: scope.call_function(name, [])
    if len(args) == 1:
        a0 = args[0]
        return lambda scope: scope.call_function(name, [a0(scope)])
    if len(args) == 2:
        a0, a1 = args
        return lambda scope: scope.call_function(name, [a0(scope), a1(scope)])
    items = tuple(args)
    return lambda scope: scope.call_function(name, [a(scope) for a in items])


def _logic_error(op: str, value: Any) -> Exception:
    return type_error(f"'{op}' needs boolean operands, got {V.type_name(value)}")


def _compile_and(left: Callable, right: Callable) -> Callable[[Any], Any]:
    def and_(scope):
        a = left(scope)
        if a is False:
            return False
        if a is not True:
            raise _logic_error("and", a)
        b = right(scope)
        if b is True or b is False:
            return b
        raise _logic_error("and", b)
    return and_


def _compile_or(left: Callable, right: Callable) -> Callable[[Any], Any]:
    def or_(scope):
        a = left(scope)
        if a is True:
            return True
        if a is not False:
            raise _logic_error("or", a)
        b = right(scope)
        if b is True or b is False:
            return b
        raise _logic_error("or", b)
    return or_


_ARITHMETIC = {
    "-": V.subtract,
    "*": V.multiply,
    "/": V.divide,
    "//": V.floor_divide,
    "%": V.modulo,
}


def _compile_binary(op: str, lnode: tuple, rnode: tuple, source: str) -> Callable[[Any], Any]:
    left = _compile(lnode, source)
    right = _compile(rnode, source)
    lo, hi = V.INT64_MIN, V.INT64_MAX

    if op == "+":
        add = V.add

        def plus(scope):
            a = left(scope)
            b = right(scope)
            if type(a) is int and type(b) is int:
                r = a + b
                if lo <= r <= hi:
                    return r
            return add(a, b)
        return plus
    if op in _ARITHMETIC:
        fn = _ARITHMETIC[op]
        return lambda scope: fn(left(scope), right(scope))
    if op == "==" or op == "!=":
        equals = V.equals
        negate = op == "!="

        def eq(scope):
            a = left(scope)
            b = right(scope)
            t = type(a)
            if t is type(b) and t is not list and t is not dict:
                return (a != b) if negate else (a == b)
            return equals(a, b) is not negate
        return eq
    if op in ("<", "<=", ">", ">="):
        compare = V.compare
        raw = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
               ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[op]
        if op == ">":
            def gt(scope):
                a = left(scope)
                b = right(scope)
                ta, tb = type(a), type(b)
                if (ta is int or ta is float) and (tb is int or tb is float):
                    return a > b
                return compare(">", a, b)
            return gt
        if op == "<":
            def lt(scope):
                a = left(scope)
                b = right(scope)
                ta, tb = type(a), type(b)
                if (ta is int or ta is float) and (tb is int or tb is float):
                    return a < b
                return compare("<", a, b)
            return lt

        def ordered(scope):
            a = left(scope)
            b = right(scope)
            ta, tb = type(a), type(b)
            if (ta is int or ta is float) and (tb is int or tb is float):
                return raw(a, b)
            return compare(op, a, b)
        return ordered
    if op == "in":
        contains = V.contains

        def in_(scope):
            item = left(scope)
            return contains(right(scope), item)
        return in_
    raise AssertionError(f"unknown operator {op}")
