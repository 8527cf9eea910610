"""Test prompts: tags in a prompt that make the local server misbehave on purpose.

Like a payment provider's test cards, they let a developer or a test reach every failure path of
the pipeline through the real client. Tags may appear anywhere in the prompt, in any case.

| tag         | image (`:predict`)                          | video (`:predictLongRunning` + polling)            |
|-------------|---------------------------------------------|----------------------------------------------------|
| `#blocked`  | 200 with a prediction holding only          | operation done with `raiMediaFilteredCount: 1`,    |
|             | `raiFilteredReason` (or no predictions when | `raiMediaFilteredReasons` and no videos            |
|             | `includeRaiReason` is not set)              |                                                    |
| `#flaky`    | 503 on the first two calls with the same prompt text (counted in server memory),     |
|             | then normal                                                                        |
| `#down`     | 503 on every call                           | 503 on every call                                  |
| `#slow`     | answers after 3 s                           | operation done no sooner than 3 s after it started |
| `#stuck`    | no effect                                   | the operation never completes (deadline tests)     |
| `#internal` | 500                                         | operation done with `error {code: 13, INTERNAL}`   |
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SLOW_SECONDS = 3.0
FLAKY_FAILURES = 2
BLOCKED_REASON = (
    "the prompt contains #blocked, a test tag the local filter always refuses. "
    "Rephrase the prompt and try again."
)

_TAG = re.compile(r"#(blocked|flaky|down|slow|stuck|internal)\b", re.IGNORECASE)


@dataclass(frozen=True)
class TestPrompt:
    """Which test behaviours a prompt asks for."""

    __test__ = False  # not a pytest test class, despite the name

    blocked: bool = False
    flaky: bool = False
    down: bool = False
    slow: bool = False
    stuck: bool = False
    internal: bool = False

    @classmethod
    def parse(cls, prompt: str) -> TestPrompt:
        tags = {match.lower() for match in _TAG.findall(prompt)}
        return cls(**{tag: True for tag in tags})
