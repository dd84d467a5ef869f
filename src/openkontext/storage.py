"""Result and input storage: immutable blobs under a key, in a local folder (shared storage at scale)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")


class LocalStorage:
    """Folders are created 0700 and files 0600, whatever the umask: results are private until a signed URL serves
    them."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key:
            raise ValueError(f"invalid storage key {key!r}")
        return self.root / key

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
