"""A drain that begins while a worker thread is inside a claim: the job that claim returns runs to its end on this
worker, and the drain waits for it (``WorkerPool.drain``). Before, the drain saw no job held, stopped the pool at
once, and the claimed job was started and handed back — run again elsewhere, although the drain said it had drained.

Real processes: an API-only replica and ``openkontext worker`` on PostgreSQL; the claim is held inside the store by a
table lock another connection takes, and the drain is the worker's own SIGTERM handling.
"""

from __future__ import annotations

import signal
import time

import pytest
import sqlalchemy

from conftest import ServerProcess, Worker, b64, image_bytes, wait_for
from postgres import postgres_bin

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed")


def wait_until(check, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s"
        time.sleep(0.05)
    return found


def test_a_claim_in_flight_when_the_drain_begins_runs_its_job_to_the_end(postgres, tmp_path):
    url = postgres.database()
    api = ServerProcess(tmp_path / "data", workers=0, database_url=url).start(180)
    worker = Worker(tmp_path / "data", workers=1, database_url=url).start(180)
    db = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with api.client() as client, db.connect() as locker:
            for _ in range(5):  # the idle worker polls every second: it may claim the job before the lock is taken
                body = {"prompt": "make it blue", "input_image": b64(image_bytes()), "steps": 2}
                job_id = client.post("/v1/flux-kontext-pro", json=body).json()["id"]
                locker.execute(sqlalchemy.text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
                status = locker.execute(sqlalchemy.text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id})
                if status.scalar() == "queued":
                    break
                locker.rollback()
                wait_for(client, job_id)
            else:
                pytest.fail("the worker claimed every job before the lock was taken")

            # The worker's next claim waits on the lock, inside the store.
            activity = sqlalchemy.text("SELECT wait_event_type, query FROM pg_stat_activity")
            with db.connect() as observer:

                def claim_waits() -> bool:
                    rows = observer.execute(activity).all()
                    observer.rollback()  # the activity is read once per transaction: a new one next time
                    return any(row.wait_event_type == "Lock" and "SKIP LOCKED" in row.query for row in rows)

                wait_until(claim_waits, "the worker's claim waits on the lock")
            worker.process.send_signal(signal.SIGTERM)
            wait_until(lambda: "stopping: running jobs may take" in worker.log(), "the worker begins its drain")
            time.sleep(1)  # (before the fix the pool had stopped by now, with the claim still waiting)
            locker.rollback()  # the claim goes through: it returns the queued job

            assert worker.process.wait(60) == 0
            assert wait_for(client, job_id, timeout=10)["status"] == "Ready"  # no other worker could have run it
        log = worker.log()
        assert f"job {job_id}: ready" in log
        assert "handed back" not in log
        with db.connect() as check:
            attempts = check.execute(sqlalchemy.text("SELECT attempts FROM jobs WHERE id = :id"), {"id": job_id})
            assert attempts.scalar() == 1
    finally:
        db.dispose()
        worker.stop()
        api.stop()
