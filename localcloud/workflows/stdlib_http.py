"""`http.*` of the standard library: real HTTP requests with httpx.

A request returns `{body, code, headers}`; a JSON response (Content-Type application/json or
`+json`) comes back decoded, a text response as a string, anything else as bytes. Failures are
raised as the language's errors, so `try/except` and `retry` policies see what Cloud
Workflows would raise:

- HTTP status >= 400: `HttpError` with `code`, `message`, `headers`, `body`;
- the connection could not be made: `ConnectionFailedError` (nothing was sent: safe to retry);
- the connection broke during the exchange: `ConnectionError` (the request may have arrived);
- the `timeout` (seconds, default 300, at most 1800) ran out: `TimeoutError`.

`auth` (OIDC / OAuth2) is validated and accepted but no token is attached locally; a log line
says so once per call.
"""
from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from localcloud.workflows import limits
from localcloud.workflows import values as V
from localcloud.workflows.errors import (
    WorkflowError,
    resource_limit_error,
    type_error,
    value_error,
)

DEFAULT_TIMEOUT = 300.0
MAX_TIMEOUT = 1800.0
MAX_RESPONSE_BYTES = limits.HTTP_RESPONSE_BYTES
USER_AGENT = "GoogleCloudWorkflows; (+https://cloud.google.com/workflows/docs)"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
AUTH_TYPES = ("OIDC", "OAuth2")

if TYPE_CHECKING:
    import httpx

# httpx is imported by the first request: a workflow that makes none (and the CLI checking or
# running it) does not pay for it.
_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _http_client() -> httpx.Client:
    """One pooled client for the process (httpx clients are thread-safe). Proxy settings from
    the environment are ignored so that loopback services are always reached directly."""
    global _client
    if _client is None:
        import httpx

        with _client_lock:
            if _client is None:
                _client = httpx.Client(follow_redirects=True, trust_env=False)
    return _client


def _error(tag: str, message: str, **extra: Any) -> WorkflowError:
    return WorkflowError.tagged(tag, message, **extra)


# --- request building --------------------------------------------------------------------------

def _scalar_text(fn: str, what: str, value: Any) -> str:
    if type(value) in (str, int, float, bool):
        return V.to_text(value, fn)
    raise type_error(f"{fn}: {what} values must be strings, numbers or booleans, "
                     f"got {V.type_name(value)}")


def _url_with_query(fn: str, url: str, query: Any) -> str:
    if query is None:
        return url
    if type(query) is not dict:
        raise type_error(f"{fn}: argument 'query' must be a map, got {V.type_name(query)}")
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if type(value) is list:
            pairs.extend((key, _scalar_text(fn, "query", v)) for v in value)
        else:
            pairs.append((key, _scalar_text(fn, "query", value)))
    if not pairs:
        return url
    parts = urlsplit(url)
    extra = urlencode(pairs)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _request_headers(fn: str, headers: Any) -> dict[str, str]:
    if headers is None:
        return {"User-Agent": USER_AGENT}
    if type(headers) is not dict:
        raise type_error(f"{fn}: argument 'headers' must be a map, got {V.type_name(headers)}")
    out = {k: _scalar_text(fn, "header", v) for k, v in headers.items()}
    for name in out:
        if name.lower() == "user-agent":
            out[name] = f"{out[name]} {USER_AGENT}"
            break
    else:
        out["User-Agent"] = USER_AGENT
    return out


def _content_type(headers: dict[str, str]) -> tuple[str | None, str | None]:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return name, value
    return None, None


def _request_body(fn: str, body: Any, headers: dict[str, str]) -> bytes | None:
    """Bytes go as they are; a string goes as UTF-8 text when a non-JSON Content-Type is set;
    a map with Content-Type application/x-www-form-urlencoded is form-encoded; everything
    else is sent as JSON (Content-Type application/json unless one is set)."""
    if body is None:
        return None
    name, ctype = _content_type(headers)
    media = (ctype or "").split(";")[0].strip().lower()
    if type(body) is bytes:
        if name is None:
            headers["Content-Type"] = "application/octet-stream"
        return body
    if media == "application/x-www-form-urlencoded" and type(body) is dict:
        return urlencode({k: _scalar_text(fn, "form", v) for k, v in body.items()}).encode()
    if type(body) is str and media and media != "application/json" and not media.endswith("+json"):
        return body.encode("utf-8")
    if name is None:
        headers["Content-Type"] = "application/json"
    return V.json_dumps(body, fn).encode("utf-8")


def _timeout_seconds(fn: str, timeout: Any) -> float:
    if timeout is None:
        return DEFAULT_TIMEOUT
    if type(timeout) is not int and type(timeout) is not float:
        raise type_error(f"{fn}: argument 'timeout' must be a number of seconds, "
                         f"got {V.type_name(timeout)}")
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise value_error(f"{fn}: timeout must be more than 0 and at most {MAX_TIMEOUT:g} "
                          f"seconds, got {timeout}")
    return float(timeout)


def _check_auth(fn: str, url: str, auth: Any) -> None:
    if auth is None:
        return
    if type(auth) is not dict:
        raise type_error(f"{fn}: argument 'auth' must be a map, got {V.type_name(auth)}")
    if auth.get("type") not in AUTH_TYPES:
        raise value_error(f"{fn}: auth type must be one of {', '.join(AUTH_TYPES)}, "
                          f"got {auth.get('type')!r}")
    import logging

    logging.getLogger(__name__).info(
        "%s %s: auth type %s accepted; no token is attached by the local engine", fn, url, auth["type"])


# --- response decoding -------------------------------------------------------------------------

def _response_headers(response: httpx.Response) -> dict[str, str]:
    """Header names as the server sent them; repeated headers joined with ', '."""
    out: dict[str, str] = {}
    lower_to_name: dict[str, str] = {}
    for raw_name, raw_value in response.headers.raw:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        key = lower_to_name.setdefault(name.lower(), name)
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _decode_text(response: httpx.Response, content: bytes) -> str:
    try:
        return content.decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return content.decode("utf-8", errors="replace")


def _response_body(response: httpx.Response, content: bytes) -> Any:
    ctype = response.headers.get("content-type", "")
    media = ctype.split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        if not content.strip():
            return None
        text = _decode_text(response, content)
        try:
            return V.json_loads(text)
        except ValueError:
            return text
    if media.startswith("text/") or "charset=" in ctype.lower():
        return _decode_text(response, content)
    return content if content else None


def _read_limited(response: httpx.Response, fn: str, url: str) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise resource_limit_error(f"{fn} {url}: response exceeds the "
                                       f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MB limit")
        chunks.append(chunk)
    return b"".join(chunks)


# --- the call ----------------------------------------------------------------------------------

def _perform(ctx: Any, fn: str, method: str, url: Any, timeout: Any, body: Any, headers: Any,
             query: Any, auth: Any) -> dict[str, Any]:
    if type(url) is not str:
        raise type_error(f"{fn}: argument 'url' must be a string, got {V.type_name(url)}")
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise value_error(f"{fn}: url must be an http:// or https:// URL, got {url!r}")
    seconds = _timeout_seconds(fn, timeout)
    request_headers = _request_headers(fn, headers)
    content = _request_body(fn, body, request_headers)
    full_url = _url_with_query(fn, url, query)
    _check_auth(fn, url, auth)
    ctx.check_cancelled()
    import httpx

    try:
        with _http_client().stream(method, full_url, headers=request_headers, content=content,
                                   timeout=httpx.Timeout(seconds)) as response:
            raw = _read_limited(response, fn, url)
    except httpx.TimeoutException as exc:
        raise _error("TimeoutError", f"{method} {url}: timed out after {seconds:g} s "
                     f"({type(exc).__name__})") from None
    except httpx.ConnectError as exc:
        raise _error("ConnectionFailedError", f"{method} {url}: could not connect: "
                     f"{exc}") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise value_error(f"{fn}: invalid url {url!r}: {exc}") from None
    except (httpx.TransportError, httpx.TooManyRedirects) as exc:
        raise _error("ConnectionError", f"{method} {url}: connection broken during the "
                     f"exchange: {str(exc) or type(exc).__name__}") from None
    result_headers = _response_headers(response)
    result_body = _response_body(response, raw)
    code = response.status_code
    if code >= 400:
        raise WorkflowError({
            "message": f"HTTP server responded with error code {code}",
            "code": code,
            "tags": ["HttpError"],
            "headers": result_headers,
            "body": result_body,
        })
    return {"body": result_body, "code": code, "headers": result_headers}


def http_get(ctx, url, timeout=None, headers=None, query=None, auth=None,
             private_service_name=None, ca_certificate=None):
    return _perform(ctx, "http.get", "GET", url, timeout, None, headers, query, auth)


def http_post(ctx, url, timeout=None, body=None, headers=None, query=None, auth=None,
              private_service_name=None, ca_certificate=None):
    return _perform(ctx, "http.post", "POST", url, timeout, body, headers, query, auth)


def http_put(ctx, url, timeout=None, body=None, headers=None, query=None, auth=None,
             private_service_name=None, ca_certificate=None):
    return _perform(ctx, "http.put", "PUT", url, timeout, body, headers, query, auth)


def http_patch(ctx, url, timeout=None, body=None, headers=None, query=None, auth=None,
               private_service_name=None, ca_certificate=None):
    return _perform(ctx, "http.patch", "PATCH", url, timeout, body, headers, query, auth)


def http_delete(ctx, url, timeout=None, body=None, headers=None, query=None, auth=None,
                private_service_name=None, ca_certificate=None):
    return _perform(ctx, "http.delete", "DELETE", url, timeout, body, headers, query, auth)


def http_request(ctx, method, url, timeout=None, body=None, headers=None, query=None,
                 auth=None, private_service_name=None, ca_certificate=None):
    if type(method) is not str:
        raise type_error(f"http.request: argument 'method' must be a string, "
                         f"got {V.type_name(method)}")
    if method.upper() not in METHODS:
        raise value_error(f"http.request: method must be one of {', '.join(METHODS)}, "
                          f"got {method!r}")
    return _perform(ctx, "http.request", method.upper(), url, timeout, body, headers, query,
                    auth)


HTTP_FUNCTIONS = {
    "http.get": http_get,
    "http.post": http_post,
    "http.put": http_put,
    "http.patch": http_patch,
    "http.delete": http_delete,
    "http.request": http_request,
}
