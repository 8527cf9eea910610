"""Google's Firestore emulator for tests, and FirestoreStore fixtures on it.

One emulator per pytest process (per xdist worker); each test gets its own project id, so tests
never see each other's documents, and the project is wiped when the test ends.

Use from a conftest.py: `from tests.support.firestore import firestore_emulator, firestore_store  # noqa: F401`.
Without the emulator installed, tests that use it are skipped, or fail when CI is set.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from google.cloud import firestore

from creations.settings import Settings
from creations.store.firestore import FirestoreStore
from localcloud.firestore_emulator import EmulatorNotInstalled, FirestoreEmulator


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unique_project() -> str:
    return f"phoenix-test-{uuid.uuid4().hex[:12]}"


def emulator_or_skip(binary: str | os.PathLike[str] | None = None) -> FirestoreEmulator:
    """An emulator ready to start; without one installed, skip the test (fail it when CI is set)."""
    try:
        return FirestoreEmulator(binary)
    except EmulatorNotInstalled as exc:
        if _in_ci():
            pytest.fail(f"CI is set and {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    """The running emulator; FIRESTORE_EMULATOR_HOST points clients (and child processes) at it."""
    emulator = emulator_or_skip().start()
    patch = pytest.MonkeyPatch()
    patch.setenv("FIRESTORE_EMULATOR_HOST", emulator.address)
    try:
        yield emulator
    finally:
        patch.undo()
        emulator.stop()


def emulator_client(emulator: FirestoreEmulator, project: str) -> firestore.Client:
    """A client of `project` on the emulator (needs FIRESTORE_EMULATOR_HOST, set by the fixture)."""
    assert os.environ.get("FIRESTORE_EMULATOR_HOST") == emulator.address, "use the firestore_emulator fixture"
    return firestore.Client(project=project)


def emulator_settings(project: str, **overrides) -> Settings:
    """Settings that select the Firestore store on `project` (of the emulator the fixture started)."""
    return Settings(store="firestore", firestore_project=project, **overrides)


@pytest.fixture
def firestore_project(firestore_emulator: FirestoreEmulator) -> Iterator[str]:
    """A fresh project id on the emulator, wiped after the test."""
    project = unique_project()
    yield project
    firestore_emulator.reset(project)


@pytest.fixture
def firestore_store(firestore_emulator: FirestoreEmulator, firestore_project: str) -> Iterator[FirestoreStore]:
    store = FirestoreStore(emulator_client(firestore_emulator, firestore_project))
    yield store
    store.close()
