"""A fixed 64-case probe that shows within seconds whether a stretch of training moved the edits.

The benchmark samples full edits (50 steps each) and its success rates stay at 0 % long after the model starts to
learn; the probe measures the velocity error directly, on 64 fixed held-out cases (about nine per category, at the
model's native side), at three noise levels (σ = 0.9, where a near-deterministic edit is decided, σ = 0.5, and
σ = 0.05, where the sampler's last steps turn the model's prediction into the output image), per category:

- ``changed``: mean squared velocity error on the tokens the edit changes (more than half of the token's patch);
- ``copy``: the same error for the *copy baseline* — a model that returns the context image as its answer
  (velocity = noise − context); ``changed`` below ``copy`` means the model does more than copy there;
- ``unchanged``: the error on the other tokens (the blur of a copying model shows here);
- ``changed_empty`` (σ = 0.9 only): ``changed`` with the empty prompt. Above ``changed``, the model uses the prompt
  on held-out phrasings; below it, what it reads into an unseen phrasing hurts (docs/training.md, "The prompt gap").

Text-to-image has no context image, so no copy baseline: its ``copy`` is the error of predicting the mean latent.
The encoded cases are cached in the run folder (``probe.pt``), so a resumed run probes the very same cases.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from openkontext.toyworld import CATEGORIES, generate

from .config import TrainConfig
from .data import edit_examples, to_tensor
from .flow import context_sequence, encode_batch, encode_text, pack, text_length_for, velocity
from .latents import EncodedBatch

PROBE_CASES = 64
PROBE_SIGMAS = (0.9, 0.5, 0.05)
PROBE_SEED = 770_000


def probe_cases(size: int, n: int = PROBE_CASES, split: str = "heldout") -> dict[str, list]:
    """``n`` held-out cases (or, for diagnostics, training-split ones) spread over the categories: category ->
    [(context, prompt, target, mask)]."""
    cases: dict[str, list] = defaultdict(list)
    for k in range(n):
        category = CATEGORIES[k % len(CATEGORIES)]
        sample = generate(PROBE_SEED + k, split=split, size=size, categories=[category])
        cases[category].append(edit_examples(sample, np.random.default_rng(k)))
    return cases


def changed_tokens(pipeline, masks: torch.Tensor) -> torch.Tensor:
    """(cases, H, W) change masks -> (cases, tokens) bool: the tokens whose patch the edit changes more than half of."""
    patch = 2 * pipeline.vae_scale_factor
    return torch.nn.functional.avg_pool2d(masks.float().unsqueeze(1), patch).flatten(1) > 0.5


class ProbeInputs(NamedTuple):
    x0: torch.Tensor  # the target's tokens
    latent_ids: torch.Tensor
    context_tokens: torch.Tensor | None  # the context image and glyph strip, as the pipeline appends them
    context_ids: torch.Tensor | None
    changed: torch.Tensor  # (cases, tokens) bool
    text: tuple  # encode_text's (prompt embeddings, pooled, text ids)


class Probe:
    """``run_dir`` caches the encoded cases (None: no cache); ``cases`` below 64 gives a quicker, noisier probe;
    ``split="train"`` probes training-split cases instead (diagnostics only; never cached)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path | None, pipeline, device, cases: int = PROBE_CASES,
                 split: str = "heldout"):  # fmt: skip
        self.pipeline, self.device = pipeline, device
        self.text_length = text_length_for(cfg.architecture, pipeline.tokenizer_2)
        cache = None if run_dir is None or split != "heldout" else Path(run_dir) / "probe.pt"
        # what the encoded cases depend on: a run branched to another glyph layout (or side) encodes them afresh
        key = {"side": cfg.architecture.native_side, "glyphs": cfg.architecture.glyph_context, "cases": cases}
        saved = torch.load(cache, weights_only=False) if cache is not None and cache.exists() else None
        if isinstance(saved, dict) and saved.get("key") == key:
            self.batches = saved["batches"]
        else:
            self.batches = self._encode(cfg.architecture.native_side, cfg.architecture.glyph_context, cases, split)
            if cache is not None:
                torch.save({"key": key, "batches": self.batches}, cache)

    def _encode(self, size: int, glyphs: str, n: int, split: str) -> dict[str, EncodedBatch]:
        from .data import EditBatch

        batches = {}
        for category, cases in probe_cases(size, n, split).items():
            contexts = [c for c, _, _, _ in cases]
            pixels = EditBatch(
                context=None if contexts[0] is None else torch.stack([to_tensor(c) for c in contexts]),
                prompts=[p for _, p, _, _ in cases], target=torch.stack([to_tensor(t) for _, _, t, _ in cases]),
                categories=[category] * len(cases),
                masks=torch.stack([torch.from_numpy(np.asarray(m, np.float32)) for _, _, _, m in cases]),
            )  # fmt: skip
            batches[category] = encode_batch(self.pipeline, pixels, glyphs, self.device)
        return batches

    @torch.no_grad()
    def run(self, modules: dict) -> dict:
        """Per category and sigma: changed / copy / unchanged errors (see the module docstring)."""
        was_training = {name: module.training for name, module in modules.items()}
        for module in modules.values():
            module.eval()
        generator = torch.Generator().manual_seed(PROBE_SEED)
        out = {}
        try:
            for category, batch in self.batches.items():
                out[category] = self._category(batch, generator)
        finally:
            for name, module in modules.items():
                module.train(was_training[name])
        return {"probe": out}

    def inputs(self, batch: EncodedBatch) -> ProbeInputs:
        """One category's cases as the transformer reads them, with the mask of the tokens the edit changes (more
        than half of the token's patch)."""
        dev = self.device
        x0, latent_ids = pack(batch.target.to(dev), 0, dev)
        context_tokens, context_ids = context_sequence(
            None if batch.context is None else batch.context.to(dev),
            None if batch.glyphs is None else batch.glyphs.to(dev), dev,
        )  # fmt: skip
        text = encode_text(self.pipeline, batch.prompts, self.text_length, dev)
        changed = changed_tokens(self.pipeline, batch.masks).to(dev)
        return ProbeInputs(x0, latent_ids, context_tokens, context_ids, changed, text)

    def _category(self, batch: EncodedBatch, generator: torch.Generator) -> dict:
        dev = self.device
        x0, latent_ids, context_tokens, context_ids, changed, text = self.inputs(batch)
        if batch.context is not None:
            answer, _ = pack(batch.context.to(dev), 0, dev)  # the copy baseline's x0
        else:
            answer = x0.mean(dim=(0, 1), keepdim=True).expand_as(x0)  # text-to-image: the mean latent
        result = {}
        for sigma in PROBE_SIGMAS:
            noise = torch.randn(x0.shape, generator=generator).to(dev)
            s = torch.full((x0.shape[0],), sigma, device=dev)
            noisy = (1 - sigma) * x0 + sigma * noise
            guidance = torch.full_like(s, 3.0)

            def error(prompt_embeddings) -> torch.Tensor:
                pred = velocity(self.pipeline, noisy, context_tokens, latent_ids, context_ids, s, guidance,
                                *prompt_embeddings)  # fmt: skip
                return (pred.float() - (noise - x0)).pow(2).mean(-1)

            err = error(text)
            copy = ((noise - answer) - (noise - x0)).pow(2).mean(-1)
            result[f"{sigma}"] = {
                "changed": _mean(err, changed), "copy": _mean(copy, changed), "unchanged": _mean(err, ~changed),
            }
            if sigma == PROBE_SIGMAS[0]:
                empty = encode_text(self.pipeline, [""] * len(batch.prompts), self.text_length, dev)
                result[f"{sigma}"]["changed_empty"] = _mean(error(empty), changed)
        return result


class ProbedRun(NamedTuple):
    run: Path
    pipeline: object
    cfg: TrainConfig
    steps: dict
    probe: Probe


def probe_run(run_dir: Path | None = None, description: str = "") -> ProbedRun:
    """What the diagnostic scripts (scripts/low_noise_probe.py, prompt_gap.py) start from: a run's latest EMA
    weights (fp32, CPU, eval mode, one thread), its recipe, its steps and its held-out probe. Without ``run_dir``
    it is read from the command line (``--run``)."""
    import argparse

    from .checkpoint import build_trained_pipeline
    from .loop import TRAINABLE

    if run_dir is None:
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--run", type=Path, required=True, help="run folder: its recipe, EMA weights, probe cases")
        run_dir = parser.parse_args().run
    torch.set_num_threads(1)
    pipeline, cfg, steps = build_trained_pipeline(run_dir)
    for name in TRAINABLE:
        getattr(pipeline, name).eval()
    return ProbedRun(Path(run_dir), pipeline, cfg, steps, Probe(cfg, run_dir, pipeline, torch.device("cpu")))


def _mean(values: torch.Tensor, where: torch.Tensor) -> float | None:
    return round(float(values[where].mean()), 4) if where.any() else None
