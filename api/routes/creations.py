"""The drafts: submit a creation (debit + start its execution), read, list and delete them."""
from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status

from creations.attempts import AttemptNotStarted, start_attempt
from creations.errors import InvalidOptions, NotFound
from creations.model import Creation, Status, utcnow
from creations.options import validate_request
from creations.text import scrub

from ..auth import User
from ..deps import CurrentUser, SettingsDep, StorageDep, StoreDep, TriggerDep, only_query
from ..errors import ApiError
from ..schemas import (
    CreateCreationRequest,
    CreationAccepted,
    CreationFailure,
    CreationOut,
    CreationPage,
    Media,
    error_responses,
)

log = logging.getLogger("api.creations")
router = APIRouter(prefix="/creations", tags=["creations"])

_CREATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
TRIGGER_FAILED = "TRIGGER_FAILED"
TRIGGER_FAILED_MESSAGE = "the generation could not be started"


def request_hash(body: CreateCreationRequest) -> str:
    """SHA-256 of the canonical JSON of the request: what an Idempotency-Key is bound to."""
    canonical = {"type": body.type.value, "prompt": body.prompt, "options": body.options or {}}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def owned_creation(store, creation_id: str, user: User) -> Creation:
    """The creation if it exists and is the user's; another user's creation is 'not found' too."""
    creation = store.get_creation(creation_id) if _CREATION_ID.match(creation_id) else None
    if creation is None or creation.uid != user.uid:
        raise NotFound(f"no creation {creation_id}")
    return creation


def creation_out(creation: Creation, storage) -> CreationOut:
    media = None
    if creation.status is Status.DRAFT and creation.media:
        m = creation.media
        # Sign at read time so a presigned URL is always fresh.
        url = storage.url(m["key"]) if storage is not None and m.get("key") else m.get("url")
        thumb = (
            storage.url(m["thumbnailKey"]) if storage is not None and m.get("thumbnailKey") else m.get("thumbnailUrl")
        )
        if url:
            media = Media(url=url, thumbnail_url=thumb, content_type=m.get("contentType"), bytes=m.get("bytes"))
    error = None
    if creation.status is Status.FAILED and creation.error:
        error = CreationFailure(code=creation.error.code, message=scrub(creation.error.message))
    # scrub: a record stored before text was checked may hold a lone surrogate; it stays readable.
    return CreationOut(
        id=creation.id, type=creation.type, prompt=scrub(creation.prompt), options=scrub(creation.options),
        status=creation.status, cost=creation.cost, attempt=creation.attempt,
        created_at=creation.created_at, updated_at=creation.updated_at, media=media, error=error,
    )


# --- starting the execution -------------------------------------------------------------------


def _trigger_failed(creation: Creation, balance: int) -> ApiError:
    return ApiError(
        503, TRIGGER_FAILED, f"{TRIGGER_FAILED_MESSAGE}; the creation failed and its tokens were refunded, "
        "submit it again", headers={"Retry-After": "5"},
        extra={"refunded": True, "id": creation.id, "balance": balance},
    )


def start_execution(store, trigger, creation: Creation) -> None:
    """Start the creation's execution through the domain's one money path. When that fails, the
    attempt is failed and refunded in one transaction, and the answer is 503. The error is
    recorded as not retryable: the user was told it failed and got the tokens back, and a later
    automatic replay would charge them again for a creation they may already have resubmitted.
    The cause goes to the log; the user reads that the generation could not start."""
    try:
        start_attempt(store, trigger, creation, failure_message=TRIGGER_FAILED_MESSAGE, retryable_on_failure=False)
    except AttemptNotStarted:
        raise _trigger_failed(creation, store.balance(creation.uid)) from None


def _needs_retrigger(creation: Creation, settings) -> bool:
    """A repeated request restarts the execution only if the first request evidently died between
    its commit and its trigger (pending, nothing recorded, long past the trigger's timeout)."""
    if creation.status is not Status.PENDING or creation.execution_ids:
        return False
    return utcnow() - creation.created_at > timedelta(seconds=settings.retrigger_after_seconds)


# --- routes -----------------------------------------------------------------------------------


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CreationAccepted,
    responses=error_responses(400, 401, 402, 408, 409, 413, 422, 429, 503),
    summary="Submit a creation: take its tokens and start generating",
)
def create_creation(
    body: CreateCreationRequest,
    user: CurrentUser,
    store: StoreDep,
    trigger: TriggerDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
               description="Retries with the same key and body answer the first creation and charge once."),
    ] = None,
) -> CreationAccepted:
    options = validate_request(body.type.value, body.prompt, body.options or {}, settings=settings)
    creation = Creation(
        id=Creation.new_id(), uid=user.uid, type=body.type, prompt=body.prompt, options=options,
        cost=settings.cost_of(body.type.value),
    )
    result = store.create_with_debit(
        creation,
        idempotency_key=idempotency_key,
        request_hash=request_hash(body) if idempotency_key else None,
        max_active=settings.max_active_per_user,
    )
    creation, balance = result.creation, result.balance
    if not result.replayed or _needs_retrigger(creation, settings):
        start_execution(store, trigger, creation)
    elif creation.status is Status.FAILED and creation.error and creation.error.code == TRIGGER_FAILED \
            and creation.attempt == 1:
        raise _trigger_failed(creation, balance)  # the first answer, again
    return CreationAccepted(id=creation.id, status=creation.status, cost=creation.cost, balance=balance)


@router.get(
    "",
    response_model=CreationPage,
    responses=error_responses(401, 422, 503),
    dependencies=[Depends(only_query("status", "limit", "pageToken"))],
    summary="The user's creations, newest first",
)
def list_creations(
    user: CurrentUser,
    store: StoreDep,
    storage: StorageDep,
    status_: Annotated[Status | None, Query(alias="status", description="Only creations in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    page_token: Annotated[str | None, Query(alias="pageToken", max_length=1024)] = None,
) -> CreationPage:
    try:
        items, next_token = store.list_creations(user.uid, status=status_, limit=limit, page_token=page_token or None)
    except (InvalidOptions, ValueError):
        raise ApiError(422, "INVALID_REQUEST", "invalid value for pageToken",
                       fields={"pageToken": "pass the nextPageToken of the previous page unchanged, or omit it"}
                       ) from None
    return CreationPage(items=[creation_out(c, storage) for c in items], next_page_token=next_token)


@router.get(
    "/{creation_id}",
    response_model=CreationOut,
    responses=error_responses(401, 404, 503),
    summary="One creation, with fresh media URLs once it is a draft",
)
def get_creation(creation_id: str, user: CurrentUser, store: StoreDep, storage: StorageDep) -> CreationOut:
    return creation_out(owned_creation(store, creation_id, user), storage)


@router.delete(
    "/{creation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 404, 409, 503),
    summary="Delete a finished creation and its media",
)
def delete_creation(creation_id: str, user: CurrentUser, store: StoreDep, storage: StorageDep) -> Response:
    creation = owned_creation(store, creation_id, user)
    if not creation.status.terminal:
        raise ApiError(409, "CREATION_ACTIVE",
                       f"creation {creation.id} is {creation.status.value}; delete it once it is a draft or failed")
    # Media first: if storage fails the record stays and a retried DELETE finishes the job.
    if storage is not None:
        storage.delete_creation_media(creation.uid, creation.id)
    store.delete_creation(creation.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
