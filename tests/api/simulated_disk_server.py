"""``openkontext serve`` on a simulated disk: the test edge for a full disk, where mounting a small one is not allowed.

The storage is the real LocalStorage with the operating system's answers replaced while a control file exists in the
data dir: ``disk-full`` makes every write fail with ENOSPC (as a full disk or an exhausted quota does);
``free-bytes`` holds the free space the disk reports. Run as ``python simulated_disk_server.py``; settings come from
OPENKONTEXT_* variables as for ``serve``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from openkontext.api.app import create_app
from openkontext.api.server import serve
from openkontext.cli import _setup_logging
from openkontext.config import Settings
from openkontext.storage import LocalStorage


class SimulatedDisk(LocalStorage):
    def __init__(self, root: Path, control: Path):
        super().__init__(root)
        self.control = control

    def put(self, key: str, data: bytes) -> None:
        if (self.control / "disk-full").exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path(key)))
        super().put(key, data)

    def free_bytes(self) -> int:
        reported = self.control / "free-bytes"
        return int(reported.read_text()) if reported.exists() else super().free_bytes()


if __name__ == "__main__":
    settings = Settings()
    _setup_logging()
    storage = SimulatedDisk(settings.storage_dir, settings.data_dir)
    serve(create_app(settings, storage=storage), settings)
