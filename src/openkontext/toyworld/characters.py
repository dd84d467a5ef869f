"""Procedural characters: an identity is a tuple of discrete attributes, drawn at any place, size and facing.

The identity (shape, colours, pattern, eyes, mouth, top feature) is what "the same character" means; an accessory
is not part of it, so it can be added or removed by a local edit. 6 x 10 x 9 x 4 x 4 x 4 x 6 combinations minus
equal body/secondary colours give about 200,000 identities, a tenth of which are held out (see ``split``).
"""

from __future__ import annotations

import dataclasses
import functools
import random

from PIL import Image, ImageChops, ImageDraw

from .colors import OBJECT_COLORS, PALETTE, shade
from .split import is_heldout_value

SHAPES = ("blob", "round", "box", "pear", "tall", "ghost")
SECONDARY_COLORS = ("white", "yellow", "pink", "orange", "teal", "purple", "black", "red", "blue")
PATTERNS = ("plain", "spots", "stripes", "belly")
EYES = ("two", "one", "three", "sleepy")
MOUTHS = ("smile", "open", "teeth", "flat")
TOPS = ("none", "round-ears", "pointy-ears", "horns", "antenna", "tuft")
ACCESSORIES = ("hat", "crown", "bow", "glasses", "scarf", "bowtie")

# body width / height for each shape
ASPECT = {"blob": 0.85, "round": 1.0, "box": 0.8, "pear": 0.85, "tall": 0.62, "ghost": 0.8}


@dataclasses.dataclass(frozen=True)
class Identity:
    shape: str
    body: str
    secondary: str
    pattern: str
    eyes: str
    mouth: str
    top: str

    def key(self) -> tuple[str, ...]:
        return (self.shape, self.body, self.secondary, self.pattern, self.eyes, self.mouth, self.top)

    @property
    def id(self) -> str:
        return "-".join(self.key())

    @classmethod
    def from_id(cls, ident: str) -> "Identity":
        # colour names and attribute values never contain "-" except the tops, which are rejoined here
        parts = ident.split("-")
        return cls(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], "-".join(parts[6:]))

    @functools.cached_property
    def split(self) -> str:
        return "heldout" if is_heldout_value(self.key()) else "train"

    def describe(self) -> str:
        return f"{self.body} {self.shape} creature"


def random_identity(rng: random.Random, split: str, *, exclude_bodies: tuple[str, ...] = ()) -> Identity:
    for _ in range(1000):
        body = rng.choice([c for c in OBJECT_COLORS if c not in exclude_bodies])
        ident = Identity(
            shape=rng.choice(SHAPES),
            body=body,
            secondary=rng.choice([c for c in SECONDARY_COLORS if c != body]),
            pattern=rng.choice(PATTERNS),
            eyes=rng.choice(EYES),
            mouth=rng.choice(MOUTHS),
            top=rng.choice(TOPS),
        )
        if ident.split == split:
            return ident
    raise RuntimeError("could not draw an identity for the split")


def identity_count() -> int:
    n = 0
    for body in OBJECT_COLORS:
        n += len([c for c in SECONDARY_COLORS if c != body])
    return n * len(SHAPES) * len(PATTERNS) * len(EYES) * len(MOUTHS) * len(TOPS)


def char_width(height: float, ident: Identity) -> float:
    return height * ASPECT[ident.shape]


# ---------------------------------------------------------------- drawing

def _body_shapes(d: ImageDraw.ImageDraw, shape: str, W: int, H: int, top: int, fill) -> None:
    bottom = int(H * 0.93)
    x0, x1 = int(W * 0.12), int(W * 0.9)
    if shape in ("blob", "round"):
        d.ellipse([x0, top, x1, bottom], fill=fill)
    elif shape == "box":
        d.rounded_rectangle([x0, top, x1, bottom], radius=int(W * 0.14), fill=fill)
    elif shape == "tall":
        d.rounded_rectangle([x0, top, x1, bottom], radius=int((x1 - x0) * 0.48), fill=fill)
    elif shape == "pear":
        d.ellipse([int(W * 0.08), int(H * 0.42), int(W * 0.94), bottom], fill=fill)
        d.ellipse([int(W * 0.24), top, int(W * 0.78), int(H * 0.7)], fill=fill)
    elif shape == "ghost":
        w = x1 - x0
        d.ellipse([x0, top, x1, top + w], fill=fill)
        d.rectangle([x0, top + w // 2, x1, bottom - w // 6], fill=fill)
        r = w / 6
        for i in range(3):
            cx = x0 + r + i * 2 * r
            d.ellipse([cx - r, bottom - 2 * r, cx + r, bottom], fill=fill)
    else:
        raise ValueError(shape)


def _clip_paste(layer: Image.Image, body_mask: Image.Image, draw_fn) -> None:
    """Draw with ``draw_fn`` on a transparent layer and paste it onto ``layer`` only where the body is."""
    patt = Image.new("RGBA", layer.size, (0, 0, 0, 0))
    draw_fn(ImageDraw.Draw(patt))
    alpha = ImageChops.multiply(patt.getchannel("A"), body_mask)
    layer.paste(patt, (0, 0), alpha)


@functools.lru_cache(maxsize=256)
def render_character(ident: Identity, accessory: str | None, acc_color: str | None, w: int, h: int) -> Image.Image:
    """An RGBA image of the character facing right, ``w`` x ``h`` pixels (cached: scenes reuse characters)."""
    W, H = max(8, w), max(8, h)
    layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    body = PALETTE[ident.body]
    sec = PALETTE[ident.secondary]
    dark = shade(body, 0.72)
    outline = (25, 25, 30, 255)
    top = int(H * 0.17)
    bottom = int(H * 0.93)
    lw = max(1, W // 40)

    # tail on the back (left when facing right) so that facing is visible
    d.ellipse([0, int(H * 0.58), int(W * 0.26), int(H * 0.78)], fill=dark + (255,))
    # feet
    d.ellipse([int(W * 0.22), int(H * 0.86), int(W * 0.46), H - 1], fill=dark + (255,))
    d.ellipse([int(W * 0.56), int(H * 0.86), int(W * 0.8), H - 1], fill=dark + (255,))

    # top features behind the body outline
    if ident.top == "round-ears":
        for cx in (0.27, 0.75):
            r = W * 0.13
            d.ellipse([W * cx - r, top - r * 0.9, W * cx + r, top + r * 1.1], fill=body + (255,))
            d.ellipse([W * cx - r * 0.55, top - r * 0.45, W * cx + r * 0.55, top + r * 0.65], fill=sec + (255,))
    elif ident.top == "pointy-ears":
        for cx in (0.28, 0.74):
            d.polygon([(W * (cx - 0.12), top + H * 0.06), (W * cx, 0), (W * (cx + 0.12), top + H * 0.06)],
                      fill=body + (255,))
            d.polygon([(W * (cx - 0.06), top + H * 0.04), (W * cx, H * 0.05), (W * (cx + 0.06), top + H * 0.04)],
                      fill=sec + (255,))
    elif ident.top == "horns":
        for cx, lean in ((0.3, -0.08), (0.72, 0.08)):
            d.polygon([(W * (cx - 0.07), top + H * 0.05), (W * (cx + lean), H * 0.01), (W * (cx + 0.07), top + H * 0.05)],
                      fill=(238, 228, 200, 255), outline=outline, width=lw)
    elif ident.top == "antenna":
        d.line([(W * 0.5, top + H * 0.04), (W * 0.58, H * 0.05)], fill=outline, width=max(1, lw * 2))
        r = W * 0.07
        d.ellipse([W * 0.58 - r, H * 0.05 - r * 0.8, W * 0.58 + r, H * 0.05 + r * 1.2], fill=sec + (255,))
    elif ident.top == "tuft":
        for i, cx in enumerate((0.4, 0.5, 0.6)):
            d.polygon([(W * (cx - 0.06), top + H * 0.05), (W * (cx + 0.02 * (i - 1)), top - H * 0.1),
                       (W * (cx + 0.06), top + H * 0.05)], fill=sec + (255,))

    # body, clipped pattern
    body_mask = Image.new("L", (W, H), 0)
    _body_shapes(ImageDraw.Draw(body_mask), ident.shape, W, H, top, 255)
    layer.paste(body + (255,), (0, 0), body_mask)
    if ident.pattern == "spots":
        _clip_paste(layer, body_mask, lambda pd: [
            pd.ellipse([W * x - W * r, H * y - W * r, W * x + W * r, H * y + W * r], fill=sec + (255,))
            for x, y, r in ((0.2, 0.55, 0.07), (0.82, 0.48, 0.06), (0.32, 0.78, 0.06), (0.74, 0.74, 0.08),
                            (0.52, 0.9, 0.05))])
    elif ident.pattern == "stripes":
        _clip_paste(layer, body_mask, lambda pd: [
            pd.rectangle([0, H * y, W, H * (y + 0.055)], fill=sec + (255,)) for y in (0.6, 0.71, 0.82)])
    elif ident.pattern == "belly":
        _clip_paste(layer, body_mask, lambda pd: pd.ellipse([W * 0.3, H * 0.55, W * 0.72, H * 0.97], fill=sec + (255,)))
    # arms
    d.ellipse([int(W * 0.04), int(H * 0.5), int(W * 0.2), int(H * 0.64)], fill=dark + (255,))
    d.ellipse([int(W * 0.82), int(H * 0.5), int(W * 0.98), int(H * 0.64)], fill=dark + (255,))

    # face (pupils look right, the facing direction)
    body_h = bottom - top
    ey = top + body_h * (0.3 if ident.shape != "pear" else 0.22)
    cx = W * 0.54
    e = min(W * 0.12, body_h * 0.13)
    white = (250, 250, 250, 255)
    pupil = (20, 20, 24, 255)

    def eye(x: float, y: float, r: float, sleepy: bool = False) -> None:
        d.ellipse([x - r, y - r, x + r, y + r], fill=white, outline=outline, width=lw)
        pr = r * 0.5
        px, py = x + r * 0.35, y + (r * 0.3 if sleepy else 0)
        d.ellipse([px - pr, py - pr, px + pr, py + pr], fill=pupil)
        if sleepy:
            d.chord([x - r - 1, y - r - 1, x + r + 1, y + r + 1], 180, 360, fill=dark + (255,))
            d.line([(x - r, y), (x + r, y)], fill=outline, width=lw)

    if ident.eyes == "two":
        eye(cx - e * 1.25, ey, e)
        eye(cx + e * 1.25, ey, e)
    elif ident.eyes == "one":
        eye(cx, ey, e * 1.6)
    elif ident.eyes == "three":
        for dx, dy in ((-1.6, 0.25), (0, -0.35), (1.6, 0.25)):
            eye(cx + e * dx, ey + e * dy, e * 0.75)
    elif ident.eyes == "sleepy":
        eye(cx - e * 1.25, ey, e, sleepy=True)
        eye(cx + e * 1.25, ey, e, sleepy=True)

    my = ey + e * 2.3
    mw = W * 0.16
    if ident.mouth == "smile":
        d.arc([cx - mw, my - mw * 0.6, cx + mw, my + mw * 0.6], 20, 160, fill=outline, width=max(1, lw * 2))
    elif ident.mouth == "open":
        d.ellipse([cx - mw * 0.7, my - mw * 0.2, cx + mw * 0.7, my + mw * 0.8], fill=(90, 20, 30, 255))
        d.ellipse([cx - mw * 0.4, my + mw * 0.3, cx + mw * 0.4, my + mw * 0.8], fill=(240, 110, 130, 255))
    elif ident.mouth == "teeth":
        d.rectangle([cx - mw, my, cx + mw, my + mw * 0.5], fill=white, outline=outline, width=lw)
        for t in (-0.33, 0.33):
            d.line([(cx + mw * t, my), (cx + mw * t, my + mw * 0.5)], fill=outline, width=lw)
    elif ident.mouth == "flat":
        d.line([(cx - mw * 0.8, my + mw * 0.2), (cx + mw * 0.8, my + mw * 0.2)], fill=outline, width=max(1, lw * 2))

    if accessory:
        _draw_accessory(d, layer, accessory, PALETTE[acc_color or "red"], W, H, top, ey, e, cx, my, mw, outline, lw)
    return layer


def _draw_accessory(d, layer, accessory, col, W, H, top, ey, e, cx, my, mw, outline, lw) -> None:
    c = col + (255,)
    if accessory == "hat":
        d.rectangle([W * 0.18, top + H * 0.015, W * 0.84, top + H * 0.055], fill=c, outline=outline, width=lw)
        d.rectangle([W * 0.3, 0, W * 0.72, top + H * 0.03], fill=c, outline=outline, width=lw)
        d.rectangle([W * 0.3, top - H * 0.05, W * 0.72, top - H * 0.015], fill=shade(col, 0.6) + (255,))
    elif accessory == "crown":
        pts = [(W * 0.26, top + H * 0.06), (W * 0.26, H * 0.03), (W * 0.38, top - H * 0.04), (W * 0.5, 0),
               (W * 0.62, top - H * 0.04), (W * 0.74, H * 0.03), (W * 0.74, top + H * 0.06)]
        d.polygon(pts, fill=c, outline=outline, width=lw)
    elif accessory == "bow":
        bx, by = W * 0.7, top + H * 0.02
        s = W * 0.13
        d.polygon([(bx, by), (bx - s, by - s * 0.7), (bx - s, by + s * 0.7)], fill=c, outline=outline, width=lw)
        d.polygon([(bx, by), (bx + s, by - s * 0.7), (bx + s, by + s * 0.7)], fill=c, outline=outline, width=lw)
        d.ellipse([bx - s * 0.3, by - s * 0.3, bx + s * 0.3, by + s * 0.3], fill=shade(col, 0.7) + (255,))
    elif accessory == "glasses":
        r = e * 1.15
        for x in (cx - e * 1.3, cx + e * 1.3):
            d.ellipse([x - r, ey - r, x + r, ey + r], outline=c, width=max(2, lw * 3))
        d.line([(cx - e * 0.2, ey), (cx + e * 0.2, ey)], fill=c, width=max(2, lw * 3))
    elif accessory == "scarf":
        y = my + mw * 0.75
        d.rounded_rectangle([W * 0.14, y, W * 0.88, y + H * 0.08], radius=int(H * 0.03), fill=c, outline=outline,
                            width=lw)
        d.rectangle([W * 0.24, y + H * 0.05, W * 0.36, y + H * 0.2], fill=c, outline=outline, width=lw)
    elif accessory == "bowtie":
        y = my + mw * 0.95
        s = W * 0.11
        d.polygon([(cx, y), (cx - s, y - s * 0.6), (cx - s, y + s * 0.6)], fill=c, outline=outline, width=lw)
        d.polygon([(cx, y), (cx + s, y - s * 0.6), (cx + s, y + s * 0.6)], fill=c, outline=outline, width=lw)
    else:
        raise ValueError(accessory)
