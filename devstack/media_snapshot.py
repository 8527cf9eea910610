"""Keeps the local S3 server's objects in the data dir across restarts.

The S3 stand-in holds objects in memory; the stack loads the bucket from `DIR/<key>` when it
starts and writes it back when it stops, so drafts keep their media between `phoenix dev` runs.
Content type and metadata (sha256) travel in a sidecar `DIR/.meta/<key>.json`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path


def restore(client, bucket: str, directory: Path) -> int:
    """Upload every saved object; returns how many."""
    if not directory.is_dir():
        return 0
    count = 0
    meta_root = directory / ".meta"
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or meta_root in path.parents:
            continue
        key = path.relative_to(directory).as_posix()
        meta_path = meta_root / f"{key}.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(),
                          ContentType=meta.get("ContentType", "application/octet-stream"),
                          Metadata=meta.get("Metadata", {}))
        count += 1
    return count


def save(client, bucket: str, directory: Path) -> int:
    """Write every object of the bucket under `directory`, replacing what was there (deleted
    objects go too); returns how many. Written aside first, so a failed save loses nothing."""
    staging = directory.with_name(directory.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    count = _save_into(client, bucket, staging)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return count


def _save_into(client, bucket: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    paginator = client.get_paginator("list_objects_v2")
    keys = [obj["Key"] for page in paginator.paginate(Bucket=bucket) for obj in page.get("Contents", [])]
    for key in keys:
        target = directory / key
        if ".." in Path(key).parts:
            continue  # never write outside the data dir
        obj = client.get_object(Bucket=bucket, Key=key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(obj["Body"].read())
        meta_path = directory / ".meta" / f"{key}.json"
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps({"ContentType": obj.get("ContentType"), "Metadata": obj.get("Metadata", {})}))
        count += 1
    return count
