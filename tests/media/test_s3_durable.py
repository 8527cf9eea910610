"""The S3 stand-in with write-through storage: what it answered survives a kill of its process,
deletes included, with content type and metadata."""
from __future__ import annotations

import os
import signal

import boto3
import pytest
from botocore.config import Config

from localcloud.s3server import S3Server


def client_of(server: S3Server):
    return boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(s3={"addressing_style": "path"}))


def test_objects_written_and_deleted_before_a_kill_are_as_answered_after_a_restart(tmp_path):
    first = S3Server(own_process=True, data_dir=tmp_path).start()
    try:
        s3 = client_of(first)
        s3.create_bucket(Bucket="media")
        s3.put_object(Bucket="media", Key="a/original.png", Body=b"\x89PNG one", ContentType="image/png",
                      Metadata={"sha256": "abc"})
        s3.put_object(Bucket="media", Key="a/thumb.jpg", Body=b"jpeg", ContentType="image/jpeg")
        s3.put_object(Bucket="media", Key="b/gone.png", Body=b"x")
        s3.put_object(Bucket="media", Key="c/1", Body=b"1")
        s3.put_object(Bucket="media", Key="c/2", Body=b"2")
        s3.copy_object(Bucket="media", Key="a/copy.png", CopySource={"Bucket": "media", "Key": "a/original.png"})
        s3.put_object(Bucket="media", Key="a/original.png", Body=b"\x89PNG two", ContentType="image/png",
                      Metadata={"sha256": "def"})
        s3.delete_object(Bucket="media", Key="b/gone.png")
        s3.delete_objects(Bucket="media", Delete={"Objects": [{"Key": "c/1"}, {"Key": "c/2"}]})
        os.kill(first._process.pid, signal.SIGKILL)       # no chance to save anything on the way out
        first._process.wait()
    finally:
        first.stop()

    second = S3Server(own_process=True, data_dir=tmp_path).start()
    try:
        s3 = client_of(second)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="media").get("Contents", [])]
        assert keys == ["a/copy.png", "a/original.png", "a/thumb.jpg"]
        original = s3.get_object(Bucket="media", Key="a/original.png")
        assert original["Body"].read() == b"\x89PNG two"
        assert original["ContentType"] == "image/png"
        assert original["Metadata"] == {"sha256": "def"}
        assert s3.get_object(Bucket="media", Key="a/copy.png")["Body"].read() == b"\x89PNG one"
        assert s3.get_object(Bucket="media", Key="a/thumb.jpg")["ContentType"] == "image/jpeg"
    finally:
        second.stop()


def test_write_through_storage_needs_the_server_in_its_own_process(tmp_path):
    with pytest.raises(ValueError, match="own process"):
        S3Server(data_dir=tmp_path)
