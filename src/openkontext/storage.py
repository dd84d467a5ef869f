"""Result and input storage: immutable blobs under a key (``jobs/keys.py`` names them), in a local folder (one
machine, or a folder every machine mounts) or an S3-compatible object store (a cluster).

Results are always served through the API's signed ``/results/…`` URLs, whatever the backend: the object store
needs no public access and its credentials stay on the servers.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    reads_locally: bool  # a read is a local file read (no network): cheap enough to run on an event loop

    def put(self, key: str, data: bytes) -> None:
        """Store a whole blob; readers see all of it or none of it."""

    def get(self, key: str) -> bytes:
        """The blob; FileNotFoundError if there is none."""

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> None:
        """Delete every blob whose key starts with ``prefix/`` (a job's folder)."""

    def free_bytes(self) -> int:
        """Room left for new blobs (an object store reports no limit)."""


class LocalStorage:
    """Folders are created 0700 and files 0600, whatever the umask: results are private until a signed URL serves
    them."""

    reads_locally = True

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the whole blob or none of it, also after a crash."""
        target = self.path(key)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def free_bytes(self) -> int:
        """Space left for new blobs on the disk that holds them."""
        return shutil.disk_usage(self.root).free

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete_prefix(self, prefix: str) -> None:
        """Delete every blob whose key starts with ``prefix/`` (a job's folder)."""
        folder = self.path(prefix)
        if folder.is_dir():
            for child in sorted(folder.rglob("*"), reverse=True):
                child.unlink() if child.is_file() else child.rmdir()
            folder.rmdir()


def open_storage(settings) -> Storage:
    """The backend the settings name: the data dir's storage folder, or ``s3://BUCKET/PREFIX``."""
    if not settings.storage_url:
        return LocalStorage(settings.storage_dir)
    bucket, _, prefix = settings.storage_url.removeprefix("s3://").partition("/")
    return S3Storage(bucket, prefix=prefix, endpoint_url=settings.s3_endpoint_url)


class S3Storage:
    """Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2 …) under ``prefix``, through boto3.

    Credentials and region come from boto3's usual sources (environment, ~/.aws, instance roles); ``endpoint_url``
    points at a store other than AWS. A PUT is atomic: readers see the old blob or the new one, never part of one.
    """

    reads_locally = False

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None, region: str | None = None,
                 client=None):  # fmt: skip
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                                             config=Config(retries={"mode": "standard", "max_attempts": 5}))  # fmt: skip

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete_prefix(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                      Prefix=self._name(prefix) + "/")  # fmt: skip
        for page in pages:
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:  # a page holds at most 1,000 keys: what one delete_objects call takes
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    def free_bytes(self) -> int:
        return sys.maxsize
