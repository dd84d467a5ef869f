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
from ..metrics import Metrics
from ..safety.moderation import Moderator
from ..storage import LocalStorage
from .store import Job, JobStatus, JobStore, RunState

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.2  # at most this often a progress write per job (the last step is always written)
PREVIEW_EVERY = 5  # steps between previews (and at least 1 s apart), when previews are on
PREVIEW_MIN_INTERVAL_S = 1.0
IDLE_POLL_S = 1.0


def result_key(job: Job) -> str:
    return f"{job.id}/sample.{job.params['output_format']}"


def preview_key(job_id: str) -> str:
    return f"{job_id}/preview.jpg"


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
        metrics: Metrics,
        purge_interval_s: float = 60.0,
        previews: bool = True,
    ):
        self.store = store
        self.storage = storage
        self.engine = engine
        self.moderator = moderator
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.purge_interval_s = purge_interval_s
        self.metrics = metrics
        self.previews = previews
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

    @property
    def running(self) -> bool:
        return bool(self._running) and not self._stop.is_set()

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
        size = tuple(params["size"]) if params.get("size") else None
        last_write = last_preview = 0.0
        last_step_at = time.monotonic()
        state = RunState.CONTINUE

        def on_step(step: int, total: int, latents) -> bool:
            nonlocal last_write, last_preview, last_step_at, state
            now = time.monotonic()
            self.metrics.step_time.observe(now - last_step_at)
            last_step_at = now
            if self.previews and step < total and step % PREVIEW_EVERY == 0 and now - last_preview > PREVIEW_MIN_INTERVAL_S:
                last_preview = now
                try:
                    self.storage.put(preview_key(job.id), self.engine.preview(latents, sampling_size))
                except Exception:
                    log.exception("job %s: preview failed (the job goes on)", job.id)
            if step < total and now - last_write < PROGRESS_INTERVAL_S:
                return not self._stop.is_set()
            last_write = now
            # Progress stays below 1.0 until the result is stored: 1.0 means Ready.
            state = self.store.set_progress(job.id, self.id, 0.99 * step / total, step)
            return state == RunState.CONTINUE and not self._stop.is_set()

        try:
            images = [Image.open(io.BytesIO(self.storage.get(key))).convert("RGB") for key in job.input_keys]
            output_size = self.engine.output_size(images, aspect_ratio=params.get("aspect_ratio"), size=size)
            sampling_size = self.engine.sampling_size(output_size)
            image = self.engine.edit(
                images,
                job.prompt,
                seed=job.seed,
                steps=params["steps"],
                guidance=params["guidance"],
                size=output_size,
                on_step=on_step,
                preserve=params.get("preserve"),
            )
        except EditCancelled:
            if state == RunState.CANCEL:
                self._finish(job, JobStatus.CANCELLED, error="cancelled by the client")
            else:
                # Lost the lease or shutting down: leave the job to whoever holds it now (or to after the restart).
                log.info("job %s: stopped before finishing", job.id)
            return
        except Exception as exc:
            log.exception("job %s: engine failed", job.id)
            self._finish(job, JobStatus.ERROR, error=f"engine failed: {type(exc).__name__}")
            return

        verdict = self.moderator.check_image(image, params["safety_tolerance"])
        if verdict.flagged:
            self._finish(job, JobStatus.CONTENT_MODERATED, error="; ".join(verdict.reasons))
            return
        key = result_key(job)
        self.storage.put(key, encode_image(image, params["output_format"]))
        self._finish(job, JobStatus.READY, result_key=key)

    def _finish(self, job: Job, status: JobStatus, **outcome) -> None:
        if self.store.finish(job.id, self.id, status, **outcome):
            self.metrics.job_latency.labels(status.value).observe(time.time() - job.created_at)
            log.info("job %s: %s", job.id, status.value)
