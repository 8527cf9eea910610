"""The local generation server and Generator fixtures.

Use from a conftest.py: `from tests.support.genserver import gen_server, generator  # noqa: F401`.
Prompts with #flaky are counted per exact prompt text for the whole session: give each test its
own text (e.g. with `unique_prompt`).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from creations.generation import Generator
from creations.settings import Settings
from localcloud.genserver import GenServer


def generation_settings(server: GenServer, **overrides: Any) -> Settings:
    """Settings that point Generator at `server`, polling videos quickly."""
    values: dict[str, Any] = {
        "genai_base_url": server.url,
        "genai_static_token": "local-token",
        "video_poll_seconds": 0.05,
        "video_deadline_seconds": 60.0,
        "image_timeout_seconds": 30.0,
    }
    values.update(overrides)
    return Settings(**values)


def unique_prompt(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


@pytest.fixture(scope="session")
def gen_server() -> Iterator[GenServer]:
    server = GenServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def instant_gen_server() -> Iterator[GenServer]:
    server = GenServer(instant=True).start()
    yield server
    server.stop()


@pytest.fixture
def generator(gen_server: GenServer) -> Generator:
    return Generator.from_settings(generation_settings(gen_server))
