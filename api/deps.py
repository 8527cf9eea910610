"""Shared dependencies of the routes: settings, store, trigger, media storage, the current user."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from creations.settings import Settings
from creations.store import Store
from creations.triggers import Trigger

from .auth import AuthUnavailable, InvalidToken, TokenVerifier, User, well_formed_token
from .errors import ApiError

USER_SCOPE_KEY = "phoenix.user"  # where the edge (api/edge.py) leaves the authenticated user

bearer = HTTPBearer(
    auto_error=False,
    description="A Firebase ID token (PHOENIX_AUTH_MODE=firebase) or a local dev token (`phoenix dev token UID`).",
)


# The accessors are `async` only so FastAPI calls them inline instead of on the thread pool.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_trigger(request: Request) -> Trigger:
    return request.app.state.trigger


async def get_storage(request: Request):
    """The MediaStorage that signs media URLs and deletes media."""
    return request.app.state.storage


async def get_verifier(request: Request) -> TokenVerifier:
    return request.app.state.verifier


def unauthenticated(message: str, *, invalid: bool) -> ApiError:
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return ApiError(401, "UNAUTHENTICATED", message, headers={"WWW-Authenticate": challenge})


async def authenticate(verifier: TokenVerifier, authorization: str | None) -> User:
    """The user an `Authorization` header value proves, or the 401 / 503 ApiError to answer.
    The one place a bearer token is read: the API's edge calls it before the body is read."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("send 'Authorization: Bearer <ID token>'", invalid=False)
    if not well_formed_token(token):  # non-ASCII, spaces, megabytes: not a token, and never compared
        raise unauthenticated("invalid token: malformed token; sign in again", invalid=True)
    try:
        if getattr(verifier, "blocking", True):  # may fetch signing keys: keep it off the event loop
            return await run_in_threadpool(verifier.verify, token)
        return verifier.verify(token)
    except InvalidToken as exc:
        raise unauthenticated(f"invalid token: {exc}; sign in again", invalid=True) from None
    except AuthUnavailable:
        raise ApiError(503, "AUTH_UNAVAILABLE", "the token could not be checked right now; retry shortly",
                       headers={"Retry-After": "5"}) from None


async def get_current_user(
    request: Request,
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    user = request.scope.get(USER_SCOPE_KEY)  # checked at the edge, before the body was read
    if user is not None:
        return user
    return await authenticate(verifier, request.headers.get("authorization"))


def only_query(*names: str):
    """A dependency that refuses query parameters the route does not declare (a typo such as
    `limt=5` would otherwise be ignored silently), as Google's APIs do."""
    allowed = frozenset(names)

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params.keys()) - allowed)
        if unknown:
            expected = ", ".join(sorted(allowed)) or "none"
            raise ApiError(422, "INVALID_REQUEST", f"unknown query parameter(s): {', '.join(map(repr, unknown))}",
                           fields={name or "(empty name)": f"not a parameter of this endpoint (expected: {expected})"
                                   for name in unknown})

    return check


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
TriggerDep = Annotated[Trigger, Depends(get_trigger)]
StorageDep = Annotated[object, Depends(get_storage)]
CurrentUser = Annotated[User, Depends(get_current_user)]
