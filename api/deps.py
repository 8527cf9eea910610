"""Shared dependencies of the routes: settings, store, trigger, media storage, the current user."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from creations.settings import Settings
from creations.store import Store

from .auth import AuthUnavailable, InvalidToken, TokenVerifier, User
from .errors import ApiError
from .triggers import Trigger

bearer = HTTPBearer(
    auto_error=False,
    description="A Firebase ID token (PHOENIX_AUTH_MODE=firebase) or a local dev token (`phoenix dev token UID`).",
)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_trigger(request: Request) -> Trigger:
    return request.app.state.trigger


def get_storage(request: Request):
    """The MediaStorage that signs media URLs and deletes media."""
    return request.app.state.storage


def get_verifier(request: Request) -> TokenVerifier:
    return request.app.state.verifier


def unauthenticated(message: str, *, invalid: bool) -> ApiError:
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return ApiError(401, "UNAUTHENTICATED", message, headers={"WWW-Authenticate": challenge})


def get_current_user(
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    if credentials is None or not credentials.credentials:
        raise unauthenticated("send 'Authorization: Bearer <ID token>'", invalid=False)
    try:
        return verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        raise unauthenticated(f"invalid token: {exc}; sign in again", invalid=True) from None
    except AuthUnavailable:
        raise ApiError(503, "AUTH_UNAVAILABLE", "the token could not be checked right now; retry shortly",
                       headers={"Retry-After": "5"}) from None


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
TriggerDep = Annotated[Trigger, Depends(get_trigger)]
StorageDep = Annotated[object, Depends(get_storage)]
CurrentUser = Annotated[User, Depends(get_current_user)]
