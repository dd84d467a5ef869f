"""Signed, expiring result URLs: anyone holding the URL may fetch the result until it expires, no API key needed.

The signature is an HMAC-SHA256 over the path and the expiry time, so neither can be changed without the secret.
A signed URL has one form, the one ``sign`` makes: ``exp`` and ``sig`` each once, neither name nor value
percent-encoded. Any other spelling (``%73ig=…``, ``sig=%61…``, a second ``sig``) is refused, so what a log filter
sees is what was checked; ``redact_signatures`` hides ``sig`` values however their names are spelled.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from pathlib import Path
from urllib.parse import unquote_plus

SIGNED_VALUE = {"exp": re.compile(r"[0-9]{1,20}"), "sig": re.compile(r"[0-9a-f]{64}")}
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;?\s\"']*)=(?P<value>[^&;\s\"']*)")


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
        # Rounded up: a URL lives at least ttl_s (flooring made a 1 s URL expire within milliseconds).
        expires = math.ceil((time.time() if now is None else now) + self.ttl_s)
        return {"exp": str(expires), "sig": self._signature(path, expires)}

    def verify(self, path: str, exp: str, sig: str) -> bool:
        """True if ``sig`` is this server's signature of ``path`` until ``exp`` and ``exp`` is still ahead."""
        try:
            expires = int(exp)
        except ValueError:
            return False
        valid = hmac.compare_digest(self._signature(path, expires), sig)
        return valid and expires > time.time()


def signed_params(query: str) -> tuple[str, str] | None:
    """(exp, sig) from a result URL's raw query string, decoded once; None unless it is in the canonical form:
    each present exactly once, with its name and value spelled plainly (no percent-encoding). Other parameters
    are ignored."""
    found: dict[str, str] = {}
    for part in query.split("&"):
        raw_name, _, raw_value = part.partition("=")
        name = unquote_plus(raw_name)
        if name not in SIGNED_VALUE:
            continue
        if raw_name != name or name in found or not SIGNED_VALUE[name].fullmatch(raw_value):
            return None
        found[name] = raw_value
    if len(found) != len(SIGNED_VALUE):
        return None
    return found["exp"], found["sig"]


def redact_signatures(text: str) -> str:
    """``text`` with the value of every query parameter whose decoded name is ``sig`` replaced by REDACTED."""

    def redact(match: re.Match) -> str:
        if unquote_plus(match["name"]).strip().lower() != "sig":
            return match[0]
        return f"{match['lead']}{match['name']}=REDACTED"

    return _QUERY_PARAM.sub(redact, text)
