"""The store's read paths that polls and task lists take: ended jobs from memory, queue positions in bulk, a poll's
one-statement read."""

from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import update

from openkontext.jobs.spec import JobSpec
from openkontext.jobs.store import JobRow
from openkontext.statuses import JobStatus

SPEC = JobSpec("x", seed=1, steps=2, guidance=2.5, safety_tolerance=2, output_format="jpeg")


def create(store: JobStore, job_id: str, owner: str = "key-a", retention_s: float = 3600):
    return store.create(job_id=job_id, owner=owner, route="flux-kontext-pro", spec=SPEC, input_keys=[],
                        retention_s=retention_s)  # fmt: skip


def set_rows(store: JobStore, job_id: str, **values) -> None:
    with store._session.begin() as session:
        session.execute(update(JobRow).where(JobRow.id == job_id).values(**values))


def test_an_ended_job_is_served_from_memory_once_read(store):
    create(store, "a")
    assert store.get_ended("a", "key-a") is None  # queued: always read from the store
    claimed = store.claim("worker-1", lease_s=30, max_attempts=3)
    assert store.finish(claimed.id, "worker-1", JobStatus.READY, result_key="a/sample.jpeg")
    assert store.get_ended("a", "key-a") is None  # not read since it ended
    ended = store.get("a", "key-a")
    set_rows(store, "a", progress=0.5)  # what the store holds no longer matters: an ended job never changes
    assert store.get_ended("a", "key-a") == ended == store.get("a", "key-a")
    assert store.get_ended("a", "key-b") is None and store.get("a", "key-b") is None  # ownership still holds
    assert store.get_ended("a") == ended  # the download route asks without an owner


def test_an_ended_job_leaves_memory_when_it_expires(store):
    create(store, "a", retention_s=0.5)
    store.cancel("a", "key-a")
    assert store.get("a", "key-a").status == JobStatus.CANCELLED
    assert store.get_ended("a", "key-a") is not None
    time.sleep(0.6)  # past its expiry (an absolute time): however slow the machine, it has expired now
    assert store.get_ended("a", "key-a") is None and store.get("a", "key-a") is None


def test_queue_positions_in_bulk_equal_counting_one_by_one(store):
    rng = random.Random(0)
    for index in range(60):
        create(store, f"job-{index:02d}", owner=rng.choice(["key-a", "key-b"]))
    for index in rng.sample(range(60), 15):  # some ran, some were cancelled: they leave the queue
        set_rows(store, f"job-{index:02d}", status=rng.choice(["running", "cancelled"]))
    for index in rng.sample(range(60), 10):  # several created at the same instant
        set_rows(store, f"job-{index:02d}", created_at=1.0e9)
    jobs = [store.get(f"job-{index:02d}") for index in range(60)]
    queued = sorted((job for job in jobs if job.status == JobStatus.QUEUED), key=lambda job: job.created_at)
    expected = {job.id: 1 + sum(other.created_at < job.created_at for other in queued) for job in queued}
    page = rng.sample(jobs, 20)
    assert store.queue_positions(page) == {job.id: expected[job.id] for job in page if job.id in expected}
    assert store.queue_positions([]) == {}

    for job in jobs:  # a poll's one statement gives the same job and position as get and queue_positions
        assert store.poll(job.id, job.owner) == (job, expected.get(job.id))
    other = {"key-a": "key-b", "key-b": "key-a"}
    assert store.poll("job-00", other[jobs[0].owner]) == (None, None)  # someone else's job: not found
    assert store.poll("nope") == (None, None)


def test_a_poll_of_an_ended_job_caches_it_and_never_reports_a_position(store):
    create(store, "a")
    create(store, "b")
    assert store.poll("b", "key-a") == (store.get("b"), 2)
    store.cancel("a", "key-a")
    assert store.poll("b", "key-a")[1] == 1  # the job ahead left the queue
    job, position = store.poll("a", "key-a")
    assert job.status == JobStatus.CANCELLED and position is None
    assert store.get_ended("a", "key-a") == job
