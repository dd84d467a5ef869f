"""A crash loses no job: tasks queued or running when the server dies complete after it comes back, to one result."""

from __future__ import annotations

import sqlite3
import time

import httpx

from conftest import b64, image_bytes, wait_for

ROUTE = "/v1/flux-bagel-alpha"


def test_job_running_at_sigkill_completes_after_restart_with_the_same_result(start_server, tmp_path):
    data_dir = tmp_path / "shared-data"
    # The 256-px placeholder model makes a 30-step edit take seconds, so the kill lands mid-run.
    settings = dict(model="random", lease_s=2)
    server = start_server(data_dir, **settings)
    body = {"prompt": "turn it into pixel art", "input_image": b64(image_bytes((256, 192))), "steps": 30, "seed": 7,
            "output_format": "png"}  # fmt: skip
    with server.client() as client:
        task_id = client.post(ROUTE, json=body).json()["id"]
        deadline = time.monotonic() + 60
        while client.get("/v1/get_result", params={"id": task_id}).json()["progress"] < 0.1:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
    server.kill()
    progress_at_kill = sqlite_value(data_dir, "select progress from jobs where id=?", task_id)
    assert 0 < progress_at_kill < 0.99

    restarted = start_server(data_dir, **settings)
    with restarted.client() as client:
        state = wait_for(client, task_id, timeout=300)  # generous: CI machines are often shared
        first = httpx.get(state["result"]["sample"]).content
        assert sqlite_value(data_dir, "select attempts from jobs where id=?", task_id) == 2
        # The seed was fixed at submit: the re-run is the same computation as a fresh identical request.
        again = client.post(ROUTE, json=body).json()["id"]
        assert httpx.get(wait_for(client, again, timeout=300)["result"]["sample"]).content == first


def test_queued_jobs_survive_a_restart(start_server, tmp_path):
    data_dir = tmp_path / "shared-data"
    accepting = start_server(data_dir, workers=0)
    with accepting.client() as client:
        ids = [client.post(ROUTE, json={"prompt": f"edit {i}", "input_image": b64(image_bytes(seed=i)),
                                        "steps": 2}).json()["id"] for i in range(3)]  # fmt: skip
    accepting.stop()
    working = start_server(data_dir, workers=1)
    with working.client() as client:
        for task_id in ids:
            assert wait_for(client, task_id)["status"] == "Ready"


def test_unreadable_input_ends_in_error_not_a_crash(start_server, tmp_path):
    data_dir = tmp_path / "shared-data"
    accepting = start_server(data_dir, workers=0)
    with accepting.client() as client:
        broken = client.post(ROUTE, json={"prompt": "x", "input_image": b64(image_bytes()), "steps": 2}).json()["id"]
    accepting.stop()
    (data_dir / "storage" / broken / "input-0.png").write_bytes(b"disk corruption")
    working = start_server(data_dir, workers=1)
    with working.client() as client:
        state = wait_for(client, broken, statuses=("Error",))
        assert state["result"] is None and "engine failed" in state["details"]["error"]
        healthy = client.post(ROUTE, json={"prompt": "x", "input_image": b64(image_bytes()), "steps": 2}).json()["id"]
        assert wait_for(client, healthy)["status"] == "Ready"  # the worker lives on


def sqlite_value(data_dir, query, *args):
    with sqlite3.connect(data_dir / "openkontext.db") as db:
        return db.execute(query, args).fetchone()[0]
