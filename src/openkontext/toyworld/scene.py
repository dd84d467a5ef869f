"""The scene graph (a background and a list of items) and its renderer.

Coordinates are resolution-free, so one scene renders at any size or aspect ratio: ``x`` is the item's centre as
a fraction of the width, ``y`` its bottom (where it stands) as a fraction of the height, and sizes are fractions of
``u = min(width, height)``. Rendering is vector drawing at twice the final size, then a 2x2 box reduction
(antialiasing).
"""

from __future__ import annotations

import dataclasses
from typing import Union

import numpy as np
from PIL import Image, ImageDraw

from . import text as textmod
from .backdrops import Backdrop, render_backdrop
from .backgrounds import render_background
from .characters import Identity, char_width, render_character
from .colors import PALETTE, shade
from .objects import ASPECT, OUTLINE, draw_object

SUPERSAMPLE = 2
Box = tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class Obj:
    kind: str
    color: str
    x: float
    y: float
    size: float

    def bbox(self, w: int, h: int) -> Box:
        u = min(w, h)
        hh = self.size * u
        ww = hh * ASPECT[self.kind]
        cx, by = self.x * w, self.y * h
        return (cx - ww / 2, by - hh, cx + ww / 2, by)

    def draw(self, canvas: Image.Image, d: ImageDraw.ImageDraw, w: int, h: int) -> None:
        draw_object(d, self.kind, self.color, self.bbox(w, h))

    def describe(self) -> str:
        return f"{self.color} {self.kind}"

    def to_meta(self) -> dict:
        return {"type": "object", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class Character:
    ident: Identity
    x: float
    y: float
    size: float
    facing: str = "right"
    accessory: str | None = None
    acc_color: str | None = None

    def bbox(self, w: int, h: int) -> Box:
        u = min(w, h)
        hh = self.size * u
        ww = char_width(hh, self.ident)
        cx, by = self.x * w, self.y * h
        return (cx - ww / 2, by - hh, cx + ww / 2, by)

    def draw(self, canvas: Image.Image, d: ImageDraw.ImageDraw, w: int, h: int) -> None:
        x0, y0, x1, y1 = (int(round(v)) for v in self.bbox(w, h))
        layer = render_character(self.ident, self.accessory, self.acc_color, x1 - x0, y1 - y0)
        if self.facing == "left":
            layer = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        canvas.paste(layer, (x0, y0), layer)

    def describe(self) -> str:
        return f"{self.ident.body} creature"

    def to_meta(self) -> dict:
        return {"type": "character", "identity": self.ident.id, "x": self.x, "y": self.y, "size": self.size,
                "facing": self.facing, "accessory": self.accessory, "acc_color": self.acc_color}


CARRIERS = ("sign", "banner", "label", "shirt")
# carriers of studio pictures (see ``studio``): a badge, or none at all (a bare word, like a logo). Kept out of
# CARRIERS, which the scene generators draw from, so that adding them changes no existing sample.
BADGES = ("rounded_badge", "square_badge")
STUDIO_CARRIERS = BADGES + ("logo",)


@dataclasses.dataclass(frozen=True)
class Sign:
    """A word written on a carrier (a sign on a post, a banner, a label on a crate, a T-shirt on a stand, a badge)
    or standing alone (carrier ``logo``: ``board_color`` None and nothing drawn but the letters, which the
    invisible board box still bounds).

    ``board_w`` is fixed when the scene is made (wide enough for every word it will carry), so that replacing or
    removing the word changes the letters only.
    """

    carrier: str
    word: str | None
    font: str
    text_color: str
    board_color: str | None
    x: float
    y: float
    text_size: float  # font size, fraction of u
    board_w: float  # fraction of u

    def board_box(self, w: int, h: int) -> Box:
        u = min(w, h)
        bw, bh = self.board_w * u, self.text_size * u * 1.55
        cx, by = self.x * w, self.y * h
        if self.carrier == "sign":
            top = by - bh * 1.9
        elif self.carrier == "banner":
            top = by - bh * 2.3
        elif self.carrier == "label":
            top = by - bh * 1.45
        elif self.carrier == "shirt":  # the text sits on the chest
            s = bw * 1.15
            top = by - bh * 0.5 - s * 0.95 + s * 0.3
        else:  # a badge or a bare word: the item is the board box
            top = by - bh
        return (cx - bw / 2, top, cx + bw / 2, top + bh)

    def _shirt_geometry(self, w: int, h: int) -> tuple[float, float, float, float]:
        """(body left, body top, body right, body bottom) of the T-shirt."""
        x0, y0, x1, y1 = self.board_box(w, h)
        bw, bh = x1 - x0, y1 - y0
        s = bw * 1.15
        bottom = self.y * h - bh * 0.5
        cx = (x0 + x1) / 2
        return (cx - s / 2, bottom - s * 0.95, cx + s / 2, bottom)

    def bbox(self, w: int, h: int) -> Box:
        x0, y0, x1, y1 = self.board_box(w, h)
        bw, bh = x1 - x0, y1 - y0
        by = self.y * h
        if self.carrier == "banner":
            return (x0 - bw * 0.06, y0 - bh * 0.3, x1 + bw * 0.06, by)
        if self.carrier == "label":
            return (x0 - bw * 0.12, y0 - bh * 0.5, x1 + bw * 0.12, by)
        if self.carrier == "shirt":
            sx0, st, sx1, sb = self._shirt_geometry(w, h)
            s = sx1 - sx0
            return (sx0 - s * 0.26, st - s * 0.12, sx1 + s * 0.26, by)
        return (x0, y0, x1, by)

    def text_box(self, w: int, h: int) -> Box:
        """Where the letters may be: the board's inside."""
        return self.board_box(w, h)

    def draw(self, canvas: Image.Image, d: ImageDraw.ImageDraw, w: int, h: int) -> None:
        x0, y0, x1, y1 = self.board_box(w, h)
        bw, bh = x1 - x0, y1 - y0
        by = self.y * h
        board = PALETTE[self.board_color] if self.board_color else None
        lw = max(1, int(bh / 14))
        post = (120, 84, 50)
        if self.carrier == "sign":
            d.rectangle([x0 + bw / 2 - bh * 0.12, y1, x0 + bw / 2 + bh * 0.12, by], fill=post, outline=OUTLINE)
            d.rectangle([x0, y0, x1, y1], fill=board, outline=OUTLINE, width=lw)
        elif self.carrier == "banner":
            for px in (x0 - bw * 0.04, x1 + bw * 0.04):
                d.rectangle([px - bh * 0.08, y0 - bh * 0.3, px + bh * 0.08, by], fill=(90, 90, 96), outline=OUTLINE)
            d.rectangle([x0 - bw * 0.04, y0 - bh * 0.04, x1 + bw * 0.04, y0], fill=(90, 90, 96))
            d.rectangle([x0, y0, x1, y1], fill=board, outline=shade(board, 0.6), width=lw)
        elif self.carrier == "label":
            crate = (176, 126, 70)
            d.rectangle([x0 - bw * 0.12, y0 - bh * 0.5, x1 + bw * 0.12, by], fill=crate, outline=OUTLINE, width=lw)
            for k in (0.25, 0.75):
                yy = y0 - bh * 0.5 + (by - y0 + bh * 0.5) * k
                d.line([(x0 - bw * 0.12, yy), (x1 + bw * 0.12, yy)], fill=shade(crate, 0.7), width=lw)
            d.rectangle([x0, y0, x1, y1], fill=board, outline=OUTLINE, width=lw)
        elif self.carrier == "shirt":  # a T-shirt hanging on a clothes stand
            sx0, st, sx1, sb = self._shirt_geometry(w, h)
            s = sx1 - sx0
            cx = (sx0 + sx1) / 2
            stand = (90, 90, 96)
            d.rectangle([cx - s * 0.025, st - s * 0.1, cx + s * 0.025, by], fill=stand)
            d.rectangle([cx - s * 0.3, by - s * 0.04, cx + s * 0.3, by], fill=stand)
            d.line([(sx0 + s * 0.05, st + s * 0.02), (cx, st - s * 0.08), (sx1 - s * 0.05, st + s * 0.02)], fill=stand,
                   width=max(1, int(s / 40)))
            for side in (-1, 1):
                edge = sx0 if side < 0 else sx1
                d.polygon([(edge - side * s * 0.02, st), (edge + side * s * 0.24, st + s * 0.22),
                           (edge + side * s * 0.12, st + s * 0.38), (edge - side * s * 0.02, st + s * 0.3)],
                          fill=board, outline=OUTLINE)
            d.rounded_rectangle([sx0, st, sx1, sb], radius=int(s * 0.04), fill=board, outline=OUTLINE, width=lw)
            d.chord([cx - s * 0.16, st - s * 0.1, cx + s * 0.16, st + s * 0.1], 0, 180, fill=shade(board, 0.75),
                    outline=OUTLINE)
        elif self.carrier == "rounded_badge":  # flat, like a button or a sticker
            d.rounded_rectangle([x0, y0, x1, y1], radius=int(bh * 0.3), fill=board)
        elif self.carrier == "square_badge":
            d.rectangle([x0, y0, x1, y1], fill=board, outline=shade(board, 0.6), width=lw)
        if self.word:
            u = min(w, h)
            px = int(round(self.text_size * u))
            f = textmod.font(self.font, px)
            cap = textmod.cap_height_em(self.font) * px
            d.text(((x0 + x1) / 2, (y0 + y1) / 2 + cap / 2), self.word, font=f, fill=PALETTE[self.text_color],
                   anchor="ms")

    def describe(self) -> str:
        return self.carrier

    def to_meta(self) -> dict:
        return {"type": "sign", **dataclasses.asdict(self)}


Item = Union[Obj, Character, Sign]


@dataclasses.dataclass(frozen=True)
class Scene:
    kind: str
    time: str
    weather: str
    horizon: float
    layout_seed: int
    items: tuple[Item, ...] = ()
    backdrop: Backdrop | None = None  # a studio picture: this plain or gradient backdrop instead of ``kind``

    def replace(self, **changes) -> "Scene":
        return dataclasses.replace(self, **changes)

    def with_item(self, index: int, item: Item | None) -> "Scene":
        items = list(self.items)
        if item is None:
            del items[index]
        else:
            items[index] = item
        return self.replace(items=tuple(items))

    def to_meta(self) -> dict:
        meta = {"kind": self.kind, "time": self.time, "weather": self.weather, "horizon": self.horizon,
                "layout_seed": self.layout_seed, "items": [it.to_meta() for it in self.items]}
        if self.backdrop is not None:  # only then, so that every other sample's metadata stays as it was
            meta["backdrop"] = self.backdrop.to_meta()
        return meta


def normalize_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` is an int (square) or ``(width, height)``."""
    if isinstance(size, int):
        return size, size
    w, h = size
    return int(w), int(h)


def _draw_items(canvas: Image.Image, items, w: int, h: int) -> None:
    d = ImageDraw.Draw(canvas)
    for item in sorted(items, key=lambda it: it.y):  # nearer (lower) items are drawn over farther ones
        item.draw(canvas, d, w, h)


def render(scene: Scene, size: int | tuple[int, int]) -> Image.Image:
    w, h = normalize_size(size)
    W, H = w * SUPERSAMPLE, h * SUPERSAMPLE
    if scene.backdrop is not None:
        canvas = render_backdrop(scene.backdrop, W, H).copy()
    else:
        canvas = render_background(scene.kind, scene.time, scene.weather, scene.horizon, scene.layout_seed, W, H).copy()
    _draw_items(canvas, scene.items, W, H)
    return canvas.reduce(SUPERSAMPLE)


def item_masks(scene: Scene, size: int | tuple[int, int], items=None) -> np.ndarray:
    """Bool HxW: pixels fully covered by the scene's items (or the given subset), antialiased edges excluded.

    The items are drawn on a transparent canvas; after the 2x2 reduction a pixel is covered where alpha is 255.
    """
    w, h = normalize_size(size)
    W, H = w * SUPERSAMPLE, h * SUPERSAMPLE
    items = scene.items if items is None else items
    canvas = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    _draw_items(canvas, items, W, H)
    return np.asarray(canvas.getchannel("A").reduce(SUPERSAMPLE)) == 255


def pixel_bbox(item: Item, size: int | tuple[int, int]) -> list[int]:
    """The item's bounding box in output pixels, clipped to the image: [x0, y0, x1, y1]."""
    w, h = normalize_size(size)
    x0, y0, x1, y1 = item.bbox(w, h)
    return [max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))]
