"""The environment misbehaves and the service lives through it: a locked store, a full disk, a corrupt database.

Each test drives a real server process on loopback and does the bad thing from outside, as an operator would see it:
another process holds the SQLite file's write lock, the disk fills, the database file is damaged.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import ExclusiveLock, b64, image_bytes, wait_for

ROUTE = "/v1/flux-bagel-alpha"
# Short store timeouts, so a lock of a few seconds is a long outage for the server.
STORE = dict(store_busy_timeout_s=0.3, store_retry_s=0.5)

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


def test_a_short_lock_is_ridden_out_by_bounded_retries(start_server, tmp_path):
    data_dir = tmp_path / "data"
    # Each statement gives up on the lock after 0.2 s; the store retries the operation for up to 10 s.
    server = start_server(data_dir, workers=0, store_busy_timeout_s=0.2, store_retry_s=10)
    body = {"prompt": "paint it", "input_image": b64(image_bytes((64, 48))), "steps": 2}
    with server.client() as client:
        assert client.post(ROUTE, json=body).status_code == 200
        lock = ExclusiveLock(data_dir / "openkontext.db", seconds=1.5)
        try:
            began = time.monotonic()
            accepted = client.post(ROUTE, json={**body, "seed": 1})
            waited = time.monotonic() - began
            lock.wait()
        finally:
            lock.kill()
    assert accepted.status_code == 200, accepted.text
    assert waited > 0.5  # it did wait for the lock
    assert sqlite_value(data_dir, "select count(*) from jobs") == 2


# --- a full disk ----------------------------------------------------------------------------------------------------

SIMULATED_DISK = [sys.executable, str(Path(__file__).with_name("simulated_disk_server.py"))]


def wait_ready(client: httpx.Client, status: int, timeout: float = 120.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while (response := client.get("/ready")).status_code != status:
        assert time.monotonic() < deadline, f"/ready still {response.status_code} {response.text}"
        time.sleep(0.1)
    return response


def test_a_full_disk_refuses_submits_keeps_the_running_job_and_resumes_by_itself(start_server, tmp_path):
    data_dir = tmp_path / "data"
    # min_free_bytes=0: the disk reports room, but every write fails with ENOSPC (a quota, or a race with another
    # writer): the path that only the write itself can see.
    server = start_server(data_dir, command=SIMULATED_DISK, model="random", min_free_bytes=0, **STORE)
    body = {"prompt": "paint it", "input_image": b64(image_bytes((256, 192))), "steps": 10, "seed": 5}
    with server.client() as client:
        running = client.post(ROUTE, json=body).json()["id"]
        deadline = time.monotonic() + 60
        while client.get("/v1/get_result", params={"id": running}).json()["progress"] <= 0:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        (data_dir / "disk-full").touch()

        refused = client.post(ROUTE, json={**body, "seed": 6})
        assert refused.status_code == 507, refused.text
        assert "disk is full" in refused.json()["detail"] and refused.headers["retry-after"].isdigit()
        assert sqlite_value(data_dir, "select count(*) from jobs") == 1
        assert [path.name for path in (data_dir / "storage").iterdir()] == [running]
        # The running job computed its result but cannot store it: it waits, the worker is not ready, nothing fails.
        assert "disk is full" in wait_ready(client, 503).json()["detail"]
        assert client.get("/v1/get_result", params={"id": running}).json()["status"] == "Pending"

        (data_dir / "disk-full").unlink()
        assert wait_for(client, running, timeout=60)["status"] == "Ready"
        assert wait_for(client, client.post(ROUTE, json={**body, "steps": 2}).json()["id"])["status"] == "Ready"
        wait_ready(client, 200, timeout=10)
    assert sqlite_value(data_dir, "select attempts from jobs where id=?", running) == 1
    assert "Exception in thread" not in server.log()


def test_too_little_free_space_is_507_and_not_ready_until_space_returns(start_server, tmp_path):
    data_dir = tmp_path / "data"
    server = start_server(data_dir, command=SIMULATED_DISK, min_free_bytes=10**6)
    body = {"prompt": "paint it", "input_image": b64(image_bytes((64, 48))), "steps": 1}
    with server.client() as client:
        (data_dir / "free-bytes").write_text("4096")
        refused = client.post(ROUTE, json=body)
        assert refused.status_code == 507 and "disk is full" in refused.json()["detail"], refused.text
        assert "disk is full" in wait_ready(client, 503, timeout=5).json()["detail"]
        assert sqlite_value(data_dir, "select count(*) from jobs") == 0
        assert list((data_dir / "storage").iterdir()) == []
        (data_dir / "free-bytes").unlink()
        wait_ready(client, 200, timeout=5)
        assert wait_for(client, client.post(ROUTE, json=body).json()["id"])["status"] == "Ready"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a small tmpfs needs root")
def test_a_real_full_tmpfs_data_dir(start_server, tmp_path):
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.decode().strip()}")
    try:
        data_dir = mountpoint / "data"
        server = start_server(data_dir, min_free_bytes=0, **STORE)
        body = {"prompt": "paint it", "input_image": b64(image_bytes((64, 48))), "steps": 1}
        with server.client() as client:
            filler = mountpoint / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # fills it
            statuses = {client.post(ROUTE, json={**body, "seed": i}).status_code for i in range(3)}
            assert statuses <= {507, 503}, statuses
            filler.unlink()
            assert wait_for(client, client.post(ROUTE, json=body).json()["id"])["status"] == "Ready"
        server.stop()
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


# --- start-up checks ------------------------------------------------------------------------------------------------


def start_fails(start_server, data_dir, **settings) -> str:
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="server exited") as failure:
        start_server(data_dir, **settings)
    assert time.monotonic() - began < 30, "start-up should fail fast, before the model loads"
    return str(failure.value)


def test_start_up_refuses_a_data_dir_it_cannot_write_naming_it(start_server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if os.geteuid() == 0:  # root writes through file modes: make it a read-only mount instead
        read_only = subprocess.run(f"mount --bind {data_dir} {data_dir} && mount -o remount,ro,bind {data_dir}",
                                   shell=True, capture_output=True)  # fmt: skip
        if read_only.returncode != 0:
            pytest.skip(f"running as root and cannot mount read-only: {read_only.stderr.decode().strip()}")
    else:
        data_dir.chmod(0o555)
    try:
        message = start_fails(start_server, data_dir)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(data_dir)], capture_output=True)
        data_dir.chmod(0o755)
    assert "cannot start" in message and str(data_dir.resolve()) in message
    assert "Read-only file system" in message or "Permission denied" in message
    assert "Traceback" not in message


def test_start_up_refuses_an_out_of_range_setting_naming_it(start_server, tmp_path):
    message = start_fails(start_server, tmp_path / "data", glyph_guidance=-1)
    assert "cannot start" in message and "glyph_guidance" in message and "greater than or equal to 0" in message
    assert "Traceback" not in message


def test_start_up_refuses_a_disk_without_room(start_server, tmp_path):
    message = start_fails(start_server, tmp_path / "data", min_free_bytes=2**62)
    assert str((tmp_path / "data").resolve()) in message and "free" in message


def test_a_corrupt_database_is_refused_never_served(start_server, tmp_path):
    data_dir = tmp_path / "data"
    server = start_server(data_dir, workers=0)
    with server.client() as client:
        for seed in range(20):
            client.post(ROUTE, json={"prompt": "x" * 300, "input_image": b64(image_bytes((32, 32))), "seed": seed})
    server.stop()
    database = data_dir / "openkontext.db"
    with open(database, "r+b") as handle:  # the header (page 1) stays intact; the pages after it are garbage
        handle.seek(4096)
        handle.write(bytes(range(256)) * 48)
    message = start_fails(start_server, data_dir)
    assert str(database.resolve()) in message and "corrupt" in message
