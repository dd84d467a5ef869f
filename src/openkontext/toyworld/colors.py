"""Named colours shared by objects, characters, text and prompts.

Object and character colours are far apart in RGB so that a colour word in an instruction names exactly one
colour and a metric can tell them apart.
"""

from __future__ import annotations

RGB = tuple[int, int, int]

PALETTE: dict[str, RGB] = {
    "red": (214, 40, 40),
    "orange": (245, 137, 28),
    "yellow": (247, 212, 35),
    "green": (46, 160, 67),
    "teal": (22, 160, 160),
    "blue": (38, 92, 220),
    "purple": (128, 60, 190),
    "pink": (240, 118, 178),
    "brown": (130, 80, 40),
    "black": (32, 32, 36),
    "white": (246, 246, 246),
    "grey": (136, 136, 140),
}

# Colours used for objects and character bodies (white/black/grey stay available for details and text).
OBJECT_COLORS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "brown", "white",
)

# (board colour, text colour) pairs with strong contrast, for signs and labels.
TEXT_STYLES: tuple[tuple[str, str], ...] = (
    ("white", "black"), ("white", "red"), ("white", "blue"), ("yellow", "black"), ("black", "white"),
    ("black", "yellow"), ("blue", "white"), ("red", "white"), ("green", "white"), ("brown", "white"),
    ("white", "green"), ("purple", "white"),
)


def shade(rgb: RGB, factor: float) -> RGB:
    """Darken (factor < 1) or lighten towards white (factor > 1)."""
    if factor <= 1:
        return tuple(int(c * factor) for c in rgb)  # type: ignore[return-value]
    t = factor - 1
    return tuple(int(c + (255 - c) * t) for c in rgb)  # type: ignore[return-value]


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]
