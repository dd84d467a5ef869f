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
from .schemas import AlphaEditRequest, ErrorResponse, ResultResponse, SubmitResponse

router = APIRouter()

WIRE_STATUS = {
    JobStatus.QUEUED: "Pending",
    JobStatus.RUNNING: "Pending",
    JobStatus.READY: "Ready",
    JobStatus.ERROR: "Error",
    JobStatus.REQUEST_MODERATED: "Request Moderated",
    JobStatus.CONTENT_MODERATED: "Content Moderated",
}

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
    response_model=SubmitResponse,
    responses={**AUTH_ERRORS, 413: {"model": ErrorResponse}, 429: {"model": ErrorResponse}},
    summary="Edit an image as the prompt asks (alpha route)",
    tags=["edit"],
)
def submit_alpha(body: AlphaEditRequest, request: Request, owner: Owner) -> SubmitResponse:
    job = submit(request, owner, route="flux-bagel-alpha", body=body, images=[body.input_image])
    return SubmitResponse(id=job.id, polling_url=polling_url(request, job.id))


def submit(request: Request, owner: str, *, route: str, body: AlphaEditRequest, images: list[str]) -> Job:
    """Validate, decode, moderate and queue one task. Nothing is stored unless every check passed."""
    service = service_of(request)
    settings = service.settings
    if len(body.prompt) > settings.max_prompt_chars:
        raise field_error("prompt", f"prompt is longer than {settings.max_prompt_chars} characters")
    if service.store.count_active(owner) >= settings.max_active_tasks:
        raise HTTPException(429, f"too many active tasks: at most {settings.max_active_tasks} queued or running per key")

    decoded = []
    for index, data in enumerate(images):
        field = "input_image" if index == 0 else f"input_image_{index + 1}"
        try:
            decoded.append(decode_image(decode_base64(data), max_pixels=settings.max_image_pixels))
        except ImageInputError as exc:
            raise field_error(field, f"{field}: {exc}") from None

    job_id = str(uuid.uuid4())
    seed = body.seed if body.seed is not None else secrets.randbelow(2**32)
    params: dict[str, Any] = {
        "steps": body.steps,
        "guidance": body.guidance,
        "safety_tolerance": body.safety_tolerance,
        "output_format": body.output_format,
        "webhook_url": str(body.webhook_url) if body.webhook_url else None,
    }
    common = dict(job_id=job_id, owner=owner, route=route, prompt=body.prompt, params=params, seed=seed,
                  retention_s=settings.retention_s)  # fmt: skip

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
    job = service_of(request).store.get(id, owner)
    if job is None:
        return ResultResponse(id=id, status="Task not found")
    return result_of(request, job)


def result_of(request: Request, job: Job) -> ResultResponse:
    status = WIRE_STATUS[job.status]
    response = ResultResponse(id=job.id, status=status, progress=job.progress)
    if job.status == JobStatus.READY:
        response.result = {
            "sample": sample_url(request, job),
            "prompt": job.prompt,
            "seed": job.seed,
            "start_time": job.started_at,
            "end_time": job.finished_at,
            "duration": (job.finished_at or 0) - (job.started_at or 0),
        }
    elif job.status in (JobStatus.ERROR, JobStatus.REQUEST_MODERATED, JobStatus.CONTENT_MODERATED):
        key = "error" if job.status == JobStatus.ERROR else "moderation_reasons"
        response.details = {key: job.error if key == "error" else (job.error or "").split("; ")}
    return response


def sample_url(request: Request, job: Job) -> str:
    path = f"/results/{job.id}/sample.{job.params['output_format']}"
    signature = service_of(request).signer.sign(path)
    return f"{base_url(request)}{path}?exp={signature['exp']}&sig={signature['sig']}"


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
