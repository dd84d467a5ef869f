"""The training loops: the autoencoder first, then the transformer (with the text encoders), then optionally the
guidance-distillation phase. Each is resumable: it continues from the run folder's checkpoint, and because every
batch, noise draw and crop is a pure function of (seed, step) a resumed run gives the same losses as an
uninterrupted one."""

from __future__ import annotations

import contextlib
import copy
import logging
import signal
import threading
import time
import warnings
from pathlib import Path

import torch

from openkontext.engine.acceleration.apply import use_channels_last
from openkontext.engine.acceleration.devices import cpu_has_native_bf16
from openkontext.engine.configs import build_pipeline
from openkontext.engine.model_info import read_card

from .change_map import ChangeMapHead
from .checkpoint import load_autoencoder, load_state, log_line, save_state, warm_start, write_config, zero_output
from .config import TrainConfig
from .curve import read_log
from .data import edit_batch, glyph_rng, vae_batch
from .flow import encode_batch, flow_loss, guidance_distill_loss, text_length_for
from .latents import ChunkedBatches
from .optimizer import build_optimizer
from .probe import Probe
from .vae import evaluate_vae, vae_loss

log = logging.getLogger(__name__)

TRAINABLE = ("transformer", "text_encoder", "text_encoder_2")
WARMUP = 100


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The dtype the loops compute in under autocast, or None for fp32. bf16 also on a CPU that computes it in
    hardware (benchmarks/training_throughput.py); elsewhere it is emulated."""
    if device.type == "cuda" and cfg.mixed_precision in ("bf16", "fp16"):
        return torch.bfloat16 if cfg.mixed_precision == "bf16" else torch.float16
    if device.type == "cpu" and cfg.mixed_precision == "bf16" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _autocast(dtype: torch.dtype | None, device: torch.device):
    """``autocast_dtype``'s answer as a context (decided once per call of a loop: it reads the CPU's flags)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _generator(cfg: TrainConfig, step: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed((cfg.seed * 7_919 + stream) * 10**8 + step)


def lr_factor(step: int, recipe) -> float:
    """Linear warm-up (``recipe.warmup`` steps, else WARMUP), constant, then (with ``recipe.decay_from``) a linear
    fall to ``recipe.final_lr_ratio`` at ``recipe.steps``: warmup-stable-decay, cooled down from any step."""
    factor = min(1.0, (step + 1) / getattr(recipe, "warmup", WARMUP))
    if recipe.decay_from is not None and step >= recipe.decay_from:
        done = min(1.0, (step - recipe.decay_from) / max(1, recipe.steps - recipe.decay_from))
        factor *= 1.0 - done * (1.0 - recipe.final_lr_ratio)
    return factor


def _set_lr(optimizer, step: int, recipe, base_lrs: list[float]) -> None:
    # the base rates come from the recipe, not the optimiser state, so a recipe change takes effect on resume
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * lr_factor(step, recipe)


class _Clock:
    def __init__(self, max_seconds: float | None, period: float):
        self.start = self.last = time.monotonic()
        self.max_seconds, self.period = max_seconds, period

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return float("inf") if self.max_seconds is None else self.max_seconds - self.elapsed()

    def out_of_time(self) -> bool:
        return self.left() <= 0 or _stop.is_set()

    def checkpoint_due(self) -> bool:
        if time.monotonic() - self.last >= self.period:
            self.last = time.monotonic()
            return True
        return False


_stop = threading.Event()


def _last_probe_time(run_dir: Path) -> float:
    """When the run's log last recorded a probe, else when it began (wall clock): a run stopped and resumed more
    often than the probe's period still probes on time."""
    records = read_log(run_dir) if (run_dir / "log.jsonl").exists() else []
    probes = [record["time"] for record in records if record["stage"] == "probe"]
    return probes[-1] if probes else records[0]["time"] if records else time.time()


@contextlib.contextmanager
def stop_on_signals():
    """While a loop runs in the main thread, SIGTERM and SIGINT end it after the current step, with a checkpoint
    (a background run can be stopped at any time without losing the steps since the last periodic save)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stop.clear()
    previous = {sig: signal.signal(sig, lambda *_: _stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _setup(cfg: TrainConfig, run_dir: Path, device: str):
    # the stock pipeline warns on every prompt longer than CLIP's window (the pooled vector reads its first bytes)
    for name in ("diffusers.pipelines.flux.pipeline_flux_kontext", "diffusers.pipelines.flux.pipeline_flux"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # under bf16 autocast the transformer's RMSNorm (bf16 input, fp32 weight) takes torch's unfused path, correctly
    warnings.filterwarnings("ignore", message="Mismatch dtype between input and weight")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        write_config(run_dir, cfg)
    return run_dir, pick_device(device)


def train_vae(cfg: TrainConfig, run_dir: Path, *, max_steps: int | None = None, max_seconds: float | None = None,
              device: str = "auto", evaluate: bool = True, eval_n: int = 16) -> list[dict]:  # fmt: skip
    """Train (or resume) the autoencoder; returns the logged records of this call."""
    run_dir, dev = _setup(cfg, run_dir, device)
    recipe = cfg.vae
    vae = build_pipeline(cfg.architecture, seed=cfg.seed).vae.to(dev).train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=recipe.lr, weight_decay=0.0)
    step = 0
    state = load_state(run_dir / "vae.pt")
    if state is not None:
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]

    def save():
        save_state(run_dir / "vae.pt", {"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "step": step})

    records, clock, done = [], _Clock(max_seconds, cfg.ckpt_every_s), 0
    amp = autocast_dtype(cfg, dev)
    while step < recipe.steps and (max_steps is None or done < max_steps) and not clock.out_of_time():
        x = vae_batch(cfg, step).to(dev)
        torch.manual_seed(_generator(cfg, step, 3).initial_seed())  # dropout etc.: a function of the step too
        _set_lr(optimizer, step, recipe, [recipe.lr])
        with _autocast(amp, dev):
            loss, parts = vae_loss(vae, x, recipe, _generator(cfg, step, 1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        done += 1
        if step % cfg.log_every == 0 or step == recipe.steps:
            record = {"stage": "vae", "step": step, **parts}
            records.append(record)
            log_line(run_dir, record)
        if clock.checkpoint_due():
            save()
    save()
    if evaluate:
        record = {"stage": "vae-eval", "step": step, **evaluate_vae(vae.eval(), n=eval_n, size=cfg.size)}
        records.append(record)
        log_line(run_dir, record)
    return records


def _ema_copy(modules: dict) -> dict:
    """A float32 copy of the modules' state on their own device: updating it every step then never waits for a
    GPU-to-host copy of each tensor (``_ema_update``); ``save`` moves it to the host."""
    return {n: {k: v.detach().float().clone() for k, v in m.state_dict().items()} for n, m in modules.items()}


def _ema_update(ema: dict, modules: dict, decay: float) -> None:
    with torch.no_grad():
        for name, module in modules.items():
            for key, value in module.state_dict().items():
                if value.dtype.is_floating_point:
                    ema[name][key].lerp_(value.detach().float(), 1 - decay)


def _on(tree: dict, device) -> dict:
    return {n: {k: v.to(device) for k, v in part.items()} for n, part in tree.items()}


POOLED_TEXT_WEIGHT = "time_text_embed.text_embedder.linear_2.weight"


def close_pooled_text(transformer, ema: dict | None) -> None:
    """Zero and freeze the projection of CLIP's pooled vector into the modulation (its EMA copy too): the blocks then
    read the prompt only through attention (``FlowRecipe.close_pooled_text``). Idempotent, so a resumed run
    re-applies it."""
    weight = transformer.get_parameter(POOLED_TEXT_WEIGHT)
    with torch.no_grad():
        weight.zero_()
    weight.requires_grad_(False)
    if ema is not None:
        ema["transformer"][POOLED_TEXT_WEIGHT].zero_()


def train_flow(cfg: TrainConfig, run_dir: Path, *, max_steps: int | None = None, max_seconds: float | None = None,
               device: str = "auto", phase: str = "base", decay_last_s: float | None = None) -> list[dict]:  # fmt: skip
    """Train (or resume) the transformer and the text encoders on the frozen autoencoder of the run.

    ``phase="base"``: the rectified-flow objective (state in ``flow.pt``). ``phase="distill"``: guidance
    distillation from a frozen copy of the base model (state in ``distill.pt``; see flow.py).

    ``decay_last_s`` (with ``max_seconds``): a cooldown that fits a time budget. When that many seconds are left,
    the recipe's decay starts at the current step and ends at the step the run's measured speed reaches by the
    deadline (``cfg.flow.decay_from`` and ``cfg.flow.steps`` are set, and logged, so the config can record them)."""
    run_dir, dev = _setup(cfg, run_dir, device)
    recipe = cfg.flow
    pipeline = build_pipeline(cfg.architecture, seed=cfg.seed)
    load_autoencoder(pipeline, cfg, run_dir)
    pipeline.to(dev)
    if cfg.vae_channels_last:
        use_channels_last(pipeline.vae)
    modules = {name: getattr(pipeline, name) for name in TRAINABLE}
    state_file = run_dir / ("flow.pt" if phase == "base" else "distill.pt")
    teacher = None
    if phase == "distill":
        base = load_state(run_dir / "flow.pt")
        if base is None:
            raise FileNotFoundError(f"guidance distillation needs a base model: {run_dir / 'flow.pt'}")
        for name, module in modules.items():
            module.load_state_dict((base.get("ema") or base["models"])[name])
        teacher = copy.copy(pipeline)
        for name, module in modules.items():
            setattr(teacher, name, copy.deepcopy(module).eval().requires_grad_(False))
    for module in modules.values():
        module.train().requires_grad_(True)
    text_params = [p for name in TRAINABLE[1:] for p in modules[name].parameters()]
    optimizer, rates = build_optimizer(modules["transformer"], text_params, recipe)
    ema = _ema_copy(modules) if recipe.ema > 0 else None
    step = 0
    state = load_state(state_file)
    if state is not None:
        for name, module in modules.items():
            module.load_state_dict(state["models"][name], strict=False)  # weight-only imports omit buffers
        # imported weights (training/transfer.py) come without optimiser state; a recipe that switched optimiser
        # starts its moments afresh (checkpoints from before the choice existed are AdamW's)
        if state.get("optimizer") is not None and state.get("optimizer_kind", "adamw") == recipe.optimizer:
            optimizer.load_state_dict(state["optimizer"])
        elif state.get("optimizer") is not None:
            log_line(run_dir, {"stage": "optimizer", "step": state["step"], "fresh": recipe.optimizer,
                               "was": state.get("optimizer_kind", "adamw")})  # fmt: skip
        ema = _on(state["ema"], dev) if state.get("ema") else ema
        step = state["step"]
    elif (recipe.init_from or recipe.zero_output) and phase == "base":
        if recipe.init_from:
            skipped = warm_start(modules, Path(recipe.init_from))
            source = read_card(Path(recipe.init_from)).get("name")  # recorded now: the folder may change later
            log_line(run_dir, {"stage": "init", "from": recipe.init_from, "model": source, "new_tensors": skipped})
        if recipe.zero_output:
            zero_output(pipeline.transformer)
        if ema is not None:
            ema = _ema_copy(modules)

    if recipe.close_pooled_text:
        close_pooled_text(pipeline.transformer, ema)
    head, head_optimizer = None, None
    if recipe.change_map_weight and phase == "base":
        head = ChangeMapHead(pipeline.transformer.inner_dim, seed=cfg.seed).to(dev)
        head.attach(pipeline.transformer, recipe.change_map_block)
        head_optimizer = torch.optim.AdamW(head.parameters(), lr=recipe.lr, weight_decay=0.0)
        if state is not None and state.get("change_map") is not None:
            head.load_state_dict(state["change_map"]["model"])
            head_optimizer.load_state_dict(state["change_map"]["optimizer"])

    def save():
        save_state(state_file, {"models": {n: m.state_dict() for n, m in modules.items()},
                                "ema": None if ema is None else _on(ema, "cpu"),
                                "optimizer": optimizer.state_dict(), "optimizer_kind": recipe.optimizer,
                                "step": step, "phase": phase,
                                "change_map": None if head is None else {
                                    "model": head.state_dict(), "optimizer": head_optimizer.state_dict()}})  # fmt: skip

    text_length = text_length_for(cfg.architecture, pipeline.tokenizer_2)
    glyphs = cfg.architecture.glyph_context
    if recipe.chunk_examples:
        batches = ChunkedBatches(cfg, pipeline.vae, glyphs, dev)
    else:
        def batches(step: int):
            return encode_batch(pipeline, edit_batch(cfg, step), glyphs, dev, rng=glyph_rng(cfg, step))
    probe = Probe(cfg, run_dir, pipeline, dev) if cfg.probe_every_s and phase == "base" else None
    probe_due = _last_probe_time(run_dir) + cfg.probe_every_s if probe is not None else None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    records, clock, done = [], _Clock(max_seconds, cfg.ckpt_every_s), 0
    amp = autocast_dtype(cfg, dev)
    while step < recipe.steps and (max_steps is None or done < max_steps) and not clock.out_of_time():
        with _autocast(amp, dev):
            batch = batches(step)  # a new chunk's encoding runs under autocast too (half its time in bf16)
        generator = _generator(cfg, step, 2)
        torch.manual_seed(_generator(cfg, step, 3).initial_seed())  # text-encoder dropout: a function of the step
        _set_lr(optimizer, step, recipe, [getattr(recipe, rate) for rate in rates])
        with _autocast(amp, dev):
            if teacher is None:
                loss, parts = flow_loss(pipeline, batch, recipe, text_length, generator, dev, head)
            else:
                loss, parts = guidance_distill_loss(pipeline, teacher, batch, recipe, text_length, generator, dev)
        loss.backward()
        parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if head is not None:
            head_optimizer.step()
            head_optimizer.zero_grad(set_to_none=True)
        step += 1
        done += 1
        if ema is not None:
            _ema_update(ema, modules, min(recipe.ema, (1 + step) / (10 + step)))
        if step % cfg.log_every == 0 or step == recipe.steps:
            record = {"stage": f"flow-{phase}", "step": step, "t2i": batch.context is None,
                      "side": int(batch.target.shape[-1] * pipeline.vae_scale_factor), **parts}
            records.append(record)
            log_line(run_dir, record)
        if decay_last_s and recipe.decay_from is None and clock.left() <= decay_last_s:
            recipe.decay_from = step
            recipe.steps = step + max(1, int(done / clock.elapsed() * clock.left()))
            log_line(run_dir, {"stage": "decay", "step": step, "until": recipe.steps})
        if clock.checkpoint_due():
            save()
        if probe is not None and time.time() >= probe_due:
            record = {"stage": "probe", "step": step, **probe.run(modules)}
            records.append(record)
            log_line(run_dir, record)
            probe_due = time.time() + cfg.probe_every_s
        if cfg.sample_every and step % cfg.sample_every == 0:
            save()
            record = {"stage": "bench", "step": step, **bench_samples(run_dir, step, cfg.bench_n)}
            records.append(record)
            log_line(run_dir, record)
    save()
    if hasattr(batches, "close"):
        batches.close()
    return records


def bench_samples(run_dir: Path, step: int, n: int = 1, steps: int = 20) -> dict:
    """A small benchmark of the run's current (EMA) weights: per-category success, sheets in samples/STEP."""
    from openkontext.quality import run_bench

    from .editors import editor_from_run

    editor = editor_from_run(run_dir)
    result = run_bench(editor, n=n, out_dir=Path(run_dir) / "samples" / f"{step:07d}", steps=steps,
                       references=False)
    return {"success": {c: s.get("success_rate") for c, s in result.summaries["model"].items()}}
