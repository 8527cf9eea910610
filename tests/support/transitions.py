"""Status changes of a creation, made through the store as the steps and an operator's replay
make them: for tests that drive a creation without running the pipeline."""
from __future__ import annotations

from creations.model import Creation, CreationError, Status


def to_processing(c: Creation) -> Creation:
    c.transition(Status.PROCESSING)
    return c


def to_draft(c: Creation) -> Creation:
    c.transition(Status.DRAFT)
    c.media = {"key": f"media/{c.uid}/{c.id}/original.png", "thumbnailKey": f"media/{c.uid}/{c.id}/thumb.jpg",
               "contentType": "image/png", "bytes": 10}
    return c


def to_failed(c: Creation) -> Creation:
    c.transition(Status.FAILED)
    c.error = CreationError(code="CONTENT_POLICY", message="refused", step="generate", retryable=False)
    return c


def replayed(c: Creation) -> Creation:
    c.transition(Status.PENDING)
    c.attempt += 1
    return c
