"""Every bad input gets a clean 4xx, nothing is debited, and nothing is stored that cannot be read.

Driven through HTTP against the API on uvicorn (tests/api's fixtures): bodies are sent as raw
bytes where JSON escapes matter ("\\ud800" is valid JSON text for a lone surrogate).
"""
from __future__ import annotations

import json
import socket
import uuid

import pytest
from api_stack import UvicornThread, api_settings

from api.main import create_app
from creations.model import Creation, CreationType
from creations.store.sqlite import SqliteStore

JSON = {"Content-Type": "application/json"}


def post_raw(client, body: bytes | str, **headers):
    data = body.encode() if isinstance(body, str) else body
    return client.post("/v1/creations", content=data, headers={**JSON, **headers})


def assert_nothing_taken(api, user, balance: int = 100):
    assert api.store.balance(user.uid) == balance
    listed = user.get("/v1/creations")
    assert listed.status_code == 200 and listed.json()["items"] == []


# --- text that is not text --------------------------------------------------------------------

BAD_TEXT_BODIES = {
    "lone surrogate in the prompt": ('{"type":"image","prompt":"a cat \\ud800"}', "prompt"),
    "low surrogate alone in the prompt": ('{"type":"image","prompt":"\\udc00 dog"}', "prompt"),
    "NUL in the prompt": ('{"type":"image","prompt":"a cat\\u0000"}', "prompt"),
    "lone surrogate in negativePrompt": (
        '{"type":"video","prompt":"waves","options":{"negativePrompt":"rain \\ud83d"}}', "options.negativePrompt"),
    "NUL in negativePrompt": (
        '{"type":"video","prompt":"waves","options":{"negativePrompt":"rain\\u0000"}}', "options.negativePrompt"),
    "lone surrogate in an option key": ('{"type":"image","prompt":"a cat","options":{"\\ud800":"1:1"}}',
                                       "options.\ufffd"),
    "lone surrogate in an option value": (
        '{"type":"image","prompt":"a cat","options":{"aspectRatio":"1:1\\udfff"}}', "options.aspectRatio"),
    "lone surrogate nested in an option value": (
        '{"type":"image","prompt":"a cat","options":{"aspectRatio":{"x":["\\ud800"]}}}', "options.aspectRatio"),
}


@pytest.mark.parametrize("case", list(BAD_TEXT_BODIES))
def test_text_that_is_not_valid_unicode_is_422_and_nothing_is_debited(api, case):
    body, field = BAD_TEXT_BODIES[case]
    with api.user() as user:
        response = post_raw(user, body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "INVALID_REQUEST"
        assert field in response.json()["error"]["fields"]
        response.content.decode("utf-8")  # the answer itself is valid UTF-8
        assert_nothing_taken(api, user)


@pytest.mark.parametrize("case", list(BAD_TEXT_BODIES))
def test_bad_text_with_an_idempotency_key_is_422_too(api, case):
    body, _ = BAD_TEXT_BODIES[case]
    with api.user() as user:
        response = post_raw(user, body, **{"Idempotency-Key": f"k-{uuid.uuid4().hex}"})
        assert response.status_code == 422, response.text
        assert_nothing_taken(api, user)


@pytest.mark.parametrize("key", [
    "caf\u00e9".encode("latin-1"),      # not ASCII
    "ключ".encode(),
    b"has space",
    b"x" * 256,
])
def test_a_bad_idempotency_key_is_422_and_nothing_is_debited(api, key):
    with api.user() as user:
        response = user.post("/v1/creations", json={"type": "image", "prompt": "a cat"},
                             headers={"Idempotency-Key": key})
        assert response.status_code == 422, response.text
        assert "Idempotency-Key" in response.json()["error"]["fields"]
        assert_nothing_taken(api, user)


def test_a_nul_in_a_header_is_refused_by_the_server_as_400(api):
    answer = _raw_exchange(api.url, b"GET /v1/me HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\x00b\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("query", ["pageToken=%00", "pageToken=%ED%A0%80", "pageToken=" + "A" * 2000,
                                   "status=%ED%A0%80", "limit=%00"])
def test_odd_query_values_are_422(api, query):
    with api.user() as user:
        response = user.get(f"/v1/creations?{query}")
        assert response.status_code == 422, response.text


@pytest.mark.parametrize("path", ["/v1/creations/%ED%A0%80", "/v1/creations/%00", "/v1/creations/..",
                                  "/v1/creations/" + "a" * 5000])
def test_odd_creation_ids_are_404(api, path):
    with api.user() as user:
        assert user.get(path).status_code == 404
        assert user.delete(path).status_code == 404


# --- stored before the checks: still readable ---------------------------------------------------


def test_a_draft_stored_with_a_lone_surrogate_stays_readable(api):
    with api.user() as user:
        creation = Creation(id=Creation.new_id(), uid=user.uid, type=CreationType.VIDEO, prompt="a cat \ud800",
                            options={"aspectRatio": "16:9", "negativePrompt": "rain \udc00"}, cost=1)
        api.store.create_with_debit(creation, idempotency_key=None, request_hash=None, max_active=10)

        one = user.get(f"/v1/creations/{creation.id}")
        assert one.status_code == 200, one.text
        assert one.json()["prompt"] == "a cat \ufffd"
        assert one.json()["options"]["negativePrompt"] == "rain \ufffd"
        listed = user.get("/v1/creations")
        assert listed.status_code == 200
        assert [item["prompt"] for item in listed.json()["items"]] == ["a cat \ufffd"]


# --- authentication before the body, and the body's bounds ---------------------------------------


def test_an_unauthenticated_request_is_401_before_its_body_is_parsed(api):
    with api.user() as user:
        response = user.post("/v1/creations", content=b"{not json", headers={**JSON, "Authorization": "Bearer x"})
        assert response.status_code == 401


def test_an_unauthenticated_request_is_answered_without_waiting_for_its_body(api):
    # Headers announce 1 MB; no byte of it is sent. The answer must come from the headers alone.
    answer = _raw_exchange(api.url, b"POST /v1/creations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Content-Length: 1000000\r\n\r\n", timeout=5)
    assert answer.startswith(b"HTTP/1.1 401")


def test_a_body_over_the_limit_is_413_and_nothing_is_debited(api):
    keys = ",".join(f'"unknown{n}":1' for n in range(250_000))  # ~3.5 MB of unknown option keys
    body = f'{{"type":"image","prompt":"a cat","options":{{{keys}}}}}'
    assert len(body) > 3_500_000
    with api.user() as user:
        response = post_raw(user, body)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert len(response.content) < 1000
        assert_nothing_taken(api, user)


def test_a_chunked_body_over_the_limit_is_413(api):
    with api.user() as user:
        chunks = (b'{"type":"image","prompt":"' + b"a" * 8192 for _ in range(20))  # no Content-Length
        response = user.post("/v1/creations", content=chunks, headers=JSON)
        assert response.status_code == 413
        assert_nothing_taken(api, user)


@pytest.mark.parametrize("where", ["options", "top level"])
def test_a_422_for_thousands_of_bad_fields_is_bounded(api, where):
    many = ",".join(f'"unknown{n}":1' for n in range(4000))  # ~60 kB, under the body limit
    body = (f'{{"type":"image","prompt":"a cat","options":{{{many}}}}}' if where == "options"
            else f'{{"type":"image","prompt":"a cat",{many}}}')
    with api.user() as user:
        response = post_raw(user, body)
        assert response.status_code == 422
        error = response.json()["error"]
        assert 0 < len(error["fields"]) <= 20
        assert "4000 problems" in error["message"]
        assert len(response.content) < 16 * 1024
        assert_nothing_taken(api, user)


# --- slow clients --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient_api(tmp_path_factory, s3, executions):
    """The API with short header, body and keep-alive deadlines (the defaults are 10, 20 and 5 s)."""
    settings = api_settings(tmp_path_factory.mktemp("impatient"), s3, local_engine_url=executions.url,
                            header_timeout_seconds=0.5, body_timeout_seconds=0.5, keep_alive_seconds=1)
    store = SqliteStore(settings.sqlite_path)
    server = UvicornThread(create_app(settings, store=store, storage=None)).start()
    yield server.url, settings
    server.stop()
    store.close()


def _connect(url: str, timeout: float) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def _raw_exchange(url: str, request: bytes, *, timeout: float = 10) -> bytes:
    with _connect(url, timeout) as sock:
        sock.sendall(request)
        return sock.recv(65536)


def _closed_by_server(sock: socket.socket) -> bytes:
    """What the server sent before closing; raises socket.timeout if it keeps the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_a_connection_that_sends_nothing_is_closed(impatient_api):
    url, _ = impatient_api
    with _connect(url, timeout=5) as sock:
        assert _closed_by_server(sock) == b""


def test_headers_sent_too_slowly_close_the_connection(impatient_api):
    url, _ = impatient_api
    with _connect(url, timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
        assert _closed_by_server(sock) == b""


def test_a_body_sent_too_slowly_is_408(impatient_api):
    url, settings = impatient_api
    from api.auth import make_local_token

    token = make_local_token("slow-client", settings.local_auth_secret)
    with _connect(url, timeout=5) as sock:
        sock.sendall(b"POST /v1/creations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 100\r\n\r\n{\"type\"")
        answer = _closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "REQUEST_TIMEOUT"


def test_an_idle_keep_alive_connection_is_closed_and_a_slow_second_request_too(impatient_api):
    url, _ = impatient_api
    with _connect(url, timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /hea")  # a second request that never completes
        assert _closed_by_server(sock) == b""
