"""Run editors through held-out toy-world cases and aggregate the metrics per category."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from openkontext.toyworld.edits import CATEGORIES, category_of
from openkontext.toyworld.sample import Sample, generate

from .editors import GroundTruth, REFERENCES
from .metrics import as_array, psnr, score_case

DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 3.0
# cases of category c (or of an edit family of c) use held-out seeds seed_start + CATEGORY_SEED_STRIDE * index(c) + i
CATEGORY_SEED_STRIDE = 100_000


def bench_cases(n: int, kinds: Iterable[str] | None = None, size=256, seed_start: int = 0) -> list[Sample]:
    """``n`` held-out samples per kind: a category (its families as often as the toy world draws them) or one edit
    family alone (deterministic)."""
    cases = []
    for kind in list(kinds) if kinds else list(CATEGORIES):
        base = seed_start + CATEGORY_SEED_STRIDE * CATEGORIES.index(category_of(kind))
        cases += [generate(base + i, split="heldout", size=size, categories=[kind]) for i in range(n)]
    return cases


def _call(editor, images, prompt, *, seed, steps, guidance, size, target) -> Image.Image:
    w, h = size
    kwargs = dict(seed=seed, steps=steps, guidance=guidance, width=w, height=h)
    if isinstance(editor, GroundTruth):
        return editor(images, prompt, target=target, **kwargs)
    return editor(images, prompt, **kwargs)


def run_case(editor, sample: Sample, *, steps: int, guidance: float) -> tuple[dict, list[Image.Image]]:
    """Score one case; returns the record and the outputs (one per turn for iterative cases)."""
    size = sample.target.size
    seed = sample.meta["seed"]
    t0 = time.perf_counter()
    if sample.category != "iterative":
        images = [sample.input_image] if sample.input_image is not None else []
        out = _call(editor, images, sample.prompt, seed=seed, steps=steps, guidance=guidance, size=size,
                    target=sample.target)
        scores = score_case(sample.category, sample, sample.meta, sample.input_image, out, sample)
        rec = {"seed": seed, "category": sample.category, "family": sample.family, "prompt": sample.prompt, **scores}
        rec["seconds"] = time.perf_counter() - t0
        return rec, [out]
    # iterative: the editor's previous output is its next input; every turn is scored against its own target,
    # and drift is measured on the pixels no turn so far was allowed to change
    first = as_array(sample.input_image, size)
    current = sample.input_image
    untouched = np.ones(sample.mask.shape, bool)
    turns, outs = [], []
    prev_target = sample.input_image
    for k, turn in enumerate(sample.turns):
        out = _call(editor, [current], turn.prompt, seed=seed + k, steps=steps, guidance=guidance, size=size,
                    target=turn.target)
        scores = score_case(turn.meta["category"], turn, turn.meta, prev_target, out)
        untouched &= ~turn.mask
        drift = psnr(as_array(out, size), first, untouched)
        turns.append({"turn": k, "family": turn.meta["family"], "prompt": turn.prompt,
                      "success": scores["success"], "drift_psnr": drift})
        outs.append(out)
        current, prev_target = out, turn.target
    succ = [t["success"] for t in turns]
    rec = {"seed": seed, "category": "iterative", "family": "iterative", "prompt": sample.prompt,
           "success": all(succ), "turn_success": float(np.mean(succ)), "final_turn_success": succ[-1],
           "preservation": turns[-1]["drift_psnr"], "turns": turns, "seconds": time.perf_counter() - t0}
    return rec, outs


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


# metrics averaged per category in the summary, besides success rate and preservation
DETAIL_KEYS = ("psnr_mask_target", "psnr_target", "identity_psnr", "identity_hist", "scene_psnr", "content_score",
               "turn_success")


def summarize(records: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for cat in dict.fromkeys(r["category"] for r in records):
        rs = [r for r in records if r["category"] == cat]
        s = {"n": len(rs), "success_rate": _mean([float(r["success"]) for r in rs]),
             "preservation": _mean([r.get("preservation") for r in rs])}
        for key in DETAIL_KEYS:
            m = _mean([r.get(key) for r in rs])
            if m is not None:
                s[key] = m
        if cat == "iterative":
            max_t = max(len(r["turns"]) for r in rs)
            s["success_by_turn"] = [_mean([float(r["turns"][k]["success"]) for r in rs if len(r["turns"]) > k])
                                    for k in range(max_t)]
            s["drift_by_turn"] = [_mean([r["turns"][k]["drift_psnr"] for r in rs if len(r["turns"]) > k])
                                  for k in range(max_t)]
        s["seconds_per_case"] = _mean([r["seconds"] for r in rs])
        out[cat] = s
    return out


@dataclasses.dataclass
class BenchResult:
    config: dict
    summaries: dict[str, dict]  # editor name -> category -> metrics
    records: dict[str, list[dict]]
    out_dir: Path | None

    def to_json(self) -> dict:
        return {"config": self.config, "summary": self.summaries, "cases": self.records}


def run_bench(editor, n: int = 10, categories: Iterable[str] | None = None, size=256, out_dir=None,
              seed_start: int = 0, *, name: str = "model", steps: int = DEFAULT_STEPS,
              guidance: float = DEFAULT_GUIDANCE, references: bool = True, grid_rows: int = 4,
              progress=None) -> BenchResult:
    """Run ``editor`` (and the ``copy_input``/``ground_truth`` references) on ``n`` held-out cases per category;
    a name in ``categories`` may be one edit family, whose ``n`` cases count towards its category's figures.

    Writes ``results.json`` and ``report.html`` (with image grids) to ``out_dir`` when given.
    """
    kinds = list(categories) if categories else list(CATEGORIES)
    cases = bench_cases(n, kinds, size, seed_start)
    cats = list(dict.fromkeys(map(category_of, kinds)))
    families = [kind for kind in kinds if kind not in CATEGORIES]
    editors = {name: editor}
    if references:
        editors.update(REFERENCES)
    records: dict[str, list[dict]] = {k: [] for k in editors}
    grids: dict[str, list[dict]] = {c: [] for c in cats}
    out_path = Path(out_dir) if out_dir else None
    for i, sample in enumerate(cases):
        for ename, ed in editors.items():
            rec, outs = run_case(ed, sample, steps=steps, guidance=guidance)
            records[ename].append(rec)
            if out_path is not None and ename == name and len(grids[sample.category]) < grid_rows:
                grids[sample.category].append(_save_grid_row(out_path, sample, outs, rec))
        if progress:
            progress(i + 1, len(cases))
    w, h = cases[0].target.size
    config = {"n_per_category": n, "categories": cats, "size": [w, h], "seed_start": seed_start, "split": "heldout",
              "steps": steps, "guidance": guidance, "editor": name, **({"families": families} if families else {})}
    result = BenchResult(config, {k: summarize(v) for k, v in records.items()}, records, out_path)
    if out_path is not None:
        from .report import write_html
        out_path.mkdir(parents=True, exist_ok=True)
        (out_path / "results.json").write_text(json.dumps(result.to_json(), indent=1, default=_jsonable))
        write_html(result, grids, out_path / "report.html")
    return result


def _jsonable(o):
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


def _save_grid_row(out_dir: Path, sample: Sample, outs: list[Image.Image], rec: dict) -> dict:
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{sample.category}_{sample.meta['seed']}"
    row = {"prompt": sample.prompt, "success": rec["success"], "cells": []}
    if sample.category == "iterative":
        prev = sample.input_image
        for k, (turn, output) in enumerate(zip(sample.turns, outs)):
            cells = []
            for label, img in (("input", prev), ("output", output), ("target", turn.target)):
                p = f"images/{stem}_t{k}_{label}.png"
                img.save(out_dir / p)
                cells.append(p)
            row["cells"].append({"prompt": turn.prompt, "images": cells, "success": rec["turns"][k]["success"]})
            prev = turn.target
        return row
    cells = []
    for label, img in (("input", sample.input_image), ("output", outs[0]), ("target", sample.target)):
        if img is None:
            cells.append(None)
            continue
        p = f"images/{stem}_{label}.png"
        img.save(out_dir / p)
        cells.append(p)
    row["cells"].append({"prompt": sample.prompt, "images": cells, "success": rec["success"]})
    return row


# the continuous figure that says most about each category's edit (success rates move only past a threshold)
QUALITY_KEY = {"local": "psnr_mask_target", "global": "psnr_mask_target", "text": "psnr_mask_target",
               "style": "psnr_target", "character_reference": "identity_psnr", "text_to_image": "content_score",
               "iterative": "turn_success"}  # fmt: skip


ENGINE_SETTINGS = ("preserve", "glyph_guidance")  # properties of the loaded engine, not arguments of an edit
SWEEP_PARAMS = ("guidance", "steps", *ENGINE_SETTINGS)


def sweep(editor_at, param: str, values: list, n: int = 5, categories=None, size=256, out_dir=None,
          seed_start: int = 0, *, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE) -> dict:
    """Success rate per category as ``param`` (one of SWEEP_PARAMS) takes each of ``values``; ``quality`` holds
    each category's QUALITY_KEY figure and preservation at every value. ``editor_at(value)`` is the editor to run
    at a value: for guidance and steps the same editor every time (the runner passes the value to it), for the
    ENGINE_SETTINGS (the paste-back threshold, the glyph guidance scale: properties of the loaded engine) one
    built with that value."""
    if param not in SWEEP_PARAMS:
        raise ValueError(f"param must be one of {', '.join(SWEEP_PARAMS)}")
    rows, quality = [], []
    for v in values:
        kw = {"steps": steps, "guidance": guidance} | ({param: v} if param not in ENGINE_SETTINGS else {})
        res = run_bench(editor_at(v), n, categories, size, None, seed_start, references=False, **kw)
        summ = res.summaries["model"]
        rows.append({param: v, **{c: summ[c]["success_rate"] for c in summ}})
        quality.append({param: v, **{c: {"metric": QUALITY_KEY[c], "value": summ[c].get(QUALITY_KEY[c]),
                                         "preservation": summ[c].get("preservation")} for c in summ}})
    result = {"param": param, "values": list(values), "rows": rows, "quality": quality, "n_per_category": n,
              "seed_start": seed_start}
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / f"sweep_{param}.json").write_text(json.dumps(result, indent=1))
    return result
