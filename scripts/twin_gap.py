"""Have a widened model's twins grown apart? A run warm-started from a narrower model (growth.widen) starts with
every channel repeated; its extra width only adds capacity once the twins compute different things. For each run
this prints the twins' spread (growth.twin_spread) at the warm start, in the run's weights and in its EMA, how far
the weights have moved (the update's norm ÷ the warm start's, over the same matrices), and the spread of that update
(how much of it the twins do not share).

    python scripts/twin_gap.py --grown-from candidates/openkontext-toy-a15 --run runs/wd4 [--run runs/wd3]

The warm start is rebuilt the way ``warm_start`` builds it (``widen`` with its default noise and seed), so it must
be the folder the runs were grown from. Reads checkpoints only; seconds on one thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from openkontext.training.growth import stream_matrices, twin_spread, widen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grown-from", type=Path, required=True, help="the model folder the runs were widened from")
    parser.add_argument("--run", type=Path, action="append", required=True, help="a run folder (flow.pt); repeatable")
    args = parser.parse_args()

    folder = args.grown_from / "transformer"
    narrow = json.loads((folder / "config.json").read_text())
    trained = {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}
    width = narrow["num_attention_heads"] * narrow["attention_head_dim"]
    for run in args.run:
        checkpoint = torch.load(run / "flow.pt", map_location="cpu", weights_only=False)
        weights, ema = checkpoint["models"]["transformer"], checkpoint["ema"]["transformer"]
        k = weights["x_embedder.weight"].shape[0] // width
        start = widen(trained, narrow, {**narrow, "num_attention_heads": narrow["num_attention_heads"] * k})
        update = {key: weights[key].float() - start[key].float() for key in start}
        matrices = stream_matrices(start)
        moved = (sum(update[key].square().sum() for key in matrices)
                 / sum(start[key].float().square().sum() for key in matrices)) ** 0.5
        print(f"{run} (step {checkpoint['step']}, {k}x the width of {width}): twin spread at the warm start "
              f"{twin_spread(start, width, k):.4f}, weights {twin_spread(weights, width, k):.4f}, EMA "
              f"{twin_spread(ema, width, k):.4f}; update ÷ warm start {moved:.4f}, the update's twin spread "
              f"{twin_spread(update, width, k):.4f}")


if __name__ == "__main__":
    main()
