"""The scale-out shape on one machine: two API-only replicas (``serve --workers 0``) and two ``openkontext worker``
processes, all on one real PostgreSQL database and one shared storage folder, each configured by OPENKONTEXT_*
variables like a deployment (docs/deploy.md). A client may reach any replica for any call; a worker may freeze or
die, the database and a replica may restart mid-run — and every task still ends once, with one webhook.

One cluster serves the whole module (each process spends tens of seconds importing torch on a loaded machine); its
tests run in file order, the fault test last because it kills a worker for good.
"""

from __future__ import annotations

import io
import itertools
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import sqlalchemy
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from api.test_doc_flows import DOC_CURL_POLL, DOC_CURL_SUBMIT  # the doc's snippets, kept verbatim in one place
from api.test_webhooks import Receiver
from conftest import KEY_A, KEY_B, ServerProcess, Worker, b64, image_bytes, wait_for
from openkontext.client import verify_webhook
from openkontext.engine.buckets import make_buckets, nearest_bucket
from postgres import PostgresServer, postgres  # noqa: F401  (the session's PostgreSQL server, a fixture)

ALPHA = "/v1/flux-bagel-alpha"
BFL_HOST = "https://api.us1.bfl.ai"  # in the doc's snippets
LEASE_S = 3  # short, so a dead worker's job is taken over within seconds
LONG_STEPS = 150  # a task that keeps a worker busy for seconds
MAX_ACTIVE = 12  # per key, counted in the shared store
STARTUP_S = 300  # a generous bound: four processes import torch at once on a loaded 2-core machine
INPUT_SIZE = (128, 96)
INPUT = b64(image_bytes(INPUT_SIZE, fmt="JPEG"))
TINY_SIDE = 64  # the tiny test model's native side: results come out in its buckets
EXPECTED_SIZE = nearest_bucket(*INPUT_SIZE, make_buckets(TINY_SIDE))
ENDED = ("Ready", "Error", "Cancelled", "Request Moderated", "Content Moderated")


@dataclass
class Cluster:
    postgres: PostgresServer
    database_url: str
    data_dir: Path
    api: list[ServerProcess]
    workers: list[Worker]

    @property
    def storage(self) -> Path:
        return self.data_dir / "storage"

    @contextmanager
    def paused_workers(self):
        """Freeze every worker process (SIGSTOP) while the deployment is idle: what is submitted meanwhile stays
        queued. Idle workers hold no job row lock, so the API replicas never wait on them."""
        idle = eventually(lambda: gauge(metrics(self.api[0]), "openkontext_active_jobs") == 0
                          and gauge(metrics(self.api[0]), "openkontext_queue_depth") == 0)  # fmt: skip
        assert idle, "the cluster is still busy with an earlier test's tasks"
        for worker in self.workers:
            worker.pause()
        try:
            yield
        finally:
            for worker in self.workers:
                worker.resume()


@pytest.fixture(scope="module")
def cluster(postgres, tmp_path_factory):  # noqa: F811
    data_dir = tmp_path_factory.mktemp("cluster") / "data"  # one data dir: its storage folder is the shared one
    database_url = postgres.database()
    common = dict(database_url=database_url, signing_secret=secrets.token_hex(32), lease_s=LEASE_S,
                  max_active_tasks=MAX_ACTIVE, url_allowlist="127.0.0.1", webhook_backoff_s=0.2,
                  webhook_timeout_s=2, shutdown_timeout_s=3)  # fmt: skip
    api = [ServerProcess(data_dir, workers=0, **common) for _ in range(2)]
    workers = [Worker(data_dir, **common) for _ in range(2)]
    processes = [*api, *workers]
    try:
        with ThreadPoolExecutor(len(processes)) as pool:  # all at once; the schema migration is locked (advisory)
            for started in [pool.submit(process.start, STARTUP_S) for process in processes]:
                started.result()
        yield Cluster(postgres, database_url, data_dir, api, workers)
    finally:
        for worker in workers:
            if worker.process:
                worker.resume()
        with ThreadPoolExecutor(len(processes)) as pool:
            list(pool.map(lambda process: process.stop(), processes))


# --- helpers ----------------------------------------------------------------------------------------------------------


def submit(replica: ServerProcess, key: str = KEY_A, headers: dict | None = None, **fields) -> httpx.Response:
    body = {"prompt": "add a red hat", "input_image": INPUT, "steps": 4, **fields}
    return httpx.post(replica.url + ALPHA, json=body, headers={"x-key": key, **(headers or {})}, timeout=60)


def accepted(replica: ServerProcess, key: str = KEY_A, **fields) -> str:
    response = submit(replica, key, **fields)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def state(replica: ServerProcess, task_id: str, key: str = KEY_A) -> dict:
    response = httpx.get(f"{replica.url}/v1/get_result", params={"id": task_id}, headers={"x-key": key}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def cancel(replica: ServerProcess, task_id: str, key: str = KEY_A) -> dict:
    response = httpx.post(f"{replica.url}/v1/cancel", params={"id": task_id}, headers={"x-key": key}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def on(replica: ServerProcess, url: str) -> str:
    """The same URL (path, query, signature) on another replica."""
    return urlunsplit(urlsplit(url)._replace(netloc=urlsplit(replica.url).netloc))


def result_image(url: str) -> Image.Image:
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def metrics(process: ServerProcess) -> list:
    text = httpx.get(f"{process.url}/metrics", timeout=60).text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def gauge(samples: list, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def by_worker_pid(samples: list, name: str) -> dict[int, float]:
    """A per-worker family keyed by the worker process's pid (a worker id is ``host:pid:random``)."""
    return {int(s.labels["worker"].rsplit(":", 2)[1]): s.value for s in samples if s.name == name}


def eventually(check, timeout: float = 20.0, interval: float = 0.2):
    """``check()``'s first truthy value within ``timeout`` s (a bound, not a timing claim); else the last value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.HTTPError, AssertionError):
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# --- 1. the doc's flows, across replicas ------------------------------------------------------------------------------


def test_doc_curl_flow_submits_on_one_replica_and_polls_another(cluster):
    a, b = cluster.api
    script = DOC_CURL_SUBMIT.replace(BFL_HOST, a.url) + DOC_CURL_POLL.replace(BFL_HOST, b.url)
    script = script.replace("<base64 converted image>", INPUT)
    output = subprocess.run(["bash", "-c", script], env={**os.environ, "BFL_API_KEY": KEY_A}, capture_output=True,
                            text=True, timeout=180)  # fmt: skip
    assert output.returncode == 0, output.stderr
    submitted = next(line for line in output.stdout.splitlines() if line.startswith("{"))
    assert f'"polling_url":"{a.url}/v1/get_result' in submitted.replace(" ", "")  # accepted by A …
    sample = next(line for line in output.stdout.splitlines() if line.startswith("Result: ")).removeprefix("Result: ")
    assert sample.startswith(f"{b.url}/results/")  # … Ready as seen from B, which signed the URL
    from_b, from_a = result_image(sample), result_image(on(a, sample))  # one signing secret, one storage
    assert from_b.format == from_a.format == "JPEG"
    assert from_b.size == EXPECTED_SIZE
    assert from_b.tobytes() == from_a.tobytes()


def test_official_bfl_client_on_one_replica_sees_tasks_of_another(cluster, tmp_path):
    from blackforest import BFLClient
    from blackforest.types.general.client_config import ClientConfig

    a, b = cluster.api
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes(INPUT_SIZE))
    client = BFLClient(api_key=KEY_A, base_url=b.url)
    # The client gives up after max_retries polls whatever its timeout (60 by default: 12 s at this interval)
    config = ClientConfig(sync=True, timeout=180, polling_interval=0.2, max_retries=900)
    edited = client.generate("flux-kontext-pro", {"prompt": "make it night", "input_image": str(photo), "seed": 1,
                                                   "output_format": "jpeg"}, config)  # fmt: skip
    assert edited.result["seed"] == 1 and edited.result["prompt"] == "make it night"
    assert result_image(on(a, edited.result["sample"])).size == EXPECTED_SIZE
    # A task accepted by replica A, followed by BFL's client through replica B.
    elsewhere = accepted(a, seed=2)
    assert client.get_task_status(elsewhere).status in ("Pending", "Ready")
    result = client.get_polling_result(elsewhere, config)
    assert result["seed"] == 2 and result["sample"].startswith(b.url)
    assert result_image(result["sample"]).size == EXPECTED_SIZE


# --- 2. idempotency across replicas -----------------------------------------------------------------------------------


def test_idempotent_submits_racing_on_both_replicas_make_one_task(cluster):
    a, b = cluster.api
    key = f"race-{uuid.uuid4().hex}"
    body = dict(seed=5, steps=2, prompt="make it red")
    folders_before = set(os.listdir(cluster.storage))
    racers = 8
    start = threading.Barrier(racers)

    def send(index: int) -> httpx.Response:
        start.wait()
        return submit((a, b)[index % 2], headers={"Idempotency-Key": key}, **body)

    with ThreadPoolExecutor(racers) as pool:
        responses = list(pool.map(send, range(racers)))
    assert [r.status_code for r in responses] == [200] * racers, [r.text for r in responses]
    (task_id,) = {r.json()["id"] for r in responses}
    for replica in (a, b):
        assert submit(replica, headers={"Idempotency-Key": key}, **body).json()["id"] == task_id  # a later retry
        conflict = submit(replica, headers={"Idempotency-Key": key}, **{**body, "seed": 6})
        assert conflict.status_code == 409, conflict.text
    bob = [submit(replica, KEY_B, headers={"Idempotency-Key": key}, **body) for replica in (a, b)]
    assert [r.status_code for r in bob] == [200, 200] and bob[0].json()["id"] == bob[1].json()["id"] != task_id
    wait_for(b.client(KEY_B), bob[0].json()["id"], timeout=120)  # keys are per API key
    assert wait_for(b.client(), task_id, timeout=120)["result"]["seed"] == 5
    new_folders = set(os.listdir(cluster.storage)) - folders_before
    assert new_folders == {task_id, bob[0].json()["id"]}  # the losing racers left no files behind


# --- 3. cancel on the other replica -----------------------------------------------------------------------------------


def test_cancel_on_the_replica_that_did_not_accept_the_task(cluster):
    a, b = cluster.api
    with cluster.paused_workers():
        queued = accepted(a, steps=LONG_STEPS)
        assert state(b, queued)["status"] == "Pending"
        assert cancel(b, queued)["status"] == "Cancelled"
    for replica in (a, b):
        assert state(replica, queued)["status"] == "Cancelled"

    # A running task: the cancel reaches its worker (another process) through the store, within a step. If this
    # machine was so slow that the task ended before the cancel landed, that task proves nothing: take another.
    for _attempt in range(3):
        running = accepted(a, steps=LONG_STEPS)
        started = eventually(lambda: (view := state(b, running))["status"] != "Pending" or view["progress"] > 0,
                             timeout=120, interval=0.05)  # fmt: skip
        assert started, f"task {running} never started: {state(b, running)}"
        answer = cancel(b, running)
        if answer["status"] == "Pending":
            break
        assert answer["status"] == "Ready", answer
    else:
        pytest.fail("every task ended before its cancel arrived")
    ended = {replica.url: wait_for(replica.client(), running, statuses=("Cancelled",), timeout=120)
             for replica in (b, a)}  # fmt: skip
    for view in ended.values():
        assert view["status"] == "Cancelled" and view["result"] is None
        assert view["details"] == {"error": "cancelled by the client"}
    assert not (cluster.storage / running / "sample.jpeg").exists()


# --- 4. the per-key limit, counted in the shared store ----------------------------------------------------------------


def test_active_task_limit_is_counted_across_replicas(cluster):
    a, b = cluster.api
    with cluster.paused_workers():  # nothing runs: every task stays active
        replicas = itertools.cycle((a, b))
        tasks = [accepted(next(replicas), KEY_B) for _ in range(MAX_ACTIVE)]
        for replica in (a, b):
            refused = submit(replica, KEY_B)
            assert refused.status_code == 429, refused.text
            assert str(MAX_ACTIVE) in refused.json()["detail"]
        alice = accepted(a, KEY_A)  # another key is not held back
        assert cancel(b, alice)["status"] == "Cancelled"
        assert cancel(a, tasks[0], KEY_B)["status"] == "Cancelled"  # one slot freed, on A …
        freed = submit(b, KEY_B)  # … is seen by B
        assert freed.status_code == 200, freed.text
        assert submit(a, KEY_B).status_code == 429
        for replica, task_id in zip(itertools.cycle((b, a)), [*tasks[1:], freed.json()["id"]]):
            assert cancel(replica, task_id, KEY_B)["status"] == "Cancelled"
    for replica in (a, b):  # nothing of KEY_B's is active any more
        wait_for(replica.client(KEY_B), accepted(replica, KEY_B, steps=1), timeout=120)


# --- 5. /metrics on any replica reports every worker ------------------------------------------------------------------


def worker_totals(worker: Worker) -> float:
    """What this worker process itself counted (its own registry, not the store): jobs it ended, any status."""
    return gauge(metrics(worker), "openkontext_jobs_finished_total")


def settled_totals(cluster: Cluster) -> float:
    """The workers' own counts once the deployment is idle and they stopped changing (a worker counts a job just
    after the store says it ended)."""

    def idle_and_unchanged():
        first = [worker_totals(worker) for worker in cluster.workers]
        time.sleep(0.5)
        samples = metrics(cluster.api[0])
        idle = gauge(samples, "openkontext_queue_depth") == 0 and gauge(samples, "openkontext_active_jobs") == 0
        return idle and first == [worker_totals(worker) for worker in cluster.workers] and (sum(first),)

    totals = eventually(idle_and_unchanged, timeout=120)
    assert totals, "the cluster never went idle"
    return totals[0]


def test_metrics_on_every_replica_report_every_worker(cluster):
    a, b = cluster.api
    pids = {worker.process.pid: worker for worker in cluster.workers}
    before = settled_totals(cluster)
    count = 6
    replicas = itertools.cycle((a, b))
    tasks = [accepted(next(replicas), steps=8, seed=index) for index in range(count)]
    for task_id in tasks:
        wait_for(b.client(), task_id, timeout=180)

    def consistent(process: ServerProcess):
        """The deployment as ``process`` reports it, once it agrees with what each worker counted itself."""
        own = {pid: worker_totals(worker) for pid, worker in pids.items()}
        if sum(own.values()) != before + count:  # a worker counts a job just after the store says Ready
            return None
        samples = metrics(process)
        finished = by_worker_pid(samples, "openkontext_worker_jobs_finished_total")
        checks = [
            gauge(samples, "openkontext_workers", unit="pools") == 2,
            gauge(samples, "openkontext_workers", unit="threads") == 2,
            finished == own,
            set(by_worker_pid(samples, "openkontext_worker_running").values()) == {0},
            {s.labels["role"] for s in samples if s.name == "openkontext_worker_running"} == {"worker"},
            gauge(samples, "openkontext_queue_depth") == 0,
            gauge(samples, "openkontext_active_jobs") == 0,
        ]
        return all(checks) and samples

    for process in (a, b, *cluster.workers):  # the API replicas and each worker's own /metrics port
        samples = eventually(lambda: consistent(process), timeout=30)
        assert samples, f"{process.url}/metrics never agreed with the workers' own counts:\n" + "\n".join(
            f"{s.name}{s.labels} {s.value}" for s in metrics(process) if s.name.startswith("openkontext_worker"))
        assert set(by_worker_pid(samples, "openkontext_worker_jobs_finished_total")) == set(pids)


# --- 6. faults: a worker frozen then killed, the database restarted, an API replica restarted -------------------------


def settled(replica: ServerProcess, task_id: str) -> dict | None:
    """The task's state if ``replica`` answers and it has ended; None while pending or while the replica is away."""
    try:
        response = httpx.get(f"{replica.url}/v1/get_result", params={"id": task_id}, headers={"x-key": KEY_A},
                             timeout=30)  # fmt: skip
    except httpx.HTTPError:
        return None
    if response.status_code != 200 or response.json()["status"] not in ENDED:
        return None
    return response.json()


def takeovers(replica: ServerProcess) -> float:
    return sum(by_worker_pid(metrics(replica), "openkontext_worker_lease_takeovers_total").values())


def holds_a_job(db: sqlalchemy.Engine, worker: Worker) -> bool:
    """Whether ``worker`` holds a live lease on a running job, read from the store (/metrics lags a heartbeat, and
    a worker that lost its lease reports the job until its next step)."""
    with db.connect() as connection:
        held = connection.execute(sqlalchemy.text(
            "SELECT count(*) FROM jobs WHERE status = 'running' AND lease_owner LIKE :owner "
            "AND lease_expires > :now"), {"owner": f"%:{worker.process.pid}:%", "now": time.time()})  # fmt: skip
        return held.scalar() > 0


def test_no_task_is_lost_or_duplicated_through_crashes_and_restarts(cluster):
    a, b = cluster.api
    doomed, survivor = cluster.workers
    receiver = Receiver()
    secret = "cluster-webhook-secret"
    hooks = dict(webhook_url=receiver.url, webhook_secret=secret)
    try:
        # Two long tasks first, then a queue: both workers (one thread each) are busy, each with a long task.
        long = [accepted(replica, steps=LONG_STEPS, seed=index, **hooks) for index, replica in enumerate((a, b))]
        replicas = itertools.cycle((a, b))
        tasks = long + [accepted(next(replicas), steps=20, seed=index, **hooks) for index in range(2, 10)]
        pids = {doomed.process.pid, survivor.process.pid}

        def both_busy():
            samples = metrics(b)
            if by_worker_pid(samples, "openkontext_worker_running") == dict.fromkeys(pids, 1) and (
                    gauge(samples, "openkontext_queue_depth") >= 2):
                return True
            # On a loaded machine one worker may start polling only after the other has drained the queue (CI saw
            # it): keep long tasks queued, bounded, until both are seen busy at once.
            if len(tasks) < 16 and gauge(samples, "openkontext_queue_depth") < 2:
                tasks.append(accepted(next(replicas), steps=LONG_STEPS, seed=len(tasks), **hooks))
            return False

        assert eventually(both_busy, timeout=120, interval=0.05), [(s.name, s.labels, s.value) for s in metrics(b)]
        # (a) A worker frozen past its lease (a long pause, a stalled VM): the other takes its job over, and when it
        # wakes up, every write it tries for that job is refused (fenced by the lease owner) — no second outcome.
        doomed.pause()
        try:
            eventually(lambda: takeovers(b), timeout=30)  # no claim: had it frozen mid-transaction, none comes
        finally:
            doomed.resume()
        # Meanwhile the survivor may have worked through the queue: more tasks, so the woken worker has a job to die
        # in whatever happened while it slept (its own job again, if no one took it over). The survivor may win the
        # claims while the woken worker backs off (up to 10 s after its fenced job), so a long task is added
        # whenever the queue runs dry: once the survivor runs one, the next waits for the woken worker. (Short ones
        # let the survivor take every task on a loaded machine, as CI saw.)
        # Two are kept queued, not one: while the survivor runs one long task, another is always waiting for the woken
        # worker's next poll (with one, the survivor could take each as it came while the woken one backed off, and
        # use up the bound: CI saw it on a loaded machine).
        tasks += [accepted(replica, steps=40, seed=len(tasks) + k, **hooks) for k, replica in enumerate((a, b))]
        most_tasks = len(tasks) + 6
        db = sqlalchemy.create_engine(cluster.database_url)  # one engine for the polls below (pooled connection)

        def doomed_holds_a_job() -> bool:
            if holds_a_job(db, doomed):
                return True
            if len(tasks) < most_tasks and gauge(metrics(b), "openkontext_queue_depth") < 2:  # bounded: see below
                tasks.append(accepted(next(replicas), steps=LONG_STEPS, seed=len(tasks), **hooks))
            return False

        try:
            assert eventually(doomed_holds_a_job, timeout=120, interval=0.05), metrics(b)
        finally:
            db.dispose()  # before PostgreSQL restarts below
        doomed.kill()  # (b) kill -9 mid-job: its lease lapses and the other worker takes the job over
        cluster.postgres.restart(down_s=2)  # (c) every connection of every process drops
        a.kill()  # (d) an API replica crashes and comes back on the same port
        a.start(STARTUP_S)

        ended = {}
        deadline = time.monotonic() + 900  # a bound: at most ~2,400 steps of work in all, for one worker
        while len(ended) < len(tasks) and time.monotonic() < deadline:
            for task in tasks:
                if task not in ended and (view := settled(b, task)):
                    ended[task] = view
            time.sleep(0.2)
        assert {task: view["status"] for task, view in ended.items()} == dict.fromkeys(tasks, "Ready"), ended

        # Every task: Ready on both replicas, its result downloadable from both.
        for task in tasks:
            for replica in (a, b):
                view = eventually(lambda: settled(replica, task), timeout=60)
                assert view and view["status"] == "Ready", (replica.url, task, view)
                assert result_image(on(replica, view["result"]["sample"])).size == EXPECTED_SIZE
            assert eventually(lambda: state(b, task).get("webhook_status") == "delivered", timeout=120), state(b, task)

        # Exactly one webhook event per task (a delivery may repeat after a crash, under the same webhook-id).
        events = defaultdict(set)
        for call in list(receiver.calls):
            payload = verify_webhook(call["body"], call["headers"], secret, tolerance_s=3600)
            assert payload["status"] == "Ready", payload
            events[payload["id"]].add({k.lower(): v for k, v in call["headers"].items()}["webhook-id"])
        assert {task: len(events[task]) for task in tasks} == dict.fromkeys(tasks, 1)
        assert set(events) == set(tasks)

        # /metrics (on the restarted replica too): the dead worker ages out, the survivor took its job over.
        for replica in (a, b):
            samples = eventually(lambda: (s := metrics(replica)) and gauge(s, "openkontext_workers", unit="pools") == 1
                                 and s, timeout=30)  # fmt: skip
            assert samples, [s for s in metrics(replica) if s.name.startswith("openkontext_worker")]
            taken_over = by_worker_pid(samples, "openkontext_worker_lease_takeovers_total")
            assert set(taken_over) == {survivor.process.pid} and taken_over[survivor.process.pid] >= 1, taken_over
            assert gauge(samples, "openkontext_queue_depth") == 0 and gauge(samples, "openkontext_active_jobs") == 0
    finally:
        receiver.close()
