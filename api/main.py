"""The HTTP API: `create_app(...)` wires settings, store, trigger and media storage into FastAPI.

`uvicorn api.main:app` serves the app built from the environment (PHOENIX_*); tests and the dev
stack call `create_app` with the pieces they started.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from creations.settings import Settings, get_settings

from .auth import verifier_from_settings
from .errors import install_error_handlers
from .routes import creations, events, health, me
from .schemas import ErrorResponse

log = logging.getLogger("api")


def create_app(settings: Settings | None = None, *, store=None, trigger=None, storage=None,
               verifier=None) -> FastAPI:
    """The API over the given pieces; any left out is built from `settings` (and what it opens is
    closed on shutdown). `verifier` checks bearer tokens (default: the one settings.auth_mode names)."""
    settings = settings or get_settings()
    owned = []
    if store is None:
        from creations.store import open_store

        store = open_store(settings)
        owned.append(store)
    if trigger is None:
        from creations.triggers import trigger_from_settings

        trigger = trigger_from_settings(settings)
        owned.append(trigger)
    if storage is None:
        from creations.storage import MediaStorage

        storage = MediaStorage.from_settings(settings)
    if settings.auth_mode == "local":
        log.warning("accepting local tokens (PHOENIX_AUTH_MODE=local): not for production")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for resource in owned:
            close = getattr(resource, "close", None)
            if close:
                close()

    app = FastAPI(
        title="Phoenix creations API",
        version="1.0.0",
        description="Submit image and video creations paid in tokens, and follow them to the drafts tab.",
        lifespan=lifespan,
        responses={500: {"model": ErrorResponse, "description": "Internal error (details are in the logs)."}},
    )
    app.state.settings = settings
    app.state.store = store
    app.state.trigger = trigger
    app.state.storage = storage
    app.state.verifier = verifier or verifier_from_settings(settings)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(events.router, prefix="/v1")  # before creations: /creations/events is not an id
    app.include_router(creations.router, prefix="/v1")
    app.include_router(me.router, prefix="/v1")
    return app


def __getattr__(name: str):
    # `app` is built on first access (by uvicorn), so importing this module opens nothing.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)
