"""Python client for OpenKontext (and any BFL-compatible API): submit, poll, download, all in ``edit()``.

    from openkontext import Client
    client = Client("http://127.0.0.1:8000", api_key="...")
    result = client.edit("photo.jpg", "Change 'KELLAR' to 'SUMITH'", seed=7)
    result.image.save("edited.png")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from .statuses import TaskStatus

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def has_ended(status: str) -> bool:
    """Polling again would not change the task. A status this client does not know (a newer server's) counts as
    still running: ``wait``'s timeout bounds it."""
    try:
        return TaskStatus(status).ended
    except ValueError:
        return False


class OpenKontextError(Exception):
    """Base of every error this client raises."""


class APIError(OpenKontextError):
    """The server refused a request (4xx/5xx); ``status_code`` and ``detail`` say why."""

    def __init__(self, status_code: int, detail: Any):
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class ModerationError(OpenKontextError):
    """The task was Request Moderated or Content Moderated."""

    def __init__(self, status: str, details: Any):
        super().__init__(f"{status}: {details}")
        self.status = status
        self.details = details


class TaskFailed(OpenKontextError):
    """The task ended in Error or Cancelled, or was not found."""

    def __init__(self, status: str, details: Any):
        super().__init__(f"{status}: {details}")
        self.status = status
        self.details = details


@dataclass
class EditResult:
    id: str
    data: bytes  # the result file's bytes, as the server encoded them
    result: dict[str, Any]  # get_result's ``result``: sample URL, seed, prompt, timings

    @property
    def image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.data))

    @property
    def seed(self) -> int:
        return self.result["seed"]


def find_api_key(data_dir: Path | None = None) -> str | None:
    """BFL_API_KEY, else OPENKONTEXT_API_KEY, else the local server's generated key file."""
    for variable in ("BFL_API_KEY", "OPENKONTEXT_API_KEY"):
        if os.environ.get(variable):
            return os.environ[variable]
    data_dir = data_dir or Path(os.environ.get("OPENKONTEXT_DATA_DIR", "./openkontext-data"))
    key_file = data_dir / "api-key"
    return key_file.read_text().strip() if key_file.exists() else None


def encode_image_input(image: str | Path | bytes | Image.Image) -> str:
    """A path, raw bytes or a PIL image as the base64 string the API expects."""
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    elif isinstance(image, bytes):
        data = image
    else:
        data = Path(image).read_bytes()
    return base64.b64encode(data).decode()


class Client:
    def __init__(self, base_url: str = DEFAULT_BASE_URL, api_key: str | None = None, *, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        api_key = api_key or find_api_key()
        if not api_key:
            raise OpenKontextError("no API key: pass api_key=, or set BFL_API_KEY")
        self._http = httpx.Client(base_url=self.base_url, headers={"x-key": api_key}, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise APIError(response.status_code, detail)
        return response.json()

    def submit(
        self, prompt: str, image: str | Path | bytes | Image.Image | None = None, *, route: str = "flux-bagel-alpha",
        **params: Any,
    ) -> dict[str, Any]:
        """Queue a task; returns the submit response (``id``, ``polling_url``)."""
        body = {"prompt": prompt, **{k: v for k, v in params.items() if v is not None}}
        if image is not None:
            body["input_image"] = encode_image_input(image)
        return self._json(self._http.post(f"/v1/{route}", json=body))

    def get_result(self, task_id: str) -> dict[str, Any]:
        return self._json(self._http.get("/v1/get_result", params={"id": task_id}))

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a queued or running task (an OpenKontext extension); returns its state after the request."""
        return self._json(self._http.post("/v1/cancel", params={"id": task_id}))

    def wait(self, task_id: str, *, poll_interval: float = 0.5, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the task ends; returns the Ready response, raises on any other end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.get_result(task_id)
            status = state["status"]
            if status == TaskStatus.READY:
                return state
            if has_ended(status):
                error = ModerationError if TaskStatus(status).moderated else TaskFailed
                raise error(status, state.get("details"))
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {status} after {timeout} s")
            time.sleep(poll_interval)

    def download(self, url: str) -> bytes:
        """Fetch a signed result URL (it needs no API key)."""
        response = httpx.get(url, timeout=self._http.timeout, follow_redirects=False)
        if response.status_code >= 400:
            raise APIError(response.status_code, response.text)
        return response.content

    def edit(
        self, image: str | Path | bytes | Image.Image | None, prompt: str, *, timeout: float | None = None,
        **params: Any,
    ) -> EditResult:
        """Submit, wait and download in one call. ``params``: seed, steps, guidance, output_format, …"""
        task_id = self.submit(prompt, image, **params)["id"]
        state = self.wait(task_id, timeout=timeout)
        return EditResult(id=task_id, data=self.download(state["result"]["sample"]), result=state["result"])


class WebhookVerificationError(OpenKontextError):
    """A webhook call's signature is missing, wrong, or too old."""


def verify_webhook(
    body: bytes, headers: Mapping[str, str], secret: str, *, tolerance_s: int = 300, now: float | None = None
) -> dict[str, Any]:
    """Check a webhook call from OpenKontext and return its JSON payload; raises WebhookVerificationError.

    Verifies the Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) when
    present, and refuses timestamps more than ``tolerance_s`` away from now (replays); otherwise falls back to
    BFL's ``X-BFL-Signature: sha256=<hex>`` over the body. ``body`` must be the raw bytes received.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    if "webhook-signature" in lowered:
        message_id, timestamp = lowered.get("webhook-id", ""), lowered.get("webhook-timestamp", "")
        if not timestamp.isdigit():
            raise WebhookVerificationError("missing or malformed webhook-timestamp")
        if abs((now or time.time()) - int(timestamp)) > tolerance_s:
            raise WebhookVerificationError("webhook-timestamp is outside the replay window")
        key = secret.encode()
        if secret.startswith("whsec_"):
            key = base64.b64decode(secret[len("whsec_") :])
        signed = f"{message_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        candidates = [part.split(",", 1)[1] for part in lowered["webhook-signature"].split() if part.startswith("v1,")]
        if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
            raise WebhookVerificationError("webhook-signature does not match")
    elif "x-bfl-signature" in lowered:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, lowered["x-bfl-signature"]):
            raise WebhookVerificationError("X-BFL-Signature does not match")
        payload = json.loads(body)
        if abs((now or time.time()) - float(payload.get("timestamp", 0))) > tolerance_s:
            raise WebhookVerificationError("payload timestamp is outside the replay window")
    else:
        raise WebhookVerificationError("no signature headers")
    return json.loads(body)
