"""The S3 stand-in with write-through storage: moto's S3 server, every change also written to a
directory before the request is answered, and everything loaded back from it at start.

    python -m localcloud.s3durable --host 127.0.0.1 --port 9000 --data-dir DIR

Layout: a bucket is the folder `DIR/<bucket>`, an object the file `DIR/<bucket>/<key>` and its
content type and user metadata `DIR/.meta/<bucket>/<key>.json`. Files are replaced atomically
(written aside, then renamed), so a crash leaves each object either old or new, never half
written; an answered PUT is in the directory, so killing the server loses nothing it confirmed
(the page cache survives a process kill; files are not fsync'ed against power loss).

What is written through: buckets created and deleted, objects put (PutObject, CopyObject,
CompleteMultipartUpload) and deleted (DeleteObject, DeleteObjects). Path-style addressing only.
The server exits when the process that started it is gone, so a killed stack leaves no orphan.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import sys
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

META = ".meta"
TMP = ".tmp"
_RESERVED = (META, TMP)
# moto routes a request to a service by the credential scope of its signature.
_S3_AUTH = "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"


class DiskMirror:
    """The directory side: write, remove and list objects as files."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.root / TMP, ignore_errors=True)   # leftovers of a write cut short
        (self.root / TMP).mkdir()

    def _object_path(self, bucket: str, key: str) -> Path | None:
        parts = Path(key).parts
        if not key or ".." in parts or key.startswith("/") or key.endswith("/") or bucket in _RESERVED:
            return None          # never written outside the directory; "folder" markers are not files
        return self.root / bucket / key

    def _meta_path(self, bucket: str, key: str) -> Path:
        return self.root / META / bucket / f"{key}.json"

    def _replace(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / TMP / uuid.uuid4().hex
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def put(self, bucket: str, key: str, body: bytes, content_type: str | None, metadata: dict[str, str]) -> None:
        path = self._object_path(bucket, key)
        if path is None:
            return
        self._replace(self._meta_path(bucket, key),
                      json.dumps({"ContentType": content_type, "Metadata": metadata}).encode())
        self._replace(path, body)

    def delete(self, bucket: str, key: str) -> None:
        path = self._object_path(bucket, key)
        if path is None:
            return
        path.unlink(missing_ok=True)
        self._meta_path(bucket, key).unlink(missing_ok=True)

    def create_bucket(self, bucket: str) -> None:
        if bucket not in _RESERVED:
            (self.root / bucket).mkdir(parents=True, exist_ok=True)

    def delete_bucket(self, bucket: str) -> None:
        if bucket not in _RESERVED:
            shutil.rmtree(self.root / bucket, ignore_errors=True)
            shutil.rmtree(self.root / META / bucket, ignore_errors=True)

    def buckets(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name not in _RESERVED)

    def objects(self, bucket: str) -> Iterable[tuple[str, bytes, dict[str, Any]]]:
        base = self.root / bucket
        for path in sorted(base.rglob("*")):
            if not path.is_file():
                continue
            key = path.relative_to(base).as_posix()
            meta_path = self._meta_path(bucket, key)
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            yield key, path.read_bytes(), meta


class WriteThrough:
    """WSGI middleware around moto's app: after a change succeeds, mirror it to the disk, then
    answer. Changes to one key are serialized, so the disk holds the last answered write."""

    def __init__(self, app: Callable, mirror: DiskMirror):
        self.app = app
        self.mirror = mirror
        self._locks = [threading.Lock() for _ in range(64)]

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if method in ("GET", "HEAD") or path.startswith("/moto-api"):
            return self.app(environ, start_response)
        bucket, _, key = urllib.parse.unquote(path.lstrip("/")).partition("/")
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        body = b""
        if method == "POST" and "delete" in query:          # DeleteObjects names its keys in the body
            body = _read_body(environ)
        with self._locks[hash((bucket, key)) % len(self._locks)]:
            status, headers, chunks = self._call(environ)
            if status < 300 and bucket:
                self._mirror(method, bucket, key, query, body)
        start_response(f"{status} {_reason(status)}", headers)
        return chunks

    def _call(self, environ: dict) -> tuple[int, list, list[bytes]]:
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list, exc_info: Any = None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        result = self.app(environ, start_response)
        try:
            chunks = list(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return int(captured["status"].split()[0]), captured["headers"], chunks

    def _mirror(self, method: str, bucket: str, key: str, query: dict, body: bytes) -> None:
        if not key:
            if method == "PUT" and not query:
                self.mirror.create_bucket(bucket)
            elif method == "DELETE" and not query:
                self.mirror.delete_bucket(bucket)
            elif method == "POST" and "delete" in query:
                for deleted in _keys_to_delete(body):
                    self.mirror.delete(bucket, deleted)
            return
        if method == "DELETE" and not query:
            self.mirror.delete(bucket, key)
        elif (method == "PUT" and not query) or (method == "POST" and "uploadId" in query):
            self._copy_to_disk(bucket, key)

    def _copy_to_disk(self, bucket: str, key: str) -> None:
        """Read the object back from moto (a GET through the same app) and write it."""
        path = "/" + urllib.parse.quote(f"{bucket}/{key}")
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
                   "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
                   "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_AUTHORIZATION": _S3_AUTH,
                   "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http",
                   "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False,
                   "wsgi.run_once": False, "CONTENT_LENGTH": "0"}
        status, headers, chunks = self._call(environ)
        if status != 200:
            return           # gone meanwhile (a delete raced the put): the delete mirrors it
        content_type = None
        metadata: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower == "content-type":
                content_type = value
            elif lower.startswith("x-amz-meta-"):
                metadata[lower[len("x-amz-meta-"):]] = value
        self.mirror.put(bucket, key, b"".join(chunks), content_type, metadata)

    def restore(self) -> int:
        """Load every bucket and object of the directory into moto (through the app, not mirrored
        again); returns how many objects."""
        from werkzeug.test import Client

        client = Client(self.app)
        headers = {"Authorization": _S3_AUTH, "Host": "127.0.0.1"}
        count = 0
        for bucket in self.mirror.buckets():
            client.put(f"/{bucket}", headers=headers)
            for key, data, meta in self.mirror.objects(bucket):
                object_headers = dict(headers)
                object_headers["Content-Type"] = meta.get("ContentType") or "application/octet-stream"
                for name, value in (meta.get("Metadata") or {}).items():
                    object_headers[f"x-amz-meta-{name}"] = value
                response = client.put("/" + urllib.parse.quote(f"{bucket}/{key}"), data=data, headers=object_headers)
                if response.status_code >= 300:
                    raise RuntimeError(f"could not load {bucket}/{key} back: HTTP {response.status_code}")
                count += 1
        return count


def _read_body(environ: dict) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _keys_to_delete(body: bytes) -> list[str]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return []
    return [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key"]


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _exit_with_parent(parent: int) -> None:
    """The stand-in lives in its own process group (a Ctrl-C to the stack's group does not stop
    it before the stack has finished with it) and ends when the process that started it ends."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.s3durable")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    import logging

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    _exit_with_parent(os.getppid())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = WriteThrough(DomainDispatcherApplication(create_backend_app), DiskMirror(args.data_dir))
    app.restore()
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
