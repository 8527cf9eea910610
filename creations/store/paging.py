"""Opaque page tokens for list_creations: the (created_at, id) of the last item returned."""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from ..errors import InvalidOptions

MAX_PAGE_SIZE = 100
MAX_SEARCH_PAGE_SIZE = 1000   # operators' searches (search_creations)


def check_limit(limit: int, maximum: int = MAX_PAGE_SIZE) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidOptions(
            f"limit must be a whole number from 1 to {maximum}, got {limit!r}",
            {"limit": f"use a whole number from 1 to {maximum}"},
        )
    return limit


def encode_page_token(created_at: datetime, creation_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), creation_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    """(created_at, id) of the last item of the previous page; InvalidOptions if the token is not ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created_at, creation_id = json.loads(raw)
        when = datetime.fromisoformat(created_at)
        if when.tzinfo is None or not isinstance(creation_id, str):
            raise ValueError(token)
        return when, creation_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidOptions(
            "page_token is not a token this service returned",
            {"page_token": "pass the next_page_token of the previous page unchanged, or omit it"},
        ) from exc
