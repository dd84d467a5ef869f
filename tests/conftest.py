"""Shared fixtures: real OpenKontext servers (separate processes on free loopback ports) and real image bytes."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

# Typer prints a CLI's errors in a box wrapped at the terminal's width, and tests read the messages out of it: one
# width for every run, whatever terminal (or exported COLUMNS) pytest is started from.
os.environ["COLUMNS"] = "120"

KEY_A = "test-key-alice"
KEY_B = "test-key-bob"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``openkontext serve`` in its own process, configured through OPENKONTEXT_* variables like a deployment."""

    ready_path = "/health"  # answers 200 once the process serves (a subclass for a role without the API changes it)

    def __init__(self, data_dir: Path, command: list[str] | None = None, **settings):
        self.data_dir = data_dir
        self.command = command or [sys.executable, "-m", "openkontext.cli", "serve"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The classifiers take seconds to load: servers start without them unless a test asks (the shared
        # `server` fixture runs them, so the real moderation path is on for most API tests).
        # The CPU 'auto' preset compiles the transformer at start-up (tens of seconds): test servers run it
        # uncompiled unless a test asks (tests/engine/test_acceleration.py covers compiling).
        self.settings = {"model": "tiny", "api_keys": f"{KEY_A},{KEY_B}", "workers": 1, "accel_options": "compile=off",
                         "moderation_prompt_classifier": False, "moderation_image_classifier": False, **settings}
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server-{self.port}.log"  # outside: it may be read-only

    def start(self, timeout: float = 60.0) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKONTEXT_")}
        env.update({f"OPENKONTEXT_{name.upper()}": str(value) for name, value in self.settings.items()})
        env.update(OPENKONTEXT_DATA_DIR=str(self.data_dir), OPENKONTEXT_PORT=str(self.port), PYTHONUNBUFFERED="1")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (the server process writes it)
        self.process = subprocess.Popen(self.command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, key: str | None = KEY_A) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"x-key": key} if key else {}, timeout=30)


class Worker(ServerProcess):
    """``openkontext worker`` (no HTTP API) with its ``/metrics`` on this object's port: that answers once the model is
    loaded and the worker threads run."""

    ready_path = "/metrics"

    def __init__(self, data_dir: Path, **settings):
        super().__init__(data_dir, **settings)
        self.command = [sys.executable, "-m", "openkontext.cli", "worker", "--metrics-port", str(self.port)]

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)



@pytest.fixture
def start_server(tmp_path):
    """Factory: ``start_server(**settings)`` starts a server; all are stopped after the test."""
    servers: list[ServerProcess] = []

    def start(data_dir: Path | None = None, command: list[str] | None = None, **settings) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / f"data{len(servers)}", command, **settings).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One shared server with the tiny model, for tests that do not need special settings."""
    instance = ServerProcess(tmp_path_factory.mktemp("server"), max_body_bytes=2 * 1024 * 1024,
                             moderation_prompt_classifier=True, moderation_image_classifier=True).start()
    yield instance
    instance.stop()


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
    """Another process holding ``BEGIN EXCLUSIVE`` on a SQLite file for ``seconds`` (the job store, locked)."""

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


def image_bytes(size=(96, 64), fmt="PNG", mode="RGB", seed=0, **save_options) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wait_for(client: httpx.Client, task_id: str, statuses=("Ready",), timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get("/v1/get_result", params={"id": task_id}).json()
        if state["status"] in statuses:
            return state
        if state["status"] not in ("Pending",):
            raise AssertionError(f"task ended as {state}")
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still not in {statuses} after {timeout} s: {state}")
