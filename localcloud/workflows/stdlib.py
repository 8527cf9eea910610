"""The Workflows standard library: every function by its dotted name, in `STDLIB`.

Each function takes the call context first, then the language's arguments, named as Google
documents them so that a `call:` step's `args:` map binds by name (`text.split` has `source`
and `separator`). `StdFunction.invoke` checks arity and names once, at the edge, and the
function bodies check the types of what they were given. Errors are `WorkflowError`s with
the documented tags, so a workflow's `except` catches them.
"""
from __future__ import annotations

import base64 as _b64
import binascii
import codecs
import hashlib
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, unquote_plus

from localcloud.workflows import stdlib_http
from localcloud.workflows import values as V
from localcloud.workflows.errors import type_error, value_error

__all__ = ["BLOCKING_FUNCTIONS", "CallContext", "Clock", "STDLIB", "StdFunction"]


class Clock(Protocol):
    def now(self) -> float: ...  # epoch seconds
    def sleep(self, seconds: float) -> None: ...  # virtual in tests: returns at once


class CallContext(Protocol):
    """What a standard-library call may touch; implemented by the interpreter."""

    clock: Clock
    env: Mapping[str, str]  # what sys.get_env sees: GOOGLE_CLOUD_* built-ins + user vars

    def log(self, severity: str, payload: Any) -> None: ...  # payload: str (text) or a map
    def check_cancelled(self) -> None: ...  # raises if the execution was cancelled


class StdFunction:
    """One library function. `params` are the documented argument names, in order; the first
    `required` of them must be given. `blocking` functions (HTTP, sleep, log) may only be
    called from a `call:` step, never inside an expression."""

    __slots__ = ("name", "fn", "params", "required", "blocking")

    def __init__(self, name: str, fn: Callable, params: tuple[str, ...], required: int,
                 blocking: bool = False):
        self.name = name
        self.fn = fn
        self.params = params
        self.required = required
        self.blocking = blocking

    def __repr__(self) -> str:
        return f"StdFunction({self.name!r}, params={self.params!r}, required={self.required})"

    def invoke(self, ctx: Any, args: list | None = None, kwargs: dict | None = None) -> Any:
        """Call with positional `args` (from an expression) and/or named `kwargs` (from a
        `call:` step's `args:`). Unknown, duplicate, missing or surplus arguments are a
        TypeError naming the function and the argument."""
        args = args or ()
        n = len(args)
        params = self.params
        if not kwargs:
            if self.required <= n <= len(params):
                return self.fn(ctx, *args)
            if n > len(params):
                raise type_error(f"{self.name}: takes at most {len(params)} argument(s) "
                                 f"({', '.join(params) or 'none'}), got {n}")
            raise type_error(f"{self.name}: missing required argument '{params[n]}'")
        if n > len(params):
            raise type_error(f"{self.name}: takes at most {len(params)} argument(s), got {n}")
        for key in kwargs:
            if key not in params:
                raise type_error(f"{self.name}: unexpected argument '{key}' "
                                 f"(accepted: {', '.join(params) or 'none'})")
            if params.index(key) < n:
                raise type_error(f"{self.name}: argument '{key}' given twice")
        for i in range(n, self.required):
            if params[i] not in kwargs:
                raise type_error(f"{self.name}: missing required argument '{params[i]}'")
        return self.fn(ctx, *args, **kwargs)


STDLIB: dict[str, StdFunction] = {}


def _register(name: str, fn: Callable, blocking: bool = False) -> None:
    # Read from the code object (cheaper than inspect.signature, which registering ~100
    # functions at every start would pay for): positional parameters, without ctx.
    code = fn.__code__
    params = code.co_varnames[1:code.co_argcount]
    required = len(params) - len(fn.__defaults__ or ())
    STDLIB[name] = StdFunction(name, fn, params, required, blocking)


def _function(name: str, blocking: bool = False) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        _register(name, fn, blocking)
        return fn
    return decorate


# --- argument checks ---------------------------------------------------------------------------

def _want(fn: str, arg: str, value: Any, *types: type) -> None:
    if type(value) not in types:
        names = " or ".join(V.type_name(t()) if t is not type(None) else "null" for t in types)
        raise type_error(f"{fn}: argument '{arg}' must be {names}, got {V.type_name(value)}")


def _want_number(fn: str, arg: str, value: Any) -> None:
    if type(value) is not int and type(value) is not float:
        raise type_error(f"{fn}: argument '{arg}' must be a number, got {V.type_name(value)}")


# --- expression helpers ------------------------------------------------------------------------

@_function("default")
def _default(ctx, val, defaultVal):
    """The value if it is not null, else the default."""
    return defaultVal if val is None else val


@_function("if")
def _if(ctx, condition, ifTrue, ifFalse):
    """ifTrue when the condition is true, ifFalse when it is false or null."""
    if condition is True:
        return ifTrue
    if condition is False or condition is None:
        return ifFalse
    raise type_error(f"if: condition must be a boolean, got {V.type_name(condition)}")


@_function("keys")
def _keys(ctx, map):
    _want("keys", "map", map, dict)
    return list(map)


@_function("len")
def _len(ctx, value):
    t = type(value)
    if t is str or t is list or t is dict:
        return len(value)
    raise type_error(f"len: argument must be a string, list or map, got {V.type_name(value)}")


@_function("get_type")
def _get_type(ctx, value):
    return V.type_name(value)


_register("type", _get_type)

_INT_TEXT = re.compile(r"[+-]?\d+")
_DOUBLE_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


@_function("int")
def _int(ctx, value):
    """An integer from an integer, a double (truncated towards zero) or a decimal string."""
    t = type(value)
    if t is int:
        return value
    if t is float:
        if not math.isfinite(value):
            raise value_error(f"int: cannot convert {V.format_double(value)} to an integer")
        return V.check_int(int(value))
    if t is str:
        if not _INT_TEXT.fullmatch(value):
            raise value_error(f"int: invalid integer string {value!r}")
        return V.check_int(int(value))
    raise type_error(f"int: cannot convert {V.type_name(value)} to an integer")


@_function("double")
def _double(ctx, value):
    """A double from a double, an integer or a decimal string."""
    t = type(value)
    if t is float:
        return value
    if t is int:
        return float(value)
    if t is str:
        if not _DOUBLE_TEXT.fullmatch(value):
            raise value_error(f"double: invalid number string {value!r}")
        result = float(value)
        if math.isinf(result):
            raise value_error(f"double: {value!r} is out of the double range")
        return result
    raise type_error(f"double: cannot convert {V.type_name(value)} to a double")


@_function("string")
def _string(ctx, value):
    return V.to_text(value)


_BOOL_TEXT = {"true": True, "True": True, "TRUE": True,
              "false": False, "False": False, "FALSE": False}


@_function("bool")
def _bool(ctx, value):
    if type(value) is bool:
        return value
    if type(value) is str:
        try:
            return _BOOL_TEXT[value]
        except KeyError:
            raise value_error(f"bool: invalid boolean string {value!r}") from None
    raise type_error(f"bool: cannot convert {V.type_name(value)} to a boolean")


# --- base64, hash ------------------------------------------------------------------------------

@_function("base64.encode")
def _base64_encode(ctx, data, padding=True):
    _want("base64.encode", "data", data, bytes)
    _want("base64.encode", "padding", padding, bool)
    text = _b64.b64encode(data).decode("ascii")
    return text if padding else text.rstrip("=")


@_function("base64.decode")
def _base64_decode(ctx, data, padding=True):
    _want("base64.decode", "data", data, str)
    _want("base64.decode", "padding", padding, bool)
    text = data
    if not padding:
        text = text + "=" * (-len(text) % 4)
    try:
        return _b64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise value_error(f"base64.decode: invalid base64 data: {exc}") from None


_HASHES = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA384": "sha384",
           "SHA512": "sha512"}


def _hash_name(fn: str, algorithm: Any) -> str:
    _want(fn, "algorithm", algorithm, str)
    try:
        return _HASHES[algorithm]
    except KeyError:
        raise value_error(f"{fn}: unsupported algorithm {algorithm!r} "
                          f"(one of {', '.join(_HASHES)})") from None


@_function("hash.compute_checksum")
def _compute_checksum(ctx, data, algorithm):
    _want("hash.compute_checksum", "data", data, bytes)
    return hashlib.new(_hash_name("hash.compute_checksum", algorithm), data).digest()


@_function("hash.compute_hmac")
def _compute_hmac(ctx, key, data, algorithm):
    _want("hash.compute_hmac", "key", key, bytes)
    _want("hash.compute_hmac", "data", data, bytes)
    import hmac

    return hmac.new(key, data, _hash_name("hash.compute_hmac", algorithm)).digest()


# --- json --------------------------------------------------------------------------------------

@_function("json.decode")
def _json_decode(ctx, data):
    if type(data) is bytes:
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise value_error("json.decode: data is not valid UTF-8") from None
    _want("json.decode", "data", data, str, bytes)
    try:
        return V.json_loads(data)
    except ValueError as exc:
        raise value_error(f"json.decode: invalid JSON: {exc}") from None


@_function("json.encode")
def _json_encode(ctx, data, indent=None):
    return V.json_dumps(data, "json.encode", indent).encode("utf-8")


@_function("json.encode_to_string")
def _json_encode_to_string(ctx, data, indent=None):
    return V.json_dumps(data, "json.encode_to_string", indent)


# --- list, map ---------------------------------------------------------------------------------

@_function("list.concat")
def _list_concat(ctx, objs, val):
    """A new list: `objs` followed by `val`."""
    _want("list.concat", "objs", objs, list)
    return [*objs, val]


@_function("list.prepend")
def _list_prepend(ctx, objs, val):
    """A new list: `val` followed by `objs`."""
    _want("list.prepend", "objs", objs, list)
    return [val, *objs]


@_function("map.get")
def _map_get(ctx, map, keys):
    """The value at `keys` (a key, or a list of keys for nested maps), or null where any key
    is missing or a value on the way is not a map."""
    _want("map.get", "map", map, dict)
    if type(keys) is str:
        return map.get(keys)
    _want("map.get", "keys", keys, str, list)
    value = map
    for key in keys:
        if type(key) is not str:
            raise type_error(f"map.get: keys must be strings, got {V.type_name(key)}")
        if type(value) is not dict or key not in value:
            return None
        value = value[key]
    return value


@_function("map.delete")
def _map_delete(ctx, map, key):
    """A new map without `key` (the same content if it was absent)."""
    _want("map.delete", "map", map, dict)
    _want("map.delete", "key", key, str)
    return {k: v for k, v in map.items() if k != key}


@_function("map.merge")
def _map_merge(ctx, first, second):
    """A new map with the entries of both; `second` wins on a shared key."""
    _want("map.merge", "first", first, dict)
    _want("map.merge", "second", second, dict)
    return {**first, **second}


def _merge_nested(first: dict, second: dict) -> dict:
    merged = dict(first)
    for key, value in second.items():
        old = merged.get(key)
        if type(old) is dict and type(value) is dict:
            merged[key] = _merge_nested(old, value)
        else:
            merged[key] = value
    return merged


@_function("map.merge_nested")
def _map_merge_nested(ctx, first, second):
    """Like map.merge, but maps under the same key are merged recursively."""
    _want("map.merge_nested", "first", first, dict)
    _want("map.merge_nested", "second", second, dict)
    return _merge_nested(first, second)


# --- math --------------------------------------------------------------------------------------

@_function("math.abs")
def _math_abs(ctx, x):
    _want_number("math.abs", "x", x)
    return V.check_int(abs(x)) if type(x) is int else abs(x)


@_function("math.floor")
def _math_floor(ctx, x):
    """The largest integer not greater than x."""
    _want_number("math.floor", "x", x)
    if type(x) is int:
        return x
    if not math.isfinite(x):
        raise value_error(f"math.floor: cannot floor {V.format_double(x)}")
    return V.check_int(math.floor(x))


@_function("math.max")
def _math_max(ctx, x, y):
    _want_number("math.max", "x", x)
    _want_number("math.max", "y", y)
    return y if y > x else x


@_function("math.min")
def _math_min(ctx, x, y):
    _want_number("math.min", "x", x)
    _want_number("math.min", "y", y)
    return y if y < x else x


# --- sys ---------------------------------------------------------------------------------------

@_function("sys.get_env")
def _sys_get_env(ctx, name, default=None):
    """An environment variable (built-in GOOGLE_CLOUD_* or user-defined), else `default`."""
    _want("sys.get_env", "name", name, str)
    value = ctx.env.get(name)
    return default if value is None else value


_SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT",
               "EMERGENCY")
_LOGGABLE = (int, float, bool, str, list, dict)


def _as_text_payload(value: Any) -> str:
    if type(value) in (list, dict):
        return V.json_dumps(value, "sys.log")
    return V.to_text(value, "sys.log")


@_function("sys.log", blocking=True)
def _sys_log(ctx, data=None, severity=None, text=None, json=None, timeout=None):
    """Write one of data (a map as a JSON payload, anything else as text), text (always
    text) or json (a map) to the execution's log at `severity` (default DEFAULT)."""
    given = [k for k, v in (("data", data), ("text", text), ("json", json)) if v is not None]
    if len(given) != 1:
        raise type_error("sys.log: exactly one of data, text or json must be given"
                         + (f" (got {', '.join(given)})" if given else ""))
    if severity is None:
        severity = "DEFAULT"
    _want("sys.log", "severity", severity, str)
    if severity not in _SEVERITIES:
        raise value_error(f"sys.log: severity must be one of {', '.join(_SEVERITIES)}, "
                          f"got {severity!r}")
    if timeout is not None:
        _want_number("sys.log", "timeout", timeout)
    if json is not None:
        _want("sys.log", "json", json, dict)
        payload: Any = json
    else:
        value = data if data is not None else text
        if type(value) not in _LOGGABLE:
            raise type_error(f"sys.log: cannot log a {V.type_name(value)} value")
        payload = value if (data is not None and type(value) is dict) else _as_text_payload(value)
    ctx.log(severity, payload)
    return None


@_function("sys.now")
def _sys_now(ctx):
    """Seconds since the epoch, as a double."""
    return float(ctx.clock.now())


def _sleep(ctx: Any, seconds: float) -> None:
    ctx.check_cancelled()
    if seconds > 0:
        ctx.clock.sleep(seconds)
    ctx.check_cancelled()


@_function("sys.sleep", blocking=True)
def _sys_sleep(ctx, seconds):
    _want_number("sys.sleep", "seconds", seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise value_error(f"sys.sleep: seconds must be a non-negative number, got {seconds}")
    _sleep(ctx, float(seconds))
    return None


@_function("sys.sleep_until", blocking=True)
def _sys_sleep_until(ctx, time):
    """Sleep until an RFC 3339 timestamp; a time in the past returns at once."""
    _want("sys.sleep_until", "time", time, str)
    target = _parse_time("sys.sleep_until", time)
    _sleep(ctx, target - float(ctx.clock.now()))
    return None


# --- time, uuid --------------------------------------------------------------------------------

def _parse_time(fn: str, value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise value_error(f"{fn}: {value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None or "T" not in value.upper():
        raise value_error(f"{fn}: {value!r} is not an RFC 3339 timestamp "
                          f"(date, 'T', time and a UTC offset or 'Z' are required)")
    return parsed.timestamp()


@_function("time.format")
def _time_format(ctx, seconds, timezone=None):
    """An RFC 3339 timestamp for epoch `seconds`, in UTC ("Z") or an IANA time zone."""
    _want_number("time.format", "seconds", seconds)
    if timezone is None:
        tz: Any = _UTC
    else:
        _want("time.format", "timezone", timezone, str)
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # only when a zone is asked for

        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise value_error(f"time.format: unknown time zone {timezone!r}") from None
    try:
        moment = datetime.fromtimestamp(seconds, tz)
    except (OverflowError, OSError, ValueError):
        raise value_error(f"time.format: {seconds} is out of the supported time range") from None
    text = moment.isoformat(timespec="microseconds" if moment.microsecond else "seconds")
    if text.endswith("+00:00") and tz is _UTC:
        text = text[:-6] + "Z"
    return text


_UTC = UTC


@_function("time.parse")
def _time_parse(ctx, value):
    """Epoch seconds (a double) of an RFC 3339 timestamp."""
    _want("time.parse", "value", value, str)
    return _parse_time("time.parse", value)


@_function("uuid.generate")
def _uuid_generate(ctx):
    """A random (version 4) UUID string."""
    import uuid

    return str(uuid.uuid4())


# --- text --------------------------------------------------------------------------------------

def _codec(fn: str, charset: Any) -> str:
    _want(fn, "charset", charset, str)
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise value_error(f"{fn}: unknown charset {charset!r}") from None


@_function("text.decode")
def _text_decode(ctx, data, charset="UTF-8"):
    _want("text.decode", "data", data, bytes)
    try:
        return data.decode(_codec("text.decode", charset))
    except UnicodeDecodeError as exc:
        raise value_error(f"text.decode: data is not valid {charset}: {exc.reason}") from None
    except LookupError:
        raise value_error(f"text.decode: {charset!r} is not a text charset") from None


@_function("text.encode")
def _text_encode(ctx, text, charset="UTF-8"):
    _want("text.encode", "text", text, str)
    try:
        return text.encode(_codec("text.encode", charset))
    except UnicodeEncodeError as exc:
        raise value_error(f"text.encode: text cannot be encoded as {charset}: "
                          f"{exc.reason}") from None
    except LookupError:
        raise value_error(f"text.encode: {charset!r} is not a text charset") from None


def _regex(fn: str, regexp: Any) -> re.Pattern:
    _want(fn, "regexp", regexp, str)
    try:
        return re.compile(regexp)
    except re.error as exc:
        raise value_error(f"{fn}: invalid regular expression {regexp!r}: {exc}") from None


@_function("text.find_all")
def _text_find_all(ctx, source, substr):
    """The indexes (code points) of every non-overlapping instance of `substr`, leftmost first:
    text.find_all("00000", "00") is [0, 2]."""
    _want("text.find_all", "source", source, str)
    _want("text.find_all", "substr", substr, str)
    if not substr:
        raise value_error("text.find_all: substr must not be empty")
    found, start = [], 0
    while True:
        i = source.find(substr, start)
        if i < 0:
            return found
        found.append(i)
        start = i + len(substr)


@_function("text.find_all_regex")
def _text_find_all_regex(ctx, source, regexp):
    """Every non-overlapping match of `regexp`: [{index, match}]."""
    _want("text.find_all_regex", "source", source, str)
    pattern = _regex("text.find_all_regex", regexp)
    return [{"index": m.start(), "match": m.group()} for m in pattern.finditer(source)]


@_function("text.match_regex")
def _text_match_regex(ctx, source, regexp):
    """Whether `regexp` matches anywhere in `source`."""
    _want("text.match_regex", "source", source, str)
    return _regex("text.match_regex", regexp).search(source) is not None


@_function("text.replace_all")
def _text_replace_all(ctx, source, substr, repl):
    _want("text.replace_all", "source", source, str)
    _want("text.replace_all", "substr", substr, str)
    _want("text.replace_all", "repl", repl, str)
    # An empty substr matches at the start and after each code point (k + 1 replacements), as
    # documented; str.replace does the same.
    return source.replace(substr, repl)


@_function("text.replace_all_regex")
def _text_replace_all_regex(ctx, source, regexp, repl):
    """Replace every match; `repl` is literal text (backreferences are not supported)."""
    _want("text.replace_all_regex", "source", source, str)
    _want("text.replace_all_regex", "repl", repl, str)
    return _regex("text.replace_all_regex", regexp).sub(lambda m: repl, source)


@_function("text.split")
def _text_split(ctx, source, separator):
    """All substrings between instances of `separator`, empty ones included."""
    _want("text.split", "source", source, str)
    _want("text.split", "separator", separator, str)
    if not separator:
        raise value_error("text.split: separator must not be empty")
    return source.split(separator)


@_function("text.substring")
def _text_substring(ctx, source, start, end):
    """Code points [start, end); negative indexes count from the end; out-of-range indexes
    are clamped to the string."""
    _want("text.substring", "source", source, str)
    _want("text.substring", "start", start, int)
    _want("text.substring", "end", end, int)
    n = len(source)
    s = min(max(start + n if start < 0 else start, 0), n)
    e = min(max(end + n if end < 0 else end, 0), n)
    return source[s:e] if s < e else ""


@_function("text.to_lower")
def _text_to_lower(ctx, source):
    _want("text.to_lower", "source", source, str)
    return source.lower()


@_function("text.to_upper")
def _text_to_upper(ctx, source):
    _want("text.to_upper", "source", source, str)
    return source.upper()


@_function("text.url_encode")
def _text_url_encode(ctx, source):
    """Percent-encode everything but letters, digits and .-_ (space becomes %20)."""
    _want("text.url_encode", "source", source, str)
    return quote(source, safe="").replace("~", "%7E")


@_function("text.url_encode_plus")
def _text_url_encode_plus(ctx, source):
    """Like url_encode, but a space becomes '+'."""
    _want("text.url_encode_plus", "source", source, str)
    return quote_plus(source, safe="").replace("~", "%7E")


_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@_function("text.url_decode")
def _text_url_decode(ctx, source):
    """Percent escapes decoded as UTF-8, and '+' as a space."""
    _want("text.url_decode", "source", source, str)
    if _PERCENT_ESCAPE.search(source):
        raise value_error(f"text.url_decode: {source!r} has a % not followed by two hexadecimal "
                          f"digits")
    try:
        return unquote_plus(source, errors="strict")
    except UnicodeDecodeError:
        raise value_error(f"text.url_decode: {source!r} does not decode to UTF-8") from None


# --- http --------------------------------------------------------------------------------------

for _name, _fn in stdlib_http.HTTP_FUNCTIONS.items():
    _register(_name, _fn, blocking=True)


def _retry_predicate(retry_codes: frozenset, retry_tags: frozenset) -> Callable:
    def predicate(ctx, e):
        if type(e) is not dict:
            return False
        tags = e.get("tags") or []
        if type(tags) is list and any(t in retry_tags for t in tags):
            return True
        return ("HttpError" in tags if type(tags) is list else False) and e.get("code") in retry_codes
    return predicate


_register("http.default_retry_predicate", _retry_predicate(
    frozenset({429, 502, 503, 504}),
    frozenset({"ConnectionError", "ConnectionFailedError", "TimeoutError"})))
_register("http.default_retry_predicate_non_idempotent", _retry_predicate(
    frozenset({429, 503}), frozenset({"ConnectionFailedError"})))

#: Functions GCW refuses inside `${}` (they block): the loader reports them at load time.
BLOCKING_FUNCTIONS: frozenset[str] = frozenset(
    {name for name, f in STDLIB.items() if f.blocking}
    | {"events.await_callback", "events.create_callback_endpoint"})



