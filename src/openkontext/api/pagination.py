"""The task list's cursor: the keyset (created_at, id) of a page's last task, opaque to clients.

It is unpadded URL-safe base64 of ``"<created_at> <id>"``: tasks created at the same instant are neither skipped
nor repeated (``JobStore.list_for`` orders by both), and the float comes back exactly (``repr``).
"""

from __future__ import annotations

import base64
import binascii
import math

MAX_CURSOR_CHARS = 128


def encode_cursor(created_at: float, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r} {job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The keyset of a cursor this server made; ValueError for anything else."""
    try:
        text = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor") from None
    created_at, _, job_id = text.partition(" ")
    keyset = (float(created_at), job_id)
    if not (math.isfinite(keyset[0]) and 0 < len(job_id) <= 36 and job_id.replace("-", "").isalnum()):
        raise ValueError("not a cursor")
    return keyset
