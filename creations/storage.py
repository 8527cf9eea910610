"""Media storage on any S3 API: Cloudflare R2 in production, an S3 server on loopback locally.

Objects carry their size and SHA-256 as metadata (`x-amz-meta-sha256`, `x-amz-meta-bytes`), so a
step can check that a checkpoint still points at the bytes it produced without downloading them.
Every failure leaves as a StorageError: retryable for 5xx, throttling and connection problems,
not retryable for a missing key (code NOT_FOUND) or a request the service refuses.
"""
from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from .errors import StorageError

_CHUNK = 1024 * 1024
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys
_META_SHA256 = "sha256"
_META_BYTES = "bytes"
_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                   "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable"}


@dataclass(frozen=True)
class StoredObject:
    """What the store holds under `key`: size in bytes, hex SHA-256 and content type."""

    key: str
    bytes: int
    sha256: str
    content_type: str


class MediaStorage:
    """One bucket of media: staging objects per attempt, final objects per user and creation."""

    def __init__(self, client: Any, bucket: str, *, public_base_url: str | None, presign_ttl: int,
                 staging_prefix: str):
        if not bucket:
            raise ValueError("bucket must be a non-empty bucket name")
        if presign_ttl < 1:
            raise ValueError(f"presign_ttl must be at least 1 second, got {presign_ttl}")
        if not staging_prefix or not staging_prefix.endswith("/") or staging_prefix.startswith("/"):
            raise ValueError(f"staging_prefix must look like 'staging/', got {staging_prefix!r}")
        self._client = client
        self.bucket = bucket
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.presign_ttl = presign_ttl
        self.staging_prefix = staging_prefix

    @property
    def client(self) -> Any:
        """The boto3 S3 client (for bulk work such as backing up the bucket)."""
        return self._client

    @classmethod
    def from_settings(cls, settings: Any) -> MediaStorage:
        """A client for the configured endpoint: path-style addressing, region "auto" on R2."""
        import boto3
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            # R2 rejects the streaming CRC trailers boto3 adds by default since 1.36; only send a
            # checksum where the operation requires one (DeleteObjects).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            config=config,
        )
        return cls(client, settings.s3_bucket, public_base_url=settings.public_base_url,
                   presign_ttl=settings.presign_ttl_seconds, staging_prefix=settings.staging_prefix)

    # --- keys --------------------------------------------------------------------------------

    def staging_key(self, creation_id: str, attempt: int, name: str) -> str:
        """Where an attempt's intermediate media lives; deleted once the creation is final."""
        if not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt must be a positive integer, got {attempt!r}")
        return f"{self._staging_prefix_of(creation_id)}{attempt}/{_segment('name', name)}"

    def final_key(self, uid: str, creation_id: str, name: str) -> str:
        """Where a finished creation's public media lives."""
        return f"{self._final_prefix_of(uid, creation_id)}{_segment('name', name)}"

    def delete_creation_media(self, uid: str, creation_id: str) -> int:
        """Delete every object of a creation, published and staged; returns how many."""
        return (self.delete_prefix(self._final_prefix_of(uid, creation_id))
                + self.delete_prefix(self._staging_prefix_of(creation_id)))

    def _staging_prefix_of(self, creation_id: str) -> str:
        return f"{self.staging_prefix}{_segment('creation_id', creation_id)}/"

    @staticmethod
    def _final_prefix_of(uid: str, creation_id: str) -> str:
        return f"media/{_segment('uid', uid)}/{_segment('creation_id', creation_id)}/"

    # --- bucket ------------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (local stacks); a production bucket already exists."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _error_code(exc) not in _MISSING_CODES:
                raise _storage_error(exc, f"checking bucket {self.bucket}") from exc
        except (BotoCoreError, HTTPClientError) as exc:
            raise _storage_error(exc, f"checking bucket {self.bucket}") from exc
        region = self._client.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as exc:
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _storage_error(exc, f"creating bucket {self.bucket}") from exc
        except (BotoCoreError, HTTPClientError) as exc:
            raise _storage_error(exc, f"creating bucket {self.bucket}") from exc

    # --- objects -----------------------------------------------------------------------------

    def put_file(self, key: str, path: str | os.PathLike[str], content_type: str) -> StoredObject:
        """Upload a local file; size and SHA-256 are stored as object metadata too."""
        path = Path(path)
        if not path.is_file():
            raise StorageError(f"cannot upload {path}: no such file", code="NOT_FOUND",
                               retryable=False)
        sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        with path.open("rb") as fh:
            return self._put(key, fh, size, sha256.hexdigest(), md5.digest(), content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Upload bytes held in memory; size and SHA-256 are stored as object metadata too."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        return self._put(key, data, len(data), hashlib.sha256(data).hexdigest(),
                         hashlib.md5(data).digest(), content_type)

    def _put(self, key: str, body: bytes | BinaryIO, size: int, sha256: str, md5: bytes,
             content_type: str) -> StoredObject:
        _check_key(key)
        if not content_type or "/" not in content_type:
            raise ValueError(f"content_type must be a MIME type like 'image/png', got {content_type!r}")
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentLength=size,
                ContentType=content_type,
                # The store checks the body against this digest, so a truncated upload fails.
                ContentMD5=base64.b64encode(md5).decode("ascii"),
                Metadata={_META_SHA256: sha256, _META_BYTES: str(size)},
            )
        except (ClientError, BotoCoreError, HTTPClientError) as exc:
            raise _storage_error(exc, f"uploading {key}") from exc
        return StoredObject(key=key, bytes=size, sha256=sha256, content_type=content_type)

    def head(self, key: str) -> StoredObject | None:
        """The object's size, SHA-256 and type, or None if there is no such object."""
        _check_key(key)
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise _storage_error(exc, f"reading metadata of {key}") from exc
        except (BotoCoreError, HTTPClientError) as exc:
            raise _storage_error(exc, f"reading metadata of {key}") from exc
        return _stored_object(key, response)

    def download(self, key: str, path: str | os.PathLike[str]) -> StoredObject:
        """Write the object to `path` (atomically) and check it against its recorded SHA-256."""
        _check_key(key)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            raise _storage_error(exc, f"downloading {key}") from exc
        except (BotoCoreError, HTTPClientError) as exc:
            raise _storage_error(exc, f"downloading {key}") from exc
        expected = _stored_object(key, response)
        digest, size = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                body = response["Body"]
                try:
                    for chunk in iter(lambda: body.read(_CHUNK), b""):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                finally:
                    body.close()
            actual = digest.hexdigest()
            if expected.sha256 and actual != expected.sha256:
                raise StorageError(
                    f"downloaded {key} does not match its recorded SHA-256 "
                    f"({actual} != {expected.sha256}); download it again",
                    code="CHECKSUM_MISMATCH", retryable=True)
            os.chmod(tmp_name, 0o644)  # mkstemp makes files private; media is not
            os.replace(tmp_name, path)
        except (BotoCoreError, HTTPClientError) as exc:
            raise _storage_error(exc, f"downloading {key}") from exc
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return StoredObject(key=key, bytes=size, sha256=digest.hexdigest(),
                            content_type=expected.content_type)

    def copy(self, src_key: str, dst_key: str) -> StoredObject:
        """Server-side copy that keeps content type and metadata (no bytes pass through here)."""
        _check_key(src_key)
        _check_key(dst_key)
        try:
            self._client.copy_object(
                Bucket=self.bucket, Key=dst_key,
                CopySource={"Bucket": self.bucket, "Key": src_key},
                MetadataDirective="COPY",
            )
        except ClientError as exc:
            raise _storage_error(exc, f"copying {src_key} to {dst_key}") from exc
        except (BotoCoreError, HTTPClientError) as exc:
            raise _storage_error(exc, f"copying {src_key} to {dst_key}") from exc
        stored = self.head(dst_key)
        if stored is None:  # deleted between the copy and the head: let the caller retry
            raise StorageError(f"{dst_key} vanished right after being copied", retryable=True)
        return stored

    def url(self, key: str) -> str:
        """The public URL under public_base_url, or a presigned GET valid for presign_ttl seconds."""
        _check_key(key)
        if self.public_base_url:
            return f"{self.public_base_url}/{quote(key)}"
        try:
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.presign_ttl)
        except (BotoCoreError, ClientError) as exc:
            raise _storage_error(exc, f"signing a URL for {key}") from exc

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix`; returns how many were deleted."""
        if not prefix or not prefix.endswith("/"):
            # An empty or partial prefix could match other creations' media (e.g. "media/u1"
            # also matches "media/u10/...").
            raise ValueError(f"prefix must be non-empty and end with '/', got {prefix!r}")
        deleted = 0
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                for start in range(0, len(keys), _DELETE_BATCH):
                    batch = keys[start:start + _DELETE_BATCH]
                    response = self._client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                    errors = response.get("Errors") or []
                    if errors:
                        first = errors[0]
                        raise StorageError(
                            f"could not delete {len(errors)} object(s) under {prefix}, e.g. "
                            f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}",
                            retryable=True)
                    deleted += len(batch)
        except ClientError as exc:
            raise _storage_error(exc, f"deleting {prefix}") from exc
        except (BotoCoreError, HTTPClientError) as exc:
            raise _storage_error(exc, f"deleting {prefix}") from exc
        return deleted


def _segment(field: str, value: str) -> str:
    """One path segment of a key: refuse values that would escape their folder."""
    if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
        raise ValueError(f"{field} must be a non-empty string without '/', got {value!r}")
    return value


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or key.startswith("/") or len(key.encode()) > 1024:
        raise ValueError(f"object key must be 1-1024 bytes and not start with '/', got {key!r}")


def _stored_object(key: str, response: dict[str, Any]) -> StoredObject:
    metadata = {k.lower(): v for k, v in (response.get("Metadata") or {}).items()}
    return StoredObject(
        key=key,
        bytes=int(response.get("ContentLength", metadata.get(_META_BYTES, 0))),
        sha256=metadata.get(_META_SHA256, ""),
        content_type=response.get("ContentType", "application/octet-stream"),
    )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _storage_error(exc: Exception, doing: str) -> StorageError:
    """Classify a botocore failure: what the caller may retry and what it may not."""
    if isinstance(exc, ClientError):
        code, status = _error_code(exc), _status(exc)
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        if code in _MISSING_CODES or status == 404:
            return StorageError(f"{doing}: no such object ({code or status})", code="NOT_FOUND",
                                retryable=False)
        if status >= 500 or status == 429 or code in _THROTTLE_CODES:
            return StorageError(f"{doing}: storage answered {status} {code}: {message}",
                                retryable=True)
        return StorageError(
            f"{doing}: storage refused the request ({status} {code}: {message}); check the "
            "bucket name, credentials and endpoint", code="STORAGE_REJECTED", retryable=False)
    if isinstance(exc, (NoCredentialsError, ParamValidationError)):
        return StorageError(f"{doing}: {exc}", code="STORAGE_REJECTED", retryable=False)
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return StorageError(f"{doing}: could not reach storage: {exc}", retryable=True)
    return StorageError(f"{doing}: {exc}", retryable=True)
