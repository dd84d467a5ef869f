"""Submitting: latency of a submit carrying a 1 MB image (idle vs. while the engine is busy) and sustained submits/s
(moderation off and on) against a bare FastAPI POST of the same body, all in one run.

    python benchmarks/submit_latency.py [--requests 60] [--seconds 8] [--connections 8] [--model default]

Latency: ``--requests`` submits one after another, first with no job running, then while one worker runs
``--busy-tasks`` queued 50-step edits (the submitted tasks queue behind them, so the engine is busy throughout) —
with the worker thread inside the API process (``serve``), the same with ``OPENKONTEXT_WORKER_NICE=10`` (the
engine's threads at a lower priority than the API's), and with the worker in its own process (an API-only
``serve --workers 0`` beside ``openkontext worker`` on the same data dir); p50/p99 and the busy/idle ratios.
Throughput: ``wrk`` (Debian package ``wrk``) posts the same body from ``--connections`` connections for
``--seconds`` to a server without workers (moderation off, then on: prompt blocklist + classifier and the image
classifier) and to a bare FastAPI app (one process, the same uvicorn settings) whose endpoint takes the same JSON
body into a pydantic model and answers with an id.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import KEY_A, ServerProcess, Worker, free_port  # noqa: E402  (the test suite's real-server harness)


def one_megabyte_png() -> bytes:
    """A 660x660 photo-like PNG of about 1 MB (smooth gradients plus noise: it does not compress away)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:660, 0:660]
    base = np.stack([x * 0.4, y * 0.4, (x + y) * 0.2], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


NICE = 10  # OPENKONTEXT_WORKER_NICE of the third busy case


class BareEdit(BaseModel):
    prompt: str
    input_image: str
    steps: int = 28


def bare_app():
    from fastapi import FastAPI

    app = FastAPI()
    counter = iter(range(10**12))

    @app.post("/v1/flux-kontext-pro")
    async def submit(body: BareEdit) -> dict:
        return {"id": f"task-{next(counter)}", "polling_url": "http://127.0.0.1/v1/get_result"}

    return app


def start_bare() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the bare app did not start")


def wrk_post(url: str, body: str, folder: Path, seconds: float, connections: int, key: str | None) -> float:
    body_file = folder / "body.json"
    body_file.write_text(body)
    script = folder / "post.lua"
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if key:
        headers += f'wrk.headers["x-key"] = "{key}"\n'
    script.write_text(f'wrk.method = "POST"\n{headers}local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\n'
                      "f:close()\n")  # fmt: skip
    output = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def latencies(client: httpx.Client, requests: int, body: dict) -> list[float]:
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        client.post("/v1/flux-kontext-pro", json=body).raise_for_status()
        seconds.append(time.perf_counter() - started)
    return seconds


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def busy_latencies(server: ServerProcess, args, body: dict) -> tuple[list[float], bool]:
    """Submit latencies while a worker (of this server, or a worker process on its data dir) runs long edits; and
    whether it still ran them at the end."""
    with server.client() as client:
        long_tasks = [client.post("/v1/flux-kontext-pro", json={**body, "steps": 50}).json()["id"]
                      for _ in range(args.busy_tasks)]  # fmt: skip
        while client.get("/v1/get_result", params={"id": long_tasks[0]}).json().get("progress", 0) == 0:
            time.sleep(0.05)
        latencies(client, 5, body)
        seconds = latencies(client, args.requests, body)
        still_busy = client.get("/v1/get_result", params={"id": long_tasks[-1]}).json()["status"] == "Pending"
    return seconds, still_busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--model", default="default")
    parser.add_argument("--busy-tasks", type=int, default=6, help="50-step edits queued to keep the engine busy")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        import uvicorn

        uvicorn.run(bare_app(), host="127.0.0.1", port=args.serve_bare, log_level="info")
        return

    png = one_megabyte_png()
    body = {"prompt": "make it blue", "input_image": base64.b64encode(png).decode(), "steps": 1}
    text = json.dumps(body)
    moderation = {"moderation_prompt_classifier": True, "moderation_image_classifier": True}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        common = dict(model=args.model, max_active_tasks=10**7)
        servers = []

        def start(name: str, **settings) -> ServerProcess:
            servers.append(ServerProcess(folder / name, **{**common, **settings}).start())
            return servers[-1]

        bare = None
        try:
            idle = start("idle", workers=0)
            with idle.client() as client:
                latencies(client, 5, body)  # first requests warm the process up
                idle_seconds = latencies(client, args.requests, body)
            busy = start("busy", workers=1)
            busy_seconds, still_busy = busy_latencies(busy, args, body)
            busy.stop()
            niced = start("niced", workers=1, worker_nice=NICE)
            niced_seconds, niced_busy = busy_latencies(niced, args, body)
            still_busy = still_busy and niced_busy
            niced.stop()
            split = start("split", workers=0)
            servers.append(Worker(folder / "split", **{**common, "workers": 1}).start())
            split_seconds, split_busy = busy_latencies(split, args, body)
            still_busy = still_busy and split_busy
            for server in servers:
                server.stop()
            bare, bare_url = start_bare()
            load = dict(folder=folder, seconds=args.seconds, connections=args.connections)
            rates = {"bare FastAPI POST (before)": wrk_post(f"{bare_url}/v1/flux-kontext-pro", text, key=None, **load)}
            plain = start("plain", workers=0)
            rates["submit, moderation off"] = wrk_post(f"{plain.url}/v1/flux-kontext-pro", text, key=KEY_A, **load)
            plain.stop()
            moderated = start("moderated", workers=0, **moderation)
            rates["submit, moderation on"] = wrk_post(f"{moderated.url}/v1/flux-kontext-pro", text, key=KEY_A, **load)
            moderated.stop()
            rates["bare FastAPI POST (after)"] = wrk_post(f"{bare_url}/v1/flux-kontext-pro", text, key=None, **load)
        finally:
            for server in servers:
                server.stop()
            if bare is not None:
                bare.terminate()
                bare.wait(10)

    print(f"model {args.model}; body {len(text) / 1e6:.2f} MB (a {len(png) / 1e6:.2f} MB PNG, base64)")
    if not still_busy:
        print("warning: the long edit ended before the busy measurement did")
    measured = (("idle", idle_seconds), ("busy, worker thread in the API process", busy_seconds),
                (f"busy, the same with worker_nice={NICE}", niced_seconds),
                ("busy, worker in its own process", split_seconds))  # fmt: skip
    for name, values in measured:
        print(f"submit latency {name:38s}: p50 {percentile(values, 50):6.1f} ms   p99 {percentile(values, 99):6.1f} ms"
              f"   ({len(values)} submits)")  # fmt: skip
    for name, values in measured[1:]:
        print(f"{name} / idle: p50 {statistics.median(values) / statistics.median(idle_seconds):.2f}x   "
              f"p99 {percentile(values, 99) / percentile(idle_seconds, 99):.2f}x")  # fmt: skip
    reference = (rates["bare FastAPI POST (before)"] + rates["bare FastAPI POST (after)"]) / 2
    print(f"sustained, wrk -t2 -c{args.connections} -d{args.seconds:g}s:")
    for name, rate in rates.items():
        print(f"  {name:28s} {rate:8.1f} submits/s   {rate / reference:5.2f}x bare")


if __name__ == "__main__":
    main()
