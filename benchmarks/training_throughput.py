"""Training examples per second of recipes and precisions, side by side in one run, on this machine's CPU.

    python benchmarks/training_throughput.py [--recipes toy-v1,default] [--seconds 120] [--threads 1]
    python benchmarks/training_throughput.py --recipes default-words --precisions no,bf16 --steps 128
    python benchmarks/training_throughput.py --recipes text-aligned --precisions bf16 --vae-memory plain,channels-last

Each recipe trains its own architecture from random weights for about ``--seconds`` (or exactly ``--steps``: then
every run trains on the same chunks, noise and timesteps) and reports examples/s: data, encoding, forward, backward,
optimiser step, everything a step costs as ``train_flow`` runs it, plus building the model and one checkpoint. A
chunked recipe encodes at the start of each chunk, so a run that ends mid-chunk counts slightly more encoding than a
long one; the chunks' sizes follow the recipe's mix. ``--precisions`` measures each recipe at each
``mixed_precision`` ("no": fp32; "bf16": autocast, which on a CPU without native bf16 stays fp32, see
training/loop.py); the mean loss shows that bf16 trains on the same numbers. ``--vae-memory`` measures each with the
frozen VAE's weights in plain or channels-last memory (``vae_channels_last``). The ratio is to the first run. Run it
on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.training.config import preset
from openkontext.training.loop import autocast_dtype, train_flow


VAE_MEMORY = {"plain": False, "channels-last": True}


def measure(name: str, precision: str, vae_memory: str, seconds: float | None, steps: int | None) -> dict:
    cfg = preset(name, probe_every_s=0, ckpt_every_s=1e9, log_every=1, mixed_precision=precision,
                 vae_channels_last=VAE_MEMORY[vae_memory], **{"flow.init_from": None, "flow.ema": 0.0})  # fmt: skip
    cfg.pretrained_vae = None  # random weights cost the same as trained ones
    with tempfile.TemporaryDirectory() as run:
        started = time.perf_counter()
        # includes building the model and one save
        records = train_flow(cfg, Path(run), max_seconds=seconds, max_steps=steps, device="cpu")
        elapsed = time.perf_counter() - started
    losses = [r["loss"] for r in records if r["stage"] == "flow-base"]
    examples = len(losses) * cfg.flow.batch
    used = autocast_dtype(cfg, torch.device("cpu"))
    return {"recipe": name, "precision": "fp32" if used is None else str(used).removeprefix("torch."),
            "vae_memory": vae_memory,
            "steps": len(losses), "examples": examples, "seconds": round(elapsed, 1),
            "examples_per_s": round(examples / elapsed, 2), "mean_loss": round(statistics.mean(losses), 4),
            "sides": sorted({r["side"] for r in records if "side" in r})}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="toy-v1,default")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--steps", type=int, default=None, help="train exactly this many steps (not --seconds)")
    parser.add_argument("--precisions", default="no", help="mixed_precision values: no (fp32), bf16")
    parser.add_argument("--vae-memory", default="channels-last", help="the VAE's weights: plain, channels-last")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds = None if args.steps else args.seconds
    for memory in args.vae_memory.split(","):
        if memory not in VAE_MEMORY:
            parser.error(f"--vae-memory: {memory!r} is not one of {', '.join(VAE_MEMORY)}")
    results = [measure(name, precision, memory, seconds, args.steps) for name in args.recipes.split(",")
               for precision in args.precisions.split(",") for memory in args.vae_memory.split(",")]  # fmt: skip
    base = results[0]["examples_per_s"]
    print("| recipe | precision | VAE memory | steps | examples | seconds | examples/s | ratio | mean loss | sides |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['recipe']} | {r['precision']} | {r['vae_memory']} | {r['steps']} | {r['examples']} | "
              f"{r['seconds']} | {r['examples_per_s']} | {r['examples_per_s'] / base:.2f} | {r['mean_loss']} | "
              f"{', '.join(map(str, r['sides']))} |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
