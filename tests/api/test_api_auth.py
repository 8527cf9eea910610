"""Bearer tokens: local HMAC tokens, and Firebase ID tokens checked against signing certificates
served on loopback (same JSON shape as Google's securetoken x509 endpoint)."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google.auth.transport.requests
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from google.auth import crypt, jwt, transport

from api.auth import (
    AuthUnavailable,
    CachingRequest,
    FirebaseTokens,
    InvalidToken,
    LocalTokens,
    User,
    make_local_token,
)
from api.main import create_app
from creations.settings import Settings
from creations.store.sqlite import SqliteStore

PROJECT = "phoenix-test"


# --- local tokens -----------------------------------------------------------------------------


def test_local_token_round_trip():
    assert LocalTokens("s3cret").verify(make_local_token("user-1", "s3cret")) == User("user-1")


@pytest.mark.parametrize("token", [
    make_local_token("user-1", "other-secret"),                       # signed with another secret
    make_local_token("user-1", "s3cret")[:-2] + "xx",                  # tampered signature
    make_local_token("user-1", "s3cret").replace("local.", "lokal."),  # wrong prefix
    "local.dXNlci0x",                                                  # no signature
    "",
    "not-a-token",
])
def test_local_token_rejections(token):
    with pytest.raises(InvalidToken):
        LocalTokens("s3cret").verify(token)


def test_local_token_cannot_be_moved_to_another_uid():
    token = make_local_token("alice", "s3cret")
    _, _, signature = token.split(".")
    forged = make_local_token("mallory", "x").rsplit(".", 1)[0] + "." + signature
    with pytest.raises(InvalidToken):
        LocalTokens("s3cret").verify(forged)


@pytest.mark.parametrize("uid", ["", "a/b", "__admin__", "x" * 129, "tab\there", ".", "..", "\ud800", "nul\x00"])
def test_make_local_token_refuses_unusable_uids(uid):
    with pytest.raises(ValueError):
        make_local_token(uid, "s3cret")


# --- Firebase ID tokens -----------------------------------------------------------------------


def _key_and_cert() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, cert.public_bytes(serialization.Encoding.PEM)


class CertsServer:
    """Serves {kid: x509 PEM} with a Cache-Control max-age, like Google's securetoken endpoint."""

    def __init__(self, certs: dict[str, bytes]):
        self.hits = 0
        server = self
        body = json.dumps({kid: pem.decode() for kid, pem in certs.items()}).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600, must-revalidate")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/certs"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ToLoopback(transport.Request):
    """Sends every request to one loopback URL (where the signing certificates are served)."""

    def __init__(self, url: str):
        self.url = url
        self.inner = google.auth.transport.requests.Request()

    def __call__(self, url, method="GET", **kwargs):
        return self.inner(self.url, method=method, **kwargs)


@pytest.fixture(scope="module")
def signing():
    key_pem, cert_pem = _key_and_cert()
    other_key_pem, _ = _key_and_cert()
    server = CertsServer({"key-1": cert_pem})
    yield {"signer": crypt.RSASigner.from_string(key_pem, key_id="key-1"),
           "stranger": crypt.RSASigner.from_string(other_key_pem, key_id="key-1"),
           "server": server}
    server.stop()


def id_token(signer, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": f"https://securetoken.google.com/{PROJECT}", "aud": PROJECT, "sub": "firebase-user-1",
              "iat": now - 5, "exp": now + 3600, "auth_time": now - 5}
    claims.update(overrides)
    return jwt.encode(signer, claims).decode()


def firebase(signing) -> FirebaseTokens:
    return FirebaseTokens(PROJECT, CachingRequest(ToLoopback(signing["server"].url)))


def test_firebase_token_gives_its_subject(signing):
    assert firebase(signing).verify(id_token(signing["signer"])) == User("firebase-user-1")


@pytest.mark.parametrize("overrides", [
    {"aud": "another-project", "iss": "https://securetoken.google.com/another-project"},
    {"iss": "https://accounts.google.com"},
    {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
    {"sub": ""},
    {"sub": "a/b"},
    {"sub": ".."},          # the one uid rule (creations/uids.py): a Firestore id cannot be '..'
    {"sub": "x" * 129},
])
def test_firebase_token_rejections(signing, overrides):
    with pytest.raises(InvalidToken):
        firebase(signing).verify(id_token(signing["signer"], **overrides))


def test_firebase_token_signed_by_another_key_is_rejected(signing):
    with pytest.raises(InvalidToken):
        firebase(signing).verify(id_token(signing["stranger"]))


def test_signing_certificates_are_fetched_once_per_max_age(signing):
    verifier = firebase(signing)
    before = signing["server"].hits
    for _ in range(5):
        verifier.verify(id_token(signing["signer"]))
    assert signing["server"].hits == before + 1


def test_unreachable_certificates_are_unavailable_not_invalid():
    verifier = FirebaseTokens(PROJECT, ToLoopback("http://127.0.0.1:9/certs"))
    with pytest.raises(AuthUnavailable):
        verifier.verify("eyJhbGciOiJSUzI1NiJ9.e30.sig")


def test_firebase_mode_over_http(signing, tmp_path):
    settings = Settings(auth_mode="firebase", firebase_project_id=PROJECT)
    store = SqliteStore(tmp_path / "auth.sqlite3")
    store.grant("firebase-user-1", 7, "g1")
    app = create_app(settings, store=store, trigger=object(), storage=object(), verifier=firebase(signing))
    with TestClient(app) as client:
        ok = client.get("/v1/me", headers={"Authorization": f"Bearer {id_token(signing['signer'])}"})
        assert ok.status_code == 200
        assert ok.json() == {"uid": "firebase-user-1", "tokens": 7}
        bad = client.get("/v1/me", headers={"Authorization": f"Bearer {id_token(signing['stranger'])}"})
        assert bad.status_code == 401
        assert bad.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert bad.json()["error"]["code"] == "UNAUTHENTICATED"
        local = client.get(
            "/v1/me", headers={"Authorization": f"Bearer {make_local_token('u1', 'phoenix-local-dev-secret')}"}
        )
        assert local.status_code == 401  # local tokens are not accepted in firebase mode
    store.close()


def test_unreachable_signing_keys_answer_503_not_401(tmp_path):
    store = SqliteStore(tmp_path / "auth.sqlite3")
    app = create_app(Settings(auth_mode="firebase", firebase_project_id=PROJECT), store=store, trigger=object(),
                     storage=object(), verifier=FirebaseTokens(PROJECT, ToLoopback("http://127.0.0.1:9/certs")))
    with TestClient(app) as client:
        response = client.get("/v1/me", headers={"Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "AUTH_UNAVAILABLE"
    store.close()


def test_firebase_mode_needs_a_project():
    with pytest.raises(ValueError, match="PHOENIX_FIREBASE_PROJECT_ID"):
        create_app(Settings(auth_mode="firebase"), store=object(), trigger=object(), storage=object())
