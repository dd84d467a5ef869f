"""The glyph image a training example gets (``engine/conditioning.py`` draws it).

The ``line`` and ``rows`` strips depend on the prompt alone. An ``aligned`` canvas also needs the box where the
word goes: at serving time the engine takes it from the region its own first pass changes, which is never exactly
the edit's change mask, so training draws the word in the mask's bounding box moved by up to ``BOX_JITTER`` of its
size on each side; and a ``BLANK_SHARE`` of examples get the blank canvas the first pass sees, so the model still
edits (and shows where) without a box.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from openkontext.engine.conditioning import glyph_strip
from openkontext.engine.preserve import mask_box

BOX_JITTER = 0.15
BLANK_SHARE = 0.2


def jittered(box: tuple[int, int, int, int], size: tuple[int, int], rng: np.random.Generator,
             jitter: float = BOX_JITTER) -> tuple[int, int, int, int]:  # fmt: skip
    """``box`` with each side moved by up to ``jitter`` of the box's width or height, kept inside ``size``."""
    left, top, right, bottom = box
    dx, dy = jitter * (right - left), jitter * (bottom - top)
    moves = rng.uniform(-1, 1, size=4) * np.array([dx, dy, dx, dy])
    left, top, right, bottom = (round(v) for v in np.array(box) + moves)
    width, height = size
    left, top = min(max(0, left), width - 1), min(max(0, top), height - 1)
    return left, top, min(width, max(right, left + 1)), min(height, max(bottom, top + 1))


def training_glyph(prompt: str, size: tuple[int, int], layout: str, mask: np.ndarray,
                   rng: np.random.Generator) -> Image.Image:  # fmt: skip
    """The glyph image of layout ``layout`` for an example with ``prompt``, a ``size`` target and change ``mask``
    (``rng`` draws the aligned box's jitter and the blank share)."""
    if layout != "aligned":
        return glyph_strip(prompt, *size, layout)
    box = mask_box(mask)
    if box is None or rng.random() < BLANK_SHARE:
        return glyph_strip(prompt, *size, layout, box=None)
    return glyph_strip(prompt, *size, layout, box=jittered(box, size, rng))
