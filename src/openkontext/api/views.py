"""How a job looks on the wire: the get_result body, also sent as the webhook payload."""

from __future__ import annotations

import base64
from typing import Any

from ..jobs.keys import result_path
from ..jobs.store import Job, WebhookEvent
from ..statuses import JobStatus
from .signing import UrlSigner


def sample_url(job: Job, base_url: str, signer: UrlSigner) -> str:
    path = result_path(job.result_key)
    signature = signer.sign(path)
    return f"{base_url}{path}?exp={signature['exp']}&sig={signature['sig']}"


def task_view(
    job: Job,
    *,
    base_url: str,
    signer: UrlSigner,
    webhook: WebhookEvent | None = None,
    queue_position: int | None = None,
    preview: bytes | None = None,
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": job.id,
        "status": job.status.wire,
        "result": None,
        "progress": job.progress,
        "details": None,
        "preview": None,
    }
    if job.status == JobStatus.QUEUED:
        view["queue_position"] = queue_position
    elif job.status == JobStatus.RUNNING:
        view["step"], view["steps"] = job.step, job.spec.steps
        if preview is not None:
            view["preview"] = {"image": "data:image/jpeg;base64," + base64.b64encode(preview).decode(),
                               "step": job.step}  # fmt: skip
    if job.status == JobStatus.READY:
        view["result"] = {
            "sample": sample_url(job, base_url, signer),
            "prompt": job.spec.prompt,
            "seed": job.spec.seed,
            "start_time": job.started_at,
            "end_time": job.finished_at,
            "duration": (job.finished_at or 0) - (job.started_at or 0),
        }
        if job.spec.loras:  # an extension, like the seed: what ran, default scales filled in
            view["result"]["loras"] = [{"name": name, "scale": scale} for name, scale in job.spec.loras]
    elif job.status in (JobStatus.ERROR, JobStatus.CANCELLED):
        view["details"] = {"error": job.error}
    elif job.status in (JobStatus.REQUEST_MODERATED, JobStatus.CONTENT_MODERATED):
        view["details"] = {"moderation_reasons": (job.error or "").split("; ")}
    if webhook is not None:
        view["webhook_status"] = webhook.status
        view["webhook_attempts"] = webhook.attempts
    return view
