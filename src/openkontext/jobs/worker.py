"""Workers: threads that claim jobs, run the engine, and record the outcome — never on the event loop.

Each pool also runs a heartbeat (renews the leases of the jobs its workers hold, so a long step never loses one) and
a janitor (purges jobs past retention with their files, and fails jobs that keep killing their worker).

No loop dies of its environment. A store that is locked, unreachable, full or corrupt and a full disk are logged once
(``jobs/faults.py``), counted (``openkontext_worker_errors_total``) and retried with backoff; a loop that raises
anyway (a bug) is restarted (``openkontext_worker_restarts_total``). A computed result is kept in memory and its write
and the job's finish retried until they succeed, the lease is lost to another worker, or the pool stops — then the
job is handed back, and runs again from its lease. ``problem()`` says when no worker can make progress (``/ready``).

The heartbeat also records the pool in the store's ``workers`` table (what it runs, has finished, took over), which
is how every API replica reports every worker on ``/metrics``. ``drain()`` stops claiming and lets running jobs end:
a pool is scaled down without dropping work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING

from ..engine.adapters import AdapterError
from ..engine.images import decode_image, encode_image
from ..engine.errors import EditCancelled
from ..metrics import Metrics
from ..safety.moderation import Moderator
from ..statuses import JobStatus
from ..storage import Storage
from .faults import FaultLog, backoff_s, environment_error
from .keys import job_folder, preview_key, result_key
from .store import Job, JobStore, RunState, WorkerReport

if TYPE_CHECKING:  # imported where an engine is loaded: an API-only replica's pool never needs torch
    from ..engine.kontext import KontextEngine

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.2  # at most this often a progress write per job (the last step is always written)
PREVIEW_EVERY = 5  # steps between previews (and at least 1 s apart), when previews are on
PREVIEW_MIN_INTERVAL_S = 1.0
IDLE_POLL_S = 1.0


def lower_priority(nice: int) -> None:
    """Add ``nice`` to this thread's niceness. On Linux niceness is per thread and a thread's new threads inherit it,
    so the engine's compute threads that this thread starts (OpenMP keeps one team per thread that starts parallel
    work) run at the lower priority too, while the API's threads keep theirs."""
    if nice and hasattr(os, "setpriority"):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


class ShuttingDown(Exception):
    """The pool stopped while a write was being retried."""


class WorkerPool:
    def __init__(
        self,
        store: JobStore,
        storage: Storage,
        engine: KontextEngine | None,
        moderator: Moderator,
        *,
        threads: int,
        role: str = "serve",
        lease_s: float,
        max_attempts: int,
        metrics: Metrics,
        max_image_pixels: int,
        purge_interval_s: float = 60.0,
        previews: bool = True,
        nice: int = 0,
    ):
        self.store = store
        self.storage = storage
        self.engine = engine
        self.moderator = moderator
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.purge_interval_s = purge_interval_s
        self.max_image_pixels = max_image_pixels  # the submit's limit, applied again to what storage gives back
        self.metrics = metrics
        self.previews = previews
        self.nice = nice  # added to each worker thread's niceness (the heartbeat and janitor keep the process's)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.role = role  # serve (threads of the API process), worker (openkontext worker), ray (a Ray actor)
        if threads and engine is None:
            raise ValueError("a pool with worker threads needs an engine")
        self._threads = threads
        self._started_at = time.time()
        self._finished = 0  # jobs brought to an end here (the heartbeat reports these two)
        self._takeovers = 0
        self._stop = threading.Event()
        self._no_claims = threading.Event()  # set by drain(): running jobs go on, no new ones start
        self._wake = threading.Condition()
        self._held: set[str] = set()
        self._claiming = 0  # worker threads inside a claim: what it returns is held before drain() may end
        self._held_lock = threading.Lock()
        self._running: list[threading.Thread] = []
        self._workers: list[tuple[threading.Thread, FaultLog]] = []

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        loops = [("work", index, self._work) for index in range(self._threads)]
        loops += [("heartbeat", self._threads, self._heartbeat), ("janitor", self._threads + 1, self._janitor)]
        for role, index, target in loops:
            name = f"openkontext-{role}-{index}"
            faults = FaultLog(name, log, on_error=lambda _name, role=role: self.metrics.worker_errors.labels(role).inc())
            thread = threading.Thread(target=self._supervise, args=(role, target, faults), name=name, daemon=True)
            thread.start()
            self._running.append(thread)
            if role == "work":
                self._workers.append((thread, faults))

    @property
    def running(self) -> bool:
        return bool(self._running) and not self._stop.is_set()

    def problem(self) -> str | None:
        """Why no worker can make progress now (None: at least one can, or the pool runs no workers)."""
        if not self.running:
            return "workers are not running"
        if not self._workers:
            return None
        alive = [faults for thread, faults in self._workers if thread.is_alive()]
        if not alive:
            return "no worker thread is alive"
        if all(faults.failures for faults in alive):
            return f"no worker can make progress: {alive[0].cause}"
        return None

    def drain(self, timeout: float) -> bool:
        """Stop claiming and wait up to ``timeout`` for the running jobs to end; then stop. True if they all ended
        (the rest are handed back, as by ``stop``)."""
        self._no_claims.set()
        self.wake()
        deadline = time.monotonic() + timeout
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.1)
        drained = not self._busy()
        self.stop(timeout=max(1.0, deadline - time.monotonic()))
        return drained

    def _busy(self) -> bool:
        """Running a job, or claiming one (a claim that began before drain() returns a job to run, not to drop)."""
        with self._held_lock:
            return bool(self._held) or self._claiming > 0

    def held(self) -> set[str]:
        with self._held_lock:
            return set(self._held)

    def begin_stop(self) -> None:
        """Stop claiming; running jobs stop at their next step and are handed back (safe in a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loops; running jobs stop at their next step and are handed back. Waits at most ``timeout``."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._running:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in self._running if thread.is_alive()]
        if stuck:
            log.warning("stopping without waiting any longer for %s (their jobs run again from their leases)",
                        ", ".join(stuck))  # fmt: skip
        if self._threads:
            try:
                self.store.forget_worker(self.id)
            except Exception:  # the store is away: the row ages out of /metrics (it is not heard from again)
                pass

    def wake(self) -> None:
        """Tell idle workers a job was queued (they would find it at the next poll anyway)."""
        with self._wake:
            self._wake.notify_all()

    # --- the three loops ------------------------------------------------------------------------------------------

    def _supervise(self, role: str, loop, faults: FaultLog) -> None:
        """Run ``loop`` until the pool stops; if it raises (a bug), log it, count a restart and run it again."""
        if role == "work":
            lower_priority(self.nice)  # once per thread, not per restart of the loop
        while not self._stop.is_set():
            try:
                loop(faults)
            except Exception as exc:
                self.metrics.worker_restarts.labels(role).inc()
                self._stop.wait(backoff_s(faults.failed("the loop (restarting it)", exc)))

    def _work(self, faults: FaultLog) -> None:
        while not self._stop.is_set():
            with self._held_lock:  # checked and counted together: drain() waits for any claim begun before it
                claiming = not self._no_claims.is_set()
                if claiming:
                    self._claiming += 1
            if not claiming:
                self._stop.wait(IDLE_POLL_S)
                continue
            job = error = None
            try:
                job = self.store.claim(self.id, self.lease_s, self.max_attempts, skip=self.held())
            except Exception as exc:
                error = exc
            finally:
                with self._held_lock:
                    self._claiming -= 1
                    if job is not None:
                        self._held.add(job.id)
            if error is not None:
                self._stop.wait(backoff_s(faults.failed("claiming a job", error)))
                continue
            faults.succeeded()
            if job is None:
                with self._wake:
                    self._wake.wait(IDLE_POLL_S)
                continue
            if job.taken_from:
                log.info("job %s: taken over from %s, whose lease lapsed", job.id, job.taken_from)
                with self._held_lock:
                    self._takeovers += 1
                self.metrics.lease_takeovers.inc()
            try:
                self.run(job, faults)
            except ShuttingDown:
                self._hand_back(job, count_attempt=False)
            except Exception as exc:
                # The environment (or a bug outside the engine) stopped the run: hand the job back so it runs again.
                failures = faults.failed(f"running job {job.id}", exc)
                self._hand_back(job, count_attempt=True)
                self._stop.wait(backoff_s(failures))
            finally:
                with self._held_lock:
                    self._held.discard(job.id)

    def _heartbeat(self, faults: FaultLog) -> None:
        while True:
            held = self.held()
            try:
                self.store.renew(self.id, held, self.lease_s)
                if self._threads:
                    self.store.report_worker(self.report(held))
                faults.succeeded()
            except Exception as exc:
                faults.failed("renewing leases", exc)
            if self._stop.wait(self.lease_s / 3):
                return

    def report(self, held: set[str] | None = None) -> WorkerReport:
        """This pool's heartbeat row (jobs/store.py ``WorkerRow``)."""
        return WorkerReport(id=self.id, role=self.role, threads=self._threads, started_at=self._started_at,
                            seen_at=time.time(), running=len(self.held() if held is None else held),
                            finished=self._finished, takeovers=self._takeovers)  # fmt: skip

    def _janitor(self, faults: FaultLog) -> None:
        while True:
            try:
                for job_id in self.store.fail_exhausted(self.max_attempts):
                    log.warning("job %s failed: it stopped its worker %d times", job_id, self.max_attempts)
                for job in self.store.purge_expired():
                    self.storage.delete_prefix(job_folder(job.id))
                faults.succeeded()
            except Exception as exc:
                faults.failed("the janitor's pass", exc)
            if self._stop.wait(self.purge_interval_s):
                return

    # --- one job --------------------------------------------------------------------------------------------------

    def run(self, job: Job, faults: FaultLog | None = None) -> None:
        """Run a claimed job to a terminal state. Every store write is fenced by this pool's lease.

        Raises ShuttingDown if the pool stopped first, and the environment's errors (store, disk) that stopped it:
        the caller hands the job back.
        """
        faults = faults or FaultLog("openkontext-work", log)
        log.info("job %s: running (attempt %d)", job.id, job.attempts)
        spec = job.spec
        last_write = last_preview = 0.0
        writes_resume_at = 0.0  # after a failed progress write, the next waits (backoff): the steps go on meanwhile
        last_step_at = time.monotonic()
        state = RunState.CONTINUE

        def on_step(step: int, total: int, preview) -> bool:
            nonlocal last_write, last_preview, last_step_at, state, writes_resume_at
            now = time.monotonic()
            self.metrics.step_time.observe(now - last_step_at)
            last_step_at = now
            if self.previews and step < total and step % PREVIEW_EVERY == 0 and now - last_preview > PREVIEW_MIN_INTERVAL_S:
                last_preview = now
                try:
                    self.storage.put(preview_key(job.id), preview())
                except Exception as exc:
                    if not environment_error(exc):
                        log.exception("job %s: preview failed (the job goes on)", job.id)
                    else:  # a full disk: logged once, and /ready says so; the job goes on
                        faults.failed(f"writing a preview of job {job.id}", exc)
            if step < total and (now - last_write < PROGRESS_INTERVAL_S or now < writes_resume_at):
                return not self._stop.is_set()
            last_write = now
            # Progress stays below 1.0 until the result is stored: 1.0 means Ready.
            try:
                state = self.store.set_progress(job.id, self.id, 0.99 * step / total, step)
                faults.succeeded()
            except Exception as exc:  # progress is best effort: the job goes on, the finish is retried
                failures = faults.failed(f"writing the progress of job {job.id}", exc)
                writes_resume_at = time.monotonic() + backoff_s(failures, first_s=2.0, max_s=10.0)
            return state == RunState.CONTINUE and not self._stop.is_set()

        try:
            images = [decode_image(self.storage.get(key), max_pixels=self.max_image_pixels) for key in job.input_keys]
            image = self.engine.edit(
                images,
                spec.prompt,
                seed=spec.seed,
                steps=spec.steps,
                guidance=spec.guidance,
                aspect_ratio=spec.aspect_ratio,
                size=spec.size,
                preserve=spec.preserve,
                glyph_guidance=spec.glyph_guidance,
                loras=spec.loras,
                on_step=on_step,
            )
        except EditCancelled:
            if state == RunState.CANCEL:
                self._finish(job, faults, JobStatus.CANCELLED, error="cancelled by the client")
            elif self._stop.is_set():
                raise ShuttingDown from None
            else:
                # Lost the lease: leave the job to whoever holds it now.
                log.info("job %s: stopped before finishing (another worker holds it now)", job.id)
            return
        except AdapterError as exc:  # a LoRA this server no longer loads (restarted with other adapters)
            self._finish(job, faults, JobStatus.ERROR, error=str(exc))
            return
        except Exception as exc:
            if environment_error(exc):
                raise
            log.exception("job %s: engine failed", job.id)
            self._finish(job, faults, JobStatus.ERROR, error=f"engine failed: {type(exc).__name__}")
            return

        verdict = self.moderator.check_image(image, spec.safety_tolerance)
        if verdict.flagged:
            self._finish(job, faults, JobStatus.CONTENT_MODERATED, error="; ".join(verdict.reasons))
            return
        key = result_key(job.id, spec.output_format)
        data = encode_image(image, spec.output_format)
        self._persist(faults, f"storing the result of job {job.id}", lambda: self.storage.put(key, data))
        self._finish(job, faults, JobStatus.READY, result_key=key)

    def _persist(self, faults: FaultLog, doing: str, write):
        """Run ``write`` until it succeeds, retrying the environment's errors with backoff; ShuttingDown if the pool
        stops first. A job's outcome is kept while the store or the disk is away, never dropped."""
        while True:
            try:
                outcome = write()
            except Exception as exc:
                if not environment_error(exc):
                    raise
                if self._stop.wait(backoff_s(faults.failed(doing, exc))):
                    raise ShuttingDown from exc
                continue
            faults.succeeded()
            return outcome

    def _finish(self, job: Job, faults: FaultLog, status: JobStatus, **outcome) -> None:
        written = self._persist(faults, f"finishing job {job.id}",
                                lambda: self.store.finish(job.id, self.id, status, **outcome))  # fmt: skip
        if written:
            with self._held_lock:
                self._finished += 1
            self.metrics.jobs_finished.labels(status.value).inc()
            self.metrics.job_latency.labels(status.value).observe(time.time() - job.created_at)
            log.info("job %s: %s", job.id, status.value)
        else:
            log.info("job %s: another worker holds it now; its outcome here is dropped", job.id)

    def _hand_back(self, job: Job, *, count_attempt: bool) -> None:
        """Make a job this pool stopped running claimable again at once; if the store refuses, its lease lapses."""
        try:
            if self.store.release(job.id, self.id, count_attempt=count_attempt):
                log.info("job %s: handed back, it runs again", job.id)
        except Exception as exc:
            log.warning("job %s: could not hand it back (%s); it runs again when its lease lapses", job.id,
                        type(exc).__name__)  # fmt: skip
