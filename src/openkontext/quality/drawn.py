"""Images drawn outside the toy world — the simple kinds users try first (a flat graphic, a logo on white, a sign
drawn by hand, a smooth texture) — and edits to ask of them.

The toy-world benchmark measures the held-out split of the generator the model was trained on; these show what a
model does one step away from it. There is no ground truth, so they are looked at, not scored
(``scripts/drawn_examples.py`` writes the sheet), and the autoencoder benchmark uses them for reconstruction PSNR.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# (image name, prompt)
DRAWN_EDITS: list[tuple[str, str]] = [
    ("logo on white", "Change 'ACME' to 'ZORB'"),
    ("logo on white", "Make the red badge blue."),
    ("hand-drawn sign", "Change 'OPEN' to 'SHUT'"),
    ("gradient + shapes", "Turn the blue circle red."),
    ("gradient + shapes", "Remove the green triangle."),
    ("smooth texture", "Turn it into night."),
]


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's embedded font: no font files needed


def drawn_images(size: int = 256) -> dict[str, Image.Image]:
    """Four square images of side ``size``, drawn with Pillow (the same pixels every time)."""
    s = size / 256
    images = {}
    ramp = np.linspace(0, 1, size)
    pixels = ramp[None, :, None] * np.array([250, 120, 30]) + ramp[::-1][:, None, None] * 90
    shapes = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(shapes)
    draw.ellipse((40 * s, 60 * s, 140 * s, 160 * s), fill=(30, 60, 200), outline="white", width=round(4 * s))
    draw.polygon([(150 * s, 200 * s), (230 * s, 200 * s), (190 * s, 110 * s)], fill=(20, 160, 60))
    images["gradient + shapes"] = shapes
    logo = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(logo)
    draw.rounded_rectangle((30 * s, 80 * s, 226 * s, 176 * s), radius=24 * s, fill=(200, 20, 60))
    draw.text((128 * s, 128 * s), "ACME", fill="white", font=_font(round(54 * s)), anchor="mm")
    images["logo on white"] = logo
    sign = Image.new("RGB", (size, size), (120, 170, 220))
    draw = ImageDraw.Draw(sign)
    draw.rectangle((0, 190 * s, size, size), fill=(90, 140, 60))
    draw.rectangle((50 * s, 70 * s, 206 * s, 140 * s), fill=(250, 240, 200), outline=(60, 40, 20), width=round(5 * s))
    draw.line((128 * s, 140 * s, 128 * s, 210 * s), fill=(60, 40, 20), width=round(8 * s))
    draw.text((128 * s, 105 * s), "OPEN", fill=(20, 20, 20), font=_font(round(34 * s)), anchor="mm")
    images["hand-drawn sign"] = sign
    rng = np.random.default_rng(0)
    coarse = Image.fromarray((rng.random((max(1, size // 8), max(1, size // 8), 3)) * 255).astype(np.uint8))
    images["smooth texture"] = coarse.resize((size, size), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(3))
    return images
