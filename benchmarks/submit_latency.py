"""Submit and poll latency while the engine is idle vs. busy, measured side by side in one run.

    python benchmarks/submit_latency.py [--requests 30] [--model random]

Starts a real server (a separate process on a free loopback port), measures the latency of N submits and N polls
with no job running, then again while a long edit occupies the engine, and prints medians, p95s and the ratio. The
API handlers run in FastAPI's thread pool and the engine in worker threads, so the busy figures should stay close
to the idle ones.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import KEY_A, ServerProcess  # noqa: E402  (the test suite's real-server harness)


def image_b64(size=(256, 192)) -> str:
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def measure(client: httpx.Client, requests: int, image: str) -> tuple[list[float], list[float]]:
    submits, polls = [], []
    for _ in range(requests):
        started = time.perf_counter()
        task = client.post("/v1/flux-bagel-alpha", json={"prompt": "make it blue", "input_image": image, "steps": 1})
        submits.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.get("/v1/get_result", params={"id": task.json()["id"]})
        polls.append(time.perf_counter() - started)
    return submits, polls


def summary(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values) * 1000:6.1f} ms   p95 {values[int(0.95 * (len(values) - 1))] * 1000:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--model", default="random")
    args = parser.parse_args()
    image = image_b64()
    with tempfile.TemporaryDirectory() as folder:
        # Idle: a server without workers (nothing runs). Busy: one worker deep in a 150-step edit; the measured
        # 1-step tasks queue behind it, so the engine is busy for the whole measurement.
        idle_server = ServerProcess(Path(folder) / "idle", model=args.model, workers=0, max_active_tasks=10**4)
        busy_server = ServerProcess(Path(folder) / "busy", model=args.model, workers=1, max_active_tasks=10**4)
        try:
            with httpx.Client(base_url=idle_server.start().url, headers={"x-key": KEY_A}, timeout=60) as client:
                idle = measure(client, args.requests, image)
            idle_server.stop()
            with httpx.Client(base_url=busy_server.start().url, headers={"x-key": KEY_A}, timeout=60) as client:
                long_task = client.post(
                    "/v1/flux-bagel-alpha", json={"prompt": "busy", "input_image": image, "steps": 150}
                ).json()["id"]
                while client.get("/v1/get_result", params={"id": long_task}).json()["progress"] == 0:
                    time.sleep(0.05)
                busy = measure(client, args.requests, image)
                still_running = client.get("/v1/get_result", params={"id": long_task}).json()["status"] == "Pending"
        finally:
            idle_server.stop()
            busy_server.stop()
    if not still_running:
        print("warning: the long edit ended before the busy measurement did; use more steps or fewer requests")
    print(f"model {args.model}, {args.requests} requests each, 256x192 PNG input")
    for name, index in (("submit", 0), ("poll", 1)):
        ratio = statistics.median(busy[index]) / statistics.median(idle[index])
        print(f"{name:6s} idle: {summary(idle[index])}")
        print(f"{name:6s} busy: {summary(busy[index])}   busy/idle median ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
