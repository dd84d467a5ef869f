"""Can the architecture fit a handful of edits at all? Trains a model on the probe's cases of one category only and
prints the probe's errors on those very cases as it goes.

A diagnostic for a flat learning curve: if the changed-token error falls far below the copy baseline and the
unchanged-token error towards 0 here, the architecture and the objective can represent the edits and the plateau
of the real run is a matter of examples seen; if it stays up, look at the model or the loss first.

    python scripts/memorise_probe.py --category local --steps 200 --run runs/v6 [--from src/openkontext/models/default]

``--run`` is a run folder with the probe's cached cases (``probe.pt``; encoded there if absent) and the recipe.
One thread; ~3.8 s a step for the ten 256² local cases on the CI-class CPU.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.engine.configs import build_pipeline
from openkontext.training.checkpoint import load_autoencoder, read_config, warm_start
from openkontext.training.flow import flow_loss, text_length_for
from openkontext.training.loop import TRAINABLE
from openkontext.training.probe import Probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder: its recipe and cached probe cases")
    parser.add_argument("--category", default="local")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=25, help="probe every N steps")
    parser.add_argument("--from", dest="init", type=Path, default=Path("src/openkontext/models/default"),
                        help="model folder whose tensors start the model; 'none' starts from random weights")
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()

    torch.set_num_threads(1)
    cfg = read_config(args.run)
    pipeline = build_pipeline(cfg.architecture, seed=cfg.seed)
    load_autoencoder(pipeline, cfg, args.run)
    modules = {name: getattr(pipeline, name).requires_grad_(True).train() for name in TRAINABLE}
    if str(args.init) != "none":
        warm_start(modules, args.init)
    device = torch.device("cpu")
    probe = Probe(cfg, args.run, pipeline, device)
    cases = probe.batches[args.category]
    params = [p for module in modules.values() for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    text_length = text_length_for(cfg.architecture, pipeline.tokenizer_2)
    generator = torch.Generator().manual_seed(cfg.seed)
    print(f"{args.category}: {len(cases.prompts)} cases; errors at sigma 0.9 (changed / copy baseline, unchanged)")
    started = time.monotonic()
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            errors = probe.run(modules)["probe"][args.category]["0.9"]  # no_grad; puts the modules back in train mode
            ratio = f"{errors['changed'] / errors['copy']:.3f}" if errors["copy"] else "–"
            print(f"step {step:5d}  {time.monotonic() - started:6.0f} s  changed {errors['changed']:.4f} / copy "
                  f"{errors['copy']:.4f} = {ratio}   unchanged {errors['unchanged']}", flush=True)  # fmt: skip
        if step == args.steps:
            break
        loss, _ = flow_loss(pipeline, cases, cfg.flow, text_length, generator, device)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()


if __name__ == "__main__":
    main()
