"""The edge of the API, before any route runs (a pure ASGI middleware).

For every request under /v1 the bearer token is checked FIRST, from the headers alone: an
unauthenticated caller cannot make the server read, parse or validate a body. Then the body is
read in full, within `max_body_bytes` (413 beyond) and `body_timeout_seconds` (408 when the
client sends it too slowly), and handed to the app from memory. Routes never see a partial body.
"""
from __future__ import annotations

import anyio

from creations.settings import is_loopback

from .auth import LocalTokens
from .deps import USER_SCOPE_KEY, authenticate, unauthenticated
from .errors import ApiError, error_response

_PROTECTED = "/v1"


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class RequestEdge:
    def __init__(self, app, *, max_body_bytes: int, body_timeout_seconds: float):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == _PROTECTED or path.startswith(_PROTECTED + "/"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            verifier = scope["app"].state.verifier
            try:
                if isinstance(verifier, LocalTokens) and not _reached_over_loopback(scope):
                    raise unauthenticated("local tokens are accepted on loopback only", invalid=True)
                scope[USER_SCOPE_KEY] = await authenticate(verifier, headers.get("authorization"))
            except ApiError as exc:
                await _answer(scope, receive, send, exc.status, exc.code, exc.message, exc.headers)
                return
        try:
            body = await self._read_body(scope, receive)
        except _TooLarge:
            await _answer(scope, receive, send, 413, "PAYLOAD_TOO_LARGE",
                          f"the request body is larger than {self.max_body_bytes} bytes")
            return
        except TimeoutError:
            await _answer(scope, receive, send, 408, "REQUEST_TIMEOUT",
                          f"the request body did not arrive within {self.body_timeout_seconds:g} seconds")
            return
        except _Disconnected:
            return

        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    async def _read_body(self, scope, receive) -> bytes:
        for name, value in scope.get("headers", ()):
            if name.lower() == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        raise _TooLarge
                except ValueError:
                    pass  # the server refuses a malformed Content-Length before we see it
        chunks: list[bytes] = []
        size = 0
        with anyio.fail_after(self.body_timeout_seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise _TooLarge
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)


def _reached_over_loopback(scope) -> bool:
    """Whether the connection came in on a loopback address. The server's own socket address,
    which no header can change; a server that cannot tell (a Unix socket, an in-process test
    client) is local by construction. Backs the start-time refusal when the app cannot know where
    it listens (`uvicorn api.main:app --host 0.0.0.0`)."""
    import ipaddress

    server = scope.get("server")
    if not server:
        return True
    try:
        ipaddress.ip_address(str(server[0]).strip("[]"))
    except ValueError:
        return True  # not an address: no network listener (e.g. the in-process test client)
    return is_loopback(str(server[0]))


async def _answer(scope, receive, send, status: int, code: str, message: str,
                  headers: dict[str, str] | None = None) -> None:
    # The body (if any) is left unread: the connection is closed after this answer.
    response = error_response(status, code, message, headers={**(headers or {}), "Connection": "close"})
    await response(scope, receive, send)
