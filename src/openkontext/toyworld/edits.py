"""Edit families: each one turns a scene into (instruction, edited scene) with exact ground truth.

Local and text families are *scene editors* (they edit any scene that has what they need, so iterative chains
reuse them); every family also has a *maker* that draws a fitting random scene first. A family returns ``None``
when the scene does not allow it (the caller draws again).
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable

from . import prompts as P
from . import text as textmod
from .backgrounds import INDOOR_KINDS, SCENE_KINDS, TIMES, WEATHERS
from .characters import ACCESSORIES, random_identity
from .colors import OBJECT_COLORS
from .layout import (CHAR_SIZES, FRONT_Y, SLOTS, add_random_items, empty_scene, find, fits, make_sign,
                     object_size, random_scene)
from .objects import OBJECT_KINDS
from .scene import Character, Obj, Scene, Sign, pixel_bbox
from .split import check_split
from .styles import STYLES

Size = tuple[int, int]


@dataclasses.dataclass
class Edit:
    prompt: str
    before: Scene | None  # None for text-to-image
    after: Scene
    meta: dict
    style: str | None = None  # the target is this style applied to the render of ``after``


def item_meta(item, size: Size) -> dict:
    meta = {**item.to_meta(), "bbox": pixel_bbox(item, size)}
    if isinstance(item, Sign):
        meta["text_box"] = _text_box(item, size)
    return meta


def _edit(family: str, prompt: str, before: Scene, after: Scene, size: Size, changed: list, **extra) -> Edit:
    """``changed``: the items involved (before and/or after versions), recorded with their pixel boxes."""
    meta = {"family": family, "items": [item_meta(it, size) for it in changed], **extra}
    return Edit(prompt, before, after, meta)


def _char_name(rng: random.Random, item: Character) -> str:
    return f"{item.ident.body} {rng.choice(P.CHAR_NOUNS)}"


# ---------------------------------------------------------------- local: objects

def recolor_object(rng, split, size, scene):
    idx = find(scene, Obj)
    if not idx:
        return None
    i = rng.choice(idx)
    old = scene.items[i]
    new = dataclasses.replace(old, color=rng.choice([c for c in OBJECT_COLORS if c != old.color]))
    prompt = P.phrase("recolor_object", rng, split, obj=old.describe(), color=new.color)
    return _edit("recolor_object", prompt, scene, scene.with_item(i, new), size, [old, new], old_color=old.color,
                 new_color=new.color)


def add_object(rng, split, size, scene, kinds=OBJECT_KINDS):
    """``kinds``: what may be added (studio pictures also add flat shapes)."""
    present = {it.kind for it in scene.items if isinstance(it, Obj)}
    kinds = [k for k in kinds if k not in present]
    if not kinds:
        return None
    kind = rng.choice(kinds)
    new = Obj(kind, rng.choice(OBJECT_COLORS), 0.0, FRONT_Y, object_size(rng, kind))
    slots = list(SLOTS)
    rng.shuffle(slots)
    for slot in slots:
        cand = dataclasses.replace(new, x=SLOTS[slot])
        if fits(cand, scene.items, size):
            prompt = P.phrase("add_object", rng, split, new=cand.describe(), where=P.WHERE[slot])
            after = scene.replace(items=scene.items + (cand,))
            return _edit("add_object", prompt, scene, after, size, [cand], slot=slot)
    return None


def remove_object(rng, split, size, scene):
    idx = find(scene, Obj)
    if not idx:
        return None
    i = rng.choice(idx)
    old = scene.items[i]
    prompt = P.phrase("remove_object", rng, split, obj=old.describe())
    return _edit("remove_object", prompt, scene, scene.with_item(i, None), size, [old])


def replace_object(rng, split, size, scene, kinds=OBJECT_KINDS):
    """``kinds``: what the object may become (studio pictures also use flat shapes)."""
    idx = find(scene, Obj)
    if not idx:
        return None
    i = rng.choice(idx)
    old = scene.items[i]
    present = {it.kind for it in scene.items if isinstance(it, Obj)}
    kinds = [k for k in kinds if k not in present]
    rng.shuffle(kinds)
    for kind in kinds[:4]:
        new = Obj(kind, rng.choice(OBJECT_COLORS), old.x, old.y, object_size(rng, kind))
        if fits(new, scene.items, size, ignore=old):
            prompt = P.phrase("replace_object", rng, split, obj=old.describe(), new=new.describe())
            return _edit("replace_object", prompt, scene, scene.with_item(i, new), size, [old, new])
    return None


def move_object(rng, split, size, scene):
    idx = find(scene, Obj)
    rng.shuffle(idx)
    for i in idx:
        old = scene.items[i]
        slots = [s for s, x in SLOTS.items() if abs(x - old.x) > 0.18]
        rng.shuffle(slots)
        for slot in slots:
            new = dataclasses.replace(old, x=SLOTS[slot])
            if fits(new, scene.items, size, ignore=old):
                prompt = P.phrase("move_object", rng, split, obj=old.describe(), to=P.MOVE_TO[slot])
                return _edit("move_object", prompt, scene, scene.with_item(i, new), size, [old, new], slot=slot)
    return None


def resize_object(rng, split, size, scene):
    idx = find(scene, Obj)
    rng.shuffle(idx)
    for i in idx:
        old = scene.items[i]
        for direction in rng.sample(("larger", "smaller"), 2):
            factor = 2.0 if direction == "larger" else 0.5
            new = dataclasses.replace(old, size=old.size * factor)
            if new.size < 0.08 or not fits(new, scene.items, size, ignore=old):
                continue
            prompt = P.phrase("resize_object", rng, split, obj=old.describe(), scale=rng.choice(P.SCALE[direction]))
            return _edit("resize_object", prompt, scene, scene.with_item(i, new), size, [old, new],
                         direction=direction, factor=factor)
    return None


# ---------------------------------------------------------------- local: accessories

def add_accessory(rng, split, size, scene):
    idx = [i for i in find(scene, Character) if scene.items[i].accessory is None]
    if not idx:
        return None
    i = rng.choice(idx)
    old = scene.items[i]
    acc = rng.choice(ACCESSORIES)
    color = rng.choice([c for c in OBJECT_COLORS if c not in (old.ident.body, "white")])
    new = dataclasses.replace(old, accessory=acc, acc_color=color)
    prompt = P.phrase("add_accessory", rng, split, char=_char_name(rng, old), acc=f"{color} {P.ACCESSORY_WORD[acc]}")
    return _edit("add_accessory", prompt, scene, scene.with_item(i, new), size, [old, new], accessory=acc,
                 acc_color=color)


def remove_accessory(rng, split, size, scene):
    idx = [i for i in find(scene, Character) if scene.items[i].accessory is not None]
    if not idx:
        return None
    i = rng.choice(idx)
    old = scene.items[i]
    new = dataclasses.replace(old, accessory=None, acc_color=None)
    prompt = P.phrase("remove_accessory", rng, split, char=_char_name(rng, old),
                      acc=P.ACCESSORY_WORD_BARE[old.accessory])
    return _edit("remove_accessory", prompt, scene, scene.with_item(i, new), size, [old, new],
                 accessory=old.accessory)


# ---------------------------------------------------------------- text

def _fitting_word(rng, split, sign: Sign, exclude: tuple[str, ...]) -> str | None:
    capacity = sign.board_w - 0.07
    for _ in range(60):
        word = textmod.pick_word(rng, split, exclude=exclude)
        if textmod.text_width_em(sign.font, word) * sign.text_size <= capacity + 1e-9:
            return word
    return None


def _text_slots(sign: Sign) -> dict:
    return {"carrier": P.CARRIER_WORD[sign.carrier]}


def replace_text(rng, split, size, scene):
    idx = [i for i in find(scene, Sign) if scene.items[i].word]
    if not idx:
        return None
    i = rng.choice(idx)
    old = scene.items[i]
    word = _fitting_word(rng, split, old, (old.word,))
    if word is None:
        return None
    new = dataclasses.replace(old, word=word)
    prompt = P.phrase("replace_text", rng, split, old=old.word, new=word, **_text_slots(old))
    return _edit("replace_text", prompt, scene, scene.with_item(i, new), size, [old, new], old_word=old.word,
                 new_word=word, text_box=_text_box(old, size))


def add_text(rng, split, size, scene):
    idx = [i for i in find(scene, Sign) if not scene.items[i].word]
    if not idx:
        return None
    i = rng.choice(idx)
    old = scene.items[i]
    word = _fitting_word(rng, split, old, ())
    if word is None:
        return None
    new = dataclasses.replace(old, word=word)
    prompt = P.phrase("add_text", rng, split, new=word, **_text_slots(old))
    return _edit("add_text", prompt, scene, scene.with_item(i, new), size, [old, new], old_word=None,
                 new_word=word, text_box=_text_box(old, size))


def remove_text(rng, split, size, scene):
    idx = [i for i in find(scene, Sign) if scene.items[i].word]
    if not idx:
        return None
    i = rng.choice(idx)
    old = scene.items[i]
    new = dataclasses.replace(old, word=None)
    prompt = P.phrase("remove_text", rng, split, old=old.word, **_text_slots(old))
    return _edit("remove_text", prompt, scene, scene.with_item(i, new), size, [old, new], old_word=old.word,
                 new_word=None, text_box=_text_box(old, size))


def _text_box(sign: Sign, size: Size) -> list[int]:
    w, h = size
    x0, y0, x1, y1 = sign.text_box(w, h)
    return [max(0, int(x0)), max(0, int(y0)), min(w, int(x1 + 1)), min(h, int(y1 + 1))]


# ---------------------------------------------------------------- scene makers for the editors above

def _scene_for(family: str, rng, split, size) -> Scene:
    if family in ("add_accessory", "remove_accessory"):
        scene = random_scene(rng, split, size, objects=(0, 2), characters=(1, 2))
        if family == "remove_accessory":
            i = rng.choice(find(scene, Character))
            ch = scene.items[i]
            acc = rng.choice(ACCESSORIES)
            color = rng.choice([c for c in OBJECT_COLORS if c not in (ch.ident.body, "white")])
            scene = scene.with_item(i, dataclasses.replace(ch, accessory=acc, acc_color=color))
        return scene
    if family in ("replace_text", "remove_text", "add_text"):
        old = textmod.pick_word(rng, split)
        longest = textmod.pick_word(rng, split, exclude=(old,))
        words = [None if family == "add_text" else old, old, longest]
        return random_scene(rng, split, size, objects=(0, 2), characters=(0, 1), sign_words=words)
    return random_scene(rng, split, size, objects=(1, 3), characters=(0, 2))


# ---------------------------------------------------------------- global

def _subjects_scene(rng, split, size, kind=None) -> Scene:
    words = [textmod.pick_word(rng, split)] if rng.random() < 0.3 else None
    return random_scene(rng, split, size, objects=(1, 2), characters=(1, 2), sign_words=words, kind=kind)


def change_scene(rng, split, size):
    scene = _subjects_scene(rng, split, size)
    kind = rng.choice([k for k in SCENE_KINDS if k != scene.kind])
    after = scene.replace(kind=kind, weather="clear" if kind in INDOOR_KINDS else scene.weather)
    prompt = P.phrase("change_scene", rng, split, scene_a=P.SCENE_A[kind], scene_in=P.SCENE_IN[kind])
    return Edit(prompt, scene, after, {"family": "change_scene", "old": scene.kind, "new": kind})


def change_time(rng, split, size):
    scene = _subjects_scene(rng, split, size, kind=rng.choice([k for k in SCENE_KINDS if k not in INDOOR_KINDS]))
    time = rng.choice([t for t in TIMES if t != scene.time])
    prompt = P.phrase("change_time", rng, split, time=P.TIME_WORD[time], time_at=P.TIME_AT[time])
    return Edit(prompt, scene, scene.replace(time=time), {"family": "change_time", "old": scene.time, "new": time})


def change_weather(rng, split, size):
    scene = _subjects_scene(rng, split, size, kind=rng.choice([k for k in SCENE_KINDS if k not in INDOOR_KINDS]))
    weather = rng.choice([w for w in WEATHERS if w != scene.weather])
    prompt = P.phrase("change_weather", rng, split, weather=P.WEATHER_WORD[weather])
    return Edit(prompt, scene, scene.replace(weather=weather),
                {"family": "change_weather", "old": scene.weather, "new": weather})


# ---------------------------------------------------------------- character reference

def character_reference(rng, split, size):
    for _ in range(50):
        before = random_scene(rng, split, size, objects=(0, 1), characters=(1, 1))
        ch = before.items[find(before, Character)[0]]
        slot = rng.choice([s for s, x in SLOTS.items() if abs(x - ch.x) > 0.2])
        size_name = rng.choice(list(CHAR_SIZES))
        facing = rng.choice((None, "left", "right"))
        kind = rng.choice([k for k in SCENE_KINDS if k != before.kind])
        target_char = Character(ch.ident, SLOTS[slot], FRONT_Y, CHAR_SIZES[size_name], facing or ch.facing,
                                ch.accessory, ch.acc_color)
        # the prompt names the scene only: time of day and weather carry over from the input
        weather = "clear" if kind in INDOOR_KINDS or before.kind in INDOOR_KINDS else before.weather
        after = empty_scene(rng, kind).replace(items=(target_char,), time=before.time, weather=weather)
        if not fits(target_char, (), size):
            continue
        prompt = P.phrase("character_reference", rng, split, scene_in=P.SCENE_IN[kind], where=P.WHERE[slot],
                          size=size_name, facing=f", facing {facing}" if facing else "")
        meta = {"family": "character_reference", "identity": ch.ident.id, "identity_split": ch.ident.split,
                "source": item_meta(ch, size), "items": [item_meta(target_char, size)], "slot": slot,
                "size_name": size_name, "facing": target_char.facing, "new_kind": kind}
        return Edit(prompt, before, after, meta)
    return None


# ---------------------------------------------------------------- style

def make_style_family(style: str) -> Callable:
    def style_edit(rng, split, size):
        words = [textmod.pick_word(rng, split)] if rng.random() < 0.4 else None
        scene = random_scene(rng, split, size, objects=(1, 3), characters=(0, 2), sign_words=words)
        prompt = P.phrase(f"style_{style}", rng, split)
        return Edit(prompt, scene, scene, {"family": f"style_{style}", "style": style}, style=style)
    return style_edit


# ---------------------------------------------------------------- text to image

def text_to_image(rng, split, size):
    for _ in range(50):
        scene = empty_scene(rng)
        slots = rng.sample(list(SLOTS), rng.randint(1, 3))
        items = []
        parts = []
        used_kinds: set[str] = set()
        for slot in slots:
            what = rng.choices(("object", "character", "sign"), weights=(5, 3, 2))[0]
            x = SLOTS[slot]
            if what == "object":
                kind = rng.choice([k for k in OBJECT_KINDS if k not in used_kinds])
                used_kinds.add(kind)
                item = Obj(kind, rng.choice(OBJECT_COLORS), x, FRONT_Y, object_size(rng, kind))
                desc = f"a {item.describe()}"
            elif what == "character":
                bodies = tuple(it.ident.body for it in items if isinstance(it, Character))
                item = Character(random_identity(rng, split, exclude_bodies=bodies), x, FRONT_Y,
                                 rng.choice((0.3, 0.36)), rng.choice(("left", "right")))
                desc = f"a {item.ident.body} creature"
            else:
                if any(isinstance(it, Sign) for it in items):
                    continue
                word = textmod.pick_word(rng, split)
                item = make_sign(rng, split, [word], x=x, y=FRONT_Y)
                desc = f"a {P.CARRIER_WORD[item.carrier]} that says '{word}'"
            items.append(item)
            parts.append(f"{desc} {P.WHERE[slot]}")
        if not items or not all(fits(it, items, size) for it in items):
            continue
        scene = scene.replace(items=tuple(items))
        parts.sort(key=lambda p: [P.WHERE[s] in p for s in SLOTS].index(True))
        subjects = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        tw = []
        if scene.time != "day":
            tw.append(P.TIME_AT[scene.time])
        if scene.weather != "clear":
            tw.append({"rain": "in the rain", "snow": "in the snow", "fog": "in the fog"}[scene.weather])
        prompt = P.phrase("text_to_image", rng, split, subjects=subjects, scene_in=P.SCENE_IN[scene.kind],
                          time_weather=(", " + " ".join(tw)) if tw else "")
        meta = {"family": "text_to_image", "items": [item_meta(it, size) for it in items],
                "slots": [s for s, _ in zip(slots, items)]}
        return Edit(prompt, None, scene, meta)
    return None


# ---------------------------------------------------------------- registry

SCENE_EDITORS: dict[str, Callable] = {
    "recolor_object": recolor_object, "add_object": add_object, "remove_object": remove_object,
    "replace_object": replace_object, "move_object": move_object, "resize_object": resize_object,
    "add_accessory": add_accessory, "remove_accessory": remove_accessory,
    "replace_text": replace_text, "add_text": add_text, "remove_text": remove_text,
}

FAMILIES: dict[str, tuple[str, ...]] = {
    "local": ("recolor_object", "add_object", "remove_object", "replace_object", "move_object", "resize_object",
              "add_accessory", "remove_accessory"),
    "global": ("change_scene", "change_time", "change_weather"),
    "character_reference": ("character_reference",),
    "style": tuple(f"style_{s}" for s in STYLES),
    "text": ("replace_text", "add_text", "remove_text"),
    "text_to_image": ("text_to_image",),
    "iterative": ("iterative",),
}
CATEGORIES: tuple[str, ...] = tuple(FAMILIES)
ITERATIVE_FAMILIES = ("recolor_object", "add_object", "remove_object", "replace_object", "move_object",
                      "resize_object", "add_accessory", "remove_accessory", "replace_text")

_MAKERS: dict[str, Callable] = {
    "change_scene": change_scene, "change_time": change_time, "change_weather": change_weather,
    "character_reference": character_reference, "text_to_image": text_to_image,
    **{f"style_{s}": make_style_family(s) for s in STYLES},
}


def category_of(kind: str) -> str:
    """The category of an edit family, or of a category name itself."""
    if kind in FAMILIES:
        return kind
    for cat, fams in FAMILIES.items():
        if kind in fams:
            return cat
    raise KeyError(kind)


def make_edit(family: str, rng: random.Random, split: str, size: Size) -> Edit:
    """One edit of ``family`` on a fresh random scene (drawing again until the family applies)."""
    check_split(split)
    for _ in range(200):
        if family in SCENE_EDITORS:
            edit = SCENE_EDITORS[family](rng, split, size, _scene_for(family, rng, split, size))
        else:
            edit = _MAKERS[family](rng, split, size)
        if edit is not None:
            return edit
    raise RuntimeError(f"could not make a {family} edit")


def make_chain(rng: random.Random, split: str, size: Size) -> list[Edit]:
    """3-8 local/text edits applied one after another to one scene."""
    first_word = textmod.pick_word(rng, split)
    scene = random_scene(rng, split, size, objects=(1, 3), characters=(1, 2),
                         sign_words=[first_word, textmod.pick_word(rng, split, exclude=(first_word,))])
    chain: list[Edit] = []
    n = rng.randint(3, 8)
    while len(chain) < n:
        for family in rng.sample(ITERATIVE_FAMILIES, len(ITERATIVE_FAMILIES)):
            edit = SCENE_EDITORS[family](rng, split, size, scene)
            if edit is not None:
                chain.append(edit)
                scene = edit.after
                break
        else:
            break
    return chain


__all__ = ["Edit", "FAMILIES", "CATEGORIES", "make_edit", "make_chain", "category_of", "SCENE_EDITORS",
           "item_meta"]
