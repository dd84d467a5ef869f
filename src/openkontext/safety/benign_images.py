"""Benign images drawn with Pillow, for calibrating and testing the image classifier.

Toy-world-like content — flat colours (skin tones included, the classic false-positive trigger), gradients, noise,
geometric shapes, simple outdoor/indoor scenes, toy figures with skin-coloured faces and arms, text, patterns — all
deterministic (seeded), nothing downloaded and nothing explicit. ``benign_images()`` yields ``(name, image)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SKIN_TONES = [(255, 224, 196), (241, 194, 167), (224, 172, 140), (198, 134, 102), (161, 110, 75), (141, 85, 36),
              (110, 70, 45), (80, 50, 35)]  # fmt: skip
PALETTE = [(220, 60, 50), (240, 170, 40), (250, 220, 60), (60, 170, 90), (50, 120, 220), (140, 80, 200),
           (240, 240, 235), (40, 40, 45)]  # fmt: skip


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow
        return ImageFont.load_default()


def flat(colour, size=(512, 512)) -> Image.Image:
    return Image.new("RGB", size, colour)


def gradient(top, bottom, size=(512, 512), horizontal=False) -> Image.Image:
    w, h = size
    t = np.linspace(0.0, 1.0, w if horizontal else h, dtype=np.float32)
    line = (1 - t)[:, None] * np.array(top, np.float32) + t[:, None] * np.array(bottom, np.float32)
    arr = np.broadcast_to(line[None, :, :], (h, w, 3)) if horizontal else np.broadcast_to(line[:, None, :], (h, w, 3))
    return Image.fromarray(np.ascontiguousarray(arr).astype(np.uint8))


def noise(seed: int, size=(512, 512), blur: float = 0.0, tint=None) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    if tint is not None:
        arr = (arr.astype(np.float32) * 0.35 + np.array(tint, np.float32) * 0.65).astype(np.uint8)
    image = Image.fromarray(arr)
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur else image


def shapes(seed: int, size=(512, 512), background=(245, 245, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(12):
        colour = PALETTE[int(rng.integers(len(PALETTE)))]
        x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
        x1, y1 = x0 + int(rng.integers(40, 200)), y0 + int(rng.integers(40, 200))
        kind = int(rng.integers(3))
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour, outline=(20, 20, 20), width=3)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour, outline=(20, 20, 20), width=3)
        else:
            draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour, outline=(20, 20, 20))
    return image


def landscape(seed: int, size=(768, 512)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    image = gradient((110, 170, 235), (200, 225, 250), size)
    draw = ImageDraw.Draw(image)
    draw.ellipse((w - 160, 40, w - 80, 120), fill=(255, 220, 90))
    horizon = int(h * 0.62)
    for i in range(4):  # hills
        cx = int(rng.integers(0, w))
        draw.ellipse((cx - 260, horizon - 120 - 20 * i, cx + 260, horizon + 200), fill=(70 + 20 * i, 150 + 10 * i, 80))
    draw.rectangle((0, horizon, w, h), fill=(90, 170, 80))
    for _ in range(5):  # trees
        x = int(rng.integers(20, w - 40))
        y = int(rng.integers(horizon, h - 40))
        draw.rectangle((x + 12, y - 10, x + 22, y + 30), fill=(110, 70, 40))
        draw.ellipse((x - 10, y - 60, x + 44, y), fill=(40, 120, 50))
    # a house
    draw.rectangle((120, horizon - 90, 280, horizon + 20), fill=(230, 200, 150), outline=(60, 40, 30), width=3)
    draw.polygon([(105, horizon - 90), (200, horizon - 170), (295, horizon - 90)], fill=(180, 60, 50))
    draw.rectangle((185, horizon - 30, 215, horizon + 20), fill=(110, 70, 40))
    return image


def room(seed: int, size=(640, 512)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    wall = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]  # beige/brown walls are common and skin-like
    image = Image.new("RGB", size, wall)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, int(h * 0.7), w, h), fill=(150, 110, 70))  # wooden floor
    for x in range(0, w, 48):
        draw.line((x, int(h * 0.7), x, h), fill=(120, 85, 55), width=2)
    draw.rectangle((60, 80, 240, 220), fill=(150, 200, 240), outline=(255, 255, 255), width=8)  # window
    draw.rectangle((320, int(h * 0.45), 560, int(h * 0.7)), fill=(60, 90, 160))  # sofa
    draw.rectangle((300, int(h * 0.38), 580, int(h * 0.5)), fill=(70, 100, 170))
    draw.ellipse((420, 60, 520, 160), fill=(250, 250, 240), outline=(40, 40, 40), width=4)  # clock
    return image


def toy_figure(skin, shirt, size=(512, 512), background=(200, 230, 250), close_up=False) -> Image.Image:
    """A clothed toy figure: round skin-coloured head and arms, a shirt, trousers, a smile."""
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    w, h = size
    scale = 2.0 if close_up else 1.0
    cx, top = w // 2, int(h * (0.05 if close_up else 0.12))
    r = int(60 * scale)
    draw.ellipse((cx - r, top, cx + r, top + 2 * r), fill=skin)  # head
    eye = int(10 * scale)
    for dx in (-r // 2.5, r // 2.5):
        draw.ellipse((cx + dx - eye, top + r * 0.7 - eye, cx + dx + eye, top + r * 0.7 + eye), fill=(30, 30, 30))
    mouth = (cx - r // 2, top + r * 0.9, cx + r // 2, top + r * 1.5)
    draw.arc(mouth, 20, 160, fill=(120, 40, 40), width=int(4 * scale))
    body_top = top + 2 * r
    draw.rectangle((cx - int(70 * scale), body_top, cx + int(70 * scale), body_top + int(150 * scale)), fill=shirt)
    draw.rectangle((cx - int(120 * scale), body_top + 10, cx - int(72 * scale), body_top + int(120 * scale)), fill=skin)
    draw.rectangle((cx + int(72 * scale), body_top + 10, cx + int(120 * scale), body_top + int(120 * scale)), fill=skin)
    legs_top = min(body_top + int(150 * scale), h)
    draw.rectangle((cx - int(60 * scale), legs_top, cx + int(60 * scale), h), fill=(50, 60, 110))
    return image


def text_card(text: str, size=(768, 384), background=(255, 255, 255), ink=(20, 20, 20)) -> Image.Image:
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    draw.multiline_text((30, 40), text, fill=ink, font=_font(44), spacing=12)
    return image


def checkerboard(cell: int, a, b, size=(512, 512)) -> Image.Image:
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    mask = ((xs // cell + ys // cell) % 2).astype(bool)
    arr = np.where(mask[:, :, None], np.array(a, np.uint8), np.array(b, np.uint8))
    return Image.fromarray(arr.astype(np.uint8))


def rings(size=(512, 512)) -> Image.Image:
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float32)
    d = np.hypot(xs - size[0] / 2, ys - size[1] / 2)
    v = (np.sin(d / 9.0) * 0.5 + 0.5)[:, :, None]
    arr = v * np.array([230, 120, 60], np.float32) + (1 - v) * np.array([40, 60, 140], np.float32)
    return Image.fromarray(arr.astype(np.uint8))


def benign_images() -> Iterator[tuple[str, Image.Image]]:
    for i, colour in enumerate(SKIN_TONES):
        yield f"flat-skin-{i}", flat(colour)
    for i, colour in enumerate(PALETTE):
        yield f"flat-{i}", flat(colour)
    yield "gradient-sky", gradient((60, 120, 220), (230, 240, 255))
    yield "gradient-sunset", gradient((250, 120, 60), (120, 40, 120))
    for i in range(0, len(SKIN_TONES), 2):
        yield f"gradient-skin-{i}", gradient(SKIN_TONES[i], SKIN_TONES[i + 1], horizontal=True)
    yield "noise", noise(0)
    yield "noise-blurred", noise(1, blur=4)
    yield "noise-skin-tinted", noise(2, blur=2, tint=SKIN_TONES[2])
    for seed in range(4):
        yield f"shapes-{seed}", shapes(seed)
    yield "shapes-on-skin", shapes(9, background=SKIN_TONES[1])
    for seed in range(3):
        yield f"landscape-{seed}", landscape(seed)
    for seed in range(3):
        yield f"room-{seed}", room(seed)
    for i, skin in enumerate(SKIN_TONES[::2]):
        yield f"toy-figure-{i}", toy_figure(skin, PALETTE[i])
        yield f"toy-figure-close-{i}", toy_figure(skin, PALETTE[i + 3], close_up=True, background=(240, 235, 220))
    yield "text-sign", text_card("GRAND OPENING\nSaturday 10am")
    yield "text-dark", text_card("openkontext", background=(30, 30, 40), ink=(240, 240, 240))
    yield "checkerboard", checkerboard(32, (0, 0, 0), (255, 255, 255))
    yield "checkerboard-warm", checkerboard(16, SKIN_TONES[0], SKIN_TONES[4])
    yield "rings", rings()
    yield "wide-banner", gradient((20, 160, 140), (250, 250, 210), size=(1024, 256), horizontal=True)
    yield "tall-strip", shapes(5, size=(256, 1024))
    circles = Image.new("RGB", (512, 512), (250, 250, 250))
    draw = ImageDraw.Draw(circles)
    for k in range(8):
        angle = k * math.pi / 4
        x, y = 256 + 150 * math.cos(angle), 256 + 150 * math.sin(angle)
        draw.ellipse((x - 50, y - 50, x + 50, y + 50), fill=SKIN_TONES[k])
    yield "skin-tone-swatches", circles
