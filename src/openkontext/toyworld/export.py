"""Write samples to disk as PNG files plus a ``manifest.jsonl`` (one JSON object per sample)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from .sample import Sample
from .stream import stream


def _save_mask(mask: np.ndarray, path: Path) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def sample_record(sample: Sample, out_dir: Path) -> dict:
    """Save a sample's images under ``out_dir/images`` and return its manifest record (paths are relative)."""
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    stem = f"{sample.meta['split']}_{sample.meta['seed']:08d}"
    rec: dict = {"seed": sample.meta["seed"], "split": sample.meta["split"], "category": sample.category,
                 "family": sample.family, "prompt": sample.prompt, "input": None}
    if sample.input_image is not None:
        sample.input_image.save(images / f"{stem}_input.png")
        rec["input"] = f"images/{stem}_input.png"
    sample.target.save(images / f"{stem}_target.png")
    _save_mask(sample.mask, images / f"{stem}_mask.png")
    rec.update(target=f"images/{stem}_target.png", mask=f"images/{stem}_mask.png", meta=sample.meta)
    if sample.turns:
        rec["turns"] = []
        for k, turn in enumerate(sample.turns):
            turn.target.save(images / f"{stem}_turn{k}_target.png")
            _save_mask(turn.mask, images / f"{stem}_turn{k}_mask.png")
            rec["turns"].append({"prompt": turn.prompt, "target": f"images/{stem}_turn{k}_target.png",
                                 "mask": f"images/{stem}_turn{k}_mask.png", "meta": turn.meta})
    return rec


def export(out_dir: str | Path, n: int, split: str = "train", size: int | tuple[int, int] = 256,
           categories: Iterable[str] | None = None, start_seed: int = 0, workers: int | None = None) -> Path:
    """Generate ``n`` samples and write them under ``out_dir``; returns the manifest path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    with manifest.open("w", encoding="utf-8") as f:
        for sample in stream(split, size, categories, start_seed=start_seed, workers=workers, count=n):
            f.write(json.dumps(sample_record(sample, out)) + "\n")
    return manifest


def contact_sheet(samples: list[Sample], width: int = 256) -> Image.Image:
    """One row per sample: input | target | mask, with the instruction underneath (for looking at the data).

    Iterative samples get one row per turn."""
    from PIL import ImageDraw

    rows = []
    for s in samples:
        steps = [(s.input_image, t.prompt, t.target, t.mask) for t in s.turns] if s.turns else \
            [(s.input_image, s.prompt, s.target, s.mask)]
        prev = s.input_image
        for k, (_, prompt, target, mask) in enumerate(steps):
            inp = prev if s.turns else s.input_image
            rows.append((s.category + (f" turn {k + 1}" if s.turns else ""), inp, prompt, target, mask))
            prev = target
    scale = width / samples[0].target.width
    cw, ch = width, int(samples[0].target.height * scale)
    sheet = Image.new("RGB", (3 * cw + 8, len(rows) * (ch + 22)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for i, (label, inp, prompt, target, mask) in enumerate(rows):
        y = i * (ch + 22)
        inp = inp if inp is not None else Image.new("RGB", target.size, (128, 128, 128))
        m = Image.fromarray(mask.astype(np.uint8) * 255).convert("RGB")
        for j, img in enumerate((inp, target, m)):
            sheet.paste(img.resize((cw, ch)), (j * (cw + 4), y))
        d.text((2, y + ch + 4), f"[{label}] {prompt}"[:130], fill=(0, 0, 0))
    return sheet
