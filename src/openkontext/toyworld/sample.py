"""``generate``: one seed -> one exact (input, instruction, target, category, mask, metadata) sample.

Masks (True where the target may differ from the input), per category:

- local, text: the pixels that differ between input and target, grown by 2 px; outside it input == target exactly;
- global: everything except the pixels fully covered by the subjects (objects, characters, signs), which stay;
- character_reference, style, text_to_image: everything (all True).

``regions`` holds further named bool masks used by the benchmark: ``subject`` and ``source_subject``
(character reference: the character's silhouette in the target and in the input) and ``subjects`` (global: the
preserved subject pixels).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np
from PIL import Image, ImageChops

from .edits import CATEGORIES, FAMILIES, Edit, category_of, make_chain, make_edit
from .scene import Character, item_masks, normalize_size, render
from .split import check_split, rng_for
from .studio import STUDIO_FAMILIES, is_studio, make_studio_edit
from .styles import apply_style

MASK_GROW_PX = 2
FAMILY_NAMES: tuple[str, ...] = tuple(f for fams in FAMILIES.values() for f in fams if f not in FAMILIES)


@dataclasses.dataclass
class Turn:
    prompt: str
    target: Image.Image
    mask: np.ndarray
    meta: dict
    regions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Sample:
    """One edit case. For iterative samples ``turns`` holds every turn (turn *k*'s input is turn *k-1*'s target,
    turn 0's input is ``input_image``) and ``prompt``/``target``/``mask`` are the first turn's."""

    input_image: Image.Image | None
    prompt: str
    target: Image.Image
    category: str
    mask: np.ndarray
    meta: dict
    turns: list[Turn] = dataclasses.field(default_factory=list)
    regions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.meta["family"]


def diff_mask(a: Image.Image, b: Image.Image, grow: int = MASK_GROW_PX) -> np.ndarray:
    """Pixels where ``a`` and ``b`` differ, grown by ``grow`` pixels (a square dilation)."""
    w, h = a.size
    mask = np.zeros((h, w), bool)
    diff = ImageChops.difference(a, b)
    box = diff.getbbox()
    if box is None:
        return mask
    x0, y0, x1, y1 = box
    d = np.asarray(diff.crop(box)).any(axis=2)
    # dilate inside the box padded by ``grow``
    d = np.pad(d, grow)
    for axis in (0, 1):
        acc = d.copy()
        for k in range(1, grow + 1):
            acc |= np.roll(d, k, axis=axis) | np.roll(d, -k, axis=axis)
        d = acc
    X0, Y0 = x0 - grow, y0 - grow
    sx0, sy0 = max(0, X0), max(0, Y0)
    sx1, sy1 = min(w, x1 + grow), min(h, y1 + grow)
    mask[sy0:sy1, sx0:sx1] = d[sy0 - Y0:sy1 - Y0, sx0 - X0:sx1 - X0]
    return mask


def _realise(edit: Edit, category: str, size: tuple[int, int], before_img: Image.Image | None):
    """Render an edit: (input image, target image, mask, regions)."""
    if before_img is None and edit.before is not None:
        before_img = render(edit.before, size)
    target = render(edit.after, size)
    if edit.style:
        target = apply_style(target, edit.style)
    w, h = size
    regions: dict[str, np.ndarray] = {}
    if category in ("local", "text", "iterative"):
        mask = diff_mask(before_img, target)
    elif category == "global":
        subjects = item_masks(edit.before, size)
        regions["subjects"] = subjects
        mask = ~subjects
    else:
        mask = np.ones((h, w), bool)
        if category == "character_reference":
            chars = [it for it in edit.after.items if isinstance(it, Character)]
            regions["subject"] = item_masks(edit.after, size, chars)
            source = [it for it in edit.before.items if isinstance(it, Character)]
            regions["source_subject"] = item_masks(edit.before, size, source)
    return before_img, target, mask, regions


def _meta(edit: Edit, category: str, size: tuple[int, int], seed: int, split: str) -> dict:
    return {**edit.meta, "category": category, "seed": seed, "split": split, "size": list(size),
            "before": edit.before.to_meta() if edit.before else None, "after": edit.after.to_meta()}


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """``kinds`` as a tuple, each a category or an edit family; otherwise ValueError naming what is known."""
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind not in FAMILIES and kind not in FAMILY_NAMES]
    if unknown or not kinds:
        raise ValueError(f"unknown category or edit family {', '.join(map(repr, unknown)) or '(none given)'}; the "
                         f"categories are {', '.join(CATEGORIES)}; the families {', '.join(FAMILY_NAMES)}")
    return kinds


def generate(seed: int, *, split: str = "train", size: int | tuple[int, int] = 256,
             categories: Iterable[str] | None = None) -> Sample:
    """The sample for ``seed``: a pure function of the arguments (same arguments -> identical bytes).

    ``categories`` are drawn from uniformly; an entry may also be one edit family (e.g. ``recolor_object``), which
    then gives only that family's edits (on studio pictures as often as its category would)."""
    check_split(split)
    size = normalize_size(size)
    kinds = check_kinds(categories) if categories else CATEGORIES
    rng = rng_for(seed, split)
    kind = rng.choice(kinds)
    category = category_of(kind)
    if kind == "iterative":
        return _iterative(rng, seed, split, size)
    family = None if kind in FAMILIES else kind
    if is_studio(seed, split, category) and (family is None or family in STUDIO_FAMILIES[category]):
        edit = make_studio_edit(category, rng, split, size, family)
    else:
        edit = make_edit(family or rng.choice(FAMILIES[category]), rng, split, size)
    assert category_of(edit.meta["family"]) == category
    inp, target, mask, regions = _realise(edit, category, size, None)
    return Sample(inp, edit.prompt, target, category, mask, _meta(edit, category, size, seed, split),
                  regions=regions)


def _iterative(rng, seed: int, split: str, size: tuple[int, int]) -> Sample:
    chain = make_chain(rng, split, size)
    first_input = render(chain[0].before, size)
    turns = []
    prev = first_input
    for k, edit in enumerate(chain):
        _, target, mask, regions = _realise(edit, "iterative", size, prev)
        turn_meta = {**edit.meta, "turn": k, "category": category_of(edit.meta["family"])}
        turns.append(Turn(edit.prompt, target, mask, turn_meta, regions))
        prev = target
    meta = {"family": "iterative", "category": "iterative", "seed": seed, "split": split, "size": list(size),
            "n_turns": len(turns), "turn_families": [t.meta["family"] for t in turns],
            "before": chain[0].before.to_meta(), "after": chain[-1].after.to_meta()}
    return Sample(first_input, turns[0].prompt, turns[0].target, "iterative", turns[0].mask, meta, turns=turns)
