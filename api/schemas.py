"""Request and response bodies of the HTTP API (camelCase on the wire)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from creations.model import CreationType, Status


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# --- requests ---------------------------------------------------------------------------------


class CreateCreationRequest(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    type: CreationType
    prompt: str = Field(description="What to generate; checked against the model's limits.")
    options: dict[str, Any] | None = Field(
        None, description="Generation options of the type (e.g. aspectRatio); defaults apply when absent."
    )


# --- responses --------------------------------------------------------------------------------


class CreationAccepted(ApiModel):
    id: str
    status: Status
    cost: int = Field(description="Tokens taken for this creation.")
    balance: int = Field(description="The user's tokens after the debit.")


class Media(ApiModel):
    url: str
    thumbnail_url: str | None = None
    content_type: str | None = None
    bytes: int | None = None


class CreationFailure(ApiModel):
    code: str
    message: str


class CreationOut(ApiModel):
    id: str
    type: CreationType
    prompt: str
    options: dict[str, Any]
    status: Status
    cost: int
    attempt: int
    created_at: datetime
    updated_at: datetime
    media: Media | None = Field(None, description="The media, once the creation is a draft.")
    error: CreationFailure | None = Field(None, description="Why it failed, once failed.")


class CreationPage(ApiModel):
    items: list[CreationOut]
    next_page_token: str | None = Field(None, description="Pass as pageToken for the next page; null at the end.")


class Me(ApiModel):
    uid: str
    tokens: int


class Health(ApiModel):
    status: str


# --- errors -----------------------------------------------------------------------------------


class ErrorDetail(ApiModel):
    code: str = Field(description="Stable, machine-readable (e.g. INSUFFICIENT_TOKENS).")
    message: str = Field(description="What went wrong and what to do, for a person.")
    fields: dict[str, str] | None = Field(None, description="On 422: a message per invalid field.")


class ErrorResponse(ApiModel):
    error: ErrorDetail


class UnavailableResponse(ErrorResponse):
    """503. When the execution could not be started the creation is failed and its tokens are back."""

    refunded: bool | None = Field(None, description="True when the creation's tokens were given back.")
    id: str | None = Field(None, description="The failed creation, when one was recorded.")
    balance: int | None = Field(None, description="The user's tokens after the refund.")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can answer."""
    described = {
        400: "The body could not be read (not UTF-8 JSON).",
        401: "Missing or invalid bearer token.",
        402: "Not enough tokens; nothing was created.",
        404: "No such creation (or not yours).",
        408: "The request body did not arrive in time (PHOENIX_BODY_TIMEOUT_SECONDS).",
        409: "Conflict: the Idempotency-Key was used with another body, or the creation is still running.",
        413: "The request body is larger than PHOENIX_MAX_BODY_BYTES (64 KiB by default).",
        422: "Invalid request; `error.fields` says what is wrong with each field.",
        429: "Too many creations running; retry after one finishes.",
        503: "A dependency (store, token keys, workflow) is unavailable; retry later. A creation whose "
             "execution could not be started is failed and refunded (`refunded: true`).",
    }
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model = UnavailableResponse if status == 503 else ErrorResponse
        out[status] = {"model": model, "description": described[status]}
    return out
