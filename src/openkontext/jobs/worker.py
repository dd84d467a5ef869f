"""Workers: threads that claim jobs, run the engine, and record the outcome — never on the event loop.

Each pool also runs a heartbeat (renews the leases of the jobs its workers hold, so a long step never loses one) and
a janitor (purges jobs past retention with their files, and fails jobs that keep killing their worker).
"""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
import time
import uuid

from PIL import Image

from ..engine.images import encode_image
from ..engine.kontext import EditCancelled, KontextEngine
from ..safety.moderation import Moderator
from ..storage import LocalStorage
from .store import Job, JobStatus, JobStore

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.2  # at most this often a progress write per job (the last step is always written)
IDLE_POLL_S = 1.0


def result_key(job: Job) -> str:
    return f"{job.id}/sample.{job.params['output_format']}"


class WorkerPool:
    def __init__(
        self,
        store: JobStore,
        storage: LocalStorage,
        engine: KontextEngine,
        moderator: Moderator,
        *,
        threads: int,
        lease_s: float,
        max_attempts: int,
        purge_interval_s: float = 60.0,
    ):
        self.store = store
        self.storage = storage
        self.engine = engine
        self.moderator = moderator
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.purge_interval_s = purge_interval_s
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._threads = threads
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        self._running: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        targets = [self._work] * self._threads + [self._heartbeat, self._janitor]
        for index, target in enumerate(targets):
            thread = threading.Thread(target=target, name=f"openkontext-{target.__name__[1:]}-{index}", daemon=True)
            thread.start()
            self._running.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        for thread in self._running:
            thread.join(timeout)

    def wake(self) -> None:
        """Tell idle workers a job was queued (they would find it at the next poll anyway)."""
        with self._wake:
            self._wake.notify_all()

    # --- the three loops ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self.store.claim(self.id, self.lease_s, self.max_attempts)
            except Exception:
                log.exception("claiming a job failed")
                job = None
            if job is None:
                with self._wake:
                    self._wake.wait(IDLE_POLL_S)
                continue
            with self._held_lock:
                self._held.add(job.id)
            try:
                self.run(job)
            finally:
                with self._held_lock:
                    self._held.discard(job.id)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            with self._held_lock:
                held = set(self._held)
            try:
                self.store.renew(self.id, held, self.lease_s)
            except Exception:
                log.exception("renewing leases failed")

    def _janitor(self) -> None:
        while True:
            try:
                for job_id in self.store.fail_exhausted(self.max_attempts):
                    log.warning("job %s failed: it stopped its worker %d times", job_id, self.max_attempts)
                for job in self.store.purge_expired():
                    self.storage.delete_prefix(job.id)
            except Exception:
                log.exception("janitor pass failed")
            if self._stop.wait(self.purge_interval_s):
                return

    # --- one job --------------------------------------------------------------------------------------------------

    def run(self, job: Job) -> None:
        """Run a claimed job to a terminal state. Every store write is fenced by this pool's lease."""
        log.info("job %s: running (attempt %d)", job.id, job.attempts)
        params = job.params
        last_write = 0.0

        def on_step(step: int, total: int, latents) -> bool:
            nonlocal last_write
            now = time.monotonic()
            if step < total and now - last_write < PROGRESS_INTERVAL_S:
                return not self._stop.is_set()
            last_write = now
            # Progress stays below 1.0 until the result is stored: 1.0 means Ready.
            still_ours = self.store.set_progress(job.id, self.id, 0.99 * step / total)
            return still_ours and not self._stop.is_set()

        try:
            images = [Image.open(io.BytesIO(self.storage.get(key))).convert("RGB") for key in job.input_keys]
            size = tuple(params["size"]) if params.get("size") else None
            image = self.engine.edit(
                images,
                job.prompt,
                seed=job.seed,
                steps=params["steps"],
                guidance=params["guidance"],
                aspect_ratio=params.get("aspect_ratio"),
                size=size,
                on_step=on_step,
            )
        except EditCancelled:
            # Lost the lease or shutting down: leave the job for whoever holds it now (or for after the restart).
            log.info("job %s: stopped before finishing", job.id)
            return
        except Exception as exc:
            log.exception("job %s: engine failed", job.id)
            self.store.finish(job.id, self.id, JobStatus.ERROR, error=f"engine failed: {type(exc).__name__}")
            return

        verdict = self.moderator.check_image(image, params["safety_tolerance"])
        if verdict.flagged:
            self.store.finish(job.id, self.id, JobStatus.CONTENT_MODERATED, error="; ".join(verdict.reasons))
            return
        key = result_key(job)
        self.storage.put(key, encode_image(image, params["output_format"]))
        if self.store.finish(job.id, self.id, JobStatus.READY, result_key=key):
            log.info("job %s: ready", job.id)
