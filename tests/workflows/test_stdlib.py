"""The standard library: each function's documented behaviour and error tags, argument binding
(positional from expressions, named from call steps), and http.* against a real HTTP server
on loopback."""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from localcloud.workflows.errors import WorkflowError
from localcloud.workflows.stdlib import BLOCKING_FUNCTIONS, STDLIB, StdFunction

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Cancelled(Exception):
    pass


class FakeClock:
    """Virtual time: sleeping moves `now` forward at once and is recorded."""

    def __init__(self, start: float = START):
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class Ctx:
    """A CallContext as the interpreter provides it."""

    def __init__(self, env: dict | None = None):
        self.clock = FakeClock()
        self.env = env or {}
        self.logs: list[tuple[str, object]] = []
        self.cancelled = False
        self.cancel_checks = 0

    def log(self, severity, payload):
        self.logs.append((severity, payload))

    def check_cancelled(self):
        self.cancel_checks += 1
        if self.cancelled:
            raise Cancelled()


def call(name: str, *args, ctx: Ctx | None = None, **kwargs):
    return STDLIB[name].invoke(ctx or Ctx(), list(args), kwargs or None)


def fails(name: str, *args, ctx: Ctx | None = None, **kwargs) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        call(name, *args, ctx=ctx, **kwargs)
    return info.value


def tag_of(name: str, *args, **kwargs) -> str:
    err = fails(name, *args, **kwargs)
    assert len(err.tags) == 1, err.value
    return err.tags[0]


# --- registry and argument binding -------------------------------------------------------------

DOCUMENTED = """
default keys len get_type int double string bool if
map.get map.delete map.merge map.merge_nested list.concat list.prepend
text.find_all text.find_all_regex text.match_regex text.replace_all text.replace_all_regex
text.split text.substring text.to_lower text.to_upper text.url_encode text.url_encode_plus
text.url_decode text.encode text.decode json.decode json.encode json.encode_to_string
base64.encode base64.decode math.abs math.floor math.max math.min hash.compute_checksum
hash.compute_hmac sys.get_env sys.log sys.now sys.sleep sys.sleep_until uuid.generate
time.format time.parse http.get http.post http.put http.patch http.delete http.request
http.default_retry_predicate http.default_retry_predicate_non_idempotent
""".split()


def test_every_documented_function_is_registered():
    missing = [name for name in DOCUMENTED if name not in STDLIB]
    assert missing == []
    assert all(isinstance(f, StdFunction) and f.name == n for n, f in STDLIB.items())


def test_documented_parameter_names():
    assert STDLIB["text.split"].params == ("source", "separator")
    assert STDLIB["sys.get_env"].params == ("name", "default")
    assert STDLIB["sys.log"].params == ("data", "severity", "text", "json", "timeout")
    assert STDLIB["http.request"].params[:7] == ("method", "url", "timeout", "body", "headers",
                                                 "query", "auth")
    assert STDLIB["map.get"].required == 2
    assert STDLIB["json.encode"].params == ("data", "indent")


def test_blocking_functions():
    assert {"sys.sleep", "sys.sleep_until", "sys.log", "http.get", "http.request"} <= BLOCKING_FUNCTIONS
    assert "sys.now" not in BLOCKING_FUNCTIONS and "text.split" not in BLOCKING_FUNCTIONS


def test_named_and_positional_arguments_bind_alike():
    assert call("text.split", "a-b", "-") == ["a", "b"]
    assert call("text.split", source="a-b", separator="-") == ["a", "b"]
    assert call("text.split", "a-b", separator="-") == ["a", "b"]


@pytest.mark.parametrize("args, kwargs, fragment", [
    (["a-b"], {}, "missing required argument 'separator'"),
    ([], {"source": "a"}, "missing required argument 'separator'"),
    (["a", "-", "x"], {}, "at most 2"),
    (["a"], {"separator": "-", "sep": "x"}, "unexpected argument 'sep'"),
    (["a", "-"], {"source": "b"}, "'source' given twice"),
])
def test_argument_errors_name_the_function_and_argument(args, kwargs, fragment):
    with pytest.raises(WorkflowError) as info:
        STDLIB["text.split"].invoke(Ctx(), args, kwargs)
    assert info.value.tags == ["TypeError"]
    assert "text.split" in info.value.value["message"]
    assert fragment in info.value.value["message"]


# --- expression helpers ------------------------------------------------------------------------

def test_default():
    assert call("default", None, "x") == "x"
    assert call("default", 0, "x") == 0
    assert call("default", False, True) is False


def test_if():
    assert call("if", True, "a", "b") == "a"
    assert call("if", False, "a", "b") == "b"
    assert call("if", None, "a", "b") == "b"
    assert tag_of("if", 1, "a", "b") == "TypeError"


def test_keys_and_len():
    assert call("keys", {"b": 1, "a": 2}) == ["b", "a"]
    assert tag_of("keys", [1]) == "TypeError"
    assert call("len", "héllo") == 5
    assert call("len", [1, 2]) == 2
    assert call("len", {"a": 1}) == 1
    for bad in (1, None, True, b"ab"):
        assert tag_of("len", bad) == "TypeError"


@pytest.mark.parametrize("value, name", [
    (None, "null"), (True, "boolean"), (1, "integer"), (1.0, "double"), ("s", "string"),
    ([], "list"), ({}, "map"), (b"x", "bytes"),
])
def test_get_type(value, name):
    assert call("get_type", value) == name
    assert call("type", value) == name


@pytest.mark.parametrize("value, expected", [
    (42, 42), ("42", 42), ("-17", -17), ("+5", 5), (2.7, 2), (-2.7, -2), (1e18, 10**18),
])
def test_int(value, expected):
    result = call("int", value)
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value, tag", [
    ("4.2", "ValueError"), ("abc", "ValueError"), ("", "ValueError"), (" 1", "ValueError"),
    ("9223372036854775808", "ValueError"), (1e19, "ValueError"), (float("nan"), "ValueError"),
    (True, "TypeError"), (None, "TypeError"), ([1], "TypeError"),
])
def test_int_errors(value, tag):
    assert tag_of("int", value) == tag


@pytest.mark.parametrize("value, expected", [
    (1.5, 1.5), (2, 2.0), ("1.5", 1.5), ("-3", -3.0), ("1e3", 1000.0), (".5", 0.5),
])
def test_double(value, expected):
    result = call("double", value)
    assert result == expected and type(result) is float


@pytest.mark.parametrize("value, tag", [
    ("x", "ValueError"), ("nan", "ValueError"), ("inf", "ValueError"), ("1e999", "ValueError"),
    (True, "TypeError"), (None, "TypeError"),
])
def test_double_errors(value, tag):
    assert tag_of("double", value) == tag


@pytest.mark.parametrize("value, expected", [
    (1, "1"), (-5, "-5"), (1.0, "1.0"), (2.5, "2.5"), (0.1, "0.1"), (True, "true"),
    (False, "false"), ("s", "s"), (1e20, "1e+20"),
])
def test_string(value, expected):
    assert call("string", value) == expected


@pytest.mark.parametrize("value", [None, [1], {"a": 1}, b"x"])
def test_string_of_containers_is_a_type_error(value):
    assert tag_of("string", value) == "TypeError"


def test_bool():
    assert call("bool", "true") is True
    assert call("bool", "FALSE") is False
    assert call("bool", True) is True
    assert tag_of("bool", "yes") == "ValueError"
    assert tag_of("bool", 1) == "TypeError"


# --- list and map ------------------------------------------------------------------------------

def test_list_concat_and_prepend_return_new_lists():
    original = [1, 2]
    assert call("list.concat", original, 3) == [1, 2, 3]
    assert call("list.concat", original, [3]) == [1, 2, [3]]
    assert call("list.prepend", original, 0) == [0, 1, 2]
    assert original == [1, 2]
    assert tag_of("list.concat", {"a": 1}, 1) == "TypeError"
    assert tag_of("list.prepend", None, 1) == "TypeError"


def test_map_get():
    m = {"a": {"b": {"c": 1}}, "n": None, "l": [1]}
    assert call("map.get", m, "a") == {"b": {"c": 1}}
    assert call("map.get", m, "zz") is None
    assert call("map.get", m, ["a", "b", "c"]) == 1
    assert call("map.get", m, ["a", "x", "c"]) is None
    assert call("map.get", m, ["l", "x"]) is None
    assert call("map.get", m, ["n", "x"]) is None
    assert tag_of("map.get", [1], "a") == "TypeError"
    assert tag_of("map.get", m, 1) == "TypeError"
    assert tag_of("map.get", m, ["a", 1]) == "TypeError"


def test_map_delete_merge_do_not_change_inputs():
    first = {"a": 1, "b": {"x": 1, "y": 2}}
    second = {"b": {"y": 3, "z": 4}, "c": 5}
    snapshot = json.dumps([first, second])
    assert call("map.delete", first, "a") == {"b": {"x": 1, "y": 2}}
    assert call("map.delete", first, "missing") == first
    assert call("map.merge", first, second) == {"a": 1, "b": {"y": 3, "z": 4}, "c": 5}
    merged = call("map.merge_nested", first, second)
    assert merged == {"a": 1, "b": {"x": 1, "y": 3, "z": 4}, "c": 5}
    assert json.dumps([first, second]) == snapshot
    assert call("map.merge_nested", {"a": {"b": 1}}, {"a": 2}) == {"a": 2}
    assert tag_of("map.merge", first, [1]) == "TypeError"
    assert tag_of("map.delete", first, 1) == "TypeError"


# --- text --------------------------------------------------------------------------------------

def test_text_split():
    assert call("text.split", "baaab", "aa") == ["b", "ab"]
    assert call("text.split", "abc", "a") == ["", "bc"]
    assert call("text.split", "abc", "c") == ["ab", ""]
    assert call("text.split", "abbc", "b") == ["a", "", "c"]
    assert call("text.split", "abc", "x") == ["abc"]
    assert tag_of("text.split", "abc", "") == "ValueError"
    assert tag_of("text.split", 1, ",") == "TypeError"


@pytest.mark.parametrize("args, expected", [
    (("hello", 2, 4), "ll"),
    (("hello", -10, 10), "hello"),
    (("hello", -3, -1), "ll"),
    (("hello", 3, 1), ""),
    (("héllo", 1, 2), "é"),
])
def test_text_substring(args, expected):
    assert call("text.substring", *args) == expected


def test_text_substring_needs_integers():
    assert tag_of("text.substring", "hello", 1.0, 2) == "TypeError"
    assert tag_of("text.substring", "hello", True, 2) == "TypeError"


def test_text_find_all():
    assert call("text.find_all", "banana", "an") == [1, 3]
    assert call("text.find_all", "aaaa", "aa") == [0, 2]
    assert call("text.find_all", "héllo", "l") == [2, 3]          # code points, not bytes
    assert call("text.find_all", "abc", "x") == []
    assert tag_of("text.find_all", "abc", "") == "ValueError"


def test_text_regex_functions():
    assert call("text.find_all_regex", "a1b22c333", r"\d+") == [
        {"index": 1, "match": "1"}, {"index": 3, "match": "22"}, {"index": 6, "match": "333"}]
    assert call("text.match_regex", "order-123", r"\d+") is True
    assert call("text.match_regex", "order", r"^\d+$") is False
    assert call("text.replace_all_regex", "one two", "one|two", "three") == "three three"
    assert call("text.replace_all_regex", "a1", r"(\d)", r"<\1>") == r"a<\1>"  # no backrefs
    assert tag_of("text.match_regex", "x", "(") == "ValueError"
    assert tag_of("text.find_all_regex", "x", 1) == "TypeError"


def test_text_case_and_replace():
    assert call("text.to_upper", "abé") == "ABÉ"
    assert call("text.to_lower", "ABÉ") == "abé"
    assert call("text.replace_all", "a-b-c", "-", "+") == "a+b+c"
    assert call("text.replace_all", "ab", "", "-") == "-a-b-"      # k + 1 replacements
    assert tag_of("text.to_upper", None) == "TypeError"


def test_text_url_encoding():
    assert call("text.url_encode", "a b/c?d=é&") == "a%20b%2Fc%3Fd%3D%C3%A9%26"
    assert call("text.url_encode_plus", "a b/c") == "a+b%2Fc"
    assert call("text.url_encode", "a~b") == "a%7Eb"                 # only .-_ stay as they are
    assert call("text.url_decode", "a%20b%2Fc%C3%A9") == "a b/cé"
    assert call("text.url_decode", "a+b") == "a b"
    assert tag_of("text.url_decode", "%ff") == "ValueError"
    assert tag_of("text.url_decode", "100%") == "ValueError"
    assert tag_of("text.url_decode", "%zz") == "ValueError"


def test_text_encode_decode():
    assert call("text.encode", "é") == b"\xc3\xa9"
    assert call("text.encode", "é", "ISO-8859-1") == b"\xe9"
    assert call("text.decode", b"\xc3\xa9") == "é"
    assert call("text.decode", data=b"\xe9", charset="latin-1") == "é"
    assert tag_of("text.decode", b"\xff") == "ValueError"
    assert tag_of("text.decode", "str") == "TypeError"
    assert tag_of("text.encode", "x", "no-such-charset") == "ValueError"


# --- json, base64, hash ------------------------------------------------------------------------

def test_json_round_trip():
    value = {"a": [1, 2.5, True, None, "é"], "b": {}}
    encoded = call("json.encode", value)
    assert type(encoded) is bytes
    assert encoded == '{"a":[1,2.5,true,null,"é"],"b":{}}'.encode()
    assert call("json.decode", encoded) == value
    assert call("json.decode", encoded.decode()) == value
    assert call("json.encode_to_string", [1, "x"]) == '[1,"x"]'


def test_json_decode_number_types():
    result = call("json.decode", "[1, 1.0, 1e2, 99999999999999999999]")
    assert [type(x) for x in result] == [int, float, float, float]


def test_json_indent():
    assert call("json.encode_to_string", {"a": [1]}, True) == '{\n    "a": [\n        1\n    ]\n}'
    assert call("json.encode_to_string", {"a": 1}, {"prefix": "> ", "indent": "\t"}) == \
        '{\n> \t"a": 1\n> }'
    assert call("json.encode_to_string", {"a": 1}, False) == '{"a":1}'
    assert tag_of("json.encode_to_string", {"a": 1}, 2) == "TypeError"


def test_json_errors():
    assert tag_of("json.decode", "{bad") == "ValueError"
    assert tag_of("json.decode", "NaN") == "ValueError"
    assert tag_of("json.decode", b"\xff") == "ValueError"
    assert tag_of("json.decode", 1) == "TypeError"
    assert tag_of("json.encode", {"b": b"bytes"}) == "ValueError"
    assert tag_of("json.encode_to_string", float("inf")) == "ValueError"


def test_base64():
    assert call("base64.encode", b"hi!?") == "aGkhPw=="
    assert call("base64.encode", b"hi!?", False) == "aGkhPw"
    assert call("base64.decode", "aGkhPw==") == b"hi!?"
    assert call("base64.decode", "aGkhPw", False) == b"hi!?"
    assert tag_of("base64.decode", "a$b=") == "ValueError"
    assert tag_of("base64.decode", "aGkhPw") == "ValueError"  # padding required by default
    assert tag_of("base64.encode", "text") == "TypeError"


def test_hash():
    assert call("hash.compute_checksum", b"abc", "SHA256") == hashlib.sha256(b"abc").digest()
    assert call("hash.compute_checksum", b"abc", "MD5") == hashlib.md5(b"abc").digest()
    assert call("hash.compute_hmac", b"key", b"msg", "SHA512") == \
        hmac.new(b"key", b"msg", "sha512").digest()
    assert tag_of("hash.compute_checksum", b"abc", "CRC32") == "ValueError"
    assert tag_of("hash.compute_checksum", "abc", "SHA256") == "TypeError"


# --- math --------------------------------------------------------------------------------------

def test_math():
    assert call("math.abs", -3) == 3 and type(call("math.abs", -3)) is int
    assert call("math.abs", -2.5) == 2.5
    assert call("math.floor", 2.7) == 2 and type(call("math.floor", 2.7)) is int
    assert call("math.floor", -2.1) == -3
    assert call("math.floor", 5) == 5
    assert call("math.max", 1, 2.5) == 2.5
    assert call("math.min", 1, 2.5) == 1
    assert tag_of("math.abs", -9223372036854775808) == "ValueError"
    assert tag_of("math.abs", "1") == "TypeError"
    assert tag_of("math.max", True, 1) == "TypeError"
    assert tag_of("math.floor", float("inf")) == "ValueError"


# --- sys, time, uuid ---------------------------------------------------------------------------

def test_sys_get_env():
    ctx = Ctx(env={"GOOGLE_CLOUD_PROJECT_ID": "demo", "REGION": "eu"})
    assert call("sys.get_env", "GOOGLE_CLOUD_PROJECT_ID", ctx=ctx) == "demo"
    assert call("sys.get_env", "REGION", ctx=ctx) == "eu"
    assert call("sys.get_env", "MISSING", ctx=ctx) is None
    assert call("sys.get_env", "MISSING", "fallback", ctx=ctx) == "fallback"
    assert call("sys.get_env", "REGION", "fallback", ctx=ctx) == "eu"
    assert tag_of("sys.get_env", 1) == "TypeError"


def test_sys_log_payloads():
    ctx = Ctx()
    call("sys.log", "plain", ctx=ctx)
    call("sys.log", data={"k": 1}, severity="WARNING", ctx=ctx)
    call("sys.log", text={"k": 1}, severity="INFO", ctx=ctx)
    call("sys.log", json={"k": [1]}, ctx=ctx)
    call("sys.log", data=[1, "a"], ctx=ctx)
    call("sys.log", text=2.5, ctx=ctx)
    assert ctx.logs == [
        ("DEFAULT", "plain"),
        ("WARNING", {"k": 1}),
        ("INFO", '{"k":1}'),
        ("DEFAULT", {"k": [1]}),
        ("DEFAULT", '[1,"a"]'),
        ("DEFAULT", "2.5"),
    ]


@pytest.mark.parametrize("kwargs, tag", [
    ({}, "TypeError"),
    ({"data": "a", "text": "b"}, "TypeError"),
    ({"json": "not a map"}, "TypeError"),
    ({"data": b"bytes"}, "TypeError"),
    ({"text": "x", "severity": "LOUD"}, "ValueError"),
])
def test_sys_log_errors(kwargs, tag):
    ctx = Ctx()
    assert fails("sys.log", ctx=ctx, **kwargs).tags == [tag]
    assert ctx.logs == []


def test_sys_now_reads_the_clock():
    ctx = Ctx()
    now = call("sys.now", ctx=ctx)
    assert now == START and type(now) is float


def test_sys_sleep_uses_the_clock_and_checks_cancellation():
    ctx = Ctx()
    assert call("sys.sleep", 7, ctx=ctx) is None
    assert call("sys.sleep", 0.5, ctx=ctx) is None
    assert ctx.clock.sleeps == [7.0, 0.5]
    assert call("sys.now", ctx=ctx) == START + 7.5
    assert ctx.cancel_checks >= 2
    ctx.cancelled = True
    with pytest.raises(Cancelled):
        call("sys.sleep", 5, ctx=ctx)
    assert ctx.clock.sleeps == [7.0, 0.5]


@pytest.mark.parametrize("value, tag", [(-1, "ValueError"), (float("nan"), "ValueError"),
                                        ("5", "TypeError"), (True, "TypeError")])
def test_sys_sleep_validates(value, tag):
    assert tag_of("sys.sleep", value) == tag


def test_sys_sleep_until():
    ctx = Ctx()
    call("sys.sleep_until", "2026-01-01T00:01:30Z", ctx=ctx)
    assert ctx.clock.sleeps == [90.0]
    call("sys.sleep_until", "2025-01-01T00:00:00Z", ctx=ctx)  # in the past: no wait
    assert ctx.clock.sleeps == [90.0]
    assert tag_of("sys.sleep_until", "tomorrow") == "ValueError"
    assert tag_of("sys.sleep_until", "2026-01-01T00:00:00") == "ValueError"  # no offset


def test_time_format_and_parse():
    assert call("time.format", 0) == "1970-01-01T00:00:00Z"
    assert call("time.format", 1.5) == "1970-01-01T00:00:01.500000Z"
    assert call("time.format", START) == "2026-01-01T00:00:00Z"
    assert call("time.format", 0, "America/New_York") == "1969-12-31T19:00:00-05:00"
    assert call("time.format", seconds=3600, timezone="Asia/Kolkata") == \
        "1970-01-01T06:30:00+05:30"
    assert call("time.parse", "1970-01-01T00:00:01.5Z") == 1.5
    assert call("time.parse", "2026-01-01T01:00:00+01:00") == START
    assert call("time.parse", call("time.format", 1234567890.25)) == 1234567890.25
    assert tag_of("time.format", 0, "Mars/Olympus") == "ValueError"
    assert tag_of("time.format", "0") == "TypeError"
    assert tag_of("time.parse", "01/02/2026") == "ValueError"
    assert tag_of("time.parse", "2026-01-01") == "ValueError"


def test_uuid_generate():
    first, second = call("uuid.generate"), call("uuid.generate")
    assert uuid.UUID(first).version == 4 and first != second


def test_default_retry_predicates():
    pred = "http.default_retry_predicate"
    assert call(pred, {"tags": ["HttpError"], "code": 503}) is True
    assert call(pred, {"tags": ["HttpError"], "code": 500}) is False
    assert call(pred, {"tags": ["ConnectionError"]}) is True
    assert call(pred, {"tags": ["TimeoutError"]}) is True
    non = "http.default_retry_predicate_non_idempotent"
    assert call(non, {"tags": ["HttpError"], "code": 429}) is True
    assert call(non, {"tags": ["HttpError"], "code": 502}) is False
    assert call(non, {"tags": ["ConnectionError"]}) is False
    assert call(non, {"tags": ["ConnectionFailedError"]}) is True
    assert call(non, "a string") is False


# --- http --------------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code, body=b"", ctype=None, headers=()):
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _route(self):
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/echo":
            payload = {"method": self.command, "query": query,
                       "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body": body.decode("latin-1")}
            self._send(200, json.dumps(payload).encode(), "application/json",
                       [("X-Custom", "one"), ("x-custom", "two")])
        elif path == "/text":
            self._send(200, "héllo".encode(), "text/plain; charset=utf-8")
        elif path == "/bytes":
            self._send(200, b"\x00\x01\xff", "application/octet-stream")
        elif path == "/missing":
            self._send(404, b'{"error": "not here"}', "application/json", [("X-Trace", "t-1")])
        elif path == "/unavailable":
            self._send(503, b"try later", "text/plain")
        elif path == "/empty":
            self._send(204)
        elif path == "/redirect":
            self._send(302, b"", None, [("Location", "/text")])
        elif path == "/big":
            self._send(200, b"x" * (2 * 1024 * 1024 + 1), "application/octet-stream")
        elif path == "/cut":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only part of it")
            self.wfile.flush()
            self.close_connection = True
        elif path == "/slow":
            time.sleep(1.0)
            self._send(200, b"late", "text/plain")
        else:
            self._send(500, b"no route", "text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _route


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (timeout test) is not a server failure


@pytest.fixture(scope="module")
def server():
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_get_json(server):
    result = call("http.get", server + "/echo?fixed=1", query={"q": "a b", "n": [1, 2]})
    assert result["code"] == 200
    assert result["body"]["method"] == "GET"
    assert result["body"]["query"] == "fixed=1&q=a+b&n=1&n=2"
    assert "GoogleCloudWorkflows" in result["body"]["headers"]["user-agent"]
    assert result["headers"]["Content-Type"] == "application/json"
    assert result["headers"]["X-Custom"] == "one, two"
    assert set(result) == {"body", "code", "headers"}


def test_http_post_sends_maps_as_json(server):
    result = call("http.post", url=server + "/echo", body={"k": [1, "é"]},
                  headers={"X-Attempt": 2})
    echoed = result["body"]
    assert echoed["method"] == "POST"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["headers"]["x-attempt"] == "2"
    assert json.loads(echoed["body"].encode("latin-1")) == {"k": [1, "é"]}


def test_http_bodies_by_content_type(server):
    text = call("http.put", server + "/echo", body="raw text",
                headers={"Content-Type": "text/plain"})["body"]
    assert text["body"] == "raw text" and text["headers"]["content-type"] == "text/plain"
    form = call("http.patch", server + "/echo", body={"a": "1 2", "b": True},
                headers={"Content-Type": "application/x-www-form-urlencoded"})["body"]
    assert form["body"] == "a=1+2&b=true"
    raw = call("http.delete", server + "/echo", body=b"\x01\x02")["body"]
    assert raw["body"] == "\x01\x02"
    assert raw["headers"]["content-type"] == "application/octet-stream"


def test_http_response_bodies(server):
    assert call("http.get", server + "/text")["body"] == "héllo"
    assert call("http.get", server + "/bytes")["body"] == b"\x00\x01\xff"
    empty = call("http.get", server + "/empty")
    assert empty["code"] == 204 and empty["body"] is None
    assert call("http.get", server + "/redirect")["body"] == "héllo"


def test_http_request_with_method(server):
    assert call("http.request", "patch", server + "/echo")["body"]["method"] == "PATCH"
    assert tag_of("http.request", "FETCH", server + "/echo") == "ValueError"


def test_http_error_status_raises_http_error(server):
    err = fails("http.get", server + "/missing")
    assert err.tags == ["HttpError"]
    assert err.value["code"] == 404
    assert err.value["body"] == {"error": "not here"}
    assert err.value["headers"]["X-Trace"] == "t-1"
    assert "404" in err.value["message"]
    err = fails("http.post", server + "/unavailable", body={})
    assert err.value["code"] == 503 and err.value["body"] == "try later"


def test_http_refused_connection_is_connection_failed():
    err = fails("http.get", f"http://127.0.0.1:{_closed_port()}/")
    assert err.tags == ["ConnectionFailedError"]


def test_http_connection_cut_mid_response_is_connection_error(server):
    err = fails("http.get", server + "/cut")
    assert err.tags == ["ConnectionError"]


def test_http_timeout(server):
    err = fails("http.get", server + "/slow", timeout=0.2)
    assert err.tags == ["TimeoutError"]


def test_http_response_size_limit(server):
    assert fails("http.get", server + "/big").tags == ["ResourceLimitError"]


@pytest.mark.parametrize("kwargs, tag", [
    ({"timeout": 0}, "ValueError"),
    ({"timeout": 1801}, "ValueError"),
    ({"timeout": "10"}, "TypeError"),
    ({"headers": ["x"]}, "TypeError"),
    ({"query": "a=b"}, "TypeError"),
    ({"auth": {"type": "Basic"}}, "ValueError"),
])
def test_http_argument_validation(server, kwargs, tag):
    assert fails("http.get", server + "/echo", **kwargs).tags == [tag]


def test_http_url_validation():
    assert tag_of("http.get", "ftp://example.com/x") == "ValueError"
    assert tag_of("http.get", 42) == "TypeError"


def test_http_auth_is_accepted_locally(server):
    result = call("http.get", server + "/echo", auth={"type": "OIDC", "audience": "x"})
    assert result["code"] == 200
    assert "authorization" not in result["body"]["headers"]


def test_http_checks_cancellation_before_sending(server):
    ctx = Ctx()
    ctx.cancelled = True
    with pytest.raises(Cancelled):
        call("http.get", server + "/echo", ctx=ctx)


def test_base64_of_json_body_round_trip(server):
    payload = base64.b64encode(b"binary\x00").decode()
    body = call("http.post", server + "/echo", body={"data": payload})["body"]
    sent = json.loads(body["body"])
    assert call("base64.decode", sent["data"]) == b"binary\x00"


# --- robustness --------------------------------------------------------------------------------

SAMPLES = [None, True, 0, -1, 2.5, float("nan"), "", "a,b", "2026-01-01T00:00:00Z", [],
           ["a", 1], {}, {"a": {"b": 1}}, b"\xff"]


@pytest.mark.parametrize("name", sorted(n for n in STDLIB if not n.startswith("http.")))
def test_functions_raise_only_language_errors(name):
    """Whatever values an expression passes, a function returns a value or raises a
    WorkflowError: never a Python exception the engine would report as a SystemError."""
    function = STDLIB[name]
    arity = min(len(function.params), 3)
    combos = itertools.product(SAMPLES, repeat=arity) if arity else [()]
    for args in combos:
        try:
            function.invoke(Ctx(), list(args))
        except WorkflowError:
            pass


def test_text_codec_that_is_not_a_charset():
    assert tag_of("text.encode", "x", "base64") == "ValueError"
    assert tag_of("text.decode", b"x", "rot13") == "ValueError"
