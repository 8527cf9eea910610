"""Firestore REST document encoding, and the Firestore connector bound to the local store.

In production the workflow reads `creations/{id}` through Google's Firestore connector and gets
a REST document (`{"name", "fields": {"status": {"stringValue": ...}}}`). Locally the same call is
answered from the configured store, encoded the same way, so the YAML's field paths
(`fields.error.mapValue.fields.retryable.booleanValue`) are exercised unchanged.
"""
from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Any

from creations.store import Store
from creations.store.firestore import creation_to_doc
from localcloud.workflows.errors import WorkflowError

DOCUMENTS_GET = "googleapis.firestore.v1.projects.databases.documents.get"


def encode_value(value: Any) -> dict[str, Any]:
    """One Python value as a Firestore REST `Value`."""
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}  # int64 travels as a string in REST JSON
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return {"doubleValue": str(value)}
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=UTC)
        return {"timestampValue": ts.astimezone(UTC).isoformat().replace("+00:00", "Z")}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [encode_value(v) for v in value]}} if value else {"arrayValue": {}}
    if isinstance(value, dict):
        return {"mapValue": {"fields": encode_fields(value)}} if value else {"mapValue": {}}
    raise TypeError(f"cannot encode {type(value).__name__} as a Firestore value")


def encode_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {str(k): encode_value(v) for k, v in data.items()}


def creation_document(name: str, creation_dict: dict[str, Any]) -> dict[str, Any]:
    """The REST document of a creation, with its timestamps as the document's times."""
    fields = dict(creation_dict)
    fields.pop("id", None)  # the id is the document name's last segment, as in Firestore
    return {
        "name": name,
        "fields": encode_fields(fields),
        "createTime": encode_value(_parse_ts(creation_dict.get("created_at")))["timestampValue"],
        "updateTime": encode_value(_parse_ts(creation_dict.get("updated_at")))["timestampValue"],
    }


def _parse_ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return datetime.now(UTC)


def not_found(name: str) -> WorkflowError:
    body = {"error": {"code": 404, "message": f"Document \"{name}\" not found.", "status": "NOT_FOUND"}}
    return WorkflowError({"tags": ["HttpError"], "code": 404, "message": "HTTP server responded with error code 404",
                          "headers": {"Content-Type": "application/json"}, "body": body})


class StoreDocuments:
    """Answers `documents.get` for `creations/{id}` from the configured store."""

    def __init__(self, store: Store):
        self._store = store

    def get(self, call) -> dict[str, Any]:
        name = call.args.get("name")
        if not isinstance(name, str) or "/documents/" not in name:
            raise WorkflowError.tagged(
                "ValueError", f"documents.get: 'name' must be projects/P/databases/D/documents/PATH, got {name!r}")
        path = name.split("/documents/", 1)[1]
        collection, _, doc_id = path.partition("/")
        if collection != "creations" or not doc_id or "/" in doc_id:
            raise not_found(name)
        creation = self._store.get_creation(doc_id)
        if creation is None:
            raise not_found(name)
        # The production document layout (native maps and timestamps), REST-encoded.
        return creation_document(name, creation_to_doc(creation))
