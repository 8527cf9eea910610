"""The expression language: literals, precedence, operator semantics, access, calls and syntax
errors, evaluated against a scope shaped like the interpreter's (variables + function calls
routed to the standard library)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localcloud.workflows.errors import WorkflowError, key_error
from localcloud.workflows.expressions import (
    ExpressionSyntaxError,
    compile_expression,
    expression_source,
    is_expression,
)
from localcloud.workflows.stdlib import STDLIB


class Scope:
    """Variables in a dict; calls go to a recorder first (for user subworkflows), then STDLIB."""

    def __init__(self, subworkflows: dict | None = None, **variables):
        self.variables = variables
        self.subworkflows = subworkflows or {}
        self.calls: list[tuple[str, list]] = []
        self.reads: list[str] = []

    def get_var(self, name):
        self.reads.append(name)
        try:
            return self.variables[name]
        except KeyError:
            raise key_error(f"variable not found: {name}") from None

    def call_function(self, name, args):
        self.calls.append((name, list(args)))
        if name in self.subworkflows:
            return self.subworkflows[name](*args)
        return STDLIB[name].invoke(None, args)


def ev(source: str, **variables):
    return compile_expression(source).evaluate(Scope(**variables))


def error_of(source: str, **variables) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        ev(source, **variables)
    return info.value


def syntax_error(source: str) -> ExpressionSyntaxError:
    with pytest.raises(ExpressionSyntaxError) as info:
        compile_expression(source)
    return info.value


def same(actual, expected) -> bool:
    """Equal and of the same Python types all the way down (so 1 is not 1.0, True is not 1)."""
    if type(actual) is not type(expected):
        return False
    if type(actual) is list:
        return len(actual) == len(expected) and all(map(same, actual, expected))
    if type(actual) is dict:
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k])
                                                        for k in actual)
    return actual == expected


# --- literals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("0", 0),
    ("42", 42),
    ("-7", -7),
    ("9223372036854775807", 9223372036854775807),
    ("-9223372036854775808", -9223372036854775808),
    ("1.5", 1.5),
    ("1e3", 1000.0),
    ("2.5E-3", 0.0025),
    ("1.5e+2", 150.0),
    (".5", 0.5),
    ("-0.25", -0.25),
    ("true", True), ("True", True), ("TRUE", True),
    ("false", False), ("False", False), ("FALSE", False),
    ("null", None),
    ('"hello"', "hello"),
    ("'single'", "single"),
    ('""', ""),
    ('"a}b{c"', "a}b{c"),
    ('"it\'s"', "it's"),
    ("'say \"hi\"'", 'say "hi"'),
    (r'"line\nnext\ttab"', "line\nnext\ttab"),
    (r'"quote \" and backslash \\"', 'quote " and backslash \\'),
    (r"'\''", "'"),
    (r'"caf\u00e9"', "café"),
    (r'"\ud83d\ude00"', "\U0001F600"),
    (r'"\/\b\f\r"', "/\b\f\r"),
    ("[]", []),
    ('[1, "a", 2.5, true, null]', [1, "a", 2.5, True, None]),
    ("{}", {}),
    ('{"k": 1, "n": {"m": [1, 2]}}', {"k": 1, "n": {"m": [1, 2]}}),
    ("[[1], [2, [3]]]", [[1], [2, [3]]]),
])
def test_literals(source, expected):
    assert same(ev(source), expected)


def test_literal_containers_are_fresh_on_every_evaluation():
    expr = compile_expression('[1, {"a": 2}]')
    first, second = expr.evaluate(Scope()), expr.evaluate(Scope())
    assert first == second and first is not second


def test_multi_line_expression():
    assert ev('a +\n  b\n  * 2', a=1, b=3) == 7


# --- precedence --------------------------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("10 - 2 - 3", 5),
    ("2 * 3 % 4", 2),
    ("8 / 2 / 2", 2.0),
    ("-2 * 3", -6),
    ("- (2 + 3) * 2", -10),
    ("1 + 2 == 3", True),
    ("1 < 2 == true", True),           # comparisons chain left to right: (1 < 2) == true
    ("true or false and false", True),  # and binds tighter than or
    ("(true or false) and false", False),
    ("not false and false", False),    # not binds tighter than and
    ("not (1 == 2)", True),
    ("not true == false", True),       # (not true) == false: not binds tighter than ==
    ('"a" in ["a"] and 2 > 1', True),
    ("1 + 2 in [3]", True),            # + binds tighter than in
    ("2 * -3", -6),
    ("--3", 3),
    ("not not true", True),
])
def test_precedence(source, expected):
    assert same(ev(source), expected)


def test_logical_keywords_upper_case():
    assert ev("true AND NOT false") is True
    assert ev("false OR true") is True


# --- arithmetic --------------------------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("1 + 2", 3),
    ("1 + 2.5", 3.5),
    ("1.5 + 1.5", 3.0),
    ("5 - 7", -2),
    ("3 * 4", 12),
    ("3 * 0.5", 1.5),
    ("7 / 2", 3.5),
    ("4 / 2", 2.0),                     # / always yields a double
    ("7 // 2", 3),
    ("-7 // 2", -4),                    # floor, not truncation
    ("7.5 // 2", 3.0),
    ("7 % 3", 1),
    ("-7 % 3", 2),                      # sign of the divisor
    ("7 % -3", -2),
    ("7.5 % 2", 1.5),
    ("9223372036854775806 + 1", 9223372036854775807),
])
def test_arithmetic(source, expected):
    assert same(ev(source), expected)


@pytest.mark.parametrize("source", ["1 / 0", "1 // 0", "1 % 0", "1.5 / 0.0", "2 // 0.0", "3 % 0.0"])
def test_division_by_zero(source):
    err = error_of(source)
    assert err.tags == ["ZeroDivisionError"]
    assert "by zero" in err.value["message"]


@pytest.mark.parametrize("source", [
    "9223372036854775807 + 1",
    "-9223372036854775807 - 2",
    "9223372036854775807 * 2",
    "-x",
    "x // -1",
])
def test_integer_overflow_is_a_value_error(source):
    err = error_of(source, x=-9223372036854775808)
    assert err.tags == ["ValueError"]
    assert "overflow" in err.value["message"]


def test_double_overflow_is_a_value_error():
    assert error_of("1e308 * 10").tags == ["ValueError"]


def test_plus_concatenates_strings():
    assert ev('"a" + "b"') == "ab"
    assert ev('"n=" + string(1)') == "n=1"


@pytest.mark.parametrize("source", ['"n=" + 1', '1 + "x"', '"d=" + 1.5', '"flag " + true', 'false + "!"'])
def test_plus_of_a_string_and_a_non_string_is_a_type_error(source):
    assert error_of(source).tags == ["TypeError"]


@pytest.mark.parametrize("source", [
    "true + 1", "1 + false", "true + true", "null + 1", '"a" + null', "[1] + [2]",
    '{"a": 1} + {"b": 2}', '"a" - "b"', '"ab" * 2', "true * 2", "-true", '-"a"', "null - 1",
    "[1] * 2", "1.5 // true",
])
def test_arithmetic_type_errors(source):
    err = error_of(source)
    assert err.tags == ["TypeError"]


# --- comparison and membership ----------------------------------------------------------------

@pytest.mark.parametrize("source, expected", [
    ("1 == 1.0", True),
    ("1 == true", False),
    ("0 == false", False),
    ('"1" == 1', False),
    ("null == null", True),
    ("null == 0", False),
    ("null != false", True),
    ("[1, [2, 3]] == [1, [2.0, 3]]", True),
    ("[1, 2] == [2, 1]", False),
    ('{"a": 1, "b": [true]} == {"b": [true], "a": 1.0}', True),
    ('{"a": 1} == {"a": 1, "b": 2}', False),
    ("[true] == [1]", False),
    ("1 < 1.5", True),
    ("2.0 <= 2", True),
    ("3 > 2", True),
    ("3 >= 4", False),
    ('"abc" < "abd"', True),
    ('"b" > "abc"', True),
    ('"é" > "z"', True),
])
def test_comparisons(source, expected):
    assert ev(source) is expected


@pytest.mark.parametrize("source", ['"a" < 1', "null < 1", "true > false", "[1] < [2]",
                                    '{"a": 1} >= {}', '1 <= "2"'])
def test_ordering_across_types_is_a_type_error(source):
    assert error_of(source).tags == ["TypeError"]


@pytest.mark.parametrize("source, expected", [
    ('"a" in ["a", "b"]', True),
    ('"c" in ["a", "b"]', False),
    ("2.0 in [1, 2]", True),
    ("1 in [true]", False),
    ("true in [1]", False),
    ("null in [null]", True),
    ("[1] in [[1], [2]]", True),
    ('"k" in {"k": null}', True),
    ('"v" in {"k": "v"}', False),
    ('1 in {"1": 1}', False),
])
def test_in(source, expected):
    assert ev(source) is expected


def test_in_needs_a_list_or_map():
    assert error_of('"x" in "xyz"').tags == ["TypeError"]


# --- logic -------------------------------------------------------------------------------------

def test_and_or_short_circuit():
    scope = Scope()
    assert compile_expression("false and missing").evaluate(scope) is False
    assert compile_expression("true or missing").evaluate(scope) is True
    assert compile_expression('false and sys.now() > 0').evaluate(scope) is False
    assert scope.reads == [] and scope.calls == []


@pytest.mark.parametrize("source", ["1 and true", "true and 1", "null or true", "false or 0",
                                    "not 1", "not null", '"true" and true'])
def test_logic_needs_booleans(source):
    assert error_of(source).tags == ["TypeError"]


def test_missing_variable_on_the_evaluated_side_is_reported():
    assert error_of("true and missing").tags == ["KeyError"]


# --- access ------------------------------------------------------------------------------------

DATA = {"user": {"name": "ann", "tags": ["a", "b"], "nested": {"deep": [{"x": 1}]}},
        "items": [10, 20, 30], "key": "name", "i": 1}


@pytest.mark.parametrize("source, expected", [
    ("user.name", "ann"),
    ('user["name"]', "ann"),
    ("user[key]", "ann"),
    ("user.tags[1]", "b"),
    ('user["tags"][0]', "a"),
    ("user.nested.deep[0].x", 1),
    ('user.nested["deep"][0]["x"]', 1),
    ("items[i + 1]", 30),
    ("items[len(items) - 1]", 30),
    ("[1, 2, 3][1]", 2),
    ('{"a": {"b": 5}}.a.b', 5),
    ("(user).name", "ann"),
])
def test_access(source, expected):
    assert same(ev(source, **DATA), expected)


@pytest.mark.parametrize("source, tag, fragment", [
    ("user.age", "KeyError", "age"),
    ('user["age"]', "KeyError", "age"),
    ("user.nested.deep[0].y", "KeyError", "y"),
    ("items[3]", "IndexError", "3"),
    ("items[-1]", "IndexError", "-1"),
    ('items["0"]', "TypeError", "string"),
    ("items[1.0]", "TypeError", "double"),
    ("items[true]", "TypeError", "boolean"),
    ("user[1]", "TypeError", "integer"),
    ("items.first", "TypeError", "list"),
    ("user.name.first", "TypeError", "string"),
    ("user.name[0]", "TypeError", "string"),
    ("nothing.x", "TypeError", "null"),
    ("nothing[0]", "TypeError", "null"),
    ("undefined_var", "KeyError", "undefined_var"),
])
def test_access_errors(source, tag, fragment):
    err = error_of(source, nothing=None, **DATA)
    assert err.tags == [tag]
    assert fragment in err.value["message"]


def test_access_never_copies_or_changes_values():
    user = DATA["user"]
    assert ev("user.nested", **DATA) is user["nested"]
    assert ev('[user, {"u": user}]', **DATA)[1]["u"] is user


# --- calls -------------------------------------------------------------------------------------

def test_calls_go_through_the_scope_with_evaluated_arguments():
    scope = Scope(s="a,b")
    result = compile_expression('text.split(s, ",")').evaluate(scope)
    assert result == ["a", "b"]
    assert scope.calls == [("text.split", ["a,b", ","])]


def test_nested_calls_and_zero_argument_calls():
    scope = Scope(m={"k": [1, 2, 3]})
    assert compile_expression('len(map.get(m, "k")) + len(keys(m))').evaluate(scope) == 4
    assert [name for name, _ in scope.calls] == ["map.get", "len", "keys", "len"]


def test_user_subworkflow_call_in_expression():
    scope = Scope(subworkflows={"double_it": lambda x: x * 2}, v=21)
    assert compile_expression("double_it(v) + 0").evaluate(scope) == 42
    assert scope.calls == [("double_it", [21])]


def test_many_arguments_are_passed_in_order():
    scope = Scope(subworkflows={"f": lambda *a: list(a)})
    assert compile_expression("f(1, 2, 3, 4)").evaluate(scope) == [1, 2, 3, 4]


def test_function_errors_propagate():
    assert error_of('int("x")').tags == ["ValueError"]


@pytest.mark.parametrize("source", ['http.get("http://x")', 'sys.sleep(1)',
                                    'sys.log("hi")', "http.post(u)",
                                    'googleapis.run.v2.projects.locations.jobs.run("x")'])
def test_blocking_calls_are_refused_in_expressions(source):
    err = syntax_error(source)
    assert "blocking" in str(err)


# --- syntax errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("source, column, fragment", [
    ("", 1, "empty"),
    ("1 +", 4, "end of expression"),
    ("(1 + 2", 7, "expected ')'"),
    ("a = 1", 3, "'=='"),
    ("a && b", 3, "'and'"),
    ("!a", 1, "'not'"),
    ("1 @ 2", 3, "'@'"),
    ('"abc', 1, "unterminated"),
    (r'"a\qb"', 3, "escape"),
    (r'"\u12"', 2, "\\u"),
    ("a.", 3, "name after '.'"),
    ("a.1", 3, "number 1"),
    ("[1, 2", 6, "expected ']'"),
    ("1 2", 3, "unexpected number 2"),
    ('{"a" 1}', 6, "expected ':'"),
    ("{a: 1}", 2, "string literals"),
    ('{"a": 1, "a": 2}', 10, "duplicate"),
    ("and", 1, "keyword"),
    ("a[]", 3, "index"),
    ("a[0](1)", 5, "named functions"),
    ("f(1,)", 5, "argument"),
    ("9223372036854775808", 1, "64-bit"),
    ("99999999999999999999 - 1", 1, "64-bit"),
    ("1e999", 1, "double range"),
    ("12abc", 1, "invalid number"),
])
def test_syntax_errors_say_what_and_where(source, column, fragment):
    err = syntax_error(source)
    assert err.column == column, str(err)
    assert fragment in str(err)
    assert f"column {column}" in str(err)


# --- helpers and caching -----------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("${a}", True),
    ("${ a + 1 }", True),
    ('${"}"}', True),
    ("a ${b}", False),
    ("${a} tail", False),
    ("$ {a}", False),
    ("plain", False),
    (42, False),
    (None, False),
])
def test_is_expression(value, expected):
    assert is_expression(value) is expected


def test_expression_source():
    assert expression_source("${a + 1}") == "a + 1"
    assert expression_source('${"}"}') == '"}"'


def test_compilation_is_cached():
    assert compile_expression("x + 1") is compile_expression("x + 1")
    assert compile_expression("x + 1").source == "x + 1"


def test_nan_comparisons_follow_ieee():
    assert ev("x == x", x=math.nan) is False


def test_minus_minus_min_int_overflows_at_run_time():
    assert error_of("--9223372036854775808").tags == ["ValueError"]


def test_deep_nesting_is_a_syntax_error_not_a_crash():
    err = syntax_error("(" * 5000 + "1" + ")" * 5000)
    assert "nested too deeply" in str(err)


@settings(max_examples=300, deadline=None)
@given(a=st.integers(-(2**63), 2**63 - 1), b=st.integers(-(2**63), 2**63 - 1),
       op=st.sampled_from(["+", "-", "*"]))
def test_integer_arithmetic_is_exact_or_overflows(a, b, op):
    exact = {"+": a + b, "-": a - b, "*": a * b}[op]
    scope = Scope(a=a, b=b)
    expr = compile_expression(f"a {op} b")
    if -(2**63) <= exact <= 2**63 - 1:
        result = expr.evaluate(scope)
        assert result == exact and type(result) is int
    else:
        with pytest.raises(WorkflowError) as info:
            expr.evaluate(scope)
        assert info.value.tags == ["ValueError"]
