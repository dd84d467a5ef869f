"""Measure generation speed: ``python -m openkontext.toyworld.speed [--n N] [--size S] [--workers W]``.

Prints, for one process and for the multi-process ``stream`` (all categories, equal mix):

- wall-clock samples per second (what you get on this machine now, shared with whatever else runs);
- samples per CPU-second (CPU time of this process and its workers), which does not depend on other load;
  ``stream`` on ``C`` otherwise idle cores delivers about ``C`` times that figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from .sample import generate
from .stream import stream


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measure(n: int = 2000, size: int = 256, workers: int | None = None, split: str = "train") -> dict:
    workers = workers or os.cpu_count() or 1
    for seed in range(20):  # warm the font and background caches
        generate(10**9 + seed, split=split, size=size)
    n1 = max(1, n // 4)
    w0, c0 = time.perf_counter(), time.process_time()
    for seed in range(n1):
        generate(seed, split=split, size=size)
    single_wall = n1 / (time.perf_counter() - w0)
    single_cpu = n1 / (time.process_time() - c0)
    w0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    for _ in stream(split, size, start_seed=0, workers=workers, count=n):
        pass
    wall = time.perf_counter() - w0
    cpu = (time.process_time() - c0) + (_children_cpu() - k0)  # workers are reaped when the pool closes
    return {"size": size, "n": n, "workers": workers, "cpus": os.cpu_count(),
            "single_wall_per_s": round(single_wall, 1), "single_per_cpu_s": round(single_cpu, 1),
            "stream_wall_per_s": round(n / wall, 1), "stream_per_cpu_s": round(n / cpu, 1),
            "load_avg_1min": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    r = measure(args.n, args.size, args.workers)
    print(f"toy world @ {r['size']}px, n={r['n']}, {r['cpus']} CPUs, load average {r['load_avg_1min']}")
    print(f"  one process:           {r['single_wall_per_s']:7.1f} samples/s wall, "
          f"{r['single_per_cpu_s']:7.1f} samples per CPU-second")
    print(f"  stream(workers={r['workers']}):     {r['stream_wall_per_s']:7.1f} samples/s wall, "
          f"{r['stream_per_cpu_s']:7.1f} samples per CPU-second "
          f"(~{r['stream_per_cpu_s'] * r['workers']:.0f} samples/s on {r['workers']} idle cores)")
    return r


if __name__ == "__main__":
    main()
