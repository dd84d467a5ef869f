"""Polling throughput: get_result, the task list and the SSE stream against a bare FastAPI endpoint, side by side.

    python benchmarks/polling.py [--seconds 8] [--connections 32] [--tasks 200] [--stores sqlite,postgresql]

Starts a real OpenKontext server (one uvicorn process) per store — the default SQLite file, and a throwaway
PostgreSQL server (Debian's binaries) — each with one Ready task and ``--tasks`` queued ones, and a bare FastAPI +
uvicorn app (one process, the same uvicorn settings) whose one endpoint returns the same JSON body as a Ready
get_result. Then loads each with ``wrk`` (Debian package ``wrk``): the bare app, then per store get_result of the
Ready task (auth, ownership check and a freshly signed result URL on every request) and of a queued one (its queue
position read from the store), /v1/tasks?limit=20, the SSE stream of a Ready task (one event, then the stream
ends), and the bare app again. Prints requests/s and the ratio of each to the mean of the two bare runs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import KEY_A, ServerProcess, b64, free_port, image_bytes, wait_for  # noqa: E402  (the suite's harness)
from postgres import PostgresServer  # noqa: E402  (a throwaway PostgreSQL server)


def bare_app(body: dict):
    """The reference: FastAPI's fastest idiomatic endpoint returning the same body."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/get_result")
    async def get_result(id: str) -> dict:
        return {**body, "id": id}

    return app


def serve_bare(port: int, body_file: Path) -> None:
    import uvicorn

    uvicorn.run(bare_app(json.loads(body_file.read_text())), host="127.0.0.1", port=port, log_level="info")


def wrk(url: str, seconds: float, connections: int, key: str | None = None) -> float:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", url]
    if key:
        command[1:1] = ["-H", f"x-key: {key}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def start_bare(folder: Path, body: dict) -> tuple[subprocess.Popen, str]:
    body_file = folder / "body.json"
    body_file.write_text(json.dumps(body))
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port), str(body_file)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/v1/get_result?id=x", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the bare app did not start")


def prepare_store(folder: Path, settings: dict, tasks: int) -> tuple[ServerProcess, str, str, dict]:
    """An OpenKontext server without workers whose store holds a Ready task and ``tasks`` queued ones. Returns the
    server, the Ready task's id, a queued task's id from the middle of the queue, and the Ready task's body."""
    server = ServerProcess(folder, **settings).start()
    try:
        with server.client() as client:
            image = b64(image_bytes())
            ready_id = client.post("/v1/flux-kontext-pro", json={"prompt": "make it blue", "input_image": image,
                                                                 "steps": 1}).json()["id"]  # fmt: skip
            body = wait_for(client, ready_id)
        server.stop()  # refill the store without a worker, so the extra tasks stay queued
        server = ServerProcess(folder, **{**settings, "workers": 0}).start()
        with server.client() as client:
            queued = [client.post("/v1/flux-kontext-pro", json={"prompt": "queued", "input_image": image,
                                                                "steps": 1}).json()["id"]
                      for _ in range(tasks)]  # fmt: skip
    except BaseException:
        server.stop()
        raise
    return server, ready_id, queued[len(queued) // 2], body


def load_routes(server: ServerProcess, ready_id: str, queued_id: str, load: dict) -> dict[str, float]:
    url = server.url
    return {
        "get_result (Ready task)": wrk(f"{url}/v1/get_result?id={ready_id}", key=KEY_A, **load),
        "get_result (queued task)": wrk(f"{url}/v1/get_result?id={queued_id}", key=KEY_A, **load),
        "/v1/tasks?limit=20": wrk(f"{url}/v1/tasks?limit=20", key=KEY_A, **load),
        "SSE stream (Ready task)": wrk(f"{url}/v1/get_result/stream?id={ready_id}", key=KEY_A, **load),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tasks", type=int, default=200, help="queued tasks in each store besides the Ready one")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--stores", default="sqlite,postgresql",
                        help="comma-separated: sqlite (the default file), postgresql (a throwaway server)")
    parser.add_argument("--serve-bare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), Path(args.serve_bare[1]))
        return
    stores = args.stores.split(",")
    if unknown := set(stores) - {"sqlite", "postgresql"}:
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")

    load = dict(seconds=args.seconds, connections=args.connections)
    settings = dict(model=args.model, workers=1, max_active_tasks=10**6)
    postgres = PostgresServer().start() if "postgresql" in stores else None
    servers: dict[str, tuple] = {}
    bare = None
    figures: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for store in stores:
                database = {"database_url": postgres.database()} if store == "postgresql" else {}
                servers[store] = prepare_store(folder / store, {**settings, **database}, args.tasks)
            server, ready_id, _, body = servers[stores[0]]
            bare, bare_url = start_bare(folder, body)
            bare_rates = [wrk(f"{bare_url}/v1/get_result?id={ready_id}", **load)]
            for store, (server, ready_id, queued_id, _) in servers.items():
                figures[store] = load_routes(server, ready_id, queued_id, load)
            bare_rates.append(wrk(f"{bare_url}/v1/get_result?id={ready_id}", **load))
    finally:
        for server, *_ in servers.values():
            server.stop()
        if bare is not None:
            bare.terminate()
            bare.wait(10)
        if postgres is not None:
            postgres.stop()
    reference = sum(bare_rates) / 2
    print(f"wrk -t2 -c{args.connections} -d{args.seconds:g}s, model {args.model}, {args.tasks + 1} tasks in each store")
    print(f"{'bare FastAPI':37s} {reference:8.0f} req/s   1.00x bare   (before {bare_rates[0]:.0f}, "
          f"after {bare_rates[1]:.0f})")  # fmt: skip
    for store, rates in figures.items():
        for name, rate in rates.items():
            print(f"{store:10s} {name:26s} {rate:8.0f} req/s   {rate / reference:5.2f}x bare")


if __name__ == "__main__":
    main()
