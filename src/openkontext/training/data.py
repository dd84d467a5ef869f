"""Training batches streamed from the toy-world generator, as a pure function of (recipe seed, step).

Batch ``step`` always holds the same samples, crops and bucket, so a run resumed from a checkpoint sees exactly the
data it would have seen without the interruption. Generating a 256² sample takes ~10 ms, so no worker pool is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from openkontext.engine.conditioning import split_quoted
from openkontext.toyworld import generate

from .config import TrainConfig

SEEDS_PER_STEP = 64  # sample seeds of step s: seed_base + s * SEEDS_PER_STEP + k


def augment_prompt(prompt: str, generator: torch.Generator, drop: float, insert: float) -> str:
    """The prompt with each word outside quotes dropped with probability ``drop`` and a made-up word (3-8 random
    letters, which a word tokenizer spells) put before it with probability ``insert``; quoted strings are kept.

    The toy world has eight phrasings per edit family and holds two out: a model that has only seen the other six
    keys on their exact wording. With words missing and unknown words in between, it has to find the words that
    decide the edit (colours, objects, scenes, styles) wherever they stand, as a held-out phrasing needs."""
    parts = []
    for text, quoted in split_quoted(prompt):
        if quoted:
            parts.append(text)
            continue
        words = []
        for word in text.split(" "):
            if not word:
                words.append(word)
                continue
            roll_drop, roll_insert = torch.rand(2, generator=generator).tolist()
            if roll_insert < insert:
                length = int(torch.randint(3, 9, (1,), generator=generator))
                words.append("".join(chr(97 + int(i)) for i in torch.randint(0, 26, (length,), generator=generator)))
            if roll_drop >= drop:
                words.append(word)
        parts.append(" ".join(words))
    return "".join(parts)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float in [-1, 1] (what the pipeline's image processor makes)."""
    return from_bytes(to_bytes(image))


def to_bytes(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) uint8: a quarter of the float tensor's size to send between processes."""
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)


def from_bytes(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (any leading shape, any device) -> float in [-1, 1], exactly as ``to_tensor``."""
    return pixels.float() / 127.5 - 1.0


def to_image(tensor: torch.Tensor) -> Image.Image:
    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def _rng(cfg: TrainConfig, step: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, stream, step])


def glyph_rng(cfg: TrainConfig, step: int) -> np.random.Generator:
    """The random stream of a streamed batch's glyph images (glyphs.py: an aligned canvas's box jitter)."""
    return _rng(cfg, step, 3)


def _seed(cfg: TrainConfig, step: int, k: int, stream: int) -> int:
    return (cfg.seed * 1_000_003 + stream) * 10**9 + step * SEEDS_PER_STEP + k


def batch_size_for(cfg: TrainConfig, step: int, stream: int) -> tuple[int, int]:
    """The (width, height) bucket of a batch: the square native size, or one of the other aspect buckets."""
    rng = _rng(cfg, step, stream + 100)
    if cfg.buckets and rng.random() < cfg.bucket_prob:
        return tuple(cfg.buckets[rng.integers(len(cfg.buckets))])
    return (cfg.size, cfg.size)


def vae_batch(cfg: TrainConfig, step: int) -> torch.Tensor:
    """(B, 3, crop, crop) random crops of toy-world images (inputs and targets of every category)."""
    rng = _rng(cfg, step, 1)
    recipe = cfg.vae
    crops = []
    for k in range(recipe.batch):
        sample = generate(_seed(cfg, step, k, 1), split="train", size=cfg.size,
                          categories=cfg.categories or None)  # fmt: skip
        images = [sample.target] + ([sample.input_image] if sample.input_image is not None else [])
        image = images[rng.integers(len(images))]
        x = int(rng.integers(0, image.width - recipe.crop + 1))
        y = int(rng.integers(0, image.height - recipe.crop + 1))
        crops.append(to_tensor(image.crop((x, y, x + recipe.crop, y + recipe.crop))))
    return torch.stack(crops)


@dataclass
class EditBatch:
    context: torch.Tensor | None  # (B, 3, H, W) the image to edit / reference; None for text-to-image
    prompts: list[str]
    target: torch.Tensor  # (B, 3, H, W)
    categories: list[str]
    masks: torch.Tensor  # (B, H, W) float: 1 where the target differs from the context (the change mask)


def edit_examples(sample, rng: np.random.Generator) -> tuple[Image.Image | None, str, Image.Image, np.ndarray]:
    """(context, prompt, target, change mask) of a sample; an iterative sample gives one of its turns, on its
    previous result."""
    if sample.category != "iterative" or not sample.turns:
        return sample.input_image, sample.prompt, sample.target, sample.mask
    k = int(rng.integers(len(sample.turns)))
    before = sample.input_image if k == 0 else sample.turns[k - 1].target
    turn = sample.turns[k]
    return before, turn.prompt, turn.target, turn.mask


def batch_kinds(mixture: list[str], rng: np.random.Generator) -> tuple[bool, list[str]]:
    """Whether a batch is text-to-image (drawn at its share of ``mixture``; a batch is all one or all the other,
    since the sequence lengths differ), and the kinds its samples are then drawn from."""
    t2i = "text_to_image" in mixture and rng.random() < mixture.count("text_to_image") / len(mixture)
    return t2i, ["text_to_image"] if t2i else [kind for kind in mixture if kind != "text_to_image"]


def edit_batch(cfg: TrainConfig, step: int, batch: int | None = None) -> EditBatch:
    """One transformer batch. A batch is all text-to-image or all with a context image (the sequence lengths
    differ); the share of text-to-image batches is its share of the categories."""
    rng = _rng(cfg, step, 2)
    t2i, cats = batch_kinds(cfg.mixture(step), rng)
    size = batch_size_for(cfg, step, 2)
    contexts, prompts, targets, names, masks = [], [], [], [], []
    for k in range(batch or cfg.flow.batch):
        sample = generate(_seed(cfg, step, k, 2), split="train", size=size, categories=cats)
        context, prompt, target, mask = edit_examples(sample, rng)
        contexts.append(None if context is None else to_tensor(context))
        prompts.append(prompt)
        targets.append(to_tensor(target))
        names.append(sample.category)
        masks.append(torch.from_numpy(np.asarray(mask, dtype=np.float32)))
    context = None if t2i else torch.stack(contexts)
    return EditBatch(context, prompts, torch.stack(targets), names, torch.stack(masks))
