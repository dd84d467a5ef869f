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

from openkontext.engine.conditioning import GLYPH_LAYOUTS
from openkontext.engine.configs import build_pipeline
from openkontext.engine.model_info import MODEL_CARD_FILE, read_card

from .config import TrainConfig
from .curve import read_log

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


def branch_for_cooldown(run_dir: Path, out: Path, steps: int, final_lr_ratio: float = 0.0) -> TrainConfig:
    """Copy a run's flow state into ``out`` with a recipe that decays the learning rate linearly from the current
    step to ``final_lr_ratio`` over ``steps`` steps. A cooldown already under way in ``out`` is kept (resumed)."""
    import shutil

    run_dir, out = Path(run_dir), Path(out)
    if (out / "flow.pt").exists():
        return read_config(out)
    state = load_state(run_dir / "flow.pt")
    if state is None:
        raise FileNotFoundError(f"no transformer state to cool down: {run_dir / 'flow.pt'}")
    cfg = read_config(run_dir)
    cfg.flow.decay_from, cfg.flow.steps, cfg.flow.final_lr_ratio = state["step"], state["step"] + steps, final_lr_ratio
    out.mkdir(parents=True, exist_ok=True)
    for name in ("flow.pt", "vae.pt", "probe.pt", "log.jsonl"):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, out / name)
    write_config(out, cfg)
    return cfg


def log_line(run_dir: Path, record: dict) -> None:
    with open(run_dir / "log.jsonl", "a") as f:
        f.write(json.dumps({"time": round(time.time(), 1), **record}) + "\n")


def load_autoencoder(pipeline, cfg: TrainConfig, run_dir: Path) -> dict | None:
    """Put the run's autoencoder weights into ``pipeline.vae``: those trained in the run (``vae.pt``), else the
    recipe's ``pretrained_vae`` (a diffusers folder, or TAEF2's two published ``.pth`` files). Returns the
    ``vae.pt`` state when there is one."""
    state = load_state(Path(run_dir) / "vae.pt")
    if state is not None:
        pipeline.vae.load_state_dict(state["model"])
    elif cfg.pretrained_vae:
        source = Path(cfg.pretrained_vae)
        if (source / "taef2_encoder.pth").exists():
            pipeline.vae.load_taesd_state_dicts(
                *(torch.load(source / f"taef2_{half}.pth", map_location="cpu", weights_only=True)
                  for half in ("encoder", "decoder"))
            )  # fmt: skip
        else:
            from safetensors.torch import load_file

            pipeline.vae.load_state_dict({k: v.float() for k, v in load_file(source / WEIGHTS).items()})
    return state


WEIGHTS = "diffusion_pytorch_model.safetensors"


def warm_start(modules: dict, folder: Path) -> list[str]:
    """Copy every tensor of a model folder whose name and shape match into ``modules`` (name -> module); returns
    the names of the tensors that did not fit (new shapes start from their initialisation). A transformer with
    a whole multiple of the folder's blocks starts as the folder's, each block followed by gated-off copies; one
    with a whole multiple of its heads starts as the folder's with every channel repeated (growth.py); any other
    depth or width is a ValueError."""
    from safetensors.torch import load_file

    from .growth import COUNT_FIELD, deepen, widen

    skipped = []
    for name, module in modules.items():
        files = sorted((Path(folder) / name).glob("*.safetensors"))
        source = {k: v for f in files for k, v in load_file(f).items()}
        config_file = Path(folder) / name / "config.json"
        if name == "transformer" and config_file.exists():
            have = json.loads(config_file.read_text())
            if have["num_attention_heads"] != module.config["num_attention_heads"]:
                source = widen(source, have, module.config)
            if any(have[field] != module.config[field] for field in COUNT_FIELD.values()):
                source = deepen(source, have, module.config)
        own = module.state_dict()
        fitting = {k: v.to(own[k].dtype) for k, v in source.items() if k in own and own[k].shape == v.shape}
        # a tied tensor (T5's encoder.embed_tokens is its `shared`) is saved once and loaded under the other name
        loaded = {own[k].data_ptr() for k in fitting}
        skipped += [f"{name}.{k}" for k in own if own[k].data_ptr() not in loaded]
        module.load_state_dict(fitting, strict=False)
    return skipped


def zero_output(transformer) -> None:
    """Zero the transformer's output projection, so it starts by predicting zero (for a context-residual model:
    an exact copy of the context image, engine/prediction.py)."""
    with torch.no_grad():
        transformer.proj_out.weight.zero_()
        transformer.proj_out.bias.zero_()


def build_trained_pipeline(run_dir: Path, *, ema: bool = True):
    """The FluxKontextPipeline of a run (fp32, CPU): the architecture with the run's latest weights loaded."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    pipeline = build_pipeline(cfg.architecture, seed=cfg.seed)
    vae_state = load_autoencoder(pipeline, cfg, run_dir)
    # the guidance-distilled weights when that phase has run, else the base transformer
    flow_state = load_state(run_dir / "distill.pt") or load_state(run_dir / "flow.pt")
    if flow_state is not None:
        weights = flow_state["ema"] if ema and flow_state.get("ema") else flow_state["models"]
        for name, state in weights.items():
            getattr(pipeline, name).load_state_dict(state)
    steps = {"vae_steps": (vae_state or {}).get("step", 0), "flow_steps": (flow_state or {}).get("step", 0),
             "flow_phase": (flow_state or {}).get("phase", "base")}
    return pipeline, cfg, steps


def default_guidance_mode(flow_phase: str) -> str:
    """How the engine should apply guidance to a run's model unless measured otherwise: a guidance-distilled
    transformer reads it as its embedded input; base training draws that input at random (it learns to ignore it),
    so a base model gets change guidance, which samples it exactly as trained at guidance 3."""
    return "embedded" if flow_phase == "distill" else "change"


def export(run_dir: Path, out: Path, *, dtype: torch.dtype = torch.float16, name: str = "openkontext-toy",
           description: str | None = None, ema: bool = True, bench_table: str | None = None,
           notes: str | None = None, preserve: float = 0.0, guidance: str | None = None,
           glyph_guidance: float = 1.0) -> Path:
    """Write the run's model as a diffusers folder (fp16 safetensors) + openkontext.json; returns ``out``.

    ``preserve`` is the model's default paste-back threshold (engine/preserve.py), ``guidance`` how the engine
    applies the guidance scale (one of ``GUIDANCE_MODES``, see ``ModelInfo``; None: ``default_guidance_mode``) and
    ``glyph_guidance`` the scale of an aligned model's glyph guidance (engine/glyph_guidance.py), all chosen by
    measurement."""
    pipeline, cfg, steps = build_trained_pipeline(Path(run_dir), ema=ema)
    guidance = guidance or default_guidance_mode(steps["flow_phase"])
    pipeline.to(dtype=dtype)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(out, safe_serialization=True)
    licence = Path(cfg.pretrained_vae or "") / "LICENSE"
    if cfg.pretrained_vae and licence.is_file() and not (out / "vae" / "LICENSE").exists():
        (out / "vae" / "LICENSE").write_text(licence.read_text())  # TAEF2's MIT licence travels with its weights
    arch = cfg.architecture
    card = {
        "name": name,
        "description": description or (f"FLUX.1 Kontext architecture trained on the OpenKontext toy world "
                                       f"({_autoencoder_steps(cfg, steps)}, {steps['flow_steps']} transformer steps)"),
        "native_side": arch.native_side,
        "max_sequence_length": arch.t5_max_length,
        "glyph_context": arch.glyph_context,
        "prompt_sized_text": arch.prompt_sized_text,
        "preserve": preserve,
        "guidance": guidance,
        "prediction": arch.prediction,
        **({"glyph_guidance": glyph_guidance} if arch.glyph_context == "aligned" else {}),
        "training": {"run": Path(run_dir).name, **steps},
    }
    (out / MODEL_CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    card_text = model_card(pipeline, cfg, steps, name, bench_table, notes, warm_start_source(run_dir), glyph_guidance)
    (out / "README.md").write_text(card_text)
    return out


def model_card(pipeline, cfg: TrainConfig, steps: dict, name: str, bench_table: str | None = None,
               notes: str | None = None, started_from: str | None = None, glyph_guidance: float = 1.0) -> str:
    """The model card: architecture, parameters, data, training, benchmark, failure cases, licences.

    ``bench_table`` is the markdown table of ``openkontext train bench``; ``notes`` (markdown) holds what only the
    person who ran the training knows: compute spent, the curves, known failure cases."""
    arch = cfg.architecture
    params = {n: sum(p.numel() for p in getattr(pipeline, n).parameters())
              for n in ("transformer", "vae", "text_encoder", "text_encoder_2")}  # fmt: skip
    t = arch.transformer
    rows = "\n".join(f"| {n} | {type(getattr(pipeline, n)).__name__} | {v / 1e6:.2f} M |" for n, v in params.items())
    return f"""# {name}

The FLUX.1 Kontext architecture at toy scale, its transformer and text encoders trained on the OpenKontext toy world
(`openkontext.toyworld`){_start_line(started_from)}. Served by diffusers' `FluxKontextPipeline` unchanged
(`load_engine(folder)`).

## Architecture

| component | class | parameters |
|---|---|---|
{rows}

- transformer: {t["num_layers"]} double + {t["num_single_layers"]} single blocks, {t["num_attention_heads"]} heads x
  {t["attention_head_dim"]}, RoPE axes {tuple(t["axes_dims_rope"])}, embedded guidance; context-image tokens are
  appended on the sequence axis with RoPE index 1.
- autoencoder: {_autoencoder_line(arch)}, {arch.vae["latent_channels"]} latent channels, 8x downsampling,
  scaling {arch.vae["scaling_factor"]} / shift {arch.vae["shift_factor"]}.
- text: {_text_line(arch)}, trained jointly with the transformer.{_glyph_line(arch, glyph_guidance)}
- native resolution {arch.native_side}², other aspect ratios through buckets of about the same area.

## Training

Data: samples generated by the toy world (train split; the benchmark uses the held-out split){_data_line(cfg)}.
Autoencoder: {_autoencoder_steps(cfg, steps)}; transformer + text encoders: {steps["flow_steps"]} steps of batch
{cfg.flow.batch} (rectified flow, {OPTIMIZER_TEXT[cfg.flow.optimizer]}, prompt dropout {cfg.flow.prompt_dropout},
change-mask loss weight {cfg.flow.edit_weight}{" per sample" if cfg.flow.edit_weight_per_sample else ""}\
{_noise_line(cfg)}).
The recipe and how to reproduce it: docs/training.md in the OpenKontext repository.

## Benchmark

Held-out toy-world split (`openkontext bench run --model FOLDER`, steps 50, guidance 3.0), beside the copy-input
floor and the ground-truth ceiling:

{bench_table or "(not measured for this export)"}

{notes or NO_NOTES}

## Licences

- Weights: the transformer and text encoders were trained from scratch by the OpenKontext project on procedurally
  generated images and are released under the project's licence; a pretrained autoencoder keeps its own licence
  (TAEF2: MIT, `vae/LICENSE`).
- Training data: rendered by `openkontext.toyworld` (project code); fonts used for rendering (DejaVu, Liberation,
  GNU FreeFont) are not included in the weights or this folder; the word list is from SCOWL (licence in
  `toyworld/data/words.txt`).
- Code: diffusers and transformers (Apache-2.0).
"""


def warm_start_source(run_dir: Path) -> str | None:
    """What the run was warm-started from, as its log recorded it then: the model's name, else the folder (the
    folder itself may hold another model by the time the run is exported)."""
    init = next((r for r in read_log(run_dir) if r.get("stage") == "init" and r.get("from")), None)
    return init and (init.get("model") or f"`{init['from']}`")


def _start_line(source: str | None) -> str:
    return f", warm-started from the tensors of {source} where shapes fit" if source else ""


def _data_line(cfg: TrainConfig) -> str:
    if not cfg.flow.chunk_examples:
        return ", a fresh batch every step"
    sizes = f"{cfg.low_res_prob:.0%} of chunks at {cfg.low_res}², the rest at {cfg.size}² and its buckets" \
        if cfg.low_res else f"{cfg.size}² and its buckets"
    return (f", encoded in chunks of {cfg.flow.chunk_examples} examples each used {cfg.flow.reuse} times; "
            f"{sizes}")


OPTIMIZER_TEXT = {"adamw": "AdamW", "muon": "Muon on the transformer blocks' matrices, AdamW on the rest"}


def _noise_line(cfg: TrainConfig) -> str:
    line = ""
    if cfg.flow.high_noise_share:
        line += (f"; {cfg.flow.high_noise_share:.0%} of near-deterministic edits at sigma in "
                 f"[{cfg.flow.high_noise_min}, 1]")
    if cfg.flow.low_noise_share:
        line += f"; {cfg.flow.low_noise_share:.0%} of all samples at sigma in [0, {cfg.flow.low_noise_max}]"
    return line


def _autoencoder_steps(cfg: TrainConfig, steps: dict) -> str:
    if not steps["vae_steps"] and cfg.pretrained_vae:
        return "pretrained autoencoder"
    return f"{steps['vae_steps']} VAE steps"


def _autoencoder_line(arch) -> str:
    if arch.vae_class == "TinyAutoencoder":
        return "TAEF2 (pretrained, madebyollin/taesd, MIT; `vae/LICENSE`) as `TinyAutoencoder`"
    return f"AutoencoderKL trained here, blocks {tuple(arch.vae['block_out_channels'])}"


def _text_line(arch) -> str:
    unit = "tokens" if arch.text_vocab else "bytes"
    tokenizer = (f"{len(arch.text_vocab)}-word vocabulary of the toy world's training prompts, unknown words spelled "
                 "in characters" if arch.text_vocab else "byte-level (ByT5 tokenizer)")  # fmt: skip
    sized = f"each prompt's own length in {unit}, at most " if arch.prompt_sized_text else ""
    return (f"{tokenizer}; CLIP text model (pooled, first {arch.clip_max_length} {unit}) and T5 encoder ({sized}"
            f"{arch.t5_max_length} {unit})")


def _glyph_line(arch, glyph_guidance: float) -> str:
    if not arch.glyph_context:
        return ""
    if arch.glyph_context == "aligned":
        guided = "" if glyph_guidance == 1 else f", guided towards the drawn letters at scale {glyph_guidance:g}"
        shown = ("the word the prompt writes, drawn in black where it goes on a white canvas of the image's size (the "
                 f"engine finds\n  the place with a first pass on a blank canvas, then samples again{guided})")
    else:
        shown = (f"the prompt's quoted words rendered on a white strip a quarter of the image high "
                 f"({GLYPH_LAYOUTS[arch.glyph_context]})")
    return f"\n- glyph context: {shown},\n  encoded and appended at RoPE index 8 (openkontext.engine.conditioning)."


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
