"""Training examples per second of two recipes, side by side in one run, on this machine's CPU.

    python benchmarks/training_throughput.py [--recipes toy-v1,default] [--seconds 120] [--threads 1]

Each recipe trains its own architecture from random weights for about ``--seconds`` (data, encoding, forward,
backward, optimiser step: everything a step costs, as ``train_flow`` runs it, plus building the model and one
checkpoint) and reports examples/s. A chunked recipe encodes at the start of each chunk, so a run that ends
mid-chunk counts slightly more encoding than a long one; the chunks' sizes follow the recipe's mix. The ratio is
to the first recipe. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.training.config import preset
from openkontext.training.loop import train_flow


def measure(name: str, seconds: float) -> dict:
    cfg = preset(name, probe_every_s=0, ckpt_every_s=1e9, log_every=1, **{"flow.init_from": None, "flow.ema": 0.0})
    cfg.pretrained_vae = None  # random weights cost the same as trained ones
    with tempfile.TemporaryDirectory() as run:
        started = time.perf_counter()
        records = train_flow(cfg, Path(run), max_seconds=seconds)  # includes building the model and one save
        elapsed = time.perf_counter() - started
    steps = len([r for r in records if r["stage"] == "flow-base"])
    examples = steps * cfg.flow.batch
    return {"recipe": name, "steps": steps, "examples": examples, "seconds": round(elapsed, 1),
            "examples_per_s": round(examples / elapsed, 2),
            "sides": sorted({r["side"] for r in records if "side" in r})}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="toy-v1,default")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = [measure(name, args.seconds) for name in args.recipes.split(",")]
    base = results[0]["examples_per_s"]
    print("| recipe | steps | examples | seconds | examples/s | ratio | sides |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['recipe']} | {r['steps']} | {r['examples']} | {r['seconds']} | {r['examples_per_s']} | "
              f"{r['examples_per_s'] / base:.2f} | {', '.join(map(str, r['sides']))} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
