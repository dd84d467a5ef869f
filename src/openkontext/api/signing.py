"""Signed, expiring result URLs: anyone holding the URL may fetch the result until it expires, no API key needed.

The signature is an HMAC-SHA256 over the path and the expiry time, so neither can be changed without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from pathlib import Path


def load_or_create_secret(configured: str | None, path: Path) -> bytes:
    """The configured secret, else one generated once and kept in ``path`` (so URLs survive restarts)."""
    if configured:
        return configured.encode()
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    path.touch(mode=0o600)
    path.write_bytes(value)
    return value


class UrlSigner:
    def __init__(self, secret: bytes, ttl_s: int):
        self._secret = secret
        self.ttl_s = ttl_s

    def _signature(self, path: str, expires: int) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, now: float | None = None) -> dict[str, str]:
        expires = int((now or time.time()) + self.ttl_s)
        return {"exp": str(expires), "sig": self._signature(path, expires)}

    def verify(self, path: str, exp: str, sig: str) -> bool:
        """True if ``sig`` is this server's signature of ``path`` until ``exp`` and ``exp`` is still ahead."""
        try:
            expires = int(exp)
        except ValueError:
            return False
        valid = hmac.compare_digest(self._signature(path, expires), sig)
        return valid and expires > time.time()
