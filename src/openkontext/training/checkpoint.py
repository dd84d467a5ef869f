"""Full training state in a run folder outside git (``runs/NAME``), and the export of a model folder.

A run folder holds ``config.json`` (the recipe), ``vae.pt`` / ``flow.pt`` (weights, optimiser, step: everything a
resumed run needs; written atomically), ``log.jsonl`` (one line per logged step) and ``samples/``. ``export``
writes a diffusers ``save_pretrained`` folder in fp16 safetensors plus ``openkontext.json``, which
``openkontext.engine.loading.load_engine(folder)`` serves unchanged.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from openkontext.engine.configs import build_pipeline

from .config import TrainConfig

MODEL_CARD_FILE = "openkontext.json"
NO_NOTES = "## Known failure cases\n\nNot yet written for this export: see docs/training.md."


def save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))


def read_config(run_dir: Path) -> TrainConfig:
    return TrainConfig.from_dict(json.loads((Path(run_dir) / "config.json").read_text()))


def log_line(run_dir: Path, record: dict) -> None:
    with open(run_dir / "log.jsonl", "a") as f:
        f.write(json.dumps({"time": round(time.time(), 1), **record}) + "\n")


def build_trained_pipeline(run_dir: Path, *, ema: bool = True):
    """The FluxKontextPipeline of a run (fp32, CPU): the architecture with the run's latest weights loaded."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    pipeline = build_pipeline(cfg.architecture, seed=cfg.seed)
    vae_state = load_state(run_dir / "vae.pt")
    if vae_state is not None:
        pipeline.vae.load_state_dict(vae_state["model"])
    # the guidance-distilled weights when that phase has run, else the base transformer
    flow_state = load_state(run_dir / "distill.pt") or load_state(run_dir / "flow.pt")
    if flow_state is not None:
        weights = flow_state["ema"] if ema and flow_state.get("ema") else flow_state["models"]
        for name, state in weights.items():
            getattr(pipeline, name).load_state_dict(state)
    steps = {"vae_steps": (vae_state or {}).get("step", 0), "flow_steps": (flow_state or {}).get("step", 0),
             "flow_phase": (flow_state or {}).get("phase", "base")}
    return pipeline, cfg, steps


def export(run_dir: Path, out: Path, *, dtype: torch.dtype = torch.float16, name: str = "openkontext-toy",
           description: str | None = None, ema: bool = True, bench_table: str | None = None,
           notes: str | None = None) -> Path:
    """Write the run's model as a diffusers folder (fp16 safetensors) + openkontext.json; returns ``out``."""
    pipeline, cfg, steps = build_trained_pipeline(Path(run_dir), ema=ema)
    pipeline.to(dtype=dtype)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out, safe_serialization=True)
    card = {
        "name": name,
        "description": description or (f"FLUX.1 Kontext architecture trained on the OpenKontext toy world "
                                       f"({steps['vae_steps']} VAE steps, {steps['flow_steps']} transformer steps)"),
        "native_side": cfg.architecture.native_side,
        "max_sequence_length": cfg.architecture.t5_max_length,
        "training": {"run": Path(run_dir).name, **steps},
    }
    (out / MODEL_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (out / "README.md").write_text(model_card(pipeline, cfg, steps, name, bench_table, notes))
    return out


def model_card(pipeline, cfg: TrainConfig, steps: dict, name: str, bench_table: str | None = None,
               notes: str | None = None) -> str:
    """The model card: architecture, parameters, data, training, benchmark, failure cases, licences.

    ``bench_table`` is the markdown table of ``openkontext train bench``; ``notes`` (markdown) holds what only the
    person who ran the training knows: compute spent, the curves, known failure cases."""
    arch = cfg.architecture
    params = {n: sum(p.numel() for p in getattr(pipeline, n).parameters())
              for n in ("transformer", "vae", "text_encoder", "text_encoder_2")}  # fmt: skip
    t = arch.transformer
    rows = "\n".join(f"| {n} | {type(getattr(pipeline, n)).__name__} | {v / 1e6:.2f} M |" for n, v in params.items())
    return f"""# {name}

The FLUX.1 Kontext architecture at toy scale, trained from scratch on the OpenKontext toy world
(`openkontext.toyworld`). Served by diffusers' `FluxKontextPipeline` unchanged (`load_engine(folder)`).

## Architecture

| component | class | parameters |
|---|---|---|
{rows}

- transformer: {t["num_layers"]} double + {t["num_single_layers"]} single blocks, {t["num_attention_heads"]} heads x
  {t["attention_head_dim"]}, RoPE axes {tuple(t["axes_dims_rope"])}, embedded guidance; context-image tokens are
  appended on the sequence axis with RoPE index 1.
- VAE: AutoencoderKL, blocks {tuple(arch.vae["block_out_channels"])}, {arch.vae["latent_channels"]} latent
  channels, 8x downsampling, scaling {arch.vae["scaling_factor"]} / shift {arch.vae["shift_factor"]}.
- text: byte-level (ByT5 tokenizer) CLIP text model (pooled, first {arch.clip_max_length} bytes) and T5 encoder
  (sequence, {arch.t5_max_length} bytes), trained jointly with the transformer.
- native resolution {arch.native_side}², other aspect ratios through buckets of about the same area.

## Training

Data: samples streamed from the toy-world generator (train split; the benchmark uses the held-out split).
Autoencoder: {steps["vae_steps"]} steps; transformer + text encoders: {steps["flow_steps"]} steps
(rectified flow, prompt dropout {cfg.flow.prompt_dropout}, change-mask loss weight {cfg.flow.edit_weight}).
The recipe and how to reproduce it: docs/training.md in the OpenKontext repository.

## Benchmark

Held-out toy-world split (`openkontext bench run --model FOLDER`, steps 50, guidance 3.0), beside the copy-input
floor and the ground-truth ceiling:

{bench_table or "(not measured for this export)"}

{notes or NO_NOTES}

## Licences

- Weights: trained from scratch by the OpenKontext project on procedurally generated images; released under the
  project's licence.
- Training data: rendered by `openkontext.toyworld` (project code); fonts used for rendering (DejaVu, Liberation,
  GNU FreeFont) are not included in the weights or this folder; the word list is from SCOWL (licence in
  `toyworld/data/words.txt`).
- Code: diffusers and transformers (Apache-2.0).
"""


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
