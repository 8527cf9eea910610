"""Media kept by earlier versions of the local stack, which saved the S3 stand-in's objects to
DATA_DIR/media when it stopped (content type and metadata in a sidecar `.meta/<key>.json`).

The S3 stand-in now writes every object through to DATA_DIR/s3 itself; a data dir still holding
the old folder is imported once at start (the import is written through like any upload) and the
folder renamed `media.imported`.
"""
from __future__ import annotations

import json
from pathlib import Path


def import_legacy(client, bucket: str, directory: Path) -> int:
    """Upload every object saved in `directory`, then rename it; returns how many."""
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
                          ContentType=meta.get("ContentType") or "application/octet-stream",
                          Metadata=meta.get("Metadata") or {})
        count += 1
    directory.rename(directory.with_name(directory.name + ".imported"))
    return count
