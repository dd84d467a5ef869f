"""Simple objects drawn with vector primitives inside a box whose bottom centre stands on the ground."""

from __future__ import annotations

import math

from PIL import ImageDraw

from .colors import PALETTE, RGB, shade

# width / height of each object kind
OBJECT_ASPECT: dict[str, float] = {
    "ball": 1.0, "box": 1.0, "cone": 0.8, "star": 1.0, "heart": 1.05, "flower": 0.6,
    "tree": 0.72, "house": 1.0, "car": 1.7, "balloon": 0.55, "mushroom": 0.95, "cup": 0.95,
}
OBJECT_KINDS: tuple[str, ...] = tuple(OBJECT_ASPECT)
# Flat shapes (one colour, no outline or shading) for studio pictures. They are kept out of OBJECT_KINDS, which the
# scene generators draw from, so that adding them changes no existing sample; a star is the "star" object above.
SHAPE_ASPECT: dict[str, float] = {"circle": 1.0, "square": 1.0, "triangle": 1.1, "ring": 1.0}
SHAPE_KINDS: tuple[str, ...] = tuple(SHAPE_ASPECT)
ASPECT: dict[str, float] = {**OBJECT_ASPECT, **SHAPE_ASPECT}
OUTLINE = (30, 30, 34)


def draw_object(d: ImageDraw.ImageDraw, kind: str, color: str, box: tuple[float, float, float, float]) -> None:
    if kind in SHAPE_ASPECT:
        draw_shape(d, kind, PALETTE[color], box)
        return
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    c: RGB = PALETTE[color]
    lw = max(1, int(h / 45))
    light, dark = shade(c, 1.35), shade(c, 0.7)
    if kind == "ball":
        d.ellipse(box, fill=c, outline=OUTLINE, width=lw)
        d.ellipse([x0 + w * 0.22, y0 + h * 0.16, x0 + w * 0.42, y0 + h * 0.34], fill=light)
    elif kind == "box":
        depth = w * 0.22
        d.polygon([(x0, y0 + depth), (x0 + depth, y0), (x1, y0), (x1 - depth, y0 + depth)], fill=light, outline=OUTLINE)
        d.polygon([(x1 - depth, y0 + depth), (x1, y0), (x1, y1 - depth), (x1 - depth, y1)], fill=dark, outline=OUTLINE)
        d.rectangle([x0, y0 + depth, x1 - depth, y1], fill=c, outline=OUTLINE, width=lw)
    elif kind == "cone":
        d.polygon([(x0 + w / 2, y0), (x1, y1 - h * 0.08), (x0, y1 - h * 0.08)], fill=c, outline=OUTLINE)
        d.rectangle([x0 - w * 0.05, y1 - h * 0.1, x1 + w * 0.05, y1], fill=dark, outline=OUTLINE)
        d.polygon([(x0 + w * 0.32, y0 + h * 0.42), (x1 - w * 0.32, y0 + h * 0.42), (x1 - w * 0.24, y0 + h * 0.6),
                   (x0 + w * 0.24, y0 + h * 0.6)], fill=(245, 245, 245))
    elif kind == "star":
        cx, cy, r = x0 + w / 2, y0 + h * 0.52, min(w, h) / 2
        pts = []
        for i in range(10):
            a = -math.pi / 2 + i * math.pi / 5
            rr = r if i % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        d.polygon(pts, fill=c, outline=OUTLINE, width=lw)
    elif kind == "heart":
        r = w / 4
        d.ellipse([x0, y0, x0 + 2 * r, y0 + 2 * r], fill=c)
        d.ellipse([x1 - 2 * r, y0, x1, y0 + 2 * r], fill=c)
        d.polygon([(x0 + w * 0.02, y0 + r * 1.25), (x1 - w * 0.02, y0 + r * 1.25), (x0 + w / 2, y1)], fill=c)
        d.ellipse([x0 + w * 0.12, y0 + h * 0.12, x0 + w * 0.26, y0 + h * 0.26], fill=light)
    elif kind == "flower":
        cx, cy = x0 + w / 2, y0 + h * 0.3
        d.line([(cx, cy), (cx, y1)], fill=(40, 130, 50), width=max(2, lw * 2))
        d.ellipse([cx, y0 + h * 0.6, cx + w * 0.4, y0 + h * 0.75], fill=(40, 150, 60))
        pr = w * 0.22
        for i in range(6):
            a = i * math.pi / 3
            px, py = cx + math.cos(a) * w * 0.25, cy + math.sin(a) * w * 0.25
            d.ellipse([px - pr, py - pr, px + pr, py + pr], fill=c, outline=OUTLINE)
        d.ellipse([cx - w * 0.15, cy - w * 0.15, cx + w * 0.15, cy + w * 0.15], fill=(250, 210, 40), outline=OUTLINE)
    elif kind == "tree":
        d.rectangle([x0 + w * 0.4, y0 + h * 0.6, x1 - w * 0.4, y1], fill=(110, 70, 35), outline=OUTLINE)
        d.ellipse([x0, y0, x1, y0 + h * 0.7], fill=c, outline=OUTLINE, width=lw)
        d.ellipse([x0 + w * 0.2, y0 + h * 0.1, x0 + w * 0.45, y0 + h * 0.3], fill=light)
    elif kind == "house":
        roof_h = h * 0.42
        d.rectangle([x0 + w * 0.08, y0 + roof_h, x1 - w * 0.08, y1], fill=c, outline=OUTLINE, width=lw)
        d.polygon([(x0, y0 + roof_h), (x0 + w / 2, y0), (x1, y0 + roof_h)], fill=shade(c, 0.55), outline=OUTLINE)
        d.rectangle([x0 + w * 0.42, y1 - h * 0.3, x0 + w * 0.6, y1], fill=(90, 55, 30), outline=OUTLINE)
        d.rectangle([x0 + w * 0.17, y0 + roof_h + h * 0.1, x0 + w * 0.35, y0 + roof_h + h * 0.24], fill=(200, 230, 250),
                    outline=OUTLINE)
        d.rectangle([x1 - w * 0.32, y0 + roof_h + h * 0.1, x1 - w * 0.16, y0 + roof_h + h * 0.24], fill=(200, 230, 250),
                    outline=OUTLINE)
    elif kind == "car":
        d.rounded_rectangle([x0 + w * 0.2, y0, x1 - w * 0.25, y0 + h * 0.5], radius=int(h * 0.15), fill=dark,
                            outline=OUTLINE)
        d.rectangle([x0 + w * 0.28, y0 + h * 0.1, x1 - w * 0.33, y0 + h * 0.42], fill=(200, 230, 250))
        d.rounded_rectangle([x0, y0 + h * 0.35, x1, y1 - h * 0.15], radius=int(h * 0.12), fill=c, outline=OUTLINE,
                            width=lw)
        for wx in (0.22, 0.75):
            r = h * 0.2
            cx = x0 + w * wx
            d.ellipse([cx - r, y1 - 2 * r, cx + r, y1], fill=(35, 35, 38))
            d.ellipse([cx - r * 0.45, y1 - r * 1.45, cx + r * 0.45, y1 - r * 0.55], fill=(190, 190, 195))
    elif kind == "balloon":
        d.line([(x0 + w / 2, y0 + h * 0.6), (x0 + w * 0.45, y1)], fill=(60, 60, 60), width=max(1, lw))
        d.ellipse([x0, y0, x1, y0 + h * 0.62], fill=c, outline=OUTLINE, width=lw)
        d.polygon([(x0 + w * 0.44, y0 + h * 0.66), (x0 + w * 0.56, y0 + h * 0.66), (x0 + w / 2, y0 + h * 0.6)], fill=dark)
        d.ellipse([x0 + w * 0.2, y0 + h * 0.1, x0 + w * 0.38, y0 + h * 0.22], fill=light)
    elif kind == "mushroom":
        d.rounded_rectangle([x0 + w * 0.35, y0 + h * 0.4, x1 - w * 0.35, y1], radius=int(w * 0.08),
                            fill=(240, 232, 210), outline=OUTLINE)
        d.chord([x0, y0, x1, y0 + h * 1.0], 180, 360, fill=c, outline=OUTLINE, width=lw)
        for sx, sy, r in ((0.3, 0.22, 0.07), (0.55, 0.12, 0.06), (0.72, 0.3, 0.06)):
            d.ellipse([x0 + w * (sx - r), y0 + h * sy - w * r, x0 + w * (sx + r), y0 + h * sy + w * r], fill=(250, 250, 250))
    elif kind == "cup":
        d.ellipse([x1 - w * 0.35, y0 + h * 0.25, x1, y0 + h * 0.7], outline=c, width=max(2, int(w * 0.08)))
        d.rounded_rectangle([x0, y0, x1 - w * 0.22, y1], radius=int(w * 0.1), fill=c, outline=OUTLINE, width=lw)
        d.ellipse([x0 + w * 0.04, y0 - h * 0.04, x1 - w * 0.26, y0 + h * 0.1], fill=dark, outline=OUTLINE)
    else:
        raise ValueError(f"unknown object kind {kind!r}")


def draw_shape(d: ImageDraw.ImageDraw, kind: str, c: RGB, box: tuple[float, float, float, float]) -> None:
    """A flat shape filling ``box``, like a shape tool in a drawing program would make it."""
    x0, y0, x1, y1 = box
    if kind == "circle":
        d.ellipse(box, fill=c)
    elif kind == "square":
        d.rectangle(box, fill=c)
    elif kind == "triangle":
        d.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=c)
    elif kind == "ring":
        d.ellipse(box, outline=c, width=max(2, int((x1 - x0) * 0.2)))
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
