"""Studio samples: user-like flat pictures (toy objects, flat shapes and words on a plain or gradient backdrop).

Users edit their own simple images (a flat graphic, a sign they drew, a logo on a plain background), not only the
toy world's outdoor and room scenes, so ``STUDIO_SHARE`` of the *training* samples of the local, global, text and
text-to-image categories are studio pictures. They reuse those categories' edit families, scene editors,
phrasings, mask rules and metadata; only the scenes differ (a new backdrop is a ``change_scene`` edit: "Change the
background to a plain white background").

Whether a sample is a studio one is drawn from a random stream of its own, so every other sample stays exactly
what it was, and no held-out sample is one: the benchmark's cases do not move.
"""

from __future__ import annotations

import dataclasses
import functools
import random

from . import prompts as P
from . import text as textmod
from .backdrops import Backdrop, random_backdrop
from .colors import OBJECT_COLORS, PALETTE, RGB, TEXT_STYLES
from .edits import SCENE_EDITORS, Edit, add_object, item_meta, replace_object
from .layout import fits, object_size
from .objects import OBJECT_KINDS, SHAPE_KINDS
from .scene import BADGES, STUDIO_CARRIERS, Obj, Scene, Sign

Size = tuple[int, int]

STUDIO_SHARE = 0.2
# the families that apply to studio pictures (they have no characters, so no accessory edits)
STUDIO_FAMILIES: dict[str, tuple[str, ...]] = {
    "local": ("recolor_object", "add_object", "remove_object", "replace_object", "move_object", "resize_object"),
    "global": ("change_scene",),
    "text": ("replace_text", "add_text", "remove_text"),
    "text_to_image": ("text_to_image",),
}
STUDIO_KINDS = OBJECT_KINDS + SHAPE_KINDS
SHAPE_SHARE = 0.5  # of the things in a picture that are flat shapes rather than toy objects
WORD_SHARE = 0.3  # of local, global and text-to-image pictures with a word among the things (as on a poster)
# font sizes in units of the short side: at least the signs' 0.08 (legible), up to logo size
LOGO_TEXT_SIZES = (0.08, 0.1, 0.12, 0.15, 0.18, 0.22)
BADGE_TEXT_SIZES = (0.08, 0.09, 0.1, 0.12, 0.14)
BOARD_PAD = 0.07  # board width beyond the widest word, as ``layout.make_sign`` and the text editors have it
COLOR_CONTRAST = 100.0  # least RGB distance of a flat colour (a thing, a badge) from every backdrop shade
TEXT_CONTRAST = 80.0  # least luminance difference of a bare word's colour from every backdrop shade
MARGIN = 0.06  # between a placed thing and the image borders, in units of the short side
# The default model reads at most 160 byte tokens, the end token included (training config ``t5_max_length``), and
# the scene generators' prompts stay below that (156 at most); longer studio prompts (three things on a gradient)
# would lose their end, which names the backdrop, so they are drawn again.
MAX_PROMPT_BYTES = 155


def is_studio(seed: int, split: str, category: str) -> bool:
    """Whether sample ``seed`` is a studio picture: train only, categories of ``STUDIO_FAMILIES`` only, drawn from
    its own stream so that the sample's stream (and with it every other sample) stays as it was."""
    if split != "train" or category not in STUDIO_FAMILIES:
        return False
    return random.Random(f"studio:{split}:{seed}").random() < STUDIO_SHARE


def make_studio_edit(category: str, rng: random.Random, split: str, size: Size, family: str | None = None) -> Edit:
    """A studio edit of ``family`` (None: drawn uniformly among the category's that apply), drawing again until the
    family applies, everything in the result stands out from its backdrop and the prompt is short enough."""
    family = family or rng.choice(STUDIO_FAMILIES[category])
    for _ in range(200):
        edit = _make(family, rng, split, size)
        if (edit is not None and len(edit.prompt.encode("utf-8")) <= MAX_PROMPT_BYTES
                and all(stands_out(it, edit.after.backdrop) for it in edit.after.items)):
            return dataclasses.replace(edit, meta={**edit.meta, "studio": True})
    raise RuntimeError(f"could not make a studio {family} edit")


# the scene editors, adding and swapping in flat shapes as well as toy objects
_EDITORS = {**SCENE_EDITORS, "add_object": functools.partial(add_object, kinds=STUDIO_KINDS),
            "replace_object": functools.partial(replace_object, kinds=STUDIO_KINDS)}


def _make(family: str, rng: random.Random, split: str, size: Size) -> Edit | None:
    if family == "change_scene":
        return change_backdrop(rng, split, size)
    if family == "text_to_image":
        return text_to_image(rng, split, size)
    text = family in STUDIO_FAMILIES["text"]
    scene = _text_picture(rng, split, size, family) if text else _things_picture(rng, split, size)
    return None if scene is None else _EDITORS[family](rng, split, size, scene)


# ---------------------------------------------------------------- contrast

def _luma(rgb: RGB) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _far(rgb: RGB, backdrop: Backdrop) -> bool:
    """Flat shapes and badges have no outline to set them off: their colour itself must differ."""
    return all(sum((a - b) ** 2 for a, b in zip(rgb, bg)) >= COLOR_CONTRAST**2 for bg in backdrop.shades())


def _legible(rgb: RGB, backdrop: Backdrop) -> bool:
    return all(abs(_luma(rgb) - _luma(bg)) >= TEXT_CONTRAST for bg in backdrop.shades())


def stands_out(item: Obj | Sign, backdrop: Backdrop) -> bool:
    """Whether ``item`` is clearly visible on ``backdrop``: a thing by its colour, a badge by its board, a bare word
    by its letters."""
    if isinstance(item, Obj):
        return _far(PALETTE[item.color], backdrop)
    if item.board_color:
        return _far(PALETTE[item.board_color], backdrop)
    return _legible(PALETTE[item.text_color], backdrop)


# ---------------------------------------------------------------- pictures

def _picture(backdrop: Backdrop, items) -> Scene:
    """A studio scene: kind "studio"; time, weather, horizon and layout seed are unused."""
    return Scene("studio", "day", "clear", 0.0, 0, tuple(items), backdrop=backdrop)


def _thing(rng: random.Random, backdrop: Backdrop, items) -> Obj | None:
    """A flat shape or a toy object of a kind not yet in ``items``, in a colour that stands out (placed later)."""
    used = {it.kind for it in items if isinstance(it, Obj)}
    kinds = [k for k in (SHAPE_KINDS if rng.random() < SHAPE_SHARE else OBJECT_KINDS) if k not in used]
    colors = [c for c in OBJECT_COLORS if _far(PALETTE[c], backdrop)]
    if not kinds or not colors:
        return None
    kind = rng.choice(kinds)
    return Obj(kind, rng.choice(colors), 0.5, 1.0, object_size(rng, kind) * rng.uniform(1.0, 1.5))


def _lettering(rng: random.Random, words: list[str | None], carrier: str, backdrop: Backdrop,
               size: Size) -> Sign | None:
    """A badge or a bare word (``carrier``) wide enough for every word of ``words`` (the first one is shown), in a
    font size that fits the image; ``None`` when no colour or size does."""
    if carrier == "logo":
        styles = [(None, c) for c in PALETTE if _legible(PALETTE[c], backdrop)]
    else:
        styles = [s for s in TEXT_STYLES if _far(PALETTE[s[0]], backdrop)]
    font = rng.choice(textmod.FONT_NAMES)
    widest = max(textmod.text_width_em(font, word) for word in words if word)
    w, h = size
    room = w / min(w, h) - 2 * MARGIN
    sizes = [s for s in (LOGO_TEXT_SIZES if carrier == "logo" else BADGE_TEXT_SIZES) if widest * s + BOARD_PAD <= room]
    if not styles or not sizes:
        return None
    board_color, text_color = rng.choice(styles)
    text_size = rng.choice(sizes)
    return Sign(carrier, words[0], font, text_color, board_color, 0.5, 1.0, text_size, widest * text_size + BOARD_PAD)


def _at(item, where: tuple[str, str], size: Size):
    """``item`` moved to a named place (a key of ``prompts.PLACE``), ``MARGIN`` from the borders it is next to."""
    w, h = size
    m = MARGIN * min(w, h)
    x0, y0, x1, y1 = item.bbox(w, h)
    bw, bh = x1 - x0, y1 - y0
    vertical, horizontal = where
    cx = {"left": m + bw / 2, "centre": w / 2, "right": w - m - bw / 2}[horizontal]
    bottom = {"top": m + bh, "middle": (h + bh) / 2, "bottom": h - m}[vertical]
    return dataclasses.replace(item, x=cx / w, y=bottom / h)


def _add_things(rng: random.Random, backdrop: Backdrop, items: list, n: int, size: Size) -> list:
    """``items`` and up to ``n`` things at random free places (anywhere: there is no ground to stand on)."""
    items = list(items)
    for _ in range(n):
        thing = _thing(rng, backdrop, items)
        if thing is None:
            continue
        for _ in range(30):
            placed = dataclasses.replace(thing, x=rng.uniform(0.08, 0.92), y=rng.uniform(0.2, 0.98))
            if fits(placed, items, size):
                items.append(placed)
                break
    return items


def _word_at_a_place(rng: random.Random, split: str, backdrop: Backdrop, size: Size) -> list:
    """``WORD_SHARE`` of the time a badge or a bare word at a random place, else nothing."""
    if rng.random() >= WORD_SHARE:
        return []
    sign = _lettering(rng, [textmod.pick_word(rng, split)], rng.choice(STUDIO_CARRIERS), backdrop, size)
    return [] if sign is None else [_at(sign, rng.choice(list(P.PLACE)), size)]


def _things_picture(rng: random.Random, split: str, size: Size) -> Scene | None:
    """1-3 things, sometimes with a word: for the object editors and backdrop changes."""
    backdrop = random_backdrop(rng)
    items = _add_things(rng, backdrop, _word_at_a_place(rng, split, backdrop, size), rng.randint(1, 3), size)
    return _picture(backdrop, items) if any(isinstance(it, Obj) for it in items) else None


def _text_picture(rng: random.Random, split: str, size: Size, family: str) -> Scene | None:
    """A word on a badge or alone, at one of nine places, with 0-2 things: for the text editors."""
    backdrop = random_backdrop(rng)
    old = textmod.pick_word(rng, split)
    longest = textmod.pick_word(rng, split, exclude=(old,))
    carrier = rng.choice(BADGES if family == "add_text" else STUDIO_CARRIERS)  # a word cannot be added to nothing
    sign = _lettering(rng, [None if family == "add_text" else old, old, longest], carrier, backdrop, size)
    if sign is None:
        return None
    # a bare word is removed alone, so that every phrasing ("Make the picture blank.") is true
    n = 0 if family == "remove_text" and carrier == "logo" else rng.randint(0, 2)
    return _picture(backdrop, _add_things(rng, backdrop, [_at(sign, rng.choice(list(P.PLACE)), size)], n, size))


# ---------------------------------------------------------------- global and text to image

def change_backdrop(rng: random.Random, split: str, size: Size) -> Edit | None:
    """``change_scene`` on a studio picture: the same things, pixel for pixel, on another backdrop."""
    before = _things_picture(rng, split, size)
    if before is None:
        return None
    new = random_backdrop(rng)
    if new == before.backdrop:
        return None
    prompt = P.phrase("change_scene", rng, split, scene_a=new.describe(), scene_in=f"on {new.describe()}")
    return Edit(prompt, before, before.replace(backdrop=new),
                {"family": "change_scene", "old": before.backdrop.to_meta(), "new": new.to_meta()})


def text_to_image(rng: random.Random, split: str, size: Size) -> Edit | None:
    """1-3 things and at most one word, each at a named place, on a named backdrop."""
    backdrop = random_backdrop(rng)
    order = list(P.PLACE)
    places = sorted(rng.sample(order, rng.randint(1, 3)), key=order.index)  # the prompt names them in reading order
    items, parts = [], []
    for where in places:
        if rng.random() < WORD_SHARE and not any(isinstance(it, Sign) for it in items):
            item = _lettering(rng, [textmod.pick_word(rng, split)], rng.choice(STUDIO_CARRIERS), backdrop, size)
        else:
            item = _thing(rng, backdrop, items)
        if item is None:
            return None
        items.append(_at(item, where, size))
        parts.append(f"{_name(item)} {P.PLACE[where]}")
    if not all(fits(it, items, size) for it in items):
        return None
    subjects = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    prompt = P.phrase("text_to_image", rng, split, subjects=subjects, scene_in=f"on {backdrop.describe()}",
                      time_weather="")
    meta = {"family": "text_to_image", "items": [item_meta(it, size) for it in items],
            "slots": ["-".join(where) for where in places]}
    return Edit(prompt, None, _picture(backdrop, items), meta)


def _name(item: Obj | Sign) -> str:
    """What a text-to-image prompt calls ``item``: "a red circle", "the word 'SALE' in blue", "a badge that says
    'OPEN'" (a badge's colours are left open, as signs' are)."""
    if isinstance(item, Obj):
        return f"a {item.describe()}"
    if item.carrier == "logo":
        return f"the word '{item.word}' in {item.text_color}"
    return f"a {P.CARRIER_WORD[item.carrier]} that says '{item.word}'"
