"""Does the model read the glyph strip? The changed-token error of held-out text edits (as a ratio to the copy
baseline's, per edit family) with each case's own strip, another case's strip (of a case that quotes a word too; an
aligned canvas draws the other case's word in this case's box, so only the letters differ), and a blank strip; the
prompt is each case's own throughout.

    python scripts/glyph_gap.py --run runs/g1 [--cases 48]

A model that copies the strip's letters has own < another's on the families that write a word (add_text,
replace_text); if the three columns agree, the strip's letters are ignored (docs/training.md, "The glyph strip").
One thread; about 4 minutes for 48 cases at 256² (most of it encoding them).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.engine.conditioning import glyph_strip, quoted_words, word_to_write
from openkontext.engine.preserve import mask_box
from openkontext.toyworld import generate
from openkontext.training.data import EditBatch, to_tensor
from openkontext.training.checkpoint import build_trained_pipeline
from openkontext.training.flow import (context_sequence, encode_batch, encode_images, encode_text, pack,
                                      text_length_for, velocity)
from openkontext.training.loop import TRAINABLE
from openkontext.training.probe import PROBE_SEED, changed_tokens

SEED = PROBE_SEED + 10_000  # text cases of their own, apart from the probe's
SIGMAS = (0.9, 0.5, 0.2)


def text_cases(side: int, n: int) -> tuple[EditBatch, list[str]]:
    samples = [generate(SEED + k, split="heldout", size=side, categories=["text"]) for k in range(n)]
    batch = EditBatch(
        context=torch.stack([to_tensor(s.input_image) for s in samples]), prompts=[s.prompt for s in samples],
        target=torch.stack([to_tensor(s.target) for s in samples]), categories=["text"] * n,
        masks=torch.stack([torch.from_numpy(np.asarray(s.mask, np.float32)) for s in samples]),
    )  # fmt: skip
    return batch, [s.meta["family"] for s in samples]


def shows_a_word(prompt: str, layout: str) -> bool:
    """Whether the prompt's glyph image has letters: any quoted word, or for an aligned canvas a word to write."""
    return word_to_write(prompt) is not None if layout == "aligned" else bool(quoted_words(prompt))


class StripErrors(NamedTuple):
    prompts: list[str]
    families: list[str]
    changed: torch.Tensor  # (cases, tokens) bool: the tokens the edit changes
    copy: torch.Tensor  # (cases, tokens) the copy baseline's squared error
    errors: dict  # sigma -> strip kind -> (cases, tokens) the model's squared velocity error


def strip_errors(pipeline, cfg, n: int) -> StripErrors:
    """The model's error on ``n`` held-out text edits with each strip kind, per case and token."""
    layout, side = cfg.architecture.glyph_context, cfg.architecture.native_side
    pixels, families = text_cases(side, n)
    encoded = encode_batch(pipeline, pixels, layout, torch.device("cpu"))  # an aligned word in the mask's own box
    quoting = [i for i, prompt in enumerate(pixels.prompts) if shows_a_word(prompt, layout)]
    another = encoded.glyphs.clone()
    for i, j in zip(quoting, quoting[1:] + quoting[:1]):  # case j's words; an aligned canvas draws them in i's box
        strip = glyph_strip(pixels.prompts[j], side, side, layout, box=mask_box(pixels.masks[i].numpy()))
        another[i] = encode_images(pipeline.vae, to_tensor(strip).unsqueeze(0))[0]
    blank = encode_images(pipeline.vae, to_tensor(glyph_strip("", side, side, layout)).unsqueeze(0))
    strips = {"own strip": encoded.glyphs, "another case's": another, "blank": blank.expand_as(encoded.glyphs)}

    x0, latent_ids = pack(encoded.target, 0, "cpu")
    context, _ = pack(encoded.context, 0, "cpu")
    changed = changed_tokens(pipeline, pixels.masks)
    text = encode_text(pipeline, pixels.prompts, text_length_for(cfg.architecture, pipeline.tokenizer_2), "cpu")
    generator = torch.Generator().manual_seed(SEED)
    errors: dict = {}
    with torch.no_grad():
        for sigma in SIGMAS:
            noise = torch.randn(x0.shape, generator=generator)
            s = torch.full((x0.shape[0],), sigma)
            noisy = (1 - sigma) * x0 + sigma * noise
            for name, glyphs in strips.items():
                tokens, ids = context_sequence(encoded.context, glyphs, "cpu")
                pred = velocity(pipeline, noisy, tokens, latent_ids, ids, s, torch.full_like(s, 3.0), *text)
                errors.setdefault(sigma, {})[name] = (pred.float() - (noise - x0)).pow(2).mean(-1)
    return StripErrors(pixels.prompts, families, changed, (x0 - context).pow(2).mean(-1), errors)


def family_ratios(result: StripErrors) -> dict:
    """sigma -> family -> strip kind -> changed-token error / the copy baseline's, over the family's cases."""
    out: dict = {}
    for sigma, by_kind in result.errors.items():
        for family in sorted(set(result.families)):
            rows = [i for i, f in enumerate(result.families) if f == family]
            where = result.changed[rows]
            copy = result.copy[rows][where].mean()
            out.setdefault(sigma, {})[family] = {kind: float(err[rows][where].mean() / copy)
                                                 for kind, err in by_kind.items()}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run folder: its recipe and EMA weights")
    parser.add_argument("--cases", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipeline, cfg, steps = build_trained_pipeline(args.run)  # EMA weights
    for name in TRAINABLE:
        getattr(pipeline, name).eval()
    if not cfg.architecture.glyph_context:
        parser.error(f"{args.run}'s model has no glyph strip")
    result = strip_errors(pipeline, cfg, args.cases)
    ratios, families = family_ratios(result), result.families
    names = sorted(set(families))
    print(f"{args.run} at step {steps['flow_steps']} ({cfg.architecture.glyph_context} strip): changed-token error / "
          f"copy baseline's, {args.cases} held-out text edits ({', '.join(f'{families.count(f)} {f}' for f in names)})")
    kinds = list(next(iter(next(iter(ratios.values())).values())))
    print("| sigma | family | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    for sigma, by_family in ratios.items():
        for family, cells in by_family.items():
            print(f"| {sigma} | {family} | " + " | ".join(f"{c:.3f}" for c in cells.values()) + " |")


if __name__ == "__main__":
    main()
