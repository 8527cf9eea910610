"""Values of the Workflows language and the rules the expressions and the standard library share.

A value is a Python None, bool, int, float, str, list, dict (str keys) or bytes. Values are
treated as immutable: nothing here changes a container it was given. `bool` is a subclass of
`int` in Python but not in the language, so every check uses `type(x) is int`, never
`isinstance(x, int)`.
"""
from __future__ import annotations

import json
import math
from typing import Any

from localcloud.workflows.errors import type_error, value_error, zero_division_error

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_TYPE_NAMES = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "double",
    str: "string",
    list: "list",
    dict: "map",
    bytes: "bytes",
}


def type_name(value: Any) -> str:
    """The language's name of the type of `value`, as `get_type()` returns it."""
    try:
        return _TYPE_NAMES[type(value)]
    except KeyError:
        raise type_error(f"unsupported value of Python type {type(value).__name__}") from None


def is_number(value: Any) -> bool:
    t = type(value)
    return t is int or t is float


def check_int(result: int) -> int:
    """Integers are 64-bit signed; a result outside that range is an error, not a wrap."""
    if INT64_MIN <= result <= INT64_MAX:
        return result
    raise value_error(f"integer overflow: {result} does not fit in 64 bits")


def check_double(result: float, *operands: Any) -> float:
    """A finite computation that overflows to infinity is an error."""
    if math.isinf(result) and all(not (type(o) is float and math.isinf(o)) for o in operands):
        raise value_error("double overflow: result is out of range")
    return result


# --- text form --------------------------------------------------------------------------------

def format_double(value: float) -> str:
    """Shortest text that reads back as the same double: 1.0 -> "1.0", 1e+20, 0.1."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def to_text(value: Any, function: str = "string") -> str:
    """`string()` of an integer, double, boolean or string; any other type is a TypeError."""
    t = type(value)
    if t is str:
        return value
    if t is int:
        return str(value)
    if t is float:
        return format_double(value)
    if t is bool:
        return "true" if value else "false"
    raise type_error(f"{function}: cannot convert {type_name(value)} to string")


# --- equality and ordering -------------------------------------------------------------------

def equals(a: Any, b: Any) -> bool:
    """`==`: integers and doubles compare by value; other types must match; lists and maps
    compare element by element; values of different types are simply unequal."""
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is list:
            return len(a) == len(b) and all(equals(x, y) for x, y in zip(a, b))
        if ta is dict:
            if len(a) != len(b):
                return False
            for k, v in a.items():
                if k not in b or not equals(v, b[k]):
                    return False
            return True
        return a == b
    if (ta is int and tb is float) or (ta is float and tb is int):
        return a == b
    return False


def contains(container: Any, item: Any) -> bool:
    """`item in container`: membership in a list, or a key of a map."""
    t = type(container)
    if t is list:
        ti = type(item)
        if ti is str or ti is bool or item is None:
            for x in container:
                if type(x) is ti and x == item:
                    return True
            return False
        return any(equals(item, x) for x in container)
    if t is dict:
        if type(item) is not str:
            return False
        return item in container
    raise type_error(f"'in' needs a list or a map on its right, got {type_name(container)}")


_ORDER_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def compare(op: str, a: Any, b: Any) -> bool:
    """Ordering: numbers with numbers, strings with strings; anything else is a TypeError."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return _ORDER_OPS[op](a, b)
    if ta is str and tb is str:
        return _ORDER_OPS[op](a, b)
    raise type_error(f"cannot compare {type_name(a)} {op} {type_name(b)}")


# --- arithmetic --------------------------------------------------------------------------------

def add(a: Any, b: Any) -> Any:
    """`+`: numbers add (integer + integer stays integer); strings concatenate only with strings
    (numbers go through string() first). Everything else is a TypeError. Stricter than some
    readings of Google's conversion table, on purpose: what runs here also runs in the cloud."""
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return check_int(a + b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return check_double(a + b, a, b)
    if ta is str and tb is str:
        return a + b
    raise type_error(f"unsupported operand types for +: {type_name(a)} and {type_name(b)}")


def _numbers(op: str, a: Any, b: Any) -> None:
    raise type_error(f"unsupported operand types for {op}: {type_name(a)} and {type_name(b)}")


def subtract(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return check_int(a - b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return check_double(a - b, a, b)
    _numbers("-", a, b)


def multiply(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return check_int(a * b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return check_double(a * b, a, b)
    _numbers("*", a, b)


def divide(a: Any, b: Any) -> float:
    """`/` always yields a double."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        if b == 0:
            raise zero_division_error("division by zero")
        if ta is int and tb is int:
            return check_double(a / b)
        return check_double(a / b, a, b)
    _numbers("/", a, b)


def floor_divide(a: Any, b: Any) -> Any:
    """`//` rounds towards negative infinity; integer // integer stays integer."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        if b == 0:
            raise zero_division_error("integer division by zero" if ta is int and tb is int
                                      else "division by zero")
        if ta is int and tb is int:
            return check_int(a // b)
        return a // b
    _numbers("//", a, b)


def modulo(a: Any, b: Any) -> Any:
    """`%` takes the sign of the divisor (a == (a // b) * b + a % b)."""
    ta, tb = type(a), type(b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        if b == 0:
            raise zero_division_error("modulo by zero")
        return a % b
    _numbers("%", a, b)


def negate(a: Any) -> Any:
    t = type(a)
    if t is int:
        return check_int(-a)
    if t is float:
        return -a
    raise type_error(f"unsupported operand type for unary -: {type_name(a)}")


def logical_not(a: Any) -> bool:
    if type(a) is bool:
        return not a
    raise type_error(f"'not' needs a boolean, got {type_name(a)}")


# --- JSON --------------------------------------------------------------------------------------

def _json_int(text: str) -> int | float:
    n = int(text)
    return n if INT64_MIN <= n <= INT64_MAX else float(n)


def _json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_loads(text: str) -> Any:
    """Decode JSON text into values; integers beyond 64 bits become doubles. Raises
    ValueError (Python's) on malformed input; callers turn it into the language's error."""
    return json.loads(text, parse_int=_json_int, parse_constant=_json_constant)


def _check_jsonable(value: Any, function: str) -> None:
    t = type(value)
    if t is dict:
        for v in value.values():
            _check_jsonable(v, function)
    elif t is list:
        for v in value:
            _check_jsonable(v, function)
    elif t is float:
        if not math.isfinite(value):
            raise value_error(f"{function}: {format_double(value)} cannot be JSON-encoded")
    elif not (value is None or t is bool or t is int or t is str):
        raise value_error(f"{function}: a {type_name(value)} value cannot be JSON-encoded")


def json_dumps(value: Any, function: str = "json.encode", indent: Any = None) -> str:
    """Encode a value as compact JSON text (no spaces), or indented when `indent` is true or a
    map {prefix, indent}: each element on its own line starting with `prefix` followed by one
    `indent` (default four spaces) per level of nesting."""
    _check_jsonable(value, function)
    if indent is None or indent is False:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    prefix, unit = "", "    "
    if indent is True:
        pass
    elif type(indent) is dict:
        unknown = set(indent) - {"prefix", "indent"}
        if unknown:
            raise value_error(f"{function}: unknown indent option(s) {sorted(unknown)}")
        prefix = indent.get("prefix", "")
        unit = indent.get("indent", "    ")
        if type(prefix) is not str or type(unit) is not str:
            raise type_error(f"{function}: indent prefix and indent must be strings")
    else:
        raise type_error(f"{function}: indent must be a boolean or a map, got {type_name(indent)}")
    text = json.dumps(value, ensure_ascii=False, indent=unit, separators=(",", ": "),
                      allow_nan=False)
    return text.replace("\n", "\n" + prefix) if prefix else text
