"""MediaStorage against the S3 stand-in on loopback: the same boto3 code path as R2."""
from __future__ import annotations

import hashlib
import socket

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from creations.errors import StorageError
from creations.storage import MediaStorage, StoredObject, _storage_error
from tests.support.s3server import storage_settings, unique_bucket

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def test_put_bytes_records_type_size_and_sha256(media_storage: MediaStorage):
    key = media_storage.staging_key("c1", 1, "original.png")

    stored = media_storage.put_bytes(key, PNG_BYTES, "image/png")

    expected = StoredObject(key=key, bytes=len(PNG_BYTES),
                            sha256=hashlib.sha256(PNG_BYTES).hexdigest(), content_type="image/png")
    assert stored == expected
    assert media_storage.head(key) == expected
    # The digest is on the object itself, for anyone reading it with a plain S3 client.
    raw = media_storage._client.head_object(Bucket=media_storage.bucket, Key=key)
    assert raw["Metadata"] == {"sha256": expected.sha256, "bytes": str(len(PNG_BYTES))}
    assert raw["ContentType"] == "image/png"


def test_put_file_then_download_round_trips(media_storage: MediaStorage, tmp_path):
    src = tmp_path / "clip.mp4"
    src.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"v" * 300_000)
    key = media_storage.staging_key("c2", 3, "original.mp4")

    stored = media_storage.put_file(key, src, "video/mp4")
    fetched = media_storage.download(key, tmp_path / "out" / "clip.mp4")

    assert (tmp_path / "out" / "clip.mp4").read_bytes() == src.read_bytes()
    assert stored.sha256 == fetched.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert fetched.bytes == stored.bytes == src.stat().st_size
    assert fetched.content_type == "video/mp4"


def test_head_of_a_missing_key_is_none(media_storage: MediaStorage):
    assert media_storage.head("staging/nope/1/original.png") is None


def test_download_of_a_missing_key_is_not_found_and_not_retryable(media_storage, tmp_path):
    with pytest.raises(StorageError) as caught:
        media_storage.download("staging/nope/1/original.png", tmp_path / "x.png")

    assert caught.value.code == "NOT_FOUND"
    assert caught.value.retryable is False
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_download_refuses_bytes_that_do_not_match_the_recorded_digest(media_storage, tmp_path):
    key = "staging/c9/1/original.png"
    # Written by another tool with a wrong digest: the download must not pass it on as valid.
    media_storage._client.put_object(Bucket=media_storage.bucket, Key=key, Body=b"abc",
                                     ContentType="image/png", Metadata={"sha256": "0" * 64})
    with pytest.raises(StorageError) as caught:
        media_storage.download(key, tmp_path / "x.png")
    assert caught.value.code == "CHECKSUM_MISMATCH"
    assert not (tmp_path / "x.png").exists()


def test_copy_is_server_side_and_keeps_type_and_metadata(media_storage: MediaStorage):
    src = media_storage.staging_key("c3", 1, "thumb.jpg")
    dst = media_storage.final_key("user-1", "c3", "thumb.jpg")
    original = media_storage.put_bytes(src, b"jpeg bytes", "image/jpeg")

    copied = media_storage.copy(src, dst)

    assert copied == StoredObject(key=dst, bytes=original.bytes, sha256=original.sha256,
                                  content_type="image/jpeg")
    assert media_storage.head(src) == original  # the source stays until the prefix is deleted


def test_copy_of_a_missing_key_is_not_found(media_storage: MediaStorage):
    with pytest.raises(StorageError) as caught:
        media_storage.copy("staging/none/1/a.png", "media/u/none/a.png")
    assert caught.value.code == "NOT_FOUND"
    assert caught.value.retryable is False


def test_url_without_public_base_is_a_presigned_get_that_serves_the_object(media_storage):
    key = media_storage.final_key("user-1", "c4", "original.png")
    media_storage.put_bytes(key, PNG_BYTES, "image/png")

    url = media_storage.url(key)

    assert f"X-Amz-Expires={media_storage.presign_ttl}" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == PNG_BYTES
    assert response.headers["content-type"] == "image/png"


def test_url_with_a_public_base_is_that_base_plus_the_quoted_key(s3_server):
    storage = MediaStorage.from_settings(storage_settings(
        s3_server, unique_bucket(), public_base_url="https://media.example.com/"))
    key = storage.final_key("user 1", "c5", "original.png")
    assert storage.url(key) == "https://media.example.com/media/user%201/c5/original.png"


def test_delete_prefix_deletes_only_under_the_prefix(media_storage: MediaStorage):
    for name in ("original.png", "thumb.jpg"):
        media_storage.put_bytes(media_storage.staging_key("c1", 1, name), b"x", "image/png")
        media_storage.put_bytes(media_storage.staging_key("c1", 2, name), b"x", "image/png")
    neighbour = media_storage.staging_key("c10", 1, "original.png")  # shares the text "c1"
    media_storage.put_bytes(neighbour, b"x", "image/png")

    assert media_storage.delete_prefix("staging/c1/") == 4

    assert media_storage.head(media_storage.staging_key("c1", 2, "thumb.jpg")) is None
    assert media_storage.head(neighbour) is not None
    assert media_storage.delete_prefix("staging/c1/") == 0


@pytest.mark.parametrize("prefix", ["", "staging/c1", "media"])
def test_delete_prefix_refuses_prefixes_that_could_match_other_creations(media_storage, prefix):
    with pytest.raises(ValueError):
        media_storage.delete_prefix(prefix)


def test_keys_follow_the_documented_layout(media_storage: MediaStorage):
    assert media_storage.staging_key("c1", 2, "original.mp4") == "staging/c1/2/original.mp4"
    assert media_storage.final_key("u1", "c1", "thumb.jpg") == "media/u1/c1/thumb.jpg"


@pytest.mark.parametrize("bad", ["", "a/b", "..", "."])
def test_key_parts_cannot_escape_their_folder(media_storage: MediaStorage, bad):
    with pytest.raises(ValueError):
        media_storage.final_key(bad, "c1", "thumb.jpg")
    with pytest.raises(ValueError):
        media_storage.staging_key("c1", 1, bad)


def test_ensure_bucket_with_r2_region_auto_creates_the_bucket_once(s3_server):
    # R2 takes region "auto"; creating a bucket there needs an explicit LocationConstraint.
    storage = MediaStorage.from_settings(storage_settings(s3_server, unique_bucket(), s3_region="auto"))
    storage.ensure_bucket()
    storage.ensure_bucket()  # already there: nothing to do
    stored = storage.put_bytes("media/u/c/original.png", b"data", "image/png")
    assert storage.head(stored.key) == stored


def test_an_unreachable_endpoint_is_a_retryable_storage_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="k", aws_secret_access_key="s",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2,
                      s3={"addressing_style": "path"}))
    storage = MediaStorage(client, "media", public_base_url=None, presign_ttl=60,
                           staging_prefix="staging/")
    with pytest.raises(StorageError) as caught:
        storage.put_bytes("staging/c/1/a.png", b"x", "image/png")
    assert caught.value.retryable is True
    assert caught.value.code == "STORAGE_ERROR"


@pytest.mark.parametrize("status, code, retryable, domain_code", [
    (500, "InternalError", True, "STORAGE_ERROR"),
    (503, "SlowDown", True, "STORAGE_ERROR"),
    (429, "TooManyRequests", True, "STORAGE_ERROR"),
    (404, "NoSuchKey", False, "NOT_FOUND"),
    (403, "AccessDenied", False, "STORAGE_REJECTED"),
])
def test_service_errors_are_classified_by_status(status, code, retryable, domain_code):
    exc = ClientError({"Error": {"Code": code, "Message": "m"},
                       "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")
    error = _storage_error(exc, "uploading k")
    assert (error.retryable, error.code) == (retryable, domain_code)
