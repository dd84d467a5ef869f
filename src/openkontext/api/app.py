"""The application factory: settings in, a FastAPI app out — with its job store, storage, engine and workers."""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..config import Settings
from ..engine.kontext import KontextEngine
from ..engine.startup import start_engine
from ..jobs.faults import describe, out_of_space
from ..jobs.store import JobStore, SchemaMismatch, StoreCorrupt
from ..jobs.webhooks import WebhookSender
from ..jobs.worker import WorkerPool
from ..metrics import Metrics
from ..netguard import UrlPolicy
from ..safety.moderation import ModerationConfig, Moderator
from ..storage import Storage, open_storage
from .auth import KeyRing, ensure_local_key
from .limits import BodySizeLimit
from .routes import router
from .signing import UrlSigner, load_or_create_secret
from .views import task_view

log = logging.getLogger(__name__)

PLAYGROUND_DIR = Path(__file__).resolve().parent / "static"  # the web playground at / (docs/playground.md)


@dataclass
class Service:
    """Everything a request handler needs, built once per app from the settings."""

    settings: Settings
    store: JobStore
    storage: Storage
    signer: UrlSigner
    keys: KeyRing
    moderator: Moderator
    engine: KontextEngine
    workers: WorkerPool
    url_policy: UrlPolicy
    webhooks: WebhookSender
    metrics: Metrics


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


def build_service(
    settings: Settings,
    engine: KontextEngine | None = None,
    storage: Storage | None = None,
    store: JobStore | None = None,
) -> Service:
    check_data_dir(settings, storage)
    store = store or open_store(settings)
    configured_keys = list(settings.api_keys)
    if not configured_keys:
        key, created = ensure_local_key(settings.data_dir)
        configured_keys = [key]
        where = settings.data_dir / "api-key"
        if created:
            log.warning("No API keys configured: generated one and saved it to %s. Use it as the x-key header.", where)
        else:
            log.info("No API keys configured: using the local key in %s.", where)
    if engine is None:  # compiled before the first request, not during it (when the options compile something)
        engine = start_engine(settings.model, device=settings.device, transformer_file=settings.transformer_file,
                              preset=settings.accel_preset, overrides=settings.accel_options,
                              quantize=settings.quantize, adapters=settings.loras, preserve=settings.preserve,
                              warmup=settings.accel_warmup)  # fmt: skip
    if engine.info.placeholder:
        log.warning("MODEL: %s — %s", engine.info.name, engine.info.description)
    else:
        log.info("model: %s (%s) on %s", engine.info.name, engine.info.description, engine.device)
    storage = storage or open_storage(settings)
    moderator = Moderator(ModerationConfig.from_settings(settings))
    signer = UrlSigner(load_or_create_secret(settings.signing_secret, settings.data_dir / "signing-secret"),
                       settings.delivery_ttl_s)  # fmt: skip
    metrics = Metrics(store.count_by_status)
    workers = WorkerPool(store, storage, engine, moderator, threads=settings.workers, lease_s=settings.lease_s,
                         max_attempts=settings.max_attempts, metrics=metrics,
                         purge_interval_s=settings.purge_interval_s, previews=settings.previews,
                         max_image_pixels=settings.max_image_pixels)  # fmt: skip
    url_policy = UrlPolicy(tuple(settings.url_allowlist))
    webhooks = WebhookSender(
        store,
        lambda job: task_view(job, base_url=settings.own_base_url, signer=signer),
        url_policy,
        worker_id=workers.id,
        timeout_s=settings.webhook_timeout_s,
        first_backoff_s=settings.webhook_backoff_s,
    )
    return Service(
        settings=settings, store=store, storage=storage, signer=signer, keys=KeyRing(configured_keys),
        moderator=moderator, engine=engine, workers=workers, url_policy=url_policy, webhooks=webhooks,
        metrics=metrics,
    )  # fmt: skip


def create_app(
    settings: Settings | None = None,
    engine: KontextEngine | None = None,
    storage: Storage | None = None,
    store: JobStore | None = None,
) -> FastAPI:
    """The app; ``engine``, ``storage`` and ``store`` replace the ones the settings describe (tests, embedding, a
    store the caller already opened and checked)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = build_service(settings, engine, storage, store)
        app.state.service = service
        service.workers.start()
        service.webhooks.start()
        try:
            yield
        finally:  # bounded, even while the store is locked: stuck threads are daemons, their jobs' leases lapse
            service.workers.begin_stop()  # (``api/server.py`` already did at the signal)
            service.webhooks.stop()
            service.workers.stop(timeout=settings.shutdown_timeout_s)
            service.store.close()

    app = FastAPI(
        title="OpenKontext",
        version=__version__,
        description="In-context image editing with a Black Forest Labs-compatible API. Authenticate with `x-key`.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(router)
    app.add_api_route("/", lambda: FileResponse(PLAYGROUND_DIR / "index.html"), include_in_schema=False)
    app.mount("/playground", StaticFiles(directory=PLAYGROUND_DIR), name="playground")
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _store_unavailable)
    app.add_exception_handler(OSError, _os_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default echoes the offending input back; for a 20 MB image that is 20 MB of noise. Keep loc/msg/type.
    detail = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
              for err in exc.errors()]  # fmt: skip
    return JSONResponse({"detail": detail}, status_code=422)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


RETRY_AFTER_S = "5"  # a locked or restarting store is usually back within seconds
DISK_FULL_RETRY_AFTER_S = "30"  # space comes back when someone frees it


def _disk_full(request: Request) -> JSONResponse:
    log.warning("%s %s: refused, the disk is full", request.method, request.url.path)
    return JSONResponse({"detail": "insufficient storage: the server's disk is full; retry later"}, status_code=507,
                        headers={"Retry-After": DISK_FULL_RETRY_AFTER_S})  # fmt: skip


async def _store_unavailable(request: Request, exc: DBAPIError) -> JSONResponse:
    """The job store refused (locked, unreachable, full, corrupt) after its retries: 503, try again later."""
    if out_of_space(exc):
        return _disk_full(request)
    log.warning("%s %s: refused, %s", request.method, request.url.path, describe(exc))
    return JSONResponse({"detail": "the job store is unavailable right now; retry later"}, status_code=503,
                        headers={"Retry-After": RETRY_AFTER_S})  # fmt: skip


async def _os_error(request: Request, exc: OSError) -> JSONResponse:
    if out_of_space(exc):
        return _disk_full(request)
    return await _unexpected_error(request, exc)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error"}, status_code=500)
