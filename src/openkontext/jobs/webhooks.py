"""The webhook sender: delivers outbox events, signed, with retries — never inside a worker.

A sender thread claims due events from the outbox (``jobs/store.py``) and hands each to a small thread pool, so a
slow or dead receiver holds up only its own delivery. One attempt is one POST with a timeout and no redirects.
Connection errors, timeouts, 429 and 5xx are retried with exponential backoff and jitter until the event's deadline
(``OPENKONTEXT_WEBHOOK_RETRY_S``, 24 h by default); any other answer ends the delivery. Events live in the
database, so pending deliveries survive restarts.

Signatures (when the task has a ``webhook_secret``), both over the exact body bytes sent:

- Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "<id>.<timestamp>.<body>">``. A secret of the form ``whsec_<base64>`` is used as the base64-decoded key, as that
  standard does; any other secret is used as its UTF-8 bytes.
- BFL style: ``X-BFL-Signature: sha256=<hex HMAC-SHA256 of the body>`` with the secret's UTF-8 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from ..netguard import BlockedURLError, UrlPolicy, pinned_request
from . import faults
from .store import Job, JobStore, WebhookEvent

log = logging.getLogger(__name__)

RETRY_MAX_S = 3600.0


def standard_webhooks_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except ValueError:
            pass
    return secret.encode()


def sign_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    signed = f"{message_id}.{timestamp}.".encode() + body
    standard = base64.b64encode(hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()).decode()
    bfl = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"webhook-signature": f"v1,{standard}", "X-BFL-Signature": f"sha256={bfl}"}


def backoff_s(attempt: int, first_s: float) -> float:
    """Delay before retry number ``attempt`` (1-based): doubling from ``first_s`` up to an hour, ±50 % jitter."""
    return min(first_s * 2 ** (attempt - 1), RETRY_MAX_S) * random.uniform(0.5, 1.5)


class WebhookSender:
    def __init__(
        self,
        store: JobStore,
        payload_for: Callable[[Job], dict],
        policy: UrlPolicy,
        *,
        worker_id: str,
        timeout_s: float,
        first_backoff_s: float = 2.0,
        concurrency: int = 8,
        poll_s: float = 0.5,
    ):
        self.store = store
        self.payload_for = payload_for  # the get_result view of a job, with a fresh signed URL (built by the API)
        self.policy = policy
        self.worker_id = f"{worker_id}:webhooks"
        self.timeout_s = timeout_s
        self.first_backoff_s = first_backoff_s
        self.concurrency = concurrency
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="openkontext-webhook")
        self._in_flight = threading.Semaphore(concurrency)
        self._thread = threading.Thread(target=self._loop, name="openkontext-webhooks", daemon=True)
        self._http = httpx.Client(timeout=timeout_s, headers={"User-Agent": "OpenKontext-Webhooks"})
        self._faults = faults.FaultLog("openkontext-webhooks", log)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            free = 0
            while self._in_flight.acquire(blocking=False):
                free += 1
            delay = self.poll_s
            try:
                # The lease outlives one attempt (timeout + margin), so no other sender takes it meanwhile.
                events = self.store.claim_webhooks(self.worker_id, self.timeout_s + 30, free) if free else []
                self._faults.succeeded()
            except Exception as exc:  # the store is away: logged once, retried with backoff
                delay = max(delay, faults.backoff_s(self._faults.failed("claiming webhook events", exc)))
                events = []
            for _ in range(free - len(events)):
                self._in_flight.release()
            for event in events:
                self._pool.submit(self._deliver_and_release, event)
            self._stop.wait(delay)

    def _deliver_and_release(self, event: WebhookEvent) -> None:
        try:
            self.deliver(event)
        except Exception:
            # A bug, not the receiver's fault: count the attempt and retry later rather than lose the event.
            log.exception("webhook %s: delivery crashed", event.id)
            try:
                retry_at = time.time() + backoff_s(event.attempts + 1, self.first_backoff_s)
                self.store.record_webhook_attempt(event.id, self.worker_id, delivered=False, error="internal error",
                                                  retry_at=retry_at if retry_at < event.deadline else None)  # fmt: skip
            except Exception:
                log.exception("webhook %s: recording the failed attempt failed", event.id)
        finally:
            self._in_flight.release()

    def deliver(self, event: WebhookEvent) -> None:
        job = self.store.get(event.job_id)
        if job is None or not job.webhook_url:
            self.store.record_webhook_attempt(event.id, self.worker_id, delivered=False, error="task purged",
                                              retry_at=None)  # fmt: skip
            return
        timestamp = int(time.time())
        body = json.dumps({**self.payload_for(job), "timestamp": timestamp}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "webhook-id": event.id, "webhook-timestamp": str(timestamp)}
        if job.webhook_secret:
            headers.update(sign_headers(job.webhook_secret, event.id, timestamp, body))
        retryable, error = False, None
        try:
            response = pinned_request(self._http, "POST", job.webhook_url, self.policy, content=body, headers=headers)
            response.close()  # the status is all we need; never read a receiver's body
            status = response.status_code
            if 200 <= status < 300:
                self.store.record_webhook_attempt(event.id, self.worker_id, delivered=True, error=None, retry_at=None)
                log.info("webhook %s for task %s: delivered (HTTP %d)", event.id, job.id, status)
                return
            retryable = status == 429 or status >= 500
            error = f"receiver answered HTTP {status}"
        except BlockedURLError as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            retryable, error = True, f"{type(exc).__name__}"
        retry_at = time.time() + backoff_s(event.attempts + 1, self.first_backoff_s) if retryable else None
        if retry_at is not None and retry_at > event.deadline:
            retry_at, error = None, f"{error}; gave up after retrying until the deadline"
        self.store.record_webhook_attempt(event.id, self.worker_id, delivered=False, error=error, retry_at=retry_at)
        log.warning("webhook %s for task %s: %s (%s)", event.id, job.id, error,
                    "will retry" if retry_at else "failed")  # fmt: skip
