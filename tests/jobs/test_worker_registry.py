"""What several worker processes sharing one store rely on: heartbeat rows every replica can read, claims that say
whose lapsed lease they took over, and janitors that never handle the same row twice."""

from __future__ import annotations

import time

from openkontext.jobs.spec import JobSpec
from sqlalchemy import func, select

from openkontext.jobs.store import WebhookEventRow, WorkerReport
from racing import race_stores

SPEC = JobSpec("x", seed=1, steps=2, guidance=2.5, safety_tolerance=2, output_format="jpeg")


def report(worker_id: str, seen_at: float, **counts) -> WorkerReport:
    fields = dict(role="worker", threads=1, started_at=seen_at - 60, seen_at=seen_at, running=0, finished=0,
                  takeovers=0)  # fmt: skip
    return WorkerReport(id=worker_id, **{**fields, **counts})


def test_heartbeats_are_upserted_read_by_recency_and_forgotten(store):
    now = time.time()
    store.report_worker(report("a", now - 100, finished=1))
    store.report_worker(report("b", now, running=1, finished=5, takeovers=2))
    store.report_worker(report("a", now, finished=3))  # the same pool again: its row is updated, not added

    seen = {worker.id: worker for worker in store.workers(seen_after=now - 10)}
    assert set(seen) == {"a", "b"}
    assert (seen["a"].finished, seen["b"].running, seen["b"].takeovers) == (3, 1, 2)

    store.report_worker(report("b", now - 100))
    assert [worker.id for worker in store.workers(seen_after=now - 10)] == ["a"]  # b fell silent

    store.forget_worker("a")
    assert [worker.id for worker in store.workers(seen_after=0)] == ["b"]


def test_a_claim_names_the_worker_whose_lapsed_lease_it_took_over(store):
    store.create(job_id="job", owner="k", route="r", spec=SPEC, input_keys=[], retention_s=3600)
    first = store.claim("worker-1", lease_s=0.05, max_attempts=5)
    assert first.taken_from is None  # a queued job belonged to nobody
    time.sleep(0.1)
    second = store.claim("worker-2", lease_s=60, max_attempts=5)
    assert second.id == "job" and second.taken_from == "worker-1"

    assert store.release("job", "worker-2", count_attempt=False)
    third = store.claim("worker-3", lease_s=60, max_attempts=5)
    assert third.taken_from is None  # handed back on purpose: not a takeover


def test_janitors_of_several_processes_purge_and_fail_each_job_once(store):
    for index in range(30):
        store.create(job_id=f"crash-{index:02d}", owner="k", route="r", spec=SPEC, input_keys=[], retention_s=3600,
                     webhook_url="https://example.com/hook", webhook_secret="s")  # fmt: skip
        store.claim("dead-worker", lease_s=0.01, max_attempts=1)
    for index in range(30):
        store.create(job_id=f"old-{index:02d}", owner="k", route="r", spec=SPEC, input_keys=[], retention_s=0.01)
    time.sleep(0.05)
    purged = race_stores(store, 4, lambda janitor, _: [job.id for job in janitor.purge_expired()])
    failed = race_stores(store, 4, lambda janitor, _: janitor.fail_exhausted(max_attempts=1))

    for outcome in purged + failed:
        assert isinstance(outcome, list), outcome  # no janitor tripped over another's rows
    purged_ids = [job_id for ids in purged for job_id in ids]
    failed_ids = [job_id for ids in failed for job_id in ids]
    assert sorted(purged_ids) == [f"old-{index:02d}" for index in range(30)]  # each once
    assert sorted(failed_ids) == [f"crash-{index:02d}" for index in range(30)]
    with store.db.connect() as connection:  # one webhook call queued per failed job, not one per janitor
        assert connection.scalar(select(func.count()).select_from(WebhookEventRow)) == 30
