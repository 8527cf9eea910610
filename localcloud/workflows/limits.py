"""Limits of Cloud Workflows that the engine enforces, and the cheap size estimate it uses for
the memory limit."""
from __future__ import annotations

from typing import Any

ARGUMENT_BYTES = 32 * 1024          # execution argument
VARIABLES_BYTES = 512 * 1024        # variables, arguments and events of one execution
HTTP_RESPONSE_BYTES = 2 * 1024 * 1024
SOURCE_BYTES = 128 * 1024           # workflow source
STEPS_PER_EXECUTION = 100_000
ASSIGN_ITEMS = 50
SWITCH_CONDITIONS = 50
SUBWORKFLOW_PARAMS = 10
PARALLEL_BRANCHES = (2, 10)
PARALLEL_NESTING = 2
PARALLEL_CONCURRENCY_DEFAULT = 20
CALL_DEPTH = 20                     # subworkflow calls nested deeper raise RecursionError
USER_ENV_VARS = 20
LABELS = 64

# Containers longer than this are estimated from evenly spaced samples, so estimating a value
# costs O(samples x depth), not O(size): the limit is coarse and checking it must stay cheap.
_EXACT_LEN = 16
_SAMPLES = 8


def estimate_size(value: Any) -> int:
    """Approximate size in bytes of a value as JSON text."""
    t = type(value)
    if t is str:
        return len(value) + 2
    if t is int or t is float:
        return 8
    if t is bool or value is None:
        return 4
    if t is list:
        n = len(value)
        if n <= _EXACT_LEN:
            return 2 + sum(estimate_size(x) + 1 for x in value)
        step = n / _SAMPLES
        sample = sum(estimate_size(value[int(i * step)]) for i in range(_SAMPLES))
        return 2 + n * (sample // _SAMPLES + 1)
    if t is dict:
        n = len(value)
        if n <= _EXACT_LEN:
            return 2 + sum(len(k) + 4 + estimate_size(v) for k, v in value.items())
        keys = list(value)
        step = n / _SAMPLES
        sample = 0
        for i in range(_SAMPLES):
            k = keys[int(i * step)]
            sample += len(k) + 4 + estimate_size(value[k])
        return 2 + n * (sample // _SAMPLES)
    if t is bytes:
        return len(value) * 4 // 3 + 4
    return 8
