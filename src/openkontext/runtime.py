"""What every OpenKontext process opens at start: the data dir (checked), the job store (checked, migrated), the
engine, the worker pool and its metrics — and ``WorkerProcess``, a worker without HTTP.

Three roles share these parts (docs/deploy.md): ``openkontext serve`` (the API, with worker threads unless
``--workers 0``), ``openkontext worker`` (worker threads only, claiming from the shared store), and the Ray actors of
``openkontext cluster`` (``cluster.py``), each a ``WorkerProcess``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from typing import TYPE_CHECKING

from prometheus_client import start_http_server
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from .config import Settings
from .jobs.store import JobStore, SchemaMismatch, StoreCorrupt
from .jobs.worker import WorkerPool
from .metrics import Metrics
from .safety.moderation import ModerationConfig, Moderator
from .storage import Storage, open_storage

if TYPE_CHECKING:  # imported when an engine is started: an API-only replica never loads torch and diffusers
    from .engine.kontext import KontextEngine

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The server cannot start with this data dir or database; the message names the path and the cause."""


def check_data_dir(settings: Settings, storage: Storage | None = None) -> None:
    """Fail fast, before the model loads: the data dir and its storage folder are writable and have room."""
    for folder in (settings.data_dir, settings.storage_dir):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # holds secrets: private whatever the umask
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise StartupError(f"the data dir {folder.resolve()} is not writable: {exc.strerror or exc}") from None
    free = storage.free_bytes() if storage else shutil.disk_usage(settings.storage_dir).free
    if free < settings.min_free_bytes:
        raise StartupError(
            f"the disk of the data dir {settings.data_dir.resolve()} has {free / 2**20:.1f} MiB free, less than "
            f"OPENKONTEXT_MIN_FREE_BYTES ({settings.min_free_bytes / 2**20:.1f} MiB): free some space"
        )


def open_store(settings: Settings) -> JobStore:
    """The job store, checked: refuses a database it cannot open or that fails its integrity check."""
    url = settings.resolved_database_url
    where = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else make_url(url).render_as_string()
    try:
        store = JobStore(url, webhook_retry_s=settings.webhook_retry_s, busy_timeout_s=settings.store_busy_timeout_s,
                         retry_s=settings.store_retry_s, migrate=settings.migrate_on_start)  # fmt: skip
    except SchemaMismatch as exc:
        raise StartupError(f"the job database {where}: {exc}") from None
    except DBAPIError as exc:
        raise StartupError(f"cannot open the job database {where}: {exc.orig or exc}") from None
    except OSError as exc:
        raise StartupError(f"cannot open the job database {where}: {exc.strerror or exc}") from None
    try:
        store.check_integrity()
    except StoreCorrupt as exc:
        store.close()
        raise StartupError(
            f"the job database {where} is corrupt ({exc}); refusing to serve from it. Restore it from a backup, or "
            "move it away to start with an empty one"
        ) from None
    except DBAPIError as exc:
        store.close()
        raise StartupError(f"cannot read the job database {where}: {exc.orig or exc}") from None
    return store


def engine_for(settings: Settings) -> KontextEngine:
    """The settings' model with its options, warmed up (compiled before the first job, when the options compile)."""
    from .engine.startup import start_engine

    return start_engine(settings.model, device=settings.device, transformer_file=settings.transformer_file,
                        preset=settings.accel_preset, overrides=settings.accel_options, quantize=settings.quantize,
                        adapters=settings.loras, preserve=settings.preserve, glyph_guidance=settings.glyph_guidance,
                        warmup=settings.accel_warmup)  # fmt: skip


def store_metrics(settings: Settings, store: JobStore) -> Metrics:
    """This process's metrics, with the deployment's queue and every worker pool heard from within a lease."""
    return Metrics(store.count_by_status, lambda: store.workers(seen_after=time.time() - settings.lease_s))


def worker_pool(settings: Settings, store: JobStore, storage: Storage, engine: KontextEngine | None,
                moderator: Moderator, metrics: Metrics, *, role: str) -> WorkerPool:  # fmt: skip
    return WorkerPool(store, storage, engine, moderator, threads=settings.workers, role=role, lease_s=settings.lease_s,
                      max_attempts=settings.max_attempts, metrics=metrics, purge_interval_s=settings.purge_interval_s,
                      previews=settings.previews, max_image_pixels=settings.max_image_pixels,
                      nice=settings.worker_nice)  # fmt: skip


class WorkerProcess:
    """Worker threads without HTTP: they claim jobs from the shared store, run them, store the results.

    Start-up fails (StartupError) before the model loads when the data dir, the store or its schema cannot work.
    Webhooks are sent by the API replicas (they sign payloads with result URLs); this role only runs jobs.
    """

    def __init__(self, settings: Settings, *, role: str = "worker", engine: KontextEngine | None = None):
        if settings.workers < 1:
            raise StartupError("a worker process needs at least one worker thread (OPENKONTEXT_WORKERS >= 1)")
        self.settings = settings
        check_data_dir(settings)  # before opening anything in it
        self.storage = open_storage(settings)
        self.store = open_store(settings)
        try:
            self.engine = engine or engine_for(settings)
            moderator = Moderator(ModerationConfig.from_settings(settings))
        except BaseException:
            self.store.close()
            raise
        self.metrics = store_metrics(settings, self.store)
        self.pool = worker_pool(settings, self.store, self.storage, self.engine, moderator, self.metrics, role=role)
        self._metrics_server = None

    @property
    def id(self) -> str:
        return self.pool.id

    def start(self, metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> None:
        """Start the worker threads; with ``metrics_port``, serve this process's ``/metrics`` there (0: any port)."""
        if metrics_port is not None:
            self._metrics_server, _thread = start_http_server(metrics_port, metrics_host, registry=self.metrics.registry)
            log.info("metrics on http://%s:%d/metrics", metrics_host, self._metrics_server.server_port)
        self.pool.start()
        log.info("worker %s: %d thread(s) on %s, model %s", self.id, self.settings.workers, self.engine.device,
                 self.engine.info.name)  # fmt: skip

    def drain(self, timeout: float) -> bool:
        """Stop claiming, let running jobs end (up to ``timeout``, then hand them back), and close."""
        drained = self.pool.drain(timeout)
        self.close()
        return drained

    def close(self) -> None:
        self.pool.stop(timeout=self.settings.shutdown_timeout_s)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None
        self.store.close()
