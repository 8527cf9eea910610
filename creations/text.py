"""User text the service accepts and stores, and how stored text is made safe to answer.

Everything a user sends (the prompt, options, an Idempotency-Key, a uid) must be text every store,
log and JSON encoder can hold: Unicode scalar values only (no lone surrogate such as "\\ud800",
which JSON escapes can carry but UTF-8 cannot encode) and no NUL. `text_problem` says what is
wrong with a string; `scrub` replaces what cannot be encoded, for answers built from data stored
before these checks existed.
"""
from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored as it is, or None when it can."""
    if _SURROGATE.search(text):
        return "contains an invalid character (a lone UTF-16 surrogate); send valid Unicode text"
    if "\x00" in text:
        return "contains a NUL character; remove it"
    return None


def scrub(value: Any, *, depth: int = 0) -> Any:
    """`value` with every lone surrogate in its strings (and mapping keys) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub(REPLACEMENT, value)
    if depth > 32:  # deeper than anything the API stores; an answer must not recurse without end
        return None
    if isinstance(value, dict):
        return {scrub(k, depth=depth + 1): scrub(v, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, depth=depth + 1) for v in value]
    return value
