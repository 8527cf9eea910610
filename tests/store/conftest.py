"""Every store test runs against both adapters: SQLite in a temp dir and Firestore on the emulator."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from creations.store.base import Store
from creations.store.sqlite import SqliteStore
from tests.support.firestore import (  # noqa: F401
    firestore_emulator,
    firestore_project,
    firestore_store,
)


@pytest.fixture(params=["sqlite", "firestore"])
def store(request, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "store.sqlite3")
        yield s
        s.close()
    else:
        yield request.getfixturevalue("firestore_store")
