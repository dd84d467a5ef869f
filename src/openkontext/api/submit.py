"""Accepting one task: limits, images, moderation, idempotency, then the job row — shared by every submit route.

Nothing is stored unless every check passed; a refused request changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid

from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from ..engine.adapters import AdapterError, choose
from ..engine.buckets import parse_aspect_ratio
from ..engine.images import ImageInputError, decode_base64, decode_image, image_format
from ..engine.model_info import MAX_REFERENCES
from ..jobs.keys import input_key, job_folder
from ..jobs.spec import JobSpec
from ..jobs.store import IdempotencyConflict, Job, TooManyActive
from ..statuses import JobStatus
from ..netguard import BlockedURLError, FetchError, fetch
from .schemas import TaskRequest


def field_error(field: str, message: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": kind}])


def request_hash(route: str, body: TaskRequest) -> str:
    canonical = json.dumps([route, body.model_dump(mode="json")], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit(
    service,
    owner: str,
    *,
    route: str,
    body: TaskRequest,
    size: tuple[int, int] | None = None,
    idempotency_key: str | None = None,
) -> Job:
    """Validate, decode, moderate and queue one task; returns the new job (or, for a retried Idempotency-Key, the
    job the first request created)."""
    settings = service.settings
    fingerprint = request_hash(route, body) if idempotency_key else None
    if idempotency_key:
        existing = service.store.find_idempotent(owner, idempotency_key)
        if existing is not None:
            return _replayed(service, owner, *existing, fingerprint)
    if service.storage.free_bytes() < settings.min_free_bytes:
        raise HTTPException(507, "insufficient storage: the server's disk is full; retry later",
                            headers={"Retry-After": "30"})  # fmt: skip
    if len(body.prompt) > settings.max_prompt_chars:
        raise field_error("prompt", f"prompt is longer than {settings.max_prompt_chars} characters")
    try:  # the names this server was started with (settings): the API never asks the engine
        loras = choose(settings.loras, [(choice.name, choice.scale) for choice in body.loras or ()])
    except AdapterError as exc:
        raise field_error("loras", str(exc)) from None
    if service.store.count_active(owner) >= settings.max_active_tasks:  # early, before any image work
        raise _too_many(settings.max_active_tasks)

    webhook_url = str(body.webhook_url) if body.webhook_url else None
    if webhook_url:
        try:
            service.url_policy.resolve(webhook_url)
        except BlockedURLError as exc:
            raise field_error("webhook_url", f"webhook_url: {exc}") from None

    images = body.context_images()
    assert len(images) <= MAX_REFERENCES
    raw_images, decoded = [], []  # the bytes are stored as sent; the worker decodes them as decode_image did here
    for index, data in enumerate(images):
        field = "input_image" if index == 0 else f"input_image_{index + 1}"
        try:
            raw_images.append(_image_bytes(data, service))
            decoded.append(decode_image(raw_images[-1], max_pixels=settings.max_image_pixels))
        except (ImageInputError, BlockedURLError, FetchError) as exc:
            raise field_error(field, f"{field}: {exc}") from None

    job_id = str(uuid.uuid4())
    aspect_ratio = getattr(body, "aspect_ratio", None)
    spec = JobSpec(
        prompt=body.prompt,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**32),
        steps=body.steps,
        guidance=body.guidance,
        safety_tolerance=body.safety_tolerance,
        output_format=body.output_format,
        preserve=body.preserve,
        glyph_guidance=body.glyph_guidance,
        aspect_ratio=parse_aspect_ratio(aspect_ratio) if aspect_ratio else None,
        size=size,
        loras=loras,
    )
    common = dict(
        job_id=job_id, owner=owner, route=route, spec=spec, retention_s=settings.retention_s,
        webhook_url=webhook_url, webhook_secret=body.webhook_secret,
        idempotency=(idempotency_key, fingerprint) if idempotency_key else None,
    )  # fmt: skip

    verdict = service.moderator.check_prompt(body.prompt, body.safety_tolerance)
    for image in decoded:
        if not verdict.flagged:
            verdict = service.moderator.check_image(image, body.safety_tolerance)
    if verdict.flagged:
        return _create(service, owner, fingerprint, common, input_keys=[], status=JobStatus.REQUEST_MODERATED,
                       error="; ".join(verdict.reasons))  # fmt: skip

    input_keys = []
    try:
        for index, raw in enumerate(raw_images):  # no re-encoding: a 1 MB PNG took ~75 ms to write again
            key = input_key(job_id, index, image_format(raw))
            service.storage.put(key, raw)
            input_keys.append(key)
        job = _create(service, owner, fingerprint, common, input_keys=input_keys)
    except BaseException:  # disk full, store unavailable …: leave no file behind for a task that does not exist
        _discard(service, job_id)
        raise
    if job.id != job_id:  # a concurrent retry with the same Idempotency-Key won: drop what this one stored
        service.storage.delete_prefix(job_folder(job_id))
    service.workers.wake()
    return job


def _discard(service, job_id: str) -> None:
    try:
        service.storage.delete_prefix(job_folder(job_id))
    except OSError:
        pass


def _create(service, owner: str, fingerprint: str | None, common: dict, **fields) -> Job:
    limit = service.settings.max_active_tasks
    try:
        return service.store.create(**common, **fields, max_active=limit)
    except IdempotencyConflict as conflict:
        return _replayed(service, owner, conflict.job_id, conflict.request_hash, fingerprint)
    except TooManyActive:  # another replica (or request) took the last slot since the first check
        raise _too_many(limit) from None


def _too_many(limit: int) -> HTTPException:
    return HTTPException(429, f"too many active tasks: at most {limit} queued or running per key")


def _replayed(service, owner: str, job_id: str, recorded_hash: str, fingerprint: str | None) -> Job:
    if recorded_hash != fingerprint:
        raise HTTPException(409, "this Idempotency-Key was already used with a different request")
    job = service.store.get(job_id, owner)
    if job is None:
        raise HTTPException(409, "this Idempotency-Key's task no longer exists; use a new key")
    return job


def _image_bytes(data: str, service) -> bytes:
    """An image field's value as bytes: fetched (SSRF-guarded) when it is an http(s) URL, else base64-decoded."""
    if data[:8].lower().startswith(("http://", "https://")):
        return fetch(data.strip(), service.url_policy, max_bytes=service.settings.max_body_bytes,
                     timeout_s=service.settings.fetch_timeout_s)  # fmt: skip
    return decode_base64(data)
