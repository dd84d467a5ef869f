"""``OPENKONTEXT_WORKER_NICE``: the threads that run edits (and the compute threads they start) run at a lower CPU
priority than the API's, so where both share cores a submit or poll is answered first. A real ``serve`` process;
each thread's niceness is read from ``/proc`` (Linux keeps it per thread)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import ServerProcess, b64, image_bytes, wait_for
from openkontext.config import Settings

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread niceness from /proc")


def niceness_by_thread(pid: int) -> dict[int, int]:
    """tid -> nice of every thread of ``pid`` (field 19 of /proc/<pid>/task/<tid>/stat, counted after the name)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        after_name = (task / "stat").read_text().rsplit(")", 1)[1].split()
        found[int(task.name)] = int(after_name[16])
    return found


def test_the_worker_threads_run_at_the_configured_niceness_and_the_api_at_the_process_one(tmp_path):
    server = ServerProcess(tmp_path / "data", worker_nice=10).start(180)
    try:
        with server.client() as client:
            task = client.post("/v1/flux-kontext-pro", json={"prompt": "make it blue", "steps": 4,
                                                              "input_image": b64(image_bytes())}).json()["id"]
            assert wait_for(client, task)["status"] == "Ready"  # the worker thread has run an edit at its niceness
        threads = niceness_by_thread(server.process.pid)
        assert threads[server.process.pid] == 0  # the main thread: the event loop that answers the API
        assert set(threads.values()) == {0, 10}, threads
        # The heartbeat and janitor threads, the API's threads, torch's own: the worker thread is not the only one.
        assert sum(nice == 0 for nice in threads.values()) >= 3, threads
    finally:
        server.stop()


def test_a_niceness_outside_0_to_19_is_refused_with_the_setting_named(monkeypatch):
    monkeypatch.setenv("OPENKONTEXT_WORKER_NICE", "20")
    with pytest.raises(ValidationError, match="worker_nice"):
        Settings()
