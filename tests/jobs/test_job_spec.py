"""The job contract: the spec the API stores is exactly the spec the worker reads back, from a real SQLite store."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from openkontext.jobs.spec import JobSpec
from openkontext.jobs.store import JobRow
from openkontext.statuses import JobStatus, TaskStatus


def create(store: JobStore, spec: JobSpec, job_id: str = "job-1"):
    return store.create(job_id=job_id, owner="key-a", route="flux-kontext-pro", spec=spec, input_keys=[],
                        retention_s=3600)  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [
        JobSpec("make it blue", seed=2**64 - 1, steps=28, guidance=2.5, safety_tolerance=2, output_format="png"),
        JobSpec("a red cube", seed=7, steps=4, guidance=3.0, safety_tolerance=6, output_format="webp", size=(320, 192)),
        JobSpec("x", seed=0, steps=1, guidance=1.0, safety_tolerance=0, output_format="jpeg", preserve=0.0,
                aspect_ratio=16 / 9),
        JobSpec("Write 'HI'", seed=3, steps=8, guidance=3.0, safety_tolerance=2, output_format="png",
                glyph_guidance=8.0),
    ],
)
def test_the_worker_claims_the_spec_the_api_stored(store, spec):
    assert create(store, spec).spec == spec
    claimed = store.claim("worker-1", lease_s=30, max_attempts=3)
    assert claimed.spec == spec and claimed.status == JobStatus.RUNNING
    assert claimed.spec.size is None or isinstance(claimed.spec.size, tuple)


def test_absent_options_are_not_stored(store):
    create(store, JobSpec("x", seed=1, steps=2, guidance=2.5, safety_tolerance=2, output_format="jpeg"))
    with store._session() as session:
        params = session.get(JobRow, "job-1").params
    assert params == {"steps": 2, "guidance": 2.5, "safety_tolerance": 2, "output_format": "jpeg"}


def test_a_row_written_by_a_newer_version_still_reads(store):
    spec = JobSpec("x", seed=1, steps=2, guidance=2.5, safety_tolerance=2, output_format="jpeg")
    create(store, spec)
    with store._session.begin() as session:
        session.execute(update(JobRow).values(params={**spec.params(), "lora": [{"name": "relight", "scale": 1}]}))
    assert store.get("job-1").spec == spec


def test_every_job_status_has_one_wire_status():
    assert {status.wire for status in JobStatus} == set(TaskStatus) - {TaskStatus.TASK_NOT_FOUND}
    assert [status for status in JobStatus if status.wire is TaskStatus.PENDING] == [JobStatus.QUEUED,
                                                                                     JobStatus.RUNNING]
    assert all(status.terminal == status.wire.ended for status in JobStatus)
