"""Random scenes with non-overlapping, unambiguously nameable items."""

from __future__ import annotations

import dataclasses
import random

from . import text as textmod
from .backgrounds import INDOOR_KINDS, SCENE_KINDS, TIMES, WEATHERS
from .characters import ACCESSORIES, random_identity
from .colors import OBJECT_COLORS, TEXT_STYLES
from .objects import OBJECT_KINDS
from .scene import CARRIERS, Box, Character, Item, Obj, Scene, Sign

# named horizontal slots used by instructions ("on the left") and their x position
SLOTS: dict[str, float] = {"left": 0.22, "middle": 0.5, "right": 0.78}
FRONT_Y = 0.92  # where added or re-placed things stand
CHAR_SIZES: dict[str, float] = {"small": 0.26, "medium": 0.36, "large": 0.48}
OBJECT_SIZE = (0.15, 0.24)
BIG_OBJECTS = {"house": 1.5, "tree": 1.4, "car": 0.8}
TEXT_SIZE = (0.08, 0.1)  # font size in u: >= 20 px at 256, cap height >= 14 px


def random_time_weather(rng: random.Random, kind: str) -> tuple[str, str]:
    time = rng.choices(TIMES, weights=(6, 2, 2))[0]
    weather = "clear" if kind in INDOOR_KINDS else rng.choices(WEATHERS, weights=(7, 1, 1, 1))[0]
    return time, weather


def empty_scene(rng: random.Random, kind: str | None = None) -> Scene:
    kind = kind or rng.choice(SCENE_KINDS)
    time, weather = random_time_weather(rng, kind)
    return Scene(kind, time, weather, rng.choice((0.5, 0.55, 0.6)), rng.randrange(2**31))


def object_size(rng: random.Random, kind: str) -> float:
    return rng.uniform(*OBJECT_SIZE) * BIG_OBJECTS.get(kind, 1.0)


MAX_OVERLAP = 0.12  # objects and characters may hide a little of each other; signs are never covered


def fits(item: Item, others, size: tuple[int, int], *, ignore: Item | None = None) -> bool:
    """Inside the image and overlapping other items at most a little (a sign not at all)."""
    w, h = size
    box = item.bbox(w, h)
    if box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
        return False
    for other in others:
        if other is ignore or other is item:
            continue
        limit = 0.0 if isinstance(item, Sign) or isinstance(other, Sign) else MAX_OVERLAP
        if overlap(box, other.bbox(w, h)) > limit:
            return False
    return True


def overlap(a: Box, b: Box) -> float:
    """Intersection area over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(smaller, 1e-9)


def ground_y(rng: random.Random, scene: Scene) -> float:
    return rng.uniform(scene.horizon + 0.2, 0.97)


def make_sign(rng: random.Random, split: str, words: list[str | None], *, carrier: str | None = None,
              x: float = 0.5, y: float = 0.9) -> Sign:
    """A text carrier wide enough for every word in ``words`` (the first one is shown)."""
    carrier = carrier or rng.choice(CARRIERS)
    font = rng.choice(textmod.FONT_NAMES)
    board_color, text_color = rng.choice(TEXT_STYLES)
    text_size = rng.uniform(*TEXT_SIZE)
    widest = max((textmod.text_width_em(font, w) for w in words if w), default=3.0)
    board_w = widest * text_size + 0.07
    return Sign(carrier, words[0], font, text_color, board_color, x, y, text_size, board_w)


def add_random_items(rng: random.Random, scene: Scene, split: str, size: tuple[int, int], *, n_objects: int,
                     n_characters: int, sign_words: list[str | None] | None = None, min_objects: int = 0,
                     min_characters: int = 0) -> Scene | None:
    """Place items at random free places; items beyond the minimum counts are dropped when they do not fit,
    and ``None`` is returned when a required one does not (the caller draws again)."""
    items: list[Item] = list(scene.items)
    used_kinds = {it.kind for it in items if isinstance(it, Obj)}
    used_bodies = {it.ident.body for it in items if isinstance(it, Character)}
    wanted: list[str] = ["sign"] * (sign_words is not None) + ["character"] * n_characters + ["object"] * n_objects
    required = ["sign"] * (sign_words is not None) + ["character"] * min_characters + ["object"] * min_objects
    for what in wanted:
        # attributes first, then up to 30 random places
        if what == "object":
            kind = rng.choice([k for k in OBJECT_KINDS if k not in used_kinds])
            proto: Item = Obj(kind, rng.choice(OBJECT_COLORS), 0.5, 0.9, object_size(rng, kind))
        elif what == "character":
            ident = random_identity(rng, split, exclude_bodies=tuple(used_bodies))
            acc = rng.choice(ACCESSORIES) if rng.random() < 0.25 else None
            acc_color = rng.choice([c for c in OBJECT_COLORS if c not in (ident.body, "white")]) if acc else None
            proto = Character(ident, 0.5, 0.9, rng.uniform(0.24, 0.4), rng.choice(("left", "right")), acc, acc_color)
        else:
            proto = make_sign(rng, split, sign_words)
        for _ in range(30):
            item = dataclasses.replace(proto, x=rng.uniform(0.1, 0.9), y=ground_y(rng, scene))
            if fits(item, items, size):
                items.append(item)
                if isinstance(item, Obj):
                    used_kinds.add(item.kind)
                if isinstance(item, Character):
                    used_bodies.add(item.ident.body)
                break
        else:
            if what in required:
                return None
            continue
        if what in required:
            required.remove(what)
    return scene.replace(items=tuple(items))


def random_scene(rng: random.Random, split: str, size: tuple[int, int], *, objects: tuple[int, int] = (1, 3),
                 characters: tuple[int, int] = (0, 2), sign_words: list[str | None] | None = None,
                 kind: str | None = None) -> Scene:
    for _ in range(100):
        scene = add_random_items(rng, empty_scene(rng, kind), split, size, n_objects=rng.randint(*objects),
                                 n_characters=rng.randint(*characters), sign_words=sign_words,
                                 min_objects=objects[0], min_characters=characters[0])
        if scene is not None:
            return scene
    raise RuntimeError("could not lay out a scene")


def find(scene: Scene, cls) -> list[int]:
    return [i for i, it in enumerate(scene.items) if isinstance(it, cls)]
