"""The one rule for user ids, used wherever a uid enters: the Firebase token's `sub`, the local
dev token, and token grants.

A uid is 1-128 characters (Firebase Auth's limit) of printable Unicode text (no control, format
or surrogate characters, no NUL), with no '/', not '.' or '..', and not of the form `__name__`:
it is a Firestore document id (which refuses those) and a segment of media keys.
"""
from __future__ import annotations

from .text import text_problem

MAX_UID_CHARS = 128


def uid_problem(uid: object) -> str | None:
    """Why `uid` is not a usable user id, or None when it is."""
    if not isinstance(uid, str):
        return "a uid is text"
    if not 0 < len(uid) <= MAX_UID_CHARS:
        return f"a uid has 1 to {MAX_UID_CHARS} characters (this one has {len(uid)})"
    problem = text_problem(uid)
    if problem:
        return f"the uid {problem}"
    if not uid.isprintable():
        return "a uid has no control or invisible characters"
    if "/" in uid:
        return "a uid has no '/'"
    if uid in (".", ".."):
        return "a uid is not '.' or '..'"
    if uid.startswith("__") and uid.endswith("__"):
        return "a uid is not of the form __name__"
    return None


def usable_uid(uid: object) -> bool:
    return uid_problem(uid) is None


def check_uid(uid: object) -> str:
    """`uid` when it is usable; ValueError saying why otherwise."""
    problem = uid_problem(uid)
    if problem:
        raise ValueError(f"{problem} (got {uid!r})")
    return uid  # type: ignore[return-value]
