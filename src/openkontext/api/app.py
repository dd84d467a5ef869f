"""The application factory: settings in, a FastAPI app out — with its job store, storage, engine and workers."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..config import Settings
from ..engine.model_info import EditDefaults, model_label
from ..jobs.faults import describe, out_of_space
from ..jobs.store import JobStore
from ..jobs.webhooks import WebhookSender
from ..jobs.worker import WorkerPool
from ..metrics import Metrics
from ..netguard import UrlPolicy
from ..safety.moderation import ModerationConfig, Moderator
from ..runtime import check_data_dir, engine_for, open_store, store_metrics, worker_pool
from ..storage import Storage, open_storage
from .auth import KeyRing, ensure_local_key
from .limits import BodySizeLimit
from .routes import router
from .signing import UrlSigner, load_or_create_secret
from .views import task_view

if TYPE_CHECKING:  # an API-only replica never imports torch and diffusers (seconds of start-up)
    from ..engine.kontext import KontextEngine

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
    engine: KontextEngine | None  # None in an API-only replica (workers=0): it never loads the model
    model_name: str
    placeholder_model: bool
    edit_defaults: EditDefaults  # what a request's preserve and glyph_guidance default to (GET /health)
    workers: WorkerPool
    url_policy: UrlPolicy
    webhooks: WebhookSender
    metrics: Metrics

    @property
    def reads_locally(self) -> bool:
        """A task's state is read from local files only (a SQLite store, results on this disk)."""
        return self.store.reads_locally and self.storage.reads_locally


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
    if engine is None and settings.workers:  # compiled before the first request (when the options compile something)
        engine = engine_for(settings)
    if engine is None:
        model_name, placeholder, edit_defaults = model_label(settings.model, preserve=settings.preserve,
                                                             glyph_guidance=settings.glyph_guidance)  # fmt: skip
        log.info("API only (workers=0): the model is not loaded here; worker processes sharing the job store run %s",
                 model_name)  # fmt: skip
    else:
        model_name, placeholder, edit_defaults = engine.info.name, engine.info.placeholder, EditDefaults.of(engine.info)
        if placeholder:
            log.warning("MODEL: %s — %s", engine.info.name, engine.info.description)
        else:
            log.info("model: %s (%s) on %s", engine.info.name, engine.info.description, engine.device)
    storage = storage or open_storage(settings)
    moderator = Moderator(ModerationConfig.from_settings(settings))
    signer = UrlSigner(load_or_create_secret(settings.signing_secret, settings.data_dir / "signing-secret"),
                       settings.delivery_ttl_s)  # fmt: skip
    metrics = store_metrics(settings, store)
    workers = worker_pool(settings, store, storage, engine, moderator, metrics, role="serve")
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
        moderator=moderator, engine=engine, model_name=model_name, placeholder_model=placeholder,
        edit_defaults=edit_defaults, workers=workers, url_policy=url_policy, webhooks=webhooks,
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
