"""The clients a step uses, built from the settings on first use.

A step builds only what it touches (debit_check never imports the generation client), which
keeps a job's start fast; one instance may be shared by steps running in threads of one process.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import CreationsError
from ..joblog import JobLog
from ..settings import Settings

if TYPE_CHECKING:
    from ..generation import Generator
    from ..storage import MediaStorage
    from ..store.base import Store


class ServiceSetupError(CreationsError):
    """A client could not be built from the settings: the deployment's configuration is wrong."""

    code = "CONFIGURATION"


class StepServices:
    """Store, media storage, generator, settings and the root log of the steps of one process."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        storage: MediaStorage | None = None,
        generator: Generator | None = None,
        log: JobLog | None = None,
    ):
        self.settings = settings
        self.log = log or JobLog()
        self._store = store
        self._storage = storage
        self._generator = generator
        self._owned: list[Any] = []
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        return self._get("_store", "store", _open_store)

    @property
    def storage(self) -> MediaStorage:
        return self._get("_storage", "media storage", _open_storage)

    @property
    def generator(self) -> Generator:
        return self._get("_generator", "generator", _open_generator)

    def _get(self, attr: str, what: str, factory: Callable[[Settings], Any]) -> Any:
        client = getattr(self, attr)
        if client is not None:
            return client
        with self._lock:
            client = getattr(self, attr)
            if client is None:
                try:
                    client = factory(self.settings)
                except CreationsError:
                    raise
                except Exception as exc:  # a client constructor refusing the configuration
                    raise ServiceSetupError(
                        f"could not set up the {what} from the settings: "
                        f"{type(exc).__name__}: {exc}") from exc
                self._owned.append(client)
                setattr(self, attr, client)
            return client

    def close(self) -> None:
        """Close the clients this object built (not those passed in)."""
        for client in self._owned:
            close = getattr(client, "close", None)
            if callable(close):
                close()
        self._owned.clear()


def _open_store(settings: Settings) -> Store:
    from ..store import open_store

    return open_store(settings)


def _open_storage(settings: Settings) -> MediaStorage:
    from ..storage import MediaStorage

    return MediaStorage.from_settings(settings)


def _open_generator(settings: Settings) -> Generator:
    from ..generation import Generator

    return Generator.from_settings(settings)
