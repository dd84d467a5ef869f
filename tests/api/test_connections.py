"""Slow, idle and too many connections are bounded without a reverse proxy; SIGTERM ends the server in bounded time,
also while another process holds the job store's lock."""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time

import httpx

from conftest import ExclusiveLock, b64, image_bytes, wait_for


ROUTE = "/v1/flux-bagel-alpha"


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def closed_within(sock: socket.socket, seconds: float, since: float, trickle: bytes = b"") -> float:
    """Seconds from ``since`` (a ``time.monotonic()`` taken before the connection or request, so that a slow test
    process only lengthens it) until the server closes ``sock``, sending one byte of ``trickle`` every 0.2 s
    meanwhile; fails if it is still open ``seconds`` after the call."""
    began = time.monotonic()
    sock.settimeout(0.2)
    for index in range(int(seconds / 0.2) + 1):
        try:
            if index < len(trickle):
                sock.sendall(trickle[index : index + 1])
            if sock.recv(65536) == b"":
                return time.monotonic() - since
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - since
    raise AssertionError(f"the connection was still open after {seconds} s")


def test_silent_slow_and_idle_connections_are_closed(start_server):
    server = start_server(workers=0, header_timeout_s=1, body_timeout_s=1, keep_alive_s=1)
    opened = time.monotonic()
    with connect(server) as silent:
        assert closed_within(silent, 5, opened) >= 0.8
    opened = time.monotonic()
    with connect(server) as slow_headers:
        slow_headers.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert closed_within(slow_headers, 5, opened, trickle=b"X-Slow: " + b"a" * 100) >= 0.8
    opened = time.monotonic()
    with connect(server) as slow_body:
        slow_body.sendall(b"POST /v1/flux-bagel-alpha HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 1000\r\nx-key: test-key-alice\r\n\r\n{\"prompt\": ")  # fmt: skip
        assert closed_within(slow_body, 5, opened) >= 0.8
    with connect(server) as idle:
        asked = time.monotonic()
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        assert b" 200 " in idle.recv(65536).split(b"\r\n")[0] + b" "
        assert closed_within(idle, 4, asked) >= 0.8  # kept alive for ~1 s after the answer, not closed with it
    with server.client() as client:  # a client that behaves is served as before
        assert client.get("/health").status_code == 200


def test_connections_beyond_the_limit_get_503_until_they_go(start_server):
    server = start_server(workers=0, max_connections=3, header_timeout_s=30)
    held = [connect(server) for _ in range(3)]
    time.sleep(0.3)
    try:
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 503
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def wait_running(client: httpx.Client, task_id: str) -> None:
    deadline = time.monotonic() + 60
    while client.get("/v1/get_result", params={"id": task_id}).json()["progress"] <= 0:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)


def terminate(server, limit_s: float) -> float:
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(limit_s + 30)
    return time.monotonic() - began


def job_row(data_dir, task_id):
    with sqlite3.connect(data_dir / "openkontext.db") as db:
        return db.execute("select status, lease_owner, lease_expires, attempts from jobs where id=?",
                          (task_id,)).fetchone()  # fmt: skip


def test_sigterm_hands_the_running_job_back(start_server, tmp_path):
    data_dir = tmp_path / "data"
    server = start_server(data_dir, model="random", shutdown_timeout_s=3, lease_s=60)
    body = {"prompt": "paint it", "input_image": b64(image_bytes((256, 192))), "steps": 150, "seed": 1}
    with server.client() as client:
        task_id = client.post(ROUTE, json=body).json()["id"]
        wait_running(client, task_id)
    assert terminate(server, 10) < 10
    status, owner, expires, attempts = job_row(data_dir, task_id)
    # Claimable at once by the next server (not after its 60 s lease), and the stop is not counted as a crash.
    assert (status, owner, expires, attempts) == ("running", None, 0.0, 0)


def test_sigterm_ends_the_server_in_bounded_time_while_the_store_is_locked(start_server, tmp_path):
    data_dir = tmp_path / "data"
    settings = dict(model="tiny", shutdown_timeout_s=2, lease_s=3)  # the store's own timeouts: defaults
    server = start_server(data_dir, **settings)
    body = {"prompt": "paint it", "input_image": b64(image_bytes((96, 64))), "steps": 150, "seed": 1}
    with server.client() as client:
        task_id = client.post(ROUTE, json=body).json()["id"]
        wait_running(client, task_id)
    lock = ExclusiveLock(data_dir / "openkontext.db", seconds=60)
    try:
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(_submit(server, body)), daemon=True)
        waiting.start()  # a submit waiting on the lock while the signal comes
        time.sleep(1)
        elapsed = terminate(server, 10)
    finally:
        lock.kill()
    assert elapsed < 10, f"took {elapsed:.1f} s to stop"
    waiting.join(10)
    assert answers and answers[0] != 200  # refused or cut off, never stored half-way
    status, *_ = job_row(data_dir, task_id)
    assert status == "running"  # not lost, not failed: it runs again once its lease lapses …

    restarted = start_server(data_dir, **settings)
    with restarted.client() as client:
        assert wait_for(client, task_id, timeout=120)["status"] == "Ready"  # … and ends, once
    with sqlite3.connect(data_dir / "openkontext.db") as db:
        assert db.execute("select status, count(*) from jobs group by status").fetchall() == [("ready", 1)]


def _submit(server, body) -> int | str:
    try:
        return httpx.post(f"{server.url}{ROUTE}", json=body, headers={"x-key": "test-key-alice"}, timeout=30).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__
