"""Where a job's blobs live in storage: every key is built here, so the layout can be read (and changed) in one place.

    <job id>/input-<i>.<format> the context images as the client sent them (jpeg, png or webp), in request order
    <job id>/preview.jpg        the latest in-progress preview, while the job runs
    <job id>/sample.<format>    the result, served through ``/results/<job id>/sample.<format>``

Purging a job deletes its whole ``<job id>/`` folder.
"""

from __future__ import annotations


def job_folder(job_id: str) -> str:
    return job_id


def input_key(job_id: str, index: int, image_format: str) -> str:
    return f"{job_id}/input-{index}.{image_format.lower()}"


def preview_key(job_id: str) -> str:
    return f"{job_id}/preview.jpg"


def result_key(job_id: str, output_format: str) -> str:
    return f"{job_id}/sample.{output_format}"


def result_path(result_key: str) -> str:
    """The URL path a result is downloaded from (signed, see api/signing.py)."""
    return f"/results/{result_key}"
