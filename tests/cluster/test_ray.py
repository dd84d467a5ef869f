"""``openkontext cluster`` on a real multi-node Ray cluster (three ``ray start`` nodes on loopback,
tests/ray_cluster.py): model workers as detached Ray actors claiming from a real PostgreSQL job store, jobs submitted
to an API-only replica (``serve --workers 0``) on the same store and data dir. Every command is run as a user runs
it (a subprocess).

Checked: a scaled pool runs what the replica accepts and every replica's /metrics sees it; scaling down while jobs
run drains the removed actor (its running job ends there, nothing runs twice) and scaling up adds an actor beside the
busy one; an actor killed with SIGKILL is restarted by Ray and its job taken over once its lease lapses; a whole node
killed mid-job loses no job and its actor comes back on another node. Every job ends Ready exactly once: one
webhook event in the store and one delivery per job. No timing is asserted, only generous waits.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from conftest import ServerProcess, b64, free_port, image_bytes, wait_for
from postgres import postgres, postgres_bin  # noqa: F401  (the session's PostgreSQL server, a fixture)

pytest.importorskip("ray")
from ray_cluster import RayCluster, base_env  # noqa: E402

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed")

ROUTE = "/v1/flux-kontext-pro"
LEASE_S = 3  # a dead worker's jobs are taken over this long after its last heartbeat
LONG_STEPS = 150  # the most a job may ask: the tiny model takes seconds, still running when the test acts
SETTINGS = dict(model="tiny", accel_options="compile=off", moderation_prompt_classifier=False,
                moderation_image_classifier=False, lease_s=LEASE_S, url_allowlist="127.0.0.1",
                max_active_tasks=1000)  # fmt: skip


class Receiver:
    """A webhook receiver: the task ids it was called for, in order."""

    def __init__(self):
        self.ids: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                receiver.ids.append(body["id"])
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, ids: list[str], timeout: float = 60) -> Counter:
        deadline = time.monotonic() + timeout
        while not set(ids) <= set(self.ids):
            assert time.monotonic() < deadline, f"webhooks missing for {set(ids) - set(self.ids)}"
            time.sleep(0.1)
        return Counter(self.ids)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Deployment:
    def __init__(self, cluster: RayCluster, api: ServerProcess, database_url: str, data_dir: Path, hooks: Receiver):
        self.cluster = cluster
        self.api = api
        self.hooks = hooks
        self.db = sqlalchemy.create_engine(database_url, poolclass=sqlalchemy.pool.NullPool)
        self.env = base_env()
        settings = {**SETTINGS, "database_url": database_url, "data_dir": data_dir}
        self.env.update({f"OPENKONTEXT_{name.upper()}": str(value) for name, value in settings.items()})
        self.client = api.client()

    # --- the CLI, as a user runs it -------------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "openkontext.cli", "cluster", *args, "--address", self.cluster.address]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def scale(self, size: int, *extra: str) -> subprocess.CompletedProcess:
        return self.cli("scale", str(size), "--cpus-per-worker", "1", *extra, timeout=600)

    def status(self) -> list[dict]:
        return json.loads(self.cli("status", "--json").stdout)

    def wait_status(self, check, what: str, timeout: float = 300) -> list[dict]:
        """Poll ``cluster status --json`` until ``check(actors)``."""
        deadline = time.monotonic() + timeout
        while True:
            actors = self.status()
            if check(actors):
                return actors
            assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s; last status {actors}"
            time.sleep(2)

    # --- jobs ------------------------------------------------------------------------------------------------------

    def submit(self, steps: int, seed: int) -> str:
        body = {"prompt": "make it blue", "input_image": b64(image_bytes(seed=seed)), "steps": steps, "seed": seed,
                "webhook_url": self.hooks.url}  # fmt: skip
        response = self.client.post(ROUTE, json=body)
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def row(self, job_id: str) -> dict:
        with self.db.connect() as db:
            found = db.execute(sqlalchemy.text("SELECT status, attempts, lease_owner, step FROM jobs WHERE id = :id"),
                               {"id": job_id}).mappings().one()  # fmt: skip
        return dict(found)

    def running_on(self, worker_id: str) -> str | None:
        """The job this worker runs now (it has done a step of it), if any."""
        with self.db.connect() as db:
            return db.execute(sqlalchemy.text("SELECT id FROM jobs WHERE status = 'running' AND lease_owner = :w "
                                              "AND step >= 1"), {"w": worker_id}).scalar()  # fmt: skip

    def wait_running_on(self, worker_id: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while (job_id := self.running_on(worker_id)) is None:
            assert time.monotonic() < deadline, f"worker {worker_id} runs no job after {timeout:.0f} s"
            time.sleep(0.05)
        return job_id

    def webhook_events(self, ids: list[str]) -> Counter:
        with self.db.connect() as db:
            rows = db.execute(sqlalchemy.text("SELECT job_id FROM webhook_events WHERE job_id = ANY(:ids)"),
                              {"ids": ids}).scalars()  # fmt: skip
            return Counter(rows)

    def assert_ready_once(self, ids: list[str], timeout: float = 300) -> None:
        """Every job ends Ready with a downloadable image, was finished once (one webhook event queued by the finish,
        one delivery)."""
        for job_id in ids:
            state = wait_for(self.client, job_id, timeout=timeout)
            image = httpx.get(state["result"]["sample"], timeout=30)
            assert image.status_code == 200
            Image.open(io.BytesIO(image.content)).verify()
        assert self.webhook_events(ids) == Counter(ids)
        delivered = self.hooks.wait_for(ids)
        assert {job_id: delivered[job_id] for job_id in ids} == dict.fromkeys(ids, 1)

    def metrics(self) -> dict[str, list]:
        text = httpx.get(f"{self.api.url}/metrics", timeout=30).text
        return {family.name: family.samples for family in text_string_to_metric_families(text)}

    def takeovers(self) -> float:
        return sum(sample.value for sample in self.metrics()["openkontext_worker_lease_takeovers"]
                   if sample.name.endswith("_total"))  # fmt: skip

    def wait_takeovers(self, at_least: int, timeout: float = 120) -> float:
        """Poll /metrics until the pools report ``at_least`` takeovers. A pool's count reaches the store with its
        next heartbeat, and /metrics shows only pools heard from within a lease: on a loaded machine one scrape can
        fall between two late heartbeats."""
        deadline = time.monotonic() + timeout
        while (takeovers := self.takeovers()) < at_least:
            assert time.monotonic() < deadline, f"{takeovers:.0f} takeovers on /metrics after {timeout:.0f} s"
            time.sleep(0.5)
        return takeovers


@pytest.fixture(scope="module")
def deployment(postgres, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("ray-deployment")
    database_url = postgres.database()
    hooks = Receiver()
    api = ServerProcess(folder / "data", workers=0, database_url=database_url, **SETTINGS)
    # Three nodes of one CPU each, actors of one CPU: two actors are always on two different nodes, and the third
    # node is the room a lost node's actor comes back to.
    cluster = RayCluster(cpus=[1, 1, 1])
    try:
        with ThreadPoolExecutor(1) as pool:  # both take a while on a busy machine: start them side by side
            api_started = pool.submit(api.start, 180)
            cluster.start()
            api_started.result()
        deployment = Deployment(cluster, api, database_url, folder / "data", hooks)
        yield deployment
        deployment.client.close()
        deployment.db.dispose()
    finally:
        api.stop()
        cluster.stop()
        hooks.close()


def answering(actors: list[dict]) -> list[dict]:
    return [actor for actor in actors if actor["report"] is not None]


def by_name(actors: list[dict]) -> dict[str, dict]:
    return {actor["actor"]: actor["report"] for actor in actors}


def test_a_scaled_pool_runs_the_jobs_an_api_replica_accepts(deployment):
    scaled = deployment.scale(2)
    assert "openkontext-worker-0" in scaled.stdout and "openkontext-worker-1" in scaled.stdout
    actors = deployment.status()
    assert [actor["actor"] for actor in actors] == ["openkontext-worker-0", "openkontext-worker-1"]
    assert len(answering(actors)) == 2, actors  # scale returns once each actor has loaded its model
    nodes = [deployment.cluster.node_of(actor["report"]["pid"]) for actor in actors]
    assert None not in nodes and nodes[0] is not nodes[1], nodes  # each runs on a node of the cluster (its own)
    assert len({actor["report"]["node"] for actor in actors}) == 2

    ids = [deployment.submit(steps=3, seed=seed) for seed in range(4)]
    deployment.assert_ready_once(ids)
    actors = deployment.status()
    assert sum(actor["report"]["finished"] for actor in actors) == 4  # they ran the jobs, nobody else could
    assert all(actor["report"]["takeovers"] == 0 for actor in actors)

    # The replica runs no worker, yet its /metrics reports both actors (their heartbeats in the shared store).
    worker_ids = {actor["report"]["id"] for actor in actors}
    deadline = time.monotonic() + 60
    while True:
        metrics = deployment.metrics()
        pools = [s.value for s in metrics["openkontext_workers"] if s.labels == {"unit": "pools"}]
        running = metrics["openkontext_worker_running"]
        finished = sum(s.value for s in metrics["openkontext_worker_jobs_finished"] if s.name.endswith("_total"))
        # (each pool's count reaches the store with its next heartbeat, so the scrape may lag the actors' status)
        if pools == [2] and {s.labels["worker"] for s in running} == worker_ids and finished == 4:
            break
        assert time.monotonic() < deadline, (pools, running, worker_ids, finished)
        time.sleep(0.5)
    assert {s.labels["role"] for s in running} == {"ray"}
    threads = [s.value for s in metrics["openkontext_workers"] if s.labels == {"unit": "threads"}]
    assert threads == [2]


def test_scaling_down_and_up_while_jobs_run_drops_no_job(deployment):
    deployment.scale(2)
    actors = by_name(deployment.wait_status(lambda actors: len(answering(actors)) == 2, "two actors answer"))
    leaving = actors["openkontext-worker-1"]
    staying = actors["openkontext-worker-0"]
    takeovers_before = deployment.takeovers()

    # A queue that outlasts both commands: whenever the drain arrives, the removed actor is mid-job.
    ids = [deployment.submit(steps=LONG_STEPS, seed=100 + seed) for seed in range(24)]
    deployment.wait_running_on(leaving["id"])
    deployment.wait_running_on(staying["id"])
    drain_began = time.time()
    down = deployment.scale(1, "--drain-timeout", "300")
    assert "did not end" not in down.stderr and "could not drain" not in down.stderr, down.stderr
    assert [actor["actor"] for actor in deployment.status()] == ["openkontext-worker-0"]

    # Up again while the remaining actor is busy: the new actor loads its model beside it. On a loaded machine the
    # drain and the scale command can outlast the first queue, so more jobs go in first.
    ids += [deployment.submit(steps=LONG_STEPS, seed=300 + seed) for seed in range(4)]
    unfinished = [job_id for job_id in ids if deployment.row(job_id)["status"] in ("queued", "running")]
    assert unfinished, "the jobs ended before the pool grew again: submit more, or longer ones"
    deployment.scale(2)
    deployment.assert_ready_once(ids)

    # Nothing ran twice: each job was claimed once, never handed back.
    assert [deployment.row(job_id)["attempts"] for job_id in ids] == [1] * len(ids)
    logs = deployment.cluster.worker_logs()
    for job_id in ids:
        assert logs.count(f"job {job_id}: running") == 1, [line for line in logs.splitlines() if job_id in line]
        assert f"job {job_id}: handed back" not in logs
    # The removed actor ended every job it began, the last one after the drain began: the drain let it finish.
    leaving_log = deployment.cluster.log_of(leaving["pid"])
    started_there = [job_id for job_id in ids if f"job {job_id}: running" in leaving_log]
    assert started_there
    ended_at = []
    for job_id in started_there:
        line = next((line for line in leaving_log.splitlines() if f"job {job_id}: ready" in line), None)
        assert line is not None, f"{job_id} began on the removed actor and did not end there"
        ended_at.append(log_time(line))
    assert max(ended_at) >= drain_began - 0.001  # (log times are cut to the millisecond)
    assert deployment.takeovers() == takeovers_before == 0


def log_time(line: str) -> float:
    """The time of a log line of an actor ('2026-01-01 12:00:00,123 INFO …', local time)."""
    stamp = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
    return datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(stamp.group(2)) / 1000


def test_an_actor_killed_mid_job_is_restarted_and_its_job_taken_over(deployment):
    deployment.scale(2)
    actors = by_name(deployment.wait_status(lambda actors: len(answering(actors)) == 2, "two actors answer"))
    victim = actors["openkontext-worker-0"]

    ids = [deployment.submit(steps=LONG_STEPS, seed=200 + seed) for seed in range(3)]
    job_id = deployment.wait_running_on(victim["id"])
    os.kill(victim["pid"], signal.SIGKILL)

    deployment.assert_ready_once(ids)
    row = deployment.row(job_id)
    assert row["attempts"] == 2, row  # started by the victim, then once more by whoever took it over
    assert f"job {job_id}: taken over from {victim['id']}" in deployment.cluster.worker_logs()
    deployment.wait_takeovers(at_least=1)

    # Ray restarted the actor: the same name answers from a new process (a new worker id).
    def restarted(actors):
        report = by_name(actors).get("openkontext-worker-0")
        return report is not None and report["pid"] != victim["pid"] and len(answering(actors)) == 2

    restarted_report = by_name(deployment.wait_status(restarted, "the killed actor answers again"))
    assert restarted_report["openkontext-worker-0"]["id"] != victim["id"]


def test_a_node_killed_mid_job_loses_no_job_and_its_actor_comes_back_elsewhere(deployment):
    deployment.scale(2)
    actors = deployment.wait_status(lambda actors: len(answering(actors)) == 2, "two actors answer")
    cluster = deployment.cluster
    # At most one actor is on the head (the GCS, which this test must not kill): take one on another node.
    victim = next(actor for actor in actors if cluster.node_of(actor["report"]["pid"]) is not cluster.nodes[0])
    lost = cluster.node_of(victim["report"]["pid"])
    survivors = [node for node in cluster.nodes if node is not lost]

    ids = [deployment.submit(steps=LONG_STEPS, seed=300 + seed) for seed in range(3)]
    job_id = deployment.wait_running_on(victim["report"]["id"])
    lost.kill()  # the raylet, its agents and the actor's worker process: the machine is gone

    deployment.assert_ready_once(ids)
    assert deployment.row(job_id)["attempts"] == 2
    assert f"job {job_id}: taken over from {victim['report']['id']}" in "".join(n.worker_logs() for n in survivors)

    # Ray restarts the actor on a surviving node (the spare one: the only one with a free CPU).
    def back_elsewhere(actors):
        alive = answering(actors)
        return len(alive) == 2 and all(cluster.node_of(actor["report"]["pid"]) in survivors for actor in alive)

    actors = by_name(deployment.wait_status(back_elsewhere, "the lost node's actor answers from another node", 300))
    assert actors[victim["actor"]]["id"] != victim["report"]["id"]
