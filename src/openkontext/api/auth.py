"""API keys: clients send one in the ``x-key`` header; the server only ever holds their SHA-256 digests.

A task belongs to the key that created it (its digest is the task's owner) and is invisible to every other key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

HASH_PREFIX = "sha256:"


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, configured: list[str]):
        self._digests = [
            entry[len(HASH_PREFIX) :].lower() if entry.startswith(HASH_PREFIX) else key_digest(entry)
            for entry in configured
        ]

    def owner_of(self, key: str) -> str | None:
        """The owner id (digest) of a valid key, else None. Compares in constant time against every known digest."""
        digest = key_digest(key)
        found = None
        for known in self._digests:
            if hmac.compare_digest(known, digest):
                found = known
        return found


def local_key_file(data_dir: Path) -> Path:
    return data_dir / "api-key"


def ensure_local_key(data_dir: Path) -> tuple[str, bool]:
    """The key kept in ``data_dir/api-key`` (mode 0600), generating it on first use; returns (key, created)."""
    path = local_key_file(data_dir)
    if path.exists():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "ok-" + secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key, True
