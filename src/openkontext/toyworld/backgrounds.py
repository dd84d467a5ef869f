"""Scene backgrounds: a kind (beach, forest, ...), a time of day and a weather, drawn behind every subject."""

from __future__ import annotations

import functools
import random

import numpy as np
from PIL import Image, ImageDraw

from .colors import RGB, mix, shade

SCENE_KINDS: tuple[str, ...] = ("meadow", "beach", "forest", "city", "room", "desert", "snowfield", "mountains")
INDOOR_KINDS = frozenset({"room"})
TIMES: tuple[str, ...] = ("day", "sunset", "night")
WEATHERS: tuple[str, ...] = ("clear", "rain", "snow", "fog")

SKY: dict[str, tuple[RGB, RGB]] = {
    "day": ((84, 150, 226), (196, 226, 250)),
    "sunset": ((82, 62, 140), (250, 158, 86)),
    "night": ((8, 12, 38), (40, 52, 96)),
}
GROUND: dict[str, tuple[RGB, RGB]] = {  # (far, near)
    "meadow": ((120, 180, 80), (70, 150, 55)),
    "beach": ((236, 214, 160), (222, 196, 136)),
    "forest": ((70, 120, 60), (44, 96, 44)),
    "city": ((160, 160, 166), (120, 120, 128)),
    "room": ((178, 126, 82), (150, 100, 62)),
    "desert": ((236, 190, 120), (220, 164, 92)),
    "snowfield": ((236, 242, 250), (214, 226, 240)),
    "mountains": ((110, 160, 86), (84, 140, 66)),
}
TIME_LIGHT = {"day": 1.0, "sunset": 0.82, "night": 0.45}


def _gradient(w: int, h: int, top: RGB, bottom: RGB) -> Image.Image:
    """A vertical gradient, built as one column and stretched (much faster than a full-size array)."""
    t = np.linspace(0.0, 1.0, max(h, 1), dtype=np.float32)[:, None]
    col = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    column = Image.fromarray(col.astype(np.uint8)[:, None, :], "RGB")
    return column.resize((w, max(h, 1)), Image.Resampling.NEAREST)


def _two_gradients(w: int, h: int, hy: int, upper: tuple[RGB, RGB], lower: tuple[RGB, RGB]) -> Image.Image:
    img = Image.new("RGB", (w, h))
    if hy > 0:
        img.paste(_gradient(w, hy, *upper), (0, 0))
    if h - hy > 0:
        img.paste(_gradient(w, h - hy, *lower), (0, hy))
    return img


def _lit(rgb: RGB, time: str) -> RGB:
    f = TIME_LIGHT[time]
    out = shade(rgb, f)
    return mix(out, (255, 150, 90), 0.12) if time == "sunset" else out


def _sky(time: str, weather: str) -> tuple[RGB, RGB]:
    top, bottom = SKY[time]
    if weather in ("rain", "snow"):
        grey = (120, 124, 132) if time != "night" else (40, 42, 50)
        top, bottom = mix(top, grey, 0.65), mix(bottom, grey, 0.55)
    return top, bottom


def _ground(kind: str, time: str, weather: str) -> tuple[RGB, RGB]:
    far, near = GROUND[kind]
    if weather == "snow" and kind not in INDOOR_KINDS:
        far, near = mix(far, (240, 244, 250), 0.75), mix(near, (230, 236, 246), 0.75)
    return _lit(far, time), _lit(near, time)


@functools.lru_cache(maxsize=24)
def render_background(kind: str, time: str, weather: str, horizon: float, layout_seed: int, w: int, h: int) -> Image.Image:
    """The background at pixel size ``w`` x ``h``; cached because edits re-render the same background."""
    rng = random.Random(layout_seed)
    hy = int(h * horizon)
    if kind in INDOOR_KINDS:
        return _room(rng, time, weather, hy, w, h)
    sky_top, sky_bottom = _sky(time, weather)
    far, near = _ground(kind, time, weather)
    img = _two_gradients(w, h, hy, (sky_top, sky_bottom), (far, near))
    d = ImageDraw.Draw(img)
    u = min(w, h)
    _sky_details(d, rng, time, weather, hy, w, u)
    _DETAILS[kind](d, rng, time, weather, hy, w, h, u)
    _weather(img, d, rng, weather, time, w, h, u)
    return img


def _sky_details(d, rng, time, weather, hy, w, u) -> None:
    if time == "night" and weather == "clear":
        for _ in range(40):
            x, y = rng.uniform(0, w), rng.uniform(0, hy * 0.9)
            r = u * rng.uniform(0.002, 0.005)
            d.ellipse([x - r, y - r, x + r, y + r], fill=(250, 250, 220))
        mx, my, r = rng.uniform(0.1, 0.9) * w, hy * 0.25, u * 0.05
        d.ellipse([mx - r, my - r, mx + r, my + r], fill=(246, 242, 214))
    elif weather == "clear":
        sx = rng.choice((0.15, 0.85)) * w
        if time == "day":
            sy, r = hy * 0.22, u * 0.06
            d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 228, 90))
        else:  # a setting sun, cut by the horizon
            r = u * 0.09
            d.chord([sx - r, hy - r, sx + r, hy + r], 180, 360, fill=(255, 140, 60))
    cloud = {"clear": (250, 250, 252), "fog": (236, 236, 240)}.get(weather, (150, 152, 160))
    if time == "night":
        cloud = shade(cloud, 0.35)
    for _ in range(rng.randint(1, 3) if weather == "clear" else 5):
        cx, cy = rng.uniform(0, w), rng.uniform(0.08, 0.5) * hy
        s = u * rng.uniform(0.05, 0.09)
        for dx, dy, k in ((-1.1, 0.2, 0.8), (0, 0, 1.0), (1.1, 0.25, 0.75)):
            d.ellipse([cx + dx * s - s * k, cy + dy * s - s * k * 0.7, cx + dx * s + s * k, cy + dy * s + s * k * 0.7],
                      fill=cloud)


def _meadow(d, rng, time, weather, hy, w, h, u) -> None:
    far = _lit((96, 160, 76), time)
    for _ in range(3):
        cx, r = rng.uniform(0, w), u * rng.uniform(0.25, 0.45)
        d.ellipse([cx - r, hy - r * 0.35, cx + r, hy + r * 0.35], fill=far)
    d.rectangle([0, hy, w, hy + u * 0.02], fill=far)
    tuft = _lit((52, 122, 44), time)
    for _ in range(30):
        x, y = rng.uniform(0, w), rng.uniform(hy + u * 0.05, h)
        s = u * 0.012
        d.line([(x - s, y), (x - s * 1.5, y - s * 2)], fill=tuft, width=max(1, int(u / 200)))
        d.line([(x + s, y), (x + s * 1.5, y - s * 2)], fill=tuft, width=max(1, int(u / 200)))


def _beach(d, rng, time, weather, hy, w, h, u) -> None:
    sea = _lit((44, 120, 196), time)
    band = hy + (h - hy) * 0.3
    d.rectangle([0, hy, w, band], fill=sea)
    foam = _lit((230, 240, 250), time)
    for i in range(3):
        y = hy + (band - hy) * (0.3 + 0.25 * i)
        for x in range(int(rng.uniform(0, u * 0.1)), w, int(u * 0.16)):
            d.arc([x, y - u * 0.01, x + u * 0.08, y + u * 0.01], 180, 360, fill=foam, width=max(1, int(u / 150)))
    d.rectangle([0, band, w, band + u * 0.012], fill=foam)


def _forest(d, rng, time, weather, hy, w, h, u) -> None:
    for layer, tone in ((0, (40, 92, 50)), (1, (28, 74, 38))):
        col = _lit(tone, time)
        x = -rng.uniform(0, u * 0.05)
        while x < w:
            th = u * rng.uniform(0.18, 0.3) * (1 + 0.2 * layer)
            tw = th * 0.45
            base = hy + u * 0.01 * layer
            d.polygon([(x, base), (x + tw / 2, base - th), (x + tw, base)], fill=col)
            d.rectangle([x + tw * 0.44, base - 1, x + tw * 0.56, base + u * 0.015], fill=_lit((80, 52, 30), time))
            x += tw * rng.uniform(0.55, 0.9)


def _city(d, rng, time, weather, hy, w, h, u) -> None:
    x = -rng.uniform(0, u * 0.05)
    while x < w:
        bw, bh = u * rng.uniform(0.1, 0.2), u * rng.uniform(0.15, 0.42)
        base = rng.choice(((110, 118, 135), (140, 130, 125), (95, 100, 115), (160, 150, 140)))
        col = _lit(base, time)
        d.rectangle([x, hy - bh, x + bw, hy], fill=col)
        win = (250, 220, 120) if time == "night" else _lit((190, 214, 236), time)
        ws = u * 0.022
        wy = hy - bh + ws
        while wy < hy - ws * 2:
            wx = x + ws
            while wx < x + bw - ws * 1.5:
                if time != "night" or rng.random() < 0.6:
                    d.rectangle([wx, wy, wx + ws, wy + ws * 1.2], fill=win)
                wx += ws * 2
            wy += ws * 2.4
        x += bw + u * rng.uniform(0.0, 0.03)
    road = _lit((90, 90, 96), time)
    ry = hy + (h - hy) * 0.12
    d.rectangle([0, hy, w, ry], fill=road)
    for lx in range(0, w, int(u * 0.12)):
        d.rectangle([lx, (hy + ry) / 2 - u * 0.003, lx + u * 0.06, (hy + ry) / 2 + u * 0.003], fill=_lit((240, 230, 150), time))


def _desert(d, rng, time, weather, hy, w, h, u) -> None:
    dune = _lit((226, 176, 110), time)
    for _ in range(3):
        cx, r = rng.uniform(0, w), u * rng.uniform(0.3, 0.5)
        d.ellipse([cx - r, hy - r * 0.18, cx + r, hy + r * 0.18], fill=dune)
    cactus = _lit((60, 130, 70), time)
    for _ in range(rng.randint(1, 3)):
        x, s = rng.uniform(0.05, 0.95) * w, u * rng.uniform(0.05, 0.08)
        d.rounded_rectangle([x - s * 0.2, hy - s * 1.4, x + s * 0.2, hy + s * 0.1], radius=int(s * 0.2), fill=cactus)
        d.rounded_rectangle([x - s * 0.6, hy - s * 1.0, x - s * 0.35, hy - s * 0.5], radius=int(s * 0.12), fill=cactus)
        d.rectangle([x - s * 0.6, hy - s * 0.62, x, hy - s * 0.5], fill=cactus)


def _snowfield(d, rng, time, weather, hy, w, h, u) -> None:
    hill = _lit((222, 232, 244), time)
    for _ in range(3):
        cx, r = rng.uniform(0, w), u * rng.uniform(0.25, 0.4)
        d.ellipse([cx - r, hy - r * 0.3, cx + r, hy + r * 0.3], fill=hill)
    pine = _lit((40, 90, 70), time)
    for _ in range(rng.randint(3, 6)):
        x, s = rng.uniform(0, w), u * rng.uniform(0.05, 0.09)
        d.polygon([(x - s * 0.5, hy + s * 0.1), (x, hy - s * 1.6), (x + s * 0.5, hy + s * 0.1)], fill=pine)


def _mountains(d, rng, time, weather, hy, w, h, u) -> None:
    x = -rng.uniform(0, u * 0.2)
    while x < w:
        mw, mh = u * rng.uniform(0.35, 0.55), u * rng.uniform(0.2, 0.35)
        rock = _lit(rng.choice(((120, 120, 140), (100, 104, 124), (136, 130, 146))), time)
        d.polygon([(x, hy + 1), (x + mw / 2, hy - mh), (x + mw, hy + 1)], fill=rock)
        cap = _lit((246, 248, 252), time)
        d.polygon([(x + mw / 2 - mw * 0.12, hy - mh * 0.76), (x + mw / 2, hy - mh), (x + mw / 2 + mw * 0.12, hy - mh * 0.76)],
                  fill=cap)
        x += mw * rng.uniform(0.5, 0.8)


def _room(rng, time, weather, hy, w, h) -> Image.Image:
    u = min(w, h)
    wall = rng.choice(((232, 218, 188), (214, 228, 214), (226, 214, 230), (206, 222, 236)))
    img = _two_gradients(w, h, hy, (wall, shade(wall, 0.9)), GROUND["room"])
    d = ImageDraw.Draw(img)
    plank = shade(GROUND["room"][1], 0.85)
    for i in range(1, 6):
        y = hy + (h - hy) * (i / 6) ** 1.2
        d.line([(0, y), (w, y)], fill=plank, width=max(1, u // 200))
    d.rectangle([0, hy - u * 0.02, w, hy], fill=(245, 245, 240))
    # a window showing the time of day and the weather
    wx = rng.uniform(0.1, 0.6) * w
    ww, wh = u * 0.3, hy * 0.5
    top, bottom = _sky(time, weather)
    d.rectangle([wx, hy * 0.15, wx + ww, hy * 0.15 + wh], fill=mix(top, bottom, 0.5), outline=(250, 250, 250),
                width=max(2, u // 60))
    d.line([(wx + ww / 2, hy * 0.15), (wx + ww / 2, hy * 0.15 + wh)], fill=(250, 250, 250), width=max(2, u // 80))
    d.line([(wx, hy * 0.15 + wh / 2), (wx + ww, hy * 0.15 + wh / 2)], fill=(250, 250, 250), width=max(2, u // 80))
    # a framed picture
    px = wx + ww + u * 0.1 if wx + ww + u * 0.3 < w else wx - u * 0.25
    d.rectangle([px, hy * 0.25, px + u * 0.16, hy * 0.25 + u * 0.12], fill=(120, 170, 120), outline=(110, 70, 40),
                width=max(2, u // 60))
    return img


def _weather(img: Image.Image, d: ImageDraw.ImageDraw, rng, weather, time, w, h, u) -> None:
    if weather == "rain":
        col = (170, 184, 210) if time != "night" else (90, 100, 130)
        for _ in range(90):
            x, y = rng.uniform(-0.1, 1.0) * w, rng.uniform(0, h)
            d.line([(x, y), (x + u * 0.015, y + u * 0.05)], fill=col, width=max(1, u // 250))
    elif weather == "snow":
        for _ in range(110):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            r = u * rng.uniform(0.004, 0.008)
            d.ellipse([x - r, y - r, x + r, y + r], fill=(250, 250, 255))
    elif weather == "fog":
        fog = Image.new("RGB", img.size, (214, 218, 224) if time != "night" else (80, 84, 96))
        img.paste(Image.blend(img, fog, 0.5))


_DETAILS = {
    "meadow": _meadow, "beach": _beach, "forest": _forest, "city": _city, "desert": _desert,
    "snowfield": _snowfield, "mountains": _mountains,
}
