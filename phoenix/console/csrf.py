"""CSRF protection for the console's forms.

The console listens on loopback, but any page the operator's browser opens elsewhere could still
POST to it. Every page sets a random token in a SameSite=Strict, HttpOnly cookie and in its forms;
a POST must carry the same token in its form (a page from elsewhere can read neither) and, when
the browser says where it comes from (Origin), come from the console itself.
"""
from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request

COOKIE = "phoenix_console_csrf"
FIELD = "csrf"


class CsrfRejected(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def token_for(request: Request) -> str:
    """The request's token (from its cookie), or a new one the response must set."""
    existing = request.cookies.get(COOKIE)
    if existing and len(existing) >= 32:
        return existing
    token = getattr(request.state, "new_csrf", None)
    if token is None:
        token = request.state.new_csrf = secrets.token_urlsafe(32)
    return token


def check(request: Request, submitted: str | None) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        if urlsplit(origin).netloc != request.headers.get("host", ""):
            raise CsrfRejected(f"a form from {origin} cannot act on this console")
    elif origin == "null":
        raise CsrfRejected("a form from an opaque origin cannot act on this console")
    cookie = request.cookies.get(COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise CsrfRejected(
            "the form's token does not match this browser's console session; reload the page and try again"
        )
