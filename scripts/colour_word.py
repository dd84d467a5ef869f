"""Does a model read the colour word of a recolour instruction? Each case is edited three times: with its own prompt
and with the asked colour swapped for two others. A model that reads the word paints the object in whatever colour
is asked; a model that does not gives the same output three times.

    python scripts/colour_word.py path/to/model [--cases 12] [--split train] [--steps 8] [--preserve 0] [--paths]

Per case it prints the colour nearest to the output's mean inside the change mask for each asked colour; at the end
the share of edits whose output is nearest the asked colour (chance: 1 in 10 object colours) and, as the ceiling,
the same for the ground-truth targets. For the edits with the case's own prompt it also reports what the edit did
to the picture: the PSNR outside the change mask against the input (the neighbours an edit should leave alone) and
inside it against the target. ``--preserve 0`` turns the engine's paste-back off, so the first figure is the
model's own and not the paste-back's. One thread; about 3 s per case at 8 steps.

``--paths`` asks which of the two text encoders carries the word: each case is edited twice with T5's sequence of
one prompt and CLIP's pooled vector (which modulates every token alike) of the same prompt with another colour, and
the other way round; the output's colour inside the mask is counted as the sequence's, the pooled vector's or
neither.
"""

from __future__ import annotations

import argparse
import re

import numpy as np

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.engine.loading import load_engine
from openkontext.engine.kontext import MultiReferenceKontextPipeline
from openkontext.quality.metrics import as_array, psnr
from openkontext.toyworld import generate
from openkontext.toyworld.colors import OBJECT_COLORS, PALETTE

SWAPS = 2  # other colours asked per case besides the case's own


def nearest_colour(image, mask: np.ndarray) -> str:
    mean = np.asarray(image.convert("RGB"), float)[mask].mean(0)
    palette = np.array([PALETTE[c] for c in OBJECT_COLORS], float)
    return OBJECT_COLORS[int(np.argmin(((palette - mean) ** 2).sum(1)))]


def recolour_cases(n: int, split: str):
    seed = 0
    while n:
        seed += 1
        sample = generate(seed, split=split, size=256, categories=["recolor_object"])
        yield seed, sample
        n -= 1


def route_pooled() -> dict[str, str]:
    """Make every Kontext pipeline in this process take CLIP's pooled vector of a prompt from another prompt (the
    engine builds a pipeline per call, so the class is patched); returns the mapping to fill (prompt -> the prompt
    whose pooled vector it gets). T5's sequence stays each prompt's own."""
    encode, routes = MultiReferenceKontextPipeline.encode_prompt, {}

    def routed(self, prompt, prompt_2=None, **kwargs):
        sequence, pooled, ids = encode(self, prompt=prompt, prompt_2=prompt_2, **kwargs)
        text = prompt if isinstance(prompt, str) or prompt is None else prompt[0]
        if text in routes:
            pooled = encode(self, prompt=routes[text], prompt_2=None, **kwargs)[1]
        return sequence, pooled, ids

    MultiReferenceKontextPipeline.encode_prompt = routed
    return routes


def text_paths(engine, cases: int, split: str, steps: int) -> dict[str, int]:
    """How often the output's colour is the one T5's sequence asks, the one CLIP's pooled vector asks, or neither."""
    routes = route_pooled()
    counts = {"sequence": 0, "pooled": 0, "neither": 0}
    for seed, sample in recolour_cases(cases, split):
        new, mask = sample.meta["new_color"], np.asarray(sample.mask, bool)
        others = [c for c in OBJECT_COLORS if c not in (new, sample.meta["old_color"])]
        other = str(np.random.default_rng(seed).choice(others))
        prompts = {new: sample.prompt, other: re.sub(rf"\b{new}\b", other, sample.prompt)}
        row = []
        for sequence, pooled in ((new, other), (other, new)):
            routes.clear()
            routes[prompts[sequence]] = prompts[pooled]
            got = nearest_colour(engine.edit([sample.input_image], prompts[sequence], seed=0, steps=steps,
                                             guidance=3.0, size=sample.input_image.size), mask)  # fmt: skip
            counts["sequence" if got == sequence else "pooled" if got == pooled else "neither"] += 1
            row.append(f"sequence {sequence} + pooled {pooled} -> {got}")
        print(f"{seed:5d} {sample.prompt!r}: {'; '.join(row)}", flush=True)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--split", default="train", choices=("train", "heldout"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--preserve", type=float, default=None, help="paste-back threshold (0: off; default: the "
                        "model's own)")
    parser.add_argument("--paths", action="store_true", help="which text encoder carries the colour word")
    args = parser.parse_args()

    engine = load_engine(args.model, device="cpu")
    if args.paths:
        counts = text_paths(engine, args.cases, args.split, args.steps)
        edits = sum(counts.values())
        print(f"output nearest the colour of T5's sequence: {counts['sequence']}/{edits}, of CLIP's pooled vector: "
              f"{counts['pooled']}/{edits}, neither: {counts['neither']}/{edits}")
        return
    hits = ceiling = edits = 0
    outside, inside = [], []  # PSNR of the own-prompt edits: outside the mask to the input, inside to the target
    for seed, sample in recolour_cases(args.cases, args.split):
        old, new = sample.meta["old_color"], sample.meta["new_color"]
        mask = np.asarray(sample.mask, bool)
        others = [c for c in OBJECT_COLORS if c not in (old, new)]
        asked = [new, *np.random.default_rng(seed).choice(others, SWAPS, replace=False).tolist()]
        row = []
        for colour in asked:
            prompt = re.sub(rf"\b{new}\b", colour, sample.prompt)
            out = engine.edit([sample.input_image], prompt, seed=0, steps=args.steps, guidance=3.0,
                              size=sample.input_image.size, preserve=args.preserve)  # fmt: skip
            got = nearest_colour(out, mask)
            if colour == new:
                pixels, size = as_array(out, out.size), out.size
                outside.append(psnr(pixels, as_array(sample.input_image, size), ~mask))
                inside.append(psnr(pixels, as_array(sample.target, size), mask))
            row.append(f"{colour}->{got}")
            hits += got == colour
            edits += 1
        ceiling += nearest_colour(sample.target, mask) == new
        print(f"{seed:5d} {sample.prompt!r} (was {old}): {', '.join(row)}", flush=True)
    print(f"output nearest the asked colour: {hits}/{edits} ({hits / edits:.0%}; chance {1 / len(OBJECT_COLORS):.0%})"
          f"; ground truth nearest its colour: {ceiling}/{args.cases}")
    print(f"own prompt, mean PSNR outside the mask to the input: {np.mean(outside):.2f} dB, inside it to the "
          f"target: {np.mean(inside):.2f} dB")


if __name__ == "__main__":
    main()
