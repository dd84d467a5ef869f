"""Encoded training examples, reused: the autoencoder runs once per example, not once per step.

Encoding a context and a target costs as much as a training step of the small transformer on a CPU (more with the
pretrained TAEF2 autoencoder), and a few epochs over the same examples teach nearly as much as fresh ones. So the
flow stage draws its data in *chunks*: ``chunk_examples`` fresh toy-world samples of one size and one kind (all
with a context image, or all text-to-image, since the sequence lengths differ), encoded once, then served as
``reuse`` shuffled epochs of batches. Chunk *c* and its order are pure functions of (recipe seed, c), so a run
resumed in the middle of a chunk rebuilds it and continues with exactly the batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from openkontext.toyworld import generate

from .config import TrainConfig
from .data import batch_kinds, edit_examples, from_bytes, to_bytes
from .glyphs import training_glyph

CHUNK_STREAM = 4
GLYPH_PURPOSE = 2  # an example's glyph draws (aligned box jitter), apart from its chunk's streams
ENCODE_BATCH = 16


@dataclass
class EncodedBatch:
    target: torch.Tensor  # (B, C, h, w) scaled latents
    context: torch.Tensor | None  # (B, C, h, w), None for text-to-image
    glyphs: torch.Tensor | None  # (B, C, h/4, w) the glyph strips, for models with glyph context
    prompts: list[str]
    categories: list[str]
    masks: torch.Tensor  # (B, H, W) pixel change masks

    def take(self, index: np.ndarray) -> "EncodedBatch":
        pick = torch.as_tensor(index)
        return EncodedBatch(
            self.target[pick], None if self.context is None else self.context[pick],
            None if self.glyphs is None else self.glyphs[pick], [self.prompts[i] for i in index],
            [self.categories[i] for i in index], self.masks[pick],
        )  # fmt: skip


def chunk_rng(cfg: TrainConfig, chunk: int, purpose: int) -> np.random.Generator:
    """The chunk's random stream for one purpose (0: layout, 1: batch order)."""
    return np.random.default_rng([cfg.seed, CHUNK_STREAM, chunk, 1_000 + purpose])


def chunk_plan(cfg: TrainConfig, chunk: int) -> tuple[tuple[int, int], bool, list[str]]:
    """A chunk's (width, height), whether it is text-to-image, and the kinds its examples are drawn from (the
    recipe's mixture at the chunk's first step)."""
    rng = chunk_rng(cfg, chunk, 0)
    t2i, kinds = batch_kinds(cfg.mixture(chunk * steps_per_chunk(cfg)), rng)
    if cfg.low_res and rng.random() < cfg.low_res_prob:
        return (cfg.low_res, cfg.low_res), t2i, kinds
    if cfg.buckets and rng.random() < cfg.bucket_prob:
        return tuple(cfg.buckets[rng.integers(len(cfg.buckets))]), t2i, kinds
    return (cfg.size, cfg.size), t2i, kinds


@torch.no_grad()
def encode(vae, pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (``data.to_bytes``) -> scaled latents, as ``FluxKontextPipeline._encode_vae_image`` does;
    a GPU takes larger slices than a CPU's memory would want."""
    from .flow import encode_images

    size = ENCODE_BATCH if pixels.device.type == "cpu" else 8 * ENCODE_BATCH
    return torch.cat([encode_images(vae, from_bytes(part)) for part in pixels.split(size)])


def chunk_example(cfg: TrainConfig, chunk: int, k: int, size: tuple[int, int], categories: list[str],
                  glyphs: str) -> tuple:  # fmt: skip
    """Example ``k`` of a chunk as uint8 tensors (``data.to_bytes``: small to send from a worker process):
    (context or None, prompt, target, category, change mask, glyph strip or None). A pure function of its
    arguments, so any process can make it."""
    seed = (cfg.seed * 1_000_003 + CHUNK_STREAM) * 10**9 + chunk * cfg.flow.chunk_examples + k
    sample = generate(seed, split="train", size=size, categories=categories)
    context, prompt, target, mask = edit_examples(sample, np.random.default_rng([cfg.seed, CHUNK_STREAM, chunk, k]))
    glyph_rng = np.random.default_rng([cfg.seed, CHUNK_STREAM, chunk, k, GLYPH_PURPOSE])
    strip = to_bytes(training_glyph(prompt, size, glyphs, mask, glyph_rng)) if glyphs else None
    return (None if context is None else to_bytes(context), prompt, to_bytes(target), sample.category,
            torch.from_numpy(np.asarray(mask, dtype=np.uint8)), strip)  # fmt: skip


def _chunk_example(args):  # a process pool's entry point
    return chunk_example(*args)


def chunk_jobs(cfg: TrainConfig, chunk: int, glyphs: str) -> tuple[list[tuple], bool]:
    """The arguments of ``chunk_example`` for every example of chunk ``chunk``, and whether it is text-to-image."""
    (width, height), t2i, kinds = chunk_plan(cfg, chunk)
    return [(cfg, chunk, k, (width, height), kinds, glyphs) for k in range(cfg.flow.chunk_examples)], t2i


def encode_examples(vae, examples: list[tuple], t2i: bool, glyphs: str, device) -> EncodedBatch:
    """Rendered examples (``chunk_example``'s tuples) encoded by ``vae``; everything lands on ``device``."""
    contexts, prompts, targets, names, masks, strips = (list(column) for column in zip(*examples))

    def latents(images: list[torch.Tensor]) -> torch.Tensor:
        return encode(vae, torch.stack(images).to(device))

    return EncodedBatch(
        target=latents(targets), context=None if t2i else latents(contexts),
        glyphs=glyph_latents(vae, strips, device) if glyphs else None,
        prompts=prompts, categories=names, masks=torch.stack(masks).to(device).float(),
    )  # fmt: skip


def glyph_latents(vae, strips: list[torch.Tensor], device) -> torch.Tensor:
    """``encode`` of a chunk's glyph images, the blank one (most of them: every edit that writes no word, and an
    aligned canvas's blank share) encoded once."""
    blank = [bool((strip == 255).all()) for strip in strips]
    drawn = [strip for strip, empty in zip(strips, blank) if not empty]
    encoded = iter(encode(vae, torch.stack(drawn).to(device)) if drawn else [])
    blank_latent = encode(vae, strips[blank.index(True)][None].to(device))[0] if any(blank) else None
    return torch.stack([blank_latent if empty else next(encoded) for empty in blank])


def steps_per_chunk(cfg: TrainConfig) -> int:
    return max(1, cfg.flow.chunk_examples * cfg.flow.reuse // cfg.flow.batch)


def batch_of_chunk(cfg: TrainConfig, chunk_data: EncodedBatch, chunk: int, step_in_chunk: int) -> EncodedBatch:
    """Batch ``step_in_chunk`` of a chunk: consecutive slices of ``reuse`` concatenated shuffled epochs."""
    rng = chunk_rng(cfg, chunk, 1)
    n = cfg.flow.chunk_examples
    order = np.concatenate([rng.permutation(n) for _ in range(cfg.flow.reuse)])
    b = cfg.flow.batch
    return chunk_data.take(order[step_in_chunk * b : (step_in_chunk + 1) * b])


class ChunkedBatches:
    """step -> encoded batch, keeping the current chunk in memory; ``cfg.data_workers`` processes render the
    samples (the toy world is pure Python and PIL: one core makes ~200 samples/s at 256²), the next chunk's while
    the model trains on this one."""

    def __init__(self, cfg: TrainConfig, vae, glyphs: str, device):
        self.cfg, self.vae, self.glyphs, self.device = cfg, vae, glyphs, device
        self.chunk, self.data = None, None
        self.pool, self.next = None, None  # next: (chunk, t2i, its examples as they are rendered)
        if cfg.data_workers > 0:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: the parent may hold CUDA state and torch's thread pools, which fork does not copy safely
            self.pool = ProcessPoolExecutor(cfg.data_workers, mp_context=multiprocessing.get_context("spawn"))

    def __call__(self, step: int) -> EncodedBatch:
        chunk, within = divmod(step, steps_per_chunk(self.cfg))
        if chunk != self.chunk:
            self.chunk = chunk
            if self.next is None or self.next[0] != chunk:
                self.next = self._render(chunk)
            _, t2i, examples = self.next
            self.data = encode_examples(self.vae, list(examples), t2i, self.glyphs, self.device)
            self.next = self._render(chunk + 1)  # workers render it while the model trains on this one
        return batch_of_chunk(self.cfg, self.data, chunk, within)

    def _render(self, chunk: int) -> tuple:
        """(chunk, t2i, its examples): a pool submits every job at once; without one, rendering waits (lazy map)."""
        jobs, t2i = chunk_jobs(self.cfg, chunk, self.glyphs)
        if self.pool is None:
            return chunk, t2i, map(_chunk_example, jobs)
        return chunk, t2i, self.pool.map(_chunk_example, jobs, chunksize=8)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
