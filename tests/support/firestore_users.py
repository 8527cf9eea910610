"""End users of Firestore on the emulator: the rules file loaded into a project, requests made
as a signed-in user (REST and a snapshot listener), as nobody, or as the server (`owner`).

The emulator takes unsigned ID tokens (`alg: none`) with the claims Firebase Auth would sign:
`sub`/`user_id` the uid, `aud` the project, `iss` https://securetoken.google.com/<project>.
"""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
from google.cloud import firestore

from localcloud.firestore_emulator import FirestoreEmulator

RULES_FILE = Path(__file__).resolve().parents[2] / "firestore.rules"
OWNER = "owner"  # the emulator's admin token: rules do not apply (the server's credentials)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def id_token(project: str, uid: str) -> str:
    """An unsigned Firebase ID token for `uid`, as the emulator accepts it."""
    now = int(time.time())
    claims = {"iss": f"https://securetoken.google.com/{project}", "aud": project, "sub": uid, "user_id": uid,
              "iat": now, "exp": now + 3600, "auth_time": now,
              "firebase": {"sign_in_provider": "password", "identities": {}}}
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def load_rules(emulator: FirestoreEmulator, project: str, source: str | None = None) -> None:
    """Put the rules (the repository's firestore.rules by default) in force for `project`."""
    source = RULES_FILE.read_text() if source is None else source
    response = httpx.put(f"{emulator.url}/emulator/v1/projects/{project}:securityRules",
                         json={"rules": {"files": [{"name": "firestore.rules", "content": source}]}}, timeout=30)
    response.raise_for_status()


class RestClient:
    """Firestore's REST API on the emulator, as one caller (`token` None: not signed in)."""

    def __init__(self, emulator: FirestoreEmulator, project: str, token: str | None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.documents = f"{emulator.url}/v1/projects/{project}/databases/(default)/documents"
        self.http = httpx.Client(base_url=self.documents, headers=headers, timeout=30)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(f"/{path}")

    def patch(self, path: str, fields: dict) -> httpx.Response:
        return self.http.patch(f"/{path}", json={"fields": fields})

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete(f"/{path}")

    def create(self, collection: str, doc_id: str, fields: dict) -> httpx.Response:
        return self.http.post(f"/{collection}", params={"documentId": doc_id}, json={"fields": fields})

    def query(self, collection: str, *, where: dict | None = None, order_by: list | None = None,
              limit: int | None = None) -> httpx.Response:
        structured: dict = {"from": [{"collectionId": collection}]}
        if where is not None:
            structured["where"] = where
        if order_by is not None:
            structured["orderBy"] = order_by
        if limit is not None:
            structured["limit"] = limit
        # `documents:runQuery`, not `documents/:runQuery`: an absolute URL, not one joined with a slash.
        return self.http.post(f"{self.documents}:runQuery", json={"structuredQuery": structured})

    def close(self) -> None:
        self.http.close()


def equals(field: str, value: str) -> dict:
    return {"fieldFilter": {"field": {"fieldPath": field}, "op": "EQUAL", "value": {"stringValue": value}}}


class UserClient(firestore.Client):
    """A google-cloud-firestore client that calls the emulator as a signed-in end user, the way
    an app's SDK does: its requests carry the user's ID token instead of the admin `owner`."""

    def __init__(self, project: str, uid: str):
        super().__init__(project=project)
        self._bearer = f"Bearer {id_token(project, uid)}"

    @property
    def _rpc_metadata(self):
        metadata = [(k, v) for k, v in super()._rpc_metadata if k != "authorization"]
        return [*metadata, ("authorization", self._bearer)]
