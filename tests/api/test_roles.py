"""The process roles: an API-only replica (``serve --workers 0``) that never loads the model, and ``openkontext
worker``, which runs jobs without HTTP, refuses bad settings in one line, and finishes its running job on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import b64, image_bytes, wait_for

WORKER_SETTINGS = {"OPENKONTEXT_MODEL": "tiny", "OPENKONTEXT_ACCEL_OPTIONS": "compile=off",
                   "OPENKONTEXT_MODERATION_PROMPT_CLASSIFIER": "false",
                   "OPENKONTEXT_MODERATION_IMAGE_CLASSIFIER": "false"}  # fmt: skip


def start_worker(data_dir, log_path, **settings) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKONTEXT_")}
    env.update(WORKER_SETTINGS, OPENKONTEXT_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    env.update({f"OPENKONTEXT_{name.upper()}": str(value) for name, value in settings.items()})
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "openkontext.cli", "worker"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip


def test_an_api_only_replica_never_loads_the_model(start_server, tmp_path):
    # A model folder with a card and no weights: loading it would stop the server; an API-only replica does not try.
    folder = tmp_path / "flux-kontext-on-the-gpu-nodes"
    folder.mkdir()
    (folder / "openkontext.json").write_text('{"glyph_context": "aligned", "glyph_guidance": 6, "preserve": 0.15}')
    api = start_server(workers=0, model=str(folder), glyph_guidance=9)
    health = httpx.get(f"{api.url}/health").json()
    assert health["model"] == "flux-kontext-on-the-gpu-nodes" and health["placeholder_model"] is False
    assert health["defaults"] == {"preserve": 0.15, "glyph_guidance": 9.0}  # the card's, and the setting over it
    assert httpx.get(f"{api.url}/ready").json() == {"status": "ready", "model": health["model"], "workers": 0}
    with api.client() as client:
        task = client.post("/v1/flux-kontext-pro", json={"prompt": "make it blue", "input_image": b64(image_bytes())})
        assert task.status_code == 200
        time.sleep(1.0)
        assert client.get("/v1/get_result", params={"id": task.json()["id"]}).json()["status"] == "Pending"
    assert "not loaded here" in api.log()
    mapped = Path(f"/proc/{api.process.pid}/maps").read_text()
    assert "libtorch" not in mapped  # not even imported: an API replica starts in seconds and stays small


def test_a_worker_runs_what_an_api_only_replica_queued_and_drains_on_sigterm(start_server, tmp_path):
    data_dir = tmp_path / "shared"
    api = start_server(data_dir=data_dir, workers=0, shutdown_timeout_s=60)
    with api.client() as client:
        task_id = client.post("/v1/flux-kontext-pro", json={"prompt": "make it blue", "steps": 40,
                                                             "input_image": b64(image_bytes())}).json()["id"]  # fmt: skip
        worker = start_worker(data_dir, tmp_path / "worker.log", shutdown_timeout_s=120)
        try:
            deadline = time.monotonic() + 120
            while not client.get("/v1/get_result", params={"id": task_id}).json()["progress"]:  # until it runs
                assert time.monotonic() < deadline and worker.poll() is None, (tmp_path / "worker.log").read_text()
                time.sleep(0.05)
            worker.send_signal(signal.SIGTERM)  # mid-job: it stops claiming and lets this one end
            assert worker.wait(150) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
        log = (tmp_path / "worker.log").read_text()
        result = wait_for(client, task_id, timeout=5)  # already ended: the worker exited after finishing it
        assert result["status"] == "Ready", log
        assert "handed back" not in log  # finished by this worker, not re-queued
        sample = httpx.get(result["result"]["sample"])
        assert sample.status_code == 200 and sample.headers["content-type"].startswith("image/")


def test_a_worker_refuses_settings_it_cannot_work_with_in_one_line(tmp_path):
    zero = start_worker(tmp_path / "data", tmp_path / "zero.log", workers=0)
    assert zero.wait(60) == 2
    assert "at least one worker thread" in (tmp_path / "zero.log").read_text()

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the data dir should be")
    bad_dir = start_worker(blocked, tmp_path / "dir.log")
    assert bad_dir.wait(60) == 2
    text = (tmp_path / "dir.log").read_text()
    assert "is not writable" in text and "Traceback" not in text
