"""Workers and API replicas racing on one store (threads with their own JobStore each, like separate processes):
every job is claimed exactly once, and an Idempotency-Key creates one task however many requests race with it."""

from __future__ import annotations

import pytest

from openkontext.jobs.spec import JobSpec
from openkontext.jobs.store import IdempotencyConflict, JobStore, TooManyActive
from racing import race_stores

SPEC = JobSpec("x", seed=1, steps=2, guidance=2.5, safety_tolerance=2, output_format="jpeg")


def test_concurrent_workers_claim_every_job_exactly_once(store):
    for index in range(40):
        store.create(job_id=f"job-{index:02d}", owner="key-a", route="r", spec=SPEC, input_keys=[], retention_s=3600)
    def drain(worker: JobStore, index: int) -> list[str]:
        claimed = []
        while (job := worker.claim(f"worker-{index}", lease_s=60, max_attempts=3)) is not None:
            claimed.append(job.id)
        return claimed

    results = race_stores(store, 6, drain)
    claimed = [job_id for result in results for job_id in result]
    assert sorted(claimed) == [f"job-{index:02d}" for index in range(40)]  # all of them, none twice


def test_an_idempotency_key_racing_across_replicas_creates_one_task(store):
    def submit(replica: JobStore, index: int):
        return replica.create(job_id=f"attempt-{index}", owner="key-a", route="r", spec=SPEC, input_keys=[],
                              retention_s=3600, idempotency=("retry-1", "hash-1"))  # fmt: skip

    results = race_stores(store, 6, submit)
    created = [result for result in results if not isinstance(result, Exception)]
    conflicts = [result for result in results if isinstance(result, IdempotencyConflict)]
    assert len(created) == 1 and len(conflicts) == len(results) - 1, results
    assert {conflict.job_id for conflict in conflicts} == {created[0].id}
    assert store.find_idempotent("key-a", "retry-1") == (created[0].id, "hash-1")
    with pytest.raises(IdempotencyConflict):  # and a late retry too
        store.create(job_id="late", owner="key-a", route="r", spec=SPEC, input_keys=[], retention_s=3600,
                     idempotency=("retry-1", "hash-1"))  # fmt: skip


def test_replicas_racing_for_the_last_active_slots_never_exceed_the_limit(store):
    store.create(job_id="running", owner="key-a", route="r", spec=SPEC, input_keys=[], retention_s=3600)
    store.claim("worker", lease_s=60, max_attempts=3)  # running jobs count too
    def submit(replica: JobStore, index: int):
        return replica.create(job_id=f"job-{index}", owner="key-a", route="r", spec=SPEC, input_keys=[],
                              retention_s=3600, max_active=3)  # fmt: skip

    results = race_stores(store, 8, submit)
    created = [result for result in results if not isinstance(result, Exception)]
    refused = [result for result in results if isinstance(result, TooManyActive)]
    assert (len(created), len(refused)) == (2, 6), results  # 1 running + 2 queued = the limit of 3
    assert store.count_active("key-a") == 3
    # the limit is per owner: another key is not held back by these
    store.create(job_id="other", owner="key-b", route="r", spec=SPEC, input_keys=[], retention_s=3600, max_active=3)
