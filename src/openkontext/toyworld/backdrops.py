"""Studio backdrops: a plain colour or a smooth two-colour gradient, with no horizon, sky or ground.

This is what user pictures (a flat graphic, a drawn sign, a logo) sit on. Backdrop colours are named, so an
instruction can ask for one ("a plain light blue background"); they include light and dark tints that are common
in such pictures but are not object colours.
"""

from __future__ import annotations

import dataclasses
import functools
import random

import numpy as np
from PIL import Image

from .colors import PALETTE, RGB, mix

BACKDROP_COLORS: dict[str, RGB] = {
    **PALETTE,
    "light grey": (218, 218, 222), "dark grey": (64, 64, 70), "cream": (248, 240, 216), "light blue": (196, 222, 246),
    "light pink": (250, 214, 226), "light green": (206, 236, 200), "navy": (24, 36, 90),
}
# where a gradient's first and second colour are, per direction (the words instructions use)
GRADIENT_ENDS: dict[str, tuple[str, str]] = {
    "vertical": ("at the top", "at the bottom"),
    "horizontal": ("on the left", "on the right"),
    "diagonal": ("at the top left", "at the bottom right"),
}
DIRECTIONS: tuple[str, ...] = tuple(GRADIENT_ENDS)
PLAIN_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class Backdrop:
    colors: tuple[str, ...]  # one name (plain) or two (a gradient from the first to the second)
    direction: str | None = None  # gradients only: a key of GRADIENT_ENDS

    def describe(self) -> str:
        if len(self.colors) == 1:
            return f"a plain {self.colors[0]} background"
        (a, b), (at_a, at_b) = self.colors, GRADIENT_ENDS[self.direction]
        return f"a gradient from {a} {at_a} to {b} {at_b}"

    def shades(self) -> list[RGB]:
        """The colours it shows: its colours and, for a gradient, their midpoint (what a subject must stand out
        from)."""
        rgbs = [BACKDROP_COLORS[c] for c in self.colors]
        return rgbs + [mix(rgbs[0], rgbs[1], 0.5)] if len(rgbs) == 2 else rgbs

    def to_meta(self) -> dict:
        return {"colors": list(self.colors), "direction": self.direction}


def random_backdrop(rng: random.Random) -> Backdrop:
    if rng.random() < PLAIN_SHARE:
        return Backdrop((rng.choice(list(BACKDROP_COLORS)),))
    return Backdrop(tuple(rng.sample(list(BACKDROP_COLORS), 2)), rng.choice(DIRECTIONS))


@functools.lru_cache(maxsize=8)
def render_backdrop(backdrop: Backdrop, w: int, h: int) -> Image.Image:
    """The backdrop at pixel size ``w`` x ``h``; cached because an edit renders the same backdrop twice."""
    if len(backdrop.colors) == 1:
        return Image.new("RGB", (w, h), BACKDROP_COLORS[backdrop.colors[0]])
    first, last = (np.asarray(BACKDROP_COLORS[c], np.float32) for c in backdrop.colors)
    # the colours along the gradient, computed once per row or column rather than per pixel
    n = {"vertical": h, "horizontal": w, "diagonal": w + h - 1}[backdrop.direction]
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    ramp = np.rint(first * (1 - t) + last * t).astype(np.uint8)
    if backdrop.direction == "diagonal":  # row y shows ramp[y:y + w]: lines of one colour run at 45 degrees
        rgb = np.lib.stride_tricks.sliding_window_view(ramp, w, axis=0).transpose(0, 2, 1)
        return Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    line = ramp[:, None] if backdrop.direction == "vertical" else ramp[None]  # a column or a row, stretched
    return Image.fromarray(line, "RGB").resize((w, h), Image.Resampling.NEAREST)
