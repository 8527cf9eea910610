"""Evaluation cost of compiled Workflows expressions (µs per evaluation), printed only.

Run: .venv/bin/python bench/expressions_bench.py
"""
from __future__ import annotations

import timeit

from localcloud.workflows.errors import key_error
from localcloud.workflows.expressions import compile_expression
from localcloud.workflows.stdlib import STDLIB


class BenchScope:
    """The smallest scope an interpreter could give: a dict of variables and the stdlib."""

    def __init__(self, variables: dict):
        self.variables = variables

    def get_var(self, name: str):
        try:
            return self.variables[name]
        except KeyError:
            raise key_error(f"variable not found: {name}") from None

    def call_function(self, name: str, args: list):
        return STDLIB[name].invoke(None, args)


CASES = [
    "a + 1",
    'm.k[0] == "x" and len(l) > 2',
    '"creations/" + id + "/attempt-" + string(attempt)',
    'default(map.get(args, "timeout"), 30) * 2',
]


def main() -> None:
    scope = BenchScope({"a": 41, "m": {"k": ["x"]}, "l": [1, 2, 3], "id": "c-1", "attempt": 2,
                        "args": {"timeout": 10}})
    print(f"{'expression':55s} {'compile µs':>11s} {'eval µs':>9s}")
    for source in CASES:
        compile_expression.cache_clear()
        n_compile = 2000
        t_compile = timeit.timeit(lambda source=source: (compile_expression.cache_clear(),
                                                         compile_expression(source)), number=n_compile)
        expr = compile_expression(source)
        n = 200_000
        best = min(timeit.repeat(lambda expr=expr: expr.evaluate(scope), number=n, repeat=5))
        print(f"${{{source}}}".ljust(55), f"{t_compile / n_compile * 1e6:11.1f}",
              f"{best / n * 1e6:9.2f}")


if __name__ == "__main__":
    main()
