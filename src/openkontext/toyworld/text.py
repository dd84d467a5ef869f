"""Fonts, the word vocabulary and random letter strings for written text in scenes.

Fonts are TrueType files from Debian packages, looked up at their fixed Debian paths, then in the directories of
``OPENKONTEXT_FONT_DIRS`` (``:``-separated), then with ``fc-list``. The catalogue is fixed (a sample names its
font), so every machine renders identical pixels; a missing font is an error that names the package to install.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from PIL import ImageFont

from .split import is_heldout_value

FONT_PACKAGES = ("fonts-dejavu-core", "fonts-liberation2", "fonts-freefont-ttf")

# name -> (file name, Debian directory)
FONTS: dict[str, tuple[str, str]] = {
    "dejavu-sans-bold": ("DejaVuSans-Bold.ttf", "/usr/share/fonts/truetype/dejavu"),
    "dejavu-sans": ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu"),
    "dejavu-serif-bold": ("DejaVuSerif-Bold.ttf", "/usr/share/fonts/truetype/dejavu"),
    "dejavu-mono-bold": ("DejaVuSansMono-Bold.ttf", "/usr/share/fonts/truetype/dejavu"),
    "liberation-sans-bold": ("LiberationSans-Bold.ttf", "/usr/share/fonts/truetype/liberation2"),
    "liberation-sans": ("LiberationSans-Regular.ttf", "/usr/share/fonts/truetype/liberation2"),
    "liberation-serif-bold": ("LiberationSerif-Bold.ttf", "/usr/share/fonts/truetype/liberation2"),
    "liberation-mono-bold": ("LiberationMono-Bold.ttf", "/usr/share/fonts/truetype/liberation2"),
    "freesans-bold": ("FreeSansBold.ttf", "/usr/share/fonts/truetype/freefont"),
    "freeserif-bold": ("FreeSerifBold.ttf", "/usr/share/fonts/truetype/freefont"),
}
FONT_NAMES: tuple[str, ...] = tuple(FONTS)


class FontNotFoundError(RuntimeError):
    pass


def _fc_list_files() -> dict[str, str]:
    if shutil.which("fc-list") is None:
        return {}
    out = subprocess.run(["fc-list", ":", "file"], capture_output=True, text=True, check=False).stdout
    files = {}
    for line in out.splitlines():
        path = line.strip().rstrip(":").strip()
        files.setdefault(Path(path).name, path)
    return files


@functools.cache
def font_path(name: str) -> str:
    file_name, debian_dir = FONTS[name]
    dirs = [debian_dir] + [d for d in os.environ.get("OPENKONTEXT_FONT_DIRS", "").split(":") if d]
    for d in dirs:
        candidate = Path(d) / file_name
        if candidate.is_file():
            return str(candidate)
    found = _fc_list_files().get(file_name)
    if found:
        return found
    raise FontNotFoundError(
        f"font {file_name!r} ({name}) not found in {dirs} nor by fc-list; install the Debian packages "
        f"{' '.join(FONT_PACKAGES)} (apt-get install {' '.join(FONT_PACKAGES)}) or point OPENKONTEXT_FONT_DIRS "
        "at a directory holding the file"
    )


def check_fonts() -> list[str]:
    """Paths of all catalogue fonts; raises ``FontNotFoundError`` naming the first missing one."""
    return [font_path(name) for name in FONT_NAMES]


@functools.lru_cache(maxsize=512)
def font(name: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(name), max(1, int(px)))


@functools.lru_cache(maxsize=8192)
def text_width_em(name: str, word: str) -> float:
    """Advance width of ``word`` in units of the font size (measured once at 200 px)."""
    return font(name, 200).getlength(word) / 200.0


@functools.cache
def cap_height_em(name: str) -> float:
    left, top, right, bottom = font(name, 200).getbbox("H", anchor="ls")
    return (bottom - top) / 200.0


# ---------------------------------------------------------------- words

@functools.cache
def vocabulary() -> tuple[str, ...]:
    text = resources.files("openkontext.toyworld").joinpath("data/words.txt").read_text(encoding="utf-8")
    return tuple(line.strip().upper() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@functools.cache
def words_of_split(split: str) -> tuple[str, ...]:
    held = split == "heldout"
    return tuple(w for w in vocabulary() if is_heldout_value(w) == held)


_CONSONANTS = "BCDFGHJKLMNPRSTVWXZ"
_VOWELS = "AEIOUY"


def random_letters(rng: random.Random) -> str:
    """A pronounceable-ish random string such as 'KELLAR' or 'SUMITH'."""
    length = rng.randint(4, 7)
    chars = []
    consonant = rng.random() < 0.7
    while len(chars) < length:
        if consonant:
            c = rng.choice(_CONSONANTS)
            chars.append(c)
            if len(chars) < length - 1 and rng.random() < 0.15:
                chars.append(c)
        else:
            chars.append(rng.choice(_VOWELS))
        consonant = not consonant
    return "".join(chars[:length])


def pick_word(rng: random.Random, split: str, *, exclude: tuple[str, ...] = ()) -> str:
    """A vocabulary word (70%) or random letter string (30%) belonging to ``split``."""
    held = split == "heldout"
    pool = words_of_split(split)
    use_letters = rng.random() < 0.3
    for _ in range(1000):
        word = random_letters(rng) if use_letters else rng.choice(pool)
        if is_heldout_value(word) == held and word not in exclude:
            return word
    raise RuntimeError("could not draw a word for the split")  # practically unreachable
