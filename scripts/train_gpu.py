#!/usr/bin/env python
"""Train the default model on one GPU for a fixed time and hand its weights back in a few small files.

    python scripts/train_gpu.py --out "$OUT" [--minutes 8.5] [--workers 15] [--batch 256] [--preset families-weighted]
                                [--optimizer adamw|muon] [--close-pooled-text] [--low-res-prob 0]

Made for a lent single-GPU machine where one command may run 10 minutes and only a few files of at most 16 MiB
come back: the script stops itself after ``--minutes`` (training, then the export of its weights), renders the
toy world on ``--workers`` processes (the next chunk while the model trains on this one), runs the transformer
under bf16 autocast, decays the learning rate to zero over the last ``--decay-share`` of its time (so what it hands
back is cooled down), and writes to ``--out``:

- ``weights.safetensors``: the EMA weights of the transformer and both text encoders, fp16 (~12 MB);
- ``config.json``, ``log.jsonl`` (losses and probes), ``summary.json`` (steps, examples, seconds, device).

It starts from the model in ``--init`` (the shipped default model unless told otherwise), so a GPU stretch
continues the CPU training. Back on the development machine:

    openkontext train import --run runs/gpu --from OUT        # a run folder (no optimiser state)
    openkontext train export --run runs/gpu --out /tmp/model ...

On a CPU (to test it) pass ``--device cpu --preset tiny-glyph --max-steps 4``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.engine.model_info import DEFAULT_MODEL_DIR
from openkontext.training.checkpoint import load_state, write_config
from openkontext.training.config import preset
from openkontext.training.loop import TRAINABLE, pick_device, stop_on_signals, train_flow
from openkontext.training.transfer import WEIGHTS_FILE, save_weights

EXPORT_RESERVE_S = 30  # seconds kept at the end for writing the files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=8.5, help="wall-clock budget of the whole script")
    parser.add_argument("--workers", type=int, default=15, help="processes rendering toy-world samples")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=2048, help="examples encoded at once, each used --reuse times")
    parser.add_argument("--reuse", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--optimizer", choices=("adamw", "muon"), default="adamw",
                        help="muon: torch.optim.Muon for the blocks' matrices (training/optimizer.py)")
    parser.add_argument("--close-pooled-text", action="store_true",
                        help="zero and freeze the pooled-CLIP projection, so every word reaches the image through "
                             "attention (FlowRecipe.close_pooled_text; docs/training.md, 'The model knows where')")
    parser.add_argument("--low-res-prob", type=float, default=None,
                        help="share of chunks at the recipe's low resolution (default: the preset's; 0 trains at "
                             "full size only, slightly ahead for recolours over longer training: docs/training.md)")
    parser.add_argument("--decay-share", type=float, default=0.2, help="share of the time the learning rate decays")
    parser.add_argument("--preset", default="families-weighted", help="the recipe of the shipped default")
    parser.add_argument("--probe-every", type=float, default=120.0, help="seconds between runs of the 64-case probe")
    parser.add_argument("--init", default=str(DEFAULT_MODEL_DIR), help="model folder to start from ('' : none)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args()
    started = time.monotonic()
    device = pick_device(args.device)
    sizes = {} if args.low_res_prob is None else {"low_res_prob": args.low_res_prob}
    cfg = preset(args.preset, data_workers=args.workers, threads=0, ckpt_every_s=1e9, probe_every_s=args.probe_every,
                 pretrained_vae=str(Path(args.init) / "vae") if args.init else None, **sizes,
                 **{"flow.batch": args.batch, "flow.chunk_examples": args.chunk, "flow.reuse": args.reuse,
                    "flow.lr": args.lr, "flow.text_lr": args.lr, "flow.init_from": args.init or None,
                    "flow.optimizer": args.optimizer, "flow.close_pooled_text": args.close_pooled_text,
                    "flow.final_lr_ratio": 0.0})  # fmt: skip
    if args.init and not (Path(args.init) / "vae" / "config.json").exists():
        cfg.pretrained_vae = None  # a model folder without a TinyAutoencoder (the tiny presets build their own)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    budget = args.minutes * 60 - (time.monotonic() - started) - EXPORT_RESERVE_S
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openkontext-gpu-run-") as folder:  # optimiser state stays behind
        run = Path(folder)
        with stop_on_signals():  # a SIGTERM still hands back what was trained
            records = train_flow(cfg, run, max_seconds=max(1.0, budget), max_steps=args.max_steps,
                                 device=str(device), decay_last_s=args.decay_share * budget)  # fmt: skip
        write_config(run, cfg)  # with the decay's start and end, which the run chose by its speed
        state = load_state(run / "flow.pt")
        weights = state["ema"] or {name: state["models"][name] for name in TRAINABLE}
        save_weights(weights, args.out / WEIGHTS_FILE)
        shutil.copy2(run / "config.json", args.out / "config.json")
        shutil.copy2(run / "log.jsonl", args.out / "log.jsonl")
    losses = [r["loss"] for r in records if r["stage"] == "flow-base"]  # records also hold the probe's
    summary = {
        "steps": state["step"], "examples": state["step"] * cfg.flow.batch, "device": str(device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "seconds": round(time.monotonic() - started, 1), "last_loss": losses[-1] if losses else None,
        "init": args.init,
    }  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
