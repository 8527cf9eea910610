"""Who is calling: Firebase ID tokens in production, HMAC-signed local tokens for the dev stack.

A local token is `local.<base64url uid>.<base64url HMAC-SHA256(secret, "local.<base64url uid>")>`;
`make_local_token` makes one (the dev CLI prints it), `LocalTokens` checks it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from google.auth import exceptions as auth_exceptions
from google.auth import transport

from creations.uids import uid_problem, usable_uid

__all__ = ["AuthUnavailable", "FirebaseTokens", "InvalidToken", "LocalTokens", "TokenVerifier", "User",
           "make_local_token", "usable_uid", "verifier_from_settings", "well_formed_token"]

_LOCAL_PREFIX = "local"
# RFC 6750 b64token, bounded: anything else (non-ASCII, spaces, a megabyte) is not a token at all.
_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
MAX_TOKEN_CHARS = 8192


def well_formed_token(token: str) -> bool:
    """Whether `token` has the shape of a bearer token (RFC 6750), before any check of its content."""
    return 0 < len(token) <= MAX_TOKEN_CHARS and _TOKEN.match(token) is not None


@dataclass(frozen=True)
class User:
    uid: str


class InvalidToken(Exception):
    """The bearer token is missing, malformed, expired or not signed by whom it should be (401)."""


class AuthUnavailable(Exception):
    """The token could not be checked (e.g. Google's signing certificates are unreachable) (503)."""


class TokenVerifier(Protocol):
    blocking: bool  # whether verify() may wait on the network (then it runs off the event loop)

    def verify(self, token: str) -> User:
        """The user the token proves, or InvalidToken / AuthUnavailable."""


# --- local tokens -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, secret: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def make_local_token(uid: str, secret: str) -> str:
    """A bearer token for `uid` that the API accepts when PHOENIX_AUTH_MODE=local."""
    problem = uid_problem(uid)
    if problem:
        raise ValueError(f"{problem} (got {uid!r})")
    if not secret:
        raise ValueError("secret must be non-empty (PHOENIX_LOCAL_AUTH_SECRET)")
    payload = f"{_LOCAL_PREFIX}.{_b64(uid.encode())}"
    return f"{payload}.{_signature(payload, secret)}"


class LocalTokens:
    blocking = False  # an HMAC: microseconds of CPU

    def __init__(self, secret: str):
        if not secret:
            raise ValueError("PHOENIX_LOCAL_AUTH_SECRET must be non-empty when PHOENIX_AUTH_MODE=local")
        self.secret = secret

    def verify(self, token: str) -> User:
        if not well_formed_token(token):
            raise InvalidToken("malformed token")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _LOCAL_PREFIX:
            raise InvalidToken("not a local token")
        payload = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(parts[2], _signature(payload, self.secret)):
            raise InvalidToken("bad token signature")
        try:
            uid = _unb64(parts[1]).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidToken("malformed token") from None
        if not usable_uid(uid):
            raise InvalidToken("the token's uid is not a uid this service accepts")
        return User(uid=uid)


# --- Firebase ID tokens -----------------------------------------------------------------------


class CachingRequest(transport.Request):
    """A google-auth transport that keeps GET answers for their Cache-Control max-age.

    `verify_firebase_token` fetches Google's signing certificates on every call; they change
    every few hours and say so in their Cache-Control header.
    """

    def __init__(self, inner: transport.Request, *, clock: Callable[[], float] = time.monotonic,
                 default_ttl: float = 300.0):
        self.inner = inner
        self.clock = clock
        self.default_ttl = default_ttl
        self._cache: dict[str, tuple[float, transport.Response]] = {}
        self._lock = threading.Lock()

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        if method != "GET" or body is not None:
            return self.inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        now = self.clock()
        with self._lock:
            cached = self._cache.get(url)
        if cached and cached[0] > now:
            return cached[1]
        response = self.inner(url, method=method, headers=headers, timeout=timeout, **kwargs)
        if response.status == 200:
            # Read the body once, while the connection is ours: the property access does the read.
            _ = response.data
            with self._lock:
                self._cache[url] = (now + _max_age(response.headers, self.default_ttl), response)
        return response


def _max_age(headers, default: float) -> float:
    value = ""
    for key, val in (headers or {}).items():
        if key.lower() == "cache-control":
            value = val
    match = re.search(r"max-age=(\d+)", value)
    return float(match.group(1)) if match else default


class FirebaseTokens:
    """Checks Firebase ID tokens: Google's signature, audience and issuer of the project, a subject."""

    blocking = True  # fetches Google's signing certificates when the cached ones expire

    def __init__(self, project_id: str, request: transport.Request | None = None, *, clock_skew_seconds: int = 10):
        if not project_id:
            raise ValueError("PHOENIX_FIREBASE_PROJECT_ID must be set when PHOENIX_AUTH_MODE=firebase")
        if request is None:
            import google.auth.transport.requests

            request = CachingRequest(google.auth.transport.requests.Request())
        self.project_id = project_id
        self.request = request
        self.clock_skew_seconds = clock_skew_seconds

    def verify(self, token: str) -> User:
        from google.oauth2 import id_token

        if not well_formed_token(token):
            raise InvalidToken("malformed token")
        try:
            claims = id_token.verify_firebase_token(
                token, self.request, audience=self.project_id, clock_skew_in_seconds=self.clock_skew_seconds
            )
        except auth_exceptions.TransportError as exc:
            raise AuthUnavailable(f"could not fetch the token signing keys: {exc}") from exc
        except (ValueError, auth_exceptions.GoogleAuthError) as exc:
            raise InvalidToken(str(exc).splitlines()[0] if str(exc) else "invalid token") from exc
        uid = claims.get("sub")
        if not usable_uid(uid):
            raise InvalidToken("the token's subject is not a uid this service accepts")
        return User(uid=uid)


def verifier_from_settings(settings) -> TokenVerifier:
    if settings.auth_mode == "firebase":
        return FirebaseTokens(settings.firebase_project_id or "")
    return LocalTokens(settings.local_auth_secret or "")
