"""The calling user: uid and token balance."""
from __future__ import annotations

from fastapi import APIRouter

from ..deps import CurrentUser, StoreDep
from ..schemas import Me, error_responses

router = APIRouter(tags=["me"])


@router.get("/me", response_model=Me, responses=error_responses(401, 503), summary="The caller's uid and tokens")
def get_me(user: CurrentUser, store: StoreDep) -> Me:
    return Me(uid=user.uid, tokens=store.balance(user.uid))
