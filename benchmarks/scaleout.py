"""Scale-out: job throughput with 1, 2, 4 worker processes on one PostgreSQL store, and what the store costs an API
request (PostgreSQL vs. SQLite), side by side in one run.

    python benchmarks/scaleout.py [--workers 1,2,4] [--jobs 48] [--steps 8] [--requests 200] [--json PATH]

Throughput: one API-only replica (``serve --workers 0``) and N ``openkontext worker`` processes (one worker thread
each, ``OMP_NUM_THREADS=1``), all on one PostgreSQL database (Debian's binaries, a fresh cluster in a temporary
folder) and one storage folder. For each N (ascending: workers are added) the workers have loaded the model and
2N warm-up jobs ran, then ``--jobs`` edits of ``--steps`` steps are submitted through the replica; the time from the
first submit to the last job's ``finished_at`` gives jobs/s, and the ratio to 1 worker. Worker *processes*, not Ray
actors (``openkontext cluster scale``): an actor is the same ``WorkerProcess`` claiming from the same store, so Ray
would add its own processes to the CPUs being measured and nothing to the figure. The processes share this
machine's cores: N workers can only go faster while N <= free cores (the table's header says how many there are).

Store overhead: two API-only replicas, one on a PostgreSQL database, one on the default SQLite file, each sent
``--requests`` submits (a 96x64 PNG, 1 step; no worker runs them) and then ``--requests`` get_result calls of those
tasks, one request at a time and alternating between the two servers so that both see the same machine; p50/p99
latency of each. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import ServerProcess, Worker, b64, image_bytes  # noqa: E402  (the test suite's real-server harness)
from postgres import PostgresServer  # noqa: E402  (a throwaway PostgreSQL server)

ROUTE = "/v1/flux-kontext-pro"
COMMON = dict(model="tiny", max_active_tasks=10**6, lease_s=30)  # conftest's defaults: compile off, no classifiers


def submit(client: httpx.Client, steps: int, seed: int) -> str:
    body = {"prompt": "make it blue", "input_image": b64(image_bytes(seed=seed % 16)), "steps": steps, "seed": seed}
    response = client.post(ROUTE, json=body)
    response.raise_for_status()
    return response.json()["id"]


def wait_ended(db: sqlalchemy.Engine, ids: list[str], timeout: float) -> float:
    """Wait until every job ended; all must be Ready. The last one's finished_at (the store's clock: this machine's)."""
    query = sqlalchemy.text("SELECT status, finished_at FROM jobs WHERE id = ANY(:ids)")
    deadline = time.monotonic() + timeout
    while True:
        with db.connect() as connection:
            rows = connection.execute(query, {"ids": ids}).all()
        ended = [row for row in rows if row.status not in ("queued", "running")]
        if len(ended) == len(ids):
            failed = [row.status for row in ended if row.status != "ready"]
            if failed:
                raise RuntimeError(f"{len(failed)} jobs did not end Ready: {sorted(set(failed))}")
            return max(row.finished_at for row in ended)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(ids) - len(ended)} of {len(ids)} jobs still unfinished after {timeout:.0f} s")
        time.sleep(0.1)


def throughput(folder: Path, database_url: str, counts: list[int], jobs: int, steps: int) -> list[dict]:
    settings = dict(COMMON, database_url=database_url)
    data_dir = folder / "shared"  # one storage folder for the replica and every worker
    api = ServerProcess(data_dir, workers=0, **settings).start(180)
    db = sqlalchemy.create_engine(database_url, poolclass=sqlalchemy.pool.NullPool)
    results = []
    workers: list[Worker] = []
    try:
        with api.client() as client:
            for count in counts:  # ascending: the workers of one round stay for the next, idle in between
                added = [Worker(data_dir, workers=1, **settings) for _ in range(count - len(workers))]
                workers += added
                with ThreadPoolExecutor(len(added)) as pool:  # each imports torch: start them side by side
                    list(pool.map(lambda worker: worker.start(300), added))
                wait_ended(db, [submit(client, steps, seed) for seed in range(2 * count)], 600)  # warm-up
                started = time.time()
                ids = [submit(client, steps, seed) for seed in range(jobs)]
                submitted = time.time() - started
                elapsed = wait_ended(db, ids, 1800) - started
                results.append({"workers": count, "jobs": jobs, "steps": steps, "seconds": round(elapsed, 3),
                                "submit_seconds": round(submitted, 3), "jobs_per_s": round(jobs / elapsed, 3)})
                print(f"  {count} worker(s): {jobs} jobs in {elapsed:.1f} s", file=sys.stderr, flush=True)
    finally:
        for worker in workers:
            worker.stop()
        api.stop()
        db.dispose()
    base = results[0]["jobs_per_s"]
    for result in results:
        result["vs_first"] = round(result["jobs_per_s"] / base, 2)
    return results


def percentiles(seconds: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 2),
            "p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 2)}  # fmt: skip


def store_overhead(folder: Path, database_url: str, requests: int) -> list[dict]:
    servers = {"SQLite": ServerProcess(folder / "sqlite", workers=0, **COMMON),
               "PostgreSQL": ServerProcess(folder / "postgresql", workers=0, database_url=database_url, **COMMON)}
    body = {"prompt": "make it blue", "input_image": b64(image_bytes()), "steps": 1}
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda server: server.start(180), servers.values()))
        clients = {name: server.client() for name, server in servers.items()}
        ids = {name: [] for name in servers}
        timings = {name: {"submit": [], "get_result": []} for name in servers}

        def timed(name: str, kind: str, call) -> httpx.Response:
            started = time.perf_counter()
            response = call()
            timings[name][kind].append(time.perf_counter() - started)
            response.raise_for_status()
            return response

        for name, client in clients.items():  # warm-up: first connections, first queries, code paths
            for _ in range(10):
                client.get("/v1/get_result", params={"id": client.post(ROUTE, json=body).json()["id"]})
        for _ in range(requests):  # alternate: both servers see the same moments of the machine
            for name, client in clients.items():
                ids[name].append(timed(name, "submit", lambda: client.post(ROUTE, json=body)).json()["id"])
        for index in range(requests):
            for name, client in clients.items():
                task = ids[name][index]
                timed(name, "get_result", lambda: client.get("/v1/get_result", params={"id": task}))
        for client in clients.values():
            client.close()
    finally:
        for server in servers.values():
            server.stop()
    return [{"store": name, "requests": requests, "submit": percentiles(timings[name]["submit"]),
             "get_result": percentiles(timings[name]["get_result"])} for name in servers]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts; the smallest is the reference")
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="sequential submits and get_results per store")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    counts = sorted({int(part) for part in args.workers.split(",")})
    os.environ["OMP_NUM_THREADS"] = "1"  # every server and worker process: one compute thread each

    postgres = PostgresServer().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            print("throughput …", file=sys.stderr, flush=True)
            scaling = throughput(folder / "throughput", postgres.database(), counts, args.jobs, args.steps)
            print("store overhead …", file=sys.stderr, flush=True)
            stores = store_overhead(folder / "stores", postgres.database(), args.requests)
    finally:
        postgres.stop()

    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"Throughput: tiny model, {args.jobs} edits x {args.steps} steps through one API-only replica, PostgreSQL "
          f"store; N 'openkontext worker' processes, 1 thread each. {cores} cores, load average {load:.1f} at the end")
    print(f"  {'workers':>7}  {'seconds':>8}  {'(submits)':>9}  {'jobs/s':>7}  {'vs ' + str(counts[0]):>6}")
    for row in scaling:
        print(f"  {row['workers']:>7}  {row['seconds']:>8.2f}  {row['submit_seconds']:>9.2f}  "
              f"{row['jobs_per_s']:>7.2f}  {row['vs_first']:>5.2f}x")  # fmt: skip
    print(f"Store overhead: one API-only replica per store, {args.requests} sequential requests each (alternating)")
    print(f"  {'store':<10}  {'submit p50':>10}  {'p99':>7}  {'get_result p50':>14}  {'p99':>7}   (ms)")
    for row in stores:
        print(f"  {row['store']:<10}  {row['submit']['p50_ms']:>10.1f}  {row['submit']['p99_ms']:>7.1f}  "
              f"{row['get_result']['p50_ms']:>14.1f}  {row['get_result']['p99_ms']:>7.1f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"cores": cores, "load_average": load, "throughput": scaling,
                                         "store_overhead": stores}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
