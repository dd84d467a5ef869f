"""HTTP routes: submit (four routes, one handler), poll, stream, list, cancel, signed download, operations.

Handlers are plain ``def``s: FastAPI runs them in its thread pool, so decoding images and writing to the job store
never block the event loop. Polling (get_result and its SSE stream) is ``async``: see ``current_view``.
"""

from __future__ import annotations

import dataclasses
import json
import time

import anyio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from fastapi.security import APIKeyHeader

from ..engine.images import media_type
from ..jobs.keys import preview_key, result_path
from ..jobs.store import Job
from ..statuses import JobStatus, TaskStatus
from .schemas import (
    AlphaEditRequest,
    ErrorResponse,
    KontextRequest,
    ResultResponse,
    SubmitResponse,
    TaskList,
    TextToImageRequest,
    WebhookSubmitResponse,
)
from .pagination import MAX_CURSOR_CHARS, decode_cursor, encode_cursor
from .signing import signed_params
from .submit import submit
from .views import task_view

router = APIRouter()

_key_header = APIKeyHeader(name="x-key", auto_error=False, description="Your API key.")

AUTH_ERRORS = {401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}}
SUBMIT_ERRORS = {**AUTH_ERRORS, 409: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                 429: {"model": ErrorResponse}, 503: {"model": ErrorResponse},
                 507: {"model": ErrorResponse}}  # fmt: skip
SSE_POLL_S = 0.25


def service_of(request: Request):
    return request.app.state.service


async def require_owner(request: Request, key: Annotated[str | None, Depends(_key_header)]) -> str:
    """The owner id for the request's x-key; 401 if missing, 403 if unknown. (A hash and a comparison: it runs on
    the event loop, sparing every request a trip through the thread pool.)"""
    if not key:
        raise HTTPException(401, "missing API key: send it in the x-key header")
    owner = service_of(request).keys.owner_of(key)
    if owner is None:
        raise HTTPException(403, "invalid API key")
    return owner


Owner = Annotated[str, Depends(require_owner)]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=255,
           description="Retrying a submit with the same key returns the first task instead of running twice."),
]  # fmt: skip
TaskId = Annotated[str, Query(max_length=64, description="The task id from the submit response.")]


def base_url(request: Request) -> str:
    configured = service_of(request).settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


# --- submit ---------------------------------------------------------------------------------------------------------


def accepted(request: Request, job: Job) -> SubmitResponse | WebhookSubmitResponse:
    """BFL's answer to a submit: with a webhook_url it is the webhook variant (id, status, webhook_url)."""
    polling_url = f"{base_url(request)}/v1/get_result?id={job.id}"
    if job.webhook_url:
        return WebhookSubmitResponse(id=job.id, status=job.status.wire, webhook_url=job.webhook_url,
                                     polling_url=polling_url)  # fmt: skip
    return SubmitResponse(id=job.id, polling_url=polling_url)


SUBMIT = dict(response_model=SubmitResponse | WebhookSubmitResponse, responses=SUBMIT_ERRORS, tags=["submit"])


@router.post("/v1/flux-bagel-alpha", summary="Edit an image as the prompt asks (the alpha API doc's route)", **SUBMIT)
def submit_alpha(body: AlphaEditRequest, request: Request, owner: Owner, idempotency_key: IdempotencyKey = None):
    job = submit(service_of(request), owner, route="flux-bagel-alpha", body=body, idempotency_key=idempotency_key)
    return accepted(request, job)


@router.post("/v1/flux-kontext-pro", summary="Edit (or, without input_image, generate) — BFL's Kontext Pro schema",
             **SUBMIT)  # fmt: skip
def submit_kontext_pro(body: KontextRequest, request: Request, owner: Owner, idempotency_key: IdempotencyKey = None):
    job = submit(service_of(request), owner, route="flux-kontext-pro", body=body, idempotency_key=idempotency_key)
    return accepted(request, job)


@router.post("/v1/flux-kontext-max", summary="Same as flux-kontext-pro (one model serves both names)", **SUBMIT)
def submit_kontext_max(body: KontextRequest, request: Request, owner: Owner, idempotency_key: IdempotencyKey = None):
    job = submit(service_of(request), owner, route="flux-kontext-max", body=body, idempotency_key=idempotency_key)
    return accepted(request, job)


@router.post("/v1/flux-dev", summary="Text to image at an explicit width × height", **SUBMIT)
def submit_text_to_image(
    body: TextToImageRequest, request: Request, owner: Owner, idempotency_key: IdempotencyKey = None
):
    job = submit(service_of(request), owner, route="flux-dev", body=body, size=(body.width, body.height),
                 idempotency_key=idempotency_key)  # fmt: skip
    return accepted(request, job)


# --- poll, stream, list, cancel -------------------------------------------------------------------------------------


def view_of(request: Request, job: Job, queue_position: int | None = None) -> dict[str, Any]:
    service = service_of(request)
    if job.status == JobStatus.QUEUED and queue_position is None:
        queue_position = service.store.queue_positions([job])[job.id]
    preview = None
    if job.status == JobStatus.RUNNING and service.storage.exists(preview_key(job.id)):
        preview = service.storage.get(preview_key(job.id))
    return task_view(
        job,
        base_url=base_url(request),
        signer=service.signer,
        webhook=service.store.webhook_state(job.id) if job.webhook_url else None,
        queue_position=queue_position,
        preview=preview,
    )


def not_found(task_id: str) -> dict[str, Any]:
    return ResultResponse(id=task_id, status=TaskStatus.TASK_NOT_FOUND).model_dump()


@router.get("/v1/get_result", response_model=ResultResponse, responses=AUTH_ERRORS, tags=["tasks"],
            summary="Poll a task: status, progress, and the result URL when Ready")  # fmt: skip
async def get_result(request: Request, owner: Owner, id: TaskId) -> ResultResponse:
    _, view = await current_view(request, owner, id)
    return ResultResponse(**view)


async def current_view(request: Request, owner: str, task_id: str) -> tuple[Job | None, dict[str, Any]]:
    """A task and its get_result body. Polls are most of a server's requests: a task that ended (and has no webhook
    whose delivery state could still change) is answered from memory on the event loop. Any other is read in one
    statement: on the event loop too where the reads are local files (a SQLite store, results on this disk: ~0.1 ms,
    less than the thread pool's hand-off costs), else in the thread pool (a database or an object store across the
    network)."""
    service = service_of(request)
    job = service.store.get_ended(task_id, owner)
    if job is not None and not job.webhook_url:
        return job, view_of(request, job)
    if service.reads_locally:
        return read_view(request, owner, task_id)
    return await run_in_threadpool(read_view, request, owner, task_id)


def read_view(request: Request, owner: str, task_id: str) -> tuple[Job | None, dict[str, Any]]:
    job, queue_position = service_of(request).store.poll(task_id, owner)
    return job, view_of(request, job, queue_position) if job else not_found(task_id)


@router.post("/v1/cancel", response_model=ResultResponse, responses=AUTH_ERRORS, tags=["tasks"],
             summary="Cancel a queued or running task")  # fmt: skip
def cancel(request: Request, owner: Owner, id: TaskId) -> ResultResponse:
    """A queued task is Cancelled at once; a running one stops within one step. Ended tasks are left as they are.
    Returns the task's state after the request."""
    service = service_of(request)
    job = service.store.cancel(id, owner)
    if job is None:
        return ResultResponse(**not_found(id))
    return ResultResponse(**view_of(request, job))


@router.get("/v1/tasks", response_model=TaskList, responses=AUTH_ERRORS, tags=["tasks"],
            summary="The calling key's tasks, newest first")  # fmt: skip
def list_tasks(
    request: Request,
    owner: Owner,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS,
                                        description="next_cursor of the previous page")] = None,
) -> TaskList:
    before = None
    if cursor is not None:
        try:
            before = decode_cursor(cursor)
        except ValueError:
            raise HTTPException(422, "cursor must be a next_cursor value from a previous page") from None
    store = service_of(request).store
    jobs = store.list_for(owner, limit=limit + 1, before=before)
    page, more = jobs[:limit], len(jobs) > limit
    positions = store.queue_positions(page)
    return TaskList(tasks=[ResultResponse(**view_of(request, job, positions.get(job.id))) for job in page],
                    next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None)  # fmt: skip


@router.get(
    "/v1/get_result/stream",
    responses={**AUTH_ERRORS, 200: {"content": {"text/event-stream": {}}}},
    response_class=StreamingResponse,
    tags=["tasks"],
    summary="Server-sent events of a task's status and progress, until it ends",
)
async def stream_result(request: Request, owner: Owner, id: TaskId) -> StreamingResponse:
    """Each event is ``event: status`` with the get_result body as ``data``, sent whenever it changes (the signed
    URL aside); the stream ends after the terminal state."""

    async def events():
        last = None
        while not await request.is_disconnected():
            job, view = await current_view(request, owner, id)
            comparable = {**view, "result": bool(view["result"])}
            if comparable != last:
                last = comparable
                yield f"event: status\ndata: {json.dumps(view)}\n\n"
            if job is None or job.status.terminal:
                return
            await anyio.sleep(SSE_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# --- delivery -------------------------------------------------------------------------------------------------------


@router.get(
    "/results/{job_id}/{filename}",
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}, 403: {"model": ErrorResponse},
               404: {"model": ErrorResponse}},
    response_class=Response,
    summary="Download a result through its signed URL (no API key needed)",
    tags=["delivery"],
)  # fmt: skip
def download_result(
    request: Request,
    job_id: str,
    filename: str,
    exp: Annotated[str, Query(max_length=20)] = "",
    sig: Annotated[str, Query(max_length=128)] = "",
) -> Response:
    service = service_of(request)
    signed = signed_params(request.url.query)  # the one canonical form; exp and sig above document the parameters
    path = f"/results/{job_id}/{filename}"
    if signed is None or not service.signer.verify(path, *signed):
        raise HTTPException(403, "invalid or expired signature")
    exp = signed[0]
    job = service.store.get(job_id)
    if job is None or job.status != JobStatus.READY or result_path(job.result_key) != path:
        raise HTTPException(404, "result not found (it may have been purged)")
    try:
        data = service.storage.get(job.result_key)
    except FileNotFoundError:
        raise HTTPException(404, "result not found (it may have been purged)") from None
    max_age = max(0, int(exp) - int(time.time()))
    return Response(data, media_type=media_type(job.spec.output_format),
                    headers={"Cache-Control": f"private, max-age={max_age}"})  # fmt: skip


# --- operations -----------------------------------------------------------------------------------------------------


@router.get("/health", summary="Liveness: the process answers", tags=["operations"])
def health(request: Request) -> dict[str, Any]:
    """Also lists the LoRA adapters requests may name in ``loras`` (name and default scale) and what the request
    extensions ``preserve`` and ``glyph_guidance`` default to (null: the model ignores it)."""
    service = service_of(request)
    return {"status": "ok", "model": service.model_name, "placeholder_model": service.placeholder_model,
            "loras": [adapter.describe() for adapter in service.settings.loras],
            "defaults": dataclasses.asdict(service.edit_defaults)}  # fmt: skip


@router.get("/ready", summary="Readiness: the model is loaded and a worker can make progress", tags=["operations"],
            responses={503: {"model": ErrorResponse}})  # fmt: skip
def ready(request: Request) -> dict[str, Any]:
    service = service_of(request)
    problem = service.workers.problem()
    if not problem and service.storage.free_bytes() < service.settings.min_free_bytes:
        problem = f"the data disk is full (less than {service.settings.min_free_bytes} bytes free)"
    if problem:
        raise HTTPException(503, problem)
    return {"status": "ready", "model": service.model_name, "workers": service.settings.workers}


@router.get("/metrics", summary="Prometheus metrics", tags=["operations"], response_class=Response)
def metrics(request: Request) -> Response:
    return Response(service_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
