"""The environment misbehaves and the service lives through it: a locked store, a full disk, a corrupt database.

Each test drives a real server process on loopback and does the bad thing from outside, as an operator would see it:
another process holds the SQLite file's write lock, the disk fills, the database file is damaged.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import httpx

from conftest import b64, image_bytes, wait_for

ROUTE = "/v1/flux-bagel-alpha"
# Short store timeouts, so a lock of a few seconds is a long outage for the server.
STORE = dict(store_busy_timeout_s=0.3, store_retry_s=0.5)

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
print("released", flush=True)
"""


class ExclusiveLock:
    """Another process holding ``BEGIN EXCLUSIVE`` on the job database for ``seconds``."""

    def __init__(self, db_path, seconds: float):
        self.process = subprocess.Popen([sys.executable, "-c", LOCKER, str(db_path), str(seconds)],
                                        stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.process.stdout.readline().strip() == "locked"
        self.until = time.monotonic() + seconds

    def wait(self) -> None:
        assert self.process.stdout.readline().strip() == "released"
        self.process.wait(10)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def metric(client: httpx.Client, name: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def sqlite_value(data_dir, query, *args):
    with sqlite3.connect(data_dir / "openkontext.db") as db:
        return db.execute(query, args).fetchone()[0]


def test_a_locked_store_stalls_the_worker_but_never_kills_it(start_server, tmp_path):
    data_dir = tmp_path / "data"
    server = start_server(data_dir, model="random", lease_s=2, **STORE)
    body = {"prompt": "paint it", "input_image": b64(image_bytes((256, 192))), "steps": 20, "seed": 3}
    with server.client() as client:
        assert client.get("/ready").status_code == 200
        running = client.post(ROUTE, json=body).json()["id"]
        deadline = time.monotonic() + 60
        while client.get("/v1/get_result", params={"id": running}).json()["progress"] <= 0:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)

        lock = ExclusiveLock(data_dir / "openkontext.db", seconds=5)
        try:
            readiness = []
            while time.monotonic() < lock.until - 0.5:
                readiness.append(client.get("/ready", timeout=5).status_code)  # reads go on in WAL mode
                time.sleep(0.2)
            lock.wait()
        finally:
            lock.kill()
        assert 503 in readiness, f"/ready never reflected the locked store: {readiness}"

        # The lock is gone: the running job ends exactly once, new jobs run, /ready comes back by itself.
        assert wait_for(client, running, timeout=120)["status"] == "Ready"
        fresh = [client.post(ROUTE, json={**body, "steps": 2, "seed": i}).json()["id"] for i in range(3)]
        for task_id in fresh:
            assert wait_for(client, task_id, timeout=60)["status"] == "Ready"
        deadline = time.monotonic() + 10
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/ready").text
            time.sleep(0.1)
        assert metric(client, 'openkontext_worker_errors_total{loop="work"}') >= 1
    assert sqlite_value(data_dir, "select attempts from jobs where id=?", running) == 1
    assert sqlite_value(data_dir, "select count(*) from jobs where status='ready'") == 4
    log = server.log()
    assert "Exception in thread" not in log
    assert log.count("ERROR openkontext.jobs.worker: openkontext-work-0") <= 2  # logged once, not once a try


def test_a_submit_the_store_cannot_take_is_503_with_retry_after_and_leaves_nothing(start_server, tmp_path):
    data_dir = tmp_path / "data"
    server = start_server(data_dir, workers=0, **STORE)
    body = {"prompt": "paint it", "input_image": b64(image_bytes((64, 48))), "steps": 2}
    with server.client() as client:
        kept = client.post(ROUTE, json=body).json()["id"]
        lock = ExclusiveLock(data_dir / "openkontext.db", seconds=20)
        try:
            refused = client.post(ROUTE, json={**body, "seed": 1})
            listed = client.get("/v1/tasks")
        finally:
            lock.kill()
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"].isdigit()
        assert "store" in refused.json()["detail"]
        assert listed.status_code == 200 and [task["id"] for task in listed.json()["tasks"]] == [kept]
        # Nothing was half-written: one task row, one task's files; and the next submit is accepted.
        assert sqlite_value(data_dir, "select count(*) from jobs") == 1
        assert [path.name for path in (data_dir / "storage").iterdir()] == [kept]
        assert client.post(ROUTE, json={**body, "seed": 2}).status_code == 200
