"""Does an aligned model's first pass find where the word goes? For held-out text edits that write a word, the box
the engine draws the word in (the largest region its first pass changes, engine/kontext.py) against the box of the
edit's change mask (intersection over union; "found": any box at all), and whether the final output reads the word (OCR
exact), or how much of it (letter similarity: difflib's ratio to the closest word read, 0-1, before any is exact),
and the seconds per edit, side by side for each glyph guidance scale asked for (engine/glyph_guidance.py).
``--box mask`` draws the word in the change mask's own box instead of the first pass's (an oracle no request has):
how much of the gap to an exact word is the box.

    python scripts/glyph_box.py MODEL_FOLDER [--cases 20] [--steps 8] [--glyph-guidance 1,8] [--box mask]

One thread; about 2 s per case at 8 steps and scale 1 (two passes; a scale other than 1 runs the second as a batch
of two).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import defaultdict
from difflib import SequenceMatcher

import numpy as np
import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.engine import kontext
from openkontext.engine.conditioning import word_to_write
from openkontext.engine.loading import load_engine
from openkontext.engine.preserve import mask_box
from openkontext.quality import ocr
from openkontext.toyworld import generate

SEED = 730_000  # held-out text cases of their own


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    width = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0


def letter_similarity(word: str, read: list[str]) -> float:
    """How close the closest word OCR read is to ``word`` (difflib's ratio: 1 exact, 0 nothing in common)."""
    return max((SequenceMatcher(None, word.upper(), r.upper()).ratio() for r in read), default=0.0)


def first_pass_boxes(engine, cases: int, steps: int, oracle: bool = False) -> list[dict]:
    """One record per case: family, the word, the engine's box (None: its first pass changed nothing), the mask's
    box, the words OCR reads in the output and the edit's seconds. ``oracle``: the second pass draws the word in
    the mask's box (whenever the first pass found any)."""
    boxes: list = []
    measured = kontext.region_box
    true_box = None

    def recording(mask):
        boxes.append(measured(mask))
        return true_box if oracle and boxes[-1] is not None else boxes[-1]

    kontext.region_box = recording  # the engine's own box, as it computes it
    records, seed = [], SEED
    try:
        while len(records) < cases:
            sample = generate(seed, split="heldout", size=256, categories=["text"])
            seed += 1
            word = word_to_write(sample.prompt)
            if word is None:
                continue
            boxes.clear()
            true_box = mask_box(np.asarray(sample.mask))  # the engine samples 256² inputs at 256²
            start = time.perf_counter()
            output = engine.edit([sample.input_image], sample.prompt, seed=seed, steps=steps, guidance=3.0)
            seconds = time.perf_counter() - start
            scale = sample.input_image.width / output.width  # the engine samples at its bucket (256² models: 1)
            box = tuple(round(v * scale) for v in boxes[0]) if boxes and boxes[0] else None
            output = output.resize(sample.input_image.size)
            records.append(dict(family=sample.meta["family"], word=word, box=box,
                                mask_box=true_box, seconds=seconds,
                                read=ocr.read_words(output, sample.meta["text_box"])))  # fmt: skip
    finally:
        kontext.region_box = measured
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an exported model folder with glyph_context 'aligned'")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--glyph-guidance", default=None,
                        help="comma-separated scales, measured side by side (default: the model's own)")
    parser.add_argument("--box", choices=["first-pass", "mask"], default="first-pass",
                        help="where the word is drawn: the first pass's box (as served) or the mask's (an oracle)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        scales = [float(v) for v in args.glyph_guidance.split(",")] if args.glyph_guidance else []
    except ValueError:
        parser.error(f"--glyph-guidance takes comma-separated numbers, not {args.glyph_guidance!r}")
    engine = load_engine(args.model, device="cpu")
    if engine.info.glyph_context != "aligned":
        parser.error(f"{args.model}'s glyph context is {engine.info.glyph_context or 'none'!r}, not 'aligned'")
    rows = []
    for scale in scales or [engine.info.glyph_guidance]:
        engine.info = dataclasses.replace(engine.info, glyph_guidance=scale)
        by_family = defaultdict(list)
        for record in first_pass_boxes(engine, args.cases, args.steps, oracle=args.box == "mask"):
            by_family[record["family"]].append(record)
            print(f"{scale:>5g} {record['family']:>12}  {record['word']:<10} box {record['box']}  "
                  f"mask {record['mask_box']}  read {' '.join(record['read']) or '-'}")
        rows += [(scale, family, records) for family, records in sorted(by_family.items())]
    print("| glyph guidance | family | cases | box found | mean IoU with the mask's box | OCR exact "
          "| letter similarity | s per edit |")
    print("|---|---|---|---|---|---|---|---|")
    for scale, family, records in rows:
        found = [r for r in records if r["box"] is not None]
        overlap = np.mean([iou(r["box"], r["mask_box"]) for r in found]) if found else 0.0
        exact = sum(r["word"].upper() in r["read"] for r in records)
        similar = np.mean([letter_similarity(r["word"], r["read"]) for r in records])
        seconds = np.mean([r["seconds"] for r in records])
        print(f"| {scale:g} | {family} | {len(records)} | {len(found)} | {overlap:.2f} | {exact} | {similar:.2f} "
              f"| {seconds:.1f} |")


if __name__ == "__main__":
    main()
