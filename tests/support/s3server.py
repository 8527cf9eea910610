"""The S3 stand-in (moto on loopback) and MediaStorage fixtures.

Use from a conftest.py: `from tests.support.s3server import s3_server, media_storage  # noqa: F401`.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from creations.settings import Settings
from creations.storage import MediaStorage
from localcloud.s3server import S3Server


def storage_settings(server: S3Server, bucket: str, **overrides: Any) -> Settings:
    """Settings that point MediaStorage at `server` (region us-east-1, as moto expects)."""
    values: dict[str, Any] = {
        "s3_endpoint_url": server.endpoint_url,
        "s3_region": "us-east-1",
        "s3_bucket": bucket,
        "s3_access_key_id": "local",
        "s3_secret_access_key": "local-secret",
    }
    values.update(overrides)
    return Settings(**values)


def unique_bucket(prefix: str = "media") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def media_storage(s3_server: S3Server) -> MediaStorage:
    """A MediaStorage on a fresh, empty bucket of its own."""
    storage = MediaStorage.from_settings(storage_settings(s3_server, unique_bucket()))
    storage.ensure_bucket()
    return storage
