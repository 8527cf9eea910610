"""Store adapters behind one interface; `open_store(settings)` picks one from configuration."""
from .base import AuditFinding, CreateResult, Store

__all__ = ["AuditFinding", "CreateResult", "Store", "open_store"]


def open_store(settings) -> Store:
    """The store the settings name (`PHOENIX_STORE=sqlite|firestore`)."""
    if settings.store == "firestore":
        from .firestore import FirestoreStore

        return FirestoreStore.from_settings(settings)
    from .sqlite import SqliteStore

    return SqliteStore(settings.sqlite_path)
