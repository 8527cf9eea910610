"""Retry policies of `try`/`retry`: predicates, max_retries and exponential backoff.

The delay before retry n (from 0) is `initial_delay * multiplier**n`, capped at `max_delay`;
reaching the cap does not stop retrying. Built-ins as documented: `http.default_retry` retries
429, 502, 503, 504, ConnectionError, ConnectionFailedError and TimeoutError;
`http.default_retry_non_idempotent` retries 429, 503 and ConnectionFailedError; both allow 5
retries with `retry.default_backoff` (1 s, x1.25, at most 60 s).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from localcloud.workflows.errors import WorkflowError, type_error
from localcloud.workflows.templates import Literal, Template, compile_value

DEFAULT_BACKOFF = (1.0, 60.0, 1.25)   # initial_delay, max_delay, multiplier
DEFAULT_MAX_RETRIES = 5

_RETRY_TAGS = frozenset({"ConnectionError", "ConnectionFailedError", "TimeoutError"})
_RETRY_CODES = frozenset({429, 502, 503, 504})
_RETRY_TAGS_NON_IDEMPOTENT = frozenset({"ConnectionFailedError"})
_RETRY_CODES_NON_IDEMPOTENT = frozenset({429, 503})


def _matches(value: Any, tags: frozenset, codes: frozenset) -> bool:
    """An error with one of `tags`, or an HttpError whose code is one of `codes`."""
    if type(value) is not dict:
        return False
    error_tags = value.get("tags")
    if type(error_tags) is not list:
        return False
    if any(t in tags for t in error_tags):
        return True
    code = value.get("code")
    return "HttpError" in error_tags and type(code) is int and code in codes


def default_retry_predicate(value: Any) -> bool:
    return _matches(value, _RETRY_TAGS, _RETRY_CODES)


def default_retry_predicate_non_idempotent(value: Any) -> bool:
    return _matches(value, _RETRY_TAGS_NON_IDEMPOTENT, _RETRY_CODES_NON_IDEMPOTENT)


BUILTIN_PREDICATES: dict[str, Callable[[Any], bool]] = {
    "http.default_retry_predicate": default_retry_predicate,
    "http.default_retry_predicate_non_idempotent": default_retry_predicate_non_idempotent,
    "retry.always": lambda value: True,
    "retry.never": lambda value: False,
}


class RetryPolicy:
    """A compiled retry policy. `predicate` is a built-in name or a subworkflow name."""

    def __init__(self, predicate: str, max_retries: Template, backoff: tuple[Template, ...],
                 source: str):
        self.predicate = predicate
        self.builtin = BUILTIN_PREDICATES.get(predicate)
        self.max_retries = max_retries
        self.backoff = backoff
        self.source = source

    def should_retry(self, frame: Any, error: WorkflowError, attempt: int) -> bool:
        limit = self.max_retries.evaluate(frame)
        if type(limit) is not int or limit < 0:
            raise type_error(f"retry max_retries must be a non-negative integer, got {limit!r}")
        if attempt >= limit:
            return False
        if self.builtin is not None:
            return self.builtin(error.value)
        verdict = frame.call_predicate(self.predicate, error.value)
        if type(verdict) is not bool:
            raise type_error(f"retry predicate '{self.predicate}' must return a boolean, got "
                             f"{verdict!r}")
        return verdict

    def delay(self, frame: Any, attempt: int) -> float:
        initial, maximum, multiplier = (t.evaluate(frame) for t in self.backoff)
        for name, v in (("initial_delay", initial), ("max_delay", maximum),
                        ("multiplier", multiplier)):
            if type(v) not in (int, float) or v < 0:
                raise type_error(f"retry backoff {name} must be a non-negative number, got {v!r}")
        return backoff_delay(initial, maximum, multiplier, attempt)


def backoff_delay(initial: float, maximum: float, multiplier: float, attempt: int) -> float:
    """Delay before retry `attempt` (0-based), capped at `maximum`."""
    delay = float(initial)
    for _ in range(attempt):
        delay *= multiplier
        if delay >= maximum:
            return float(maximum)
    return min(delay, float(maximum))


def _default_backoff() -> tuple[Template, ...]:
    return tuple(Literal(v) for v in DEFAULT_BACKOFF)


NAMED_POLICIES = {
    "http.default_retry": "http.default_retry_predicate",
    "http.default_retry_non_idempotent": "http.default_retry_predicate_non_idempotent",
}


def _reference(raw: Any) -> str | None:
    """`${ name.part }` -> "name.part"; None for anything else."""
    if type(raw) is str and raw.startswith("${") and raw.endswith("}"):
        return "".join(raw[2:-1].split())
    return None


def compile_retry(raw: Any, routine_names: Iterable[str],
                  report: Callable[[str], None]) -> RetryPolicy | None:
    """Compile the value of `retry:` (a named policy `${http.default_retry}` or a map with
    predicate, max_retries and backoff); problems go to `report`."""
    routine_names = set(routine_names)
    ref = _reference(raw)
    if ref is not None:
        if ref in NAMED_POLICIES:
            return RetryPolicy(NAMED_POLICIES[ref], Literal(DEFAULT_MAX_RETRIES),
                               _default_backoff(), ref)
        report(f"retry {raw!r}: a named policy is ${{http.default_retry}} or "
               f"${{http.default_retry_non_idempotent}}; for anything else give a map with "
               f"predicate, max_retries and backoff")
        return None
    if type(raw) is not dict:
        report(f"retry must be a named policy or a map with predicate, max_retries and backoff, "
               f"not {raw!r}")
        return None
    ok = True
    for key in raw:
        if key not in ("predicate", "max_retries", "backoff"):
            report(f"unknown key {key!r} in 'retry' (predicate, max_retries, backoff)")
            ok = False
    for key in ("predicate", "max_retries", "backoff"):
        if key not in raw:
            report(f"retry needs {key!r}")
            ok = False
    if not ok:
        return None
    predicate = _reference(raw["predicate"])
    if predicate is None or (predicate not in BUILTIN_PREDICATES
                             and predicate not in routine_names):
        report(f"retry predicate {raw['predicate']!r} must be ${{http.default_retry_predicate}}, "
               f"${{http.default_retry_predicate_non_idempotent}}, ${{retry.always}}, "
               f"${{retry.never}} or ${{name}} of a subworkflow of this file")
        return None
    max_retries = _number(raw["max_retries"], "max_retries", report, integer=True)
    backoff_raw = raw["backoff"]
    if _reference(backoff_raw) == "retry.default_backoff":
        backoff = _default_backoff()
    elif type(backoff_raw) is dict:
        backoff_items = []
        for key in backoff_raw:
            if key not in ("initial_delay", "max_delay", "multiplier"):
                report(f"unknown key {key!r} in retry backoff "
                       f"(initial_delay, max_delay, multiplier)")
        for key in ("initial_delay", "max_delay", "multiplier"):
            if key not in backoff_raw:
                report(f"retry backoff needs {key!r}")
                backoff_items.append(Literal(0))
            else:
                backoff_items.append(_number(backoff_raw[key], key, report))
        backoff = tuple(backoff_items)
    else:
        report(f"retry backoff must be a map (initial_delay, max_delay, multiplier) or "
               f"${{retry.default_backoff}}, not {backoff_raw!r}")
        return None
    return RetryPolicy(predicate, max_retries, backoff, predicate)


def _number(raw: Any, name: str, report: Callable[[str], None], integer: bool = False) -> Template:
    if type(raw) is str and raw.startswith("${"):
        return compile_value(raw, report)
    if integer and type(raw) is not int:
        report(f"retry {name} must be an integer, not {raw!r}")
        return Literal(0)
    if type(raw) not in (int, float) or raw < 0:
        report(f"retry {name} must be a non-negative number, not {raw!r}")
        return Literal(0)
    return Literal(raw)
