"""Does a model read the colour word of a recolour instruction? Each case is edited three times: with its own prompt
and with the asked colour swapped for two others. A model that reads the word paints the object in whatever colour
is asked; a model that does not gives the same output three times.

    python scripts/colour_word.py path/to/model [--cases 12] [--split train] [--steps 8]

Per case it prints the colour nearest to the output's mean inside the change mask for each asked colour; at the end
the share of edits whose output is nearest the asked colour (chance: 1 in 10 object colours) and, as the ceiling,
the same for the ground-truth targets. One thread; about 3 s per case at 8 steps.
"""

from __future__ import annotations

import argparse
import re

import numpy as np

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.engine.loading import load_engine
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--split", default="train", choices=("train", "heldout"))
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    engine = load_engine(args.model, device="cpu")
    hits = ceiling = edits = 0
    for seed, sample in recolour_cases(args.cases, args.split):
        old, new = sample.meta["old_color"], sample.meta["new_color"]
        mask = np.asarray(sample.mask, bool)
        others = [c for c in OBJECT_COLORS if c not in (old, new)]
        asked = [new, *np.random.default_rng(seed).choice(others, SWAPS, replace=False).tolist()]
        row = []
        for colour in asked:
            prompt = re.sub(rf"\b{new}\b", colour, sample.prompt)
            out = engine.edit([sample.input_image], prompt, seed=0, steps=args.steps, guidance=3.0)
            got = nearest_colour(out, mask)
            row.append(f"{colour}->{got}")
            hits += got == colour
            edits += 1
        ceiling += nearest_colour(sample.target, mask) == new
        print(f"{seed:5d} {sample.prompt!r} (was {old}): {', '.join(row)}", flush=True)
    print(f"output nearest the asked colour: {hits}/{edits} ({hits / edits:.0%}; chance {1 / len(OBJECT_COLORS):.0%})"
          f"; ground truth nearest its colour: {ceiling}/{args.cases}")


if __name__ == "__main__":
    main()
