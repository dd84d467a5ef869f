"""HTTP routes: submit an edit, poll its result, fetch the signed result file, health.

Handlers are plain ``def``s: FastAPI runs them in its thread pool, so decoding images and writing to the job store
never block the event loop.
"""

from __future__ import annotations

import io
import secrets
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import APIKeyHeader

from ..engine.images import ImageInputError, decode_base64, decode_image, media_type
from ..jobs.store import Job, JobStatus
from ..netguard import BlockedURLError, FetchError, fetch
from .schemas import AlphaEditRequest, ErrorResponse, ResultResponse, SubmitResponse, WebhookSubmitResponse
from .views import WIRE_STATUS, task_view

router = APIRouter()

_key_header = APIKeyHeader(name="x-key", auto_error=False, description="Your API key.")

AUTH_ERRORS = {401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}}


def service_of(request: Request):
    return request.app.state.service


def require_owner(request: Request, key: Annotated[str | None, Depends(_key_header)]) -> str:
    """The owner id for the request's x-key; 401 if missing, 403 if unknown."""
    if not key:
        raise HTTPException(401, "missing API key: send it in the x-key header")
    owner = service_of(request).keys.owner_of(key)
    if owner is None:
        raise HTTPException(403, "invalid API key")
    return owner


Owner = Annotated[str, Depends(require_owner)]


def field_error(field: str, message: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": kind}])


def base_url(request: Request) -> str:
    configured = service_of(request).settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


# --- submit ---------------------------------------------------------------------------------------------------------


@router.post(
    "/v1/flux-bagel-alpha",
    response_model=SubmitResponse | WebhookSubmitResponse,
    responses={**AUTH_ERRORS, 413: {"model": ErrorResponse}, 429: {"model": ErrorResponse}},
    summary="Edit an image as the prompt asks (alpha route)",
    tags=["edit"],
)
def submit_alpha(body: AlphaEditRequest, request: Request, owner: Owner) -> SubmitResponse | WebhookSubmitResponse:
    job = submit(request, owner, route="flux-bagel-alpha", body=body, images=[body.input_image])
    return submit_response(request, job)


def submit(request: Request, owner: str, *, route: str, body: AlphaEditRequest, images: list[str]) -> Job:
    """Validate, decode, moderate and queue one task. Nothing is stored unless every check passed."""
    service = service_of(request)
    settings = service.settings
    if len(body.prompt) > settings.max_prompt_chars:
        raise field_error("prompt", f"prompt is longer than {settings.max_prompt_chars} characters")
    if service.store.count_active(owner) >= settings.max_active_tasks:
        raise HTTPException(429, f"too many active tasks: at most {settings.max_active_tasks} queued or running per key")

    webhook_url = str(body.webhook_url) if body.webhook_url else None
    if webhook_url:
        try:
            service.url_policy.resolve(webhook_url)
        except BlockedURLError as exc:
            raise field_error("webhook_url", f"webhook_url: {exc}") from None

    decoded = []
    for index, data in enumerate(images):
        field = "input_image" if index == 0 else f"input_image_{index + 1}"
        try:
            decoded.append(decode_image(image_bytes_of(data, service), max_pixels=settings.max_image_pixels))
        except (ImageInputError, BlockedURLError, FetchError) as exc:
            raise field_error(field, f"{field}: {exc}") from None

    job_id = str(uuid.uuid4())
    seed = body.seed if body.seed is not None else secrets.randbelow(2**32)
    params: dict[str, Any] = {
        "steps": body.steps,
        "guidance": body.guidance,
        "safety_tolerance": body.safety_tolerance,
        "output_format": body.output_format,
    }
    common = dict(job_id=job_id, owner=owner, route=route, prompt=body.prompt, params=params, seed=seed,
                  retention_s=settings.retention_s, webhook_url=webhook_url,
                  webhook_secret=body.webhook_secret)  # fmt: skip

    verdict = service.moderator.check_prompt(body.prompt, body.safety_tolerance)
    for image in decoded:
        if not verdict.flagged:
            verdict = service.moderator.check_image(image, body.safety_tolerance)
    if verdict.flagged:
        return service.store.create(
            **common, input_keys=[], status=JobStatus.REQUEST_MODERATED, error="; ".join(verdict.reasons)
        )

    input_keys = []
    for index, image in enumerate(decoded):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        key = f"{job_id}/input-{index}.png"
        service.storage.put(key, buffer.getvalue())
        input_keys.append(key)
    job = service.store.create(**common, input_keys=input_keys)
    service.workers.wake()
    return job


def image_bytes_of(data: str, service) -> bytes:
    """An ``input_image`` value as bytes: fetched (SSRF-guarded) when it is an http(s) URL, else base64-decoded."""
    if data[:8].lower().startswith(("http://", "https://")):
        return fetch(data.strip(), service.url_policy, max_bytes=service.settings.max_body_bytes,
                     timeout_s=service.settings.fetch_timeout_s)  # fmt: skip
    return decode_base64(data)


def submit_response(request: Request, job: Job) -> SubmitResponse | WebhookSubmitResponse:
    """BFL's answer to a submit: with a webhook_url it is the webhook variant (id, status, webhook_url)."""
    if job.webhook_url:
        return WebhookSubmitResponse(id=job.id, status=WIRE_STATUS[job.status], webhook_url=job.webhook_url,
                                     polling_url=polling_url(request, job.id))  # fmt: skip
    return SubmitResponse(id=job.id, polling_url=polling_url(request, job.id))


def polling_url(request: Request, job_id: str) -> str:
    return f"{base_url(request)}/v1/get_result?id={job_id}"


# --- poll -----------------------------------------------------------------------------------------------------------


@router.get(
    "/v1/get_result",
    response_model=ResultResponse,
    response_model_exclude_none=False,
    responses=AUTH_ERRORS,
    summary="Poll a task: status, progress, and the result URL when Ready",
    tags=["edit"],
)
def get_result(request: Request, owner: Owner, id: Annotated[str, Query(max_length=64)]) -> ResultResponse:
    service = service_of(request)
    job = service.store.get(id, owner)
    if job is None:
        return ResultResponse(id=id, status="Task not found")
    webhook = service.store.webhook_state(job.id) if job.webhook_url else None
    return ResultResponse(**task_view(job, base_url=base_url(request), signer=service.signer, webhook=webhook))


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
    if not service.signer.verify(f"/results/{job_id}/{filename}", exp, sig):
        raise HTTPException(403, "invalid or expired signature")
    job = service.store.get(job_id)
    if job is None or job.status != JobStatus.READY or job.result_key != f"{job_id}/{filename}":
        raise HTTPException(404, "result not found (it may have been purged)")
    try:
        data = service.storage.get(job.result_key)
    except FileNotFoundError:
        raise HTTPException(404, "result not found (it may have been purged)") from None
    max_age = max(0, int(exp) - int(time.time()))
    return Response(
        data,
        media_type=media_type(job.params["output_format"]),
        headers={"Cache-Control": f"private, max-age={max_age}"},
    )


# --- operations -----------------------------------------------------------------------------------------------------


@router.get("/health", summary="Liveness", tags=["operations"])
def health(request: Request) -> dict[str, Any]:
    info = service_of(request).engine.info
    return {"status": "ok", "model": info.name, "placeholder_model": info.placeholder}
