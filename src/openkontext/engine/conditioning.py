"""What a model may get besides the prompt and the context images, decided by its folder's ``openkontext.json``:

- **Glyph context** (``glyph_context``: the strip's layout, one of ``GLYPH_LAYOUTS``; empty: none): the quoted
  words of the prompt ("Change 'KELLAR' to 'SUMITH'") rendered as black letters on a white strip, encoded like any
  context image and appended at RoPE index ``GLYPH_INDEX``. It is meant to turn spelling a word into copying its
  letters. The strip is always there for such a model (blank when the prompt quotes nothing), so every sequence has
  the same layout. ``line``: all words on one line, as large as the strip allows (openkontext-toy-v2 … v8). ``rows``:
  one word per token row, left-aligned, in letters the size of the lettering the model writes
  (``LETTERING_SCALE``), so a letter of the strip is about the size of the letter it is to become. ``aligned``: a
  canvas of the image's own size, blank but for the word the prompt asks to write (``word_to_write``) drawn in the
  box where it goes, so its tokens take the target's own positions and writing it is a copy one RoPE index away,
  like copying the context. The box is not in the request: the engine finds it with a first pass on a blank canvas
  (the largest region that pass changes), then samples again with the word drawn there (``engine/kontext.py``);
  training draws it in the edit's change mask, jittered (``training/glyphs.py``).
- **Prompt-sized text** (``prompt_sized_text``): the T5 encoder gets as many tokens as the model's own tokenizer
  makes of the prompt (rounded up to ``TEXT_MULTIPLE``), not a fixed padded length, so padding does not fill the
  sequence.

Training (``openkontext.training``) and the engine both call these functions, so the model sees at serving time
exactly what it was trained on. FLUX.1 Kontext [dev] uses neither.
"""

from __future__ import annotations

import re
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

GLYPH_INDEX = 8  # RoPE index of the glyph strip: after the target (0) and up to four references (1-4)
GLYPH_LAYOUTS = {  # name -> what the strip shows (for model cards)
    "line": "on one line, as large as fits",
    "rows": "one per token row, at the size of a sign's letters",
    "aligned": "the word to write, drawn where it goes on an image-sized canvas (box from a first pass)",
}
# An aligned canvas's box at serving time: where the first pass's decode differs from the context's by more than
# this (0-1, largest channel; the default model's paste-back threshold).
GLYPH_BOX_THRESHOLD = 0.15
TOKEN_PX = 16  # pixels per transformer token: the autoencoder's 8x downsampling times the 2x2 patches
# The font size of the toy world's lettering on signs, labels and T-shirts, as a share of the image's shorter side
# (toyworld/layout.TEXT_SIZE is 0.08-0.1): the scale a "rows" strip writes at, the smaller end so that capitals
# (~0.73 of the font size) fit a token row at 256 px.
LETTERING_SCALE = 0.08
TEXT_MULTIPLE = 8
# 'word', "word", ‘word’, “word”: quotes not inside a word (so "don't" is not a quote)
_QUOTED = re.compile(r"(?<![\w])['\"\u2018\u201c]([^'\"\u2018\u2019\u201c\u201d]+?)['\"\u2019\u201d](?![\w])")


def quoted_words(prompt: str) -> list[str]:
    """The quoted strings of a prompt, in order."""
    return [match.strip() for match in _QUOTED.findall(prompt) if match.strip()]


def split_quoted(prompt: str) -> list[tuple[str, bool]]:
    """The prompt as consecutive (text, is_quoted) parts; a quoted part keeps its quotes. Joined, they are the
    prompt."""
    parts, start = [], 0
    for match in _QUOTED.finditer(prompt):
        parts += [(prompt[start:match.start()], False), (match.group(0), True)]
        start = match.end()
    return [part for part in [*parts, (prompt[start:], False)] if part[0]]


# Prompts that take a word away: what they quote is to disappear, not to be written.
_REMOVING = re.compile(r"^\W*(remove|erase|delete|wipe|clear|take)\b", re.IGNORECASE)
# "... 'NEW' instead of 'OLD'": the word after "instead of" is the one being replaced.
_INSTEAD_OF = re.compile(r"\binstead\s+of\s*$", re.IGNORECASE)


def word_to_write(prompt: str) -> str | None:
    """The quoted word a prompt asks to write: the last one ("Change 'OLD' to 'NEW'", "Write 'NEW' on the sign"),
    unless it follows "instead of" (then the one before it); None when the prompt quotes nothing or removes
    ("Remove the word 'OLD'")."""
    if _REMOVING.match(prompt):
        return None
    words = _quoted_with_context(prompt)
    while len(words) > 1 and _INSTEAD_OF.search(words[-1][1]):
        words.pop()
    return words[-1][0] if words else None


def _quoted_with_context(prompt: str) -> list[tuple[str, str]]:
    """(quoted word, the prompt's text just before its opening quote) for each quoted word."""
    found, start = [], 0
    for match in _QUOTED.finditer(prompt):
        if match.group(1).strip():
            found.append((match.group(1).strip(), prompt[start:match.start()]))
        start = match.end()
    return found


def without_quotes(prompt: str) -> str:
    """The prompt with its quoted strings (and their quotes) removed."""
    return _QUOTED.sub(" ", prompt)


def glyph_strip(prompt: str, width: int, height: int, layout: str,
                box: tuple[int, int, int, int] | None = None) -> Image.Image:  # fmt: skip
    """The glyph strip a model with glyph context ``layout`` gets for ``prompt`` and a ``width`` x ``height``
    target; ``box`` (left, top, right, bottom pixels) is where an ``aligned`` canvas draws the word (None: blank)."""
    if layout == "aligned":
        return render_glyph_box(word_to_write(prompt) if box is not None else None, (width, height), box)
    size = glyph_strip_size(width, height)
    if layout == "line":
        return render_glyphs(prompt, size)
    if layout == "rows":
        return render_glyph_rows(prompt, size, round(LETTERING_SCALE * min(width, height)))
    raise ValueError(f"unknown glyph layout {layout!r}; expected one of {', '.join(GLYPH_LAYOUTS)}")


def glyph_strip_size(width: int, height: int, multiple: int = TOKEN_PX) -> tuple[int, int]:
    """The glyph strip's (width, height): the target's width, a quarter of its height (at least one token row)."""
    strip = max(multiple, round(height / 4 / multiple) * multiple)
    return width, strip


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's embedded TrueType font: present wherever Pillow is, so serving needs no font packages.
    return ImageFont.load_default(size=size)


def render_glyphs(prompt: str, size: tuple[int, int]) -> Image.Image:
    """The glyph strip of ``prompt`` at ``size``: its quoted words on one line, as large as fits, centred."""
    width, height = size
    image = Image.new("RGB", size, "white")
    words = quoted_words(prompt)
    if not words:
        return image
    line = "  ".join(words)
    draw = ImageDraw.Draw(image)
    font_size = max(6, int(height * 0.8))
    while font_size > 6:
        left, top, right, bottom = draw.textbbox((0, 0), line, font=_font(font_size))
        if right - left <= width * 0.94 and bottom - top <= height * 0.9:
            break
        font_size -= 1
    font = _font(font_size)
    left, top, right, bottom = draw.textbbox((0, 0), line, font=font)
    x = (width - (right - left)) / 2 - left
    y = (height - (bottom - top)) / 2 - top
    draw.text((x, y), line, fill="black", font=font)
    return image


def render_glyph_rows(prompt: str, size: tuple[int, int], font_px: int) -> Image.Image:
    """The quoted words of ``prompt`` one per token row (words beyond the strip's rows are left out), each starting
    one token from the left edge, capitals centred in the row, at ``font_px`` or smaller where a word would not fit
    the row."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for row, word in enumerate(quoted_words(prompt)[: height // TOKEN_PX]):
        px = max(6, font_px)
        while px > 6 and draw.textlength(word, font=_font(px)) > width - 2 * TOKEN_PX:
            px -= 1
        font = _font(px)
        _, cap_top, _, _ = draw.textbbox((0, 0), "H", font=font, anchor="ls")  # -cap height
        baseline = row * TOKEN_PX + (TOKEN_PX - cap_top) / 2
        draw.text((TOKEN_PX, baseline), word, fill="black", font=font, anchor="ls")
    return image


def render_glyph_box(word: str | None, size: tuple[int, int], box: tuple[int, int, int, int] | None) -> Image.Image:
    """A white canvas of ``size`` with ``word`` in black, as large as fits ``box`` (its capitals at most 0.9 of the
    box's height), centred there; blank without a word or a box."""
    image = Image.new("RGB", size, "white")
    if not word or box is None:
        return image
    left, top, right, bottom = box
    draw = ImageDraw.Draw(image)
    px = max(6, round(1.4 * (bottom - top)))  # capitals are ~0.73 of the font size
    while px > 6:
        _, cap_top, _, _ = draw.textbbox((0, 0), "H", font=_font(px), anchor="ls")  # -cap height
        if -cap_top <= 0.9 * (bottom - top) and draw.textlength(word, font=_font(px)) <= right - left:
            break
        px -= 1
    font = _font(px)
    _, cap_top, _, _ = draw.textbbox((0, 0), "H", font=font, anchor="ls")
    x = (left + right - draw.textlength(word, font=font)) / 2
    draw.text((x, (top + bottom - cap_top) / 2), word, fill="black", font=font, anchor="ls")
    return image


def text_length(prompt: str, cap: int, tokenizer) -> int:
    """The prompt's tokens under ``tokenizer`` with the end token (a byte-level one: its UTF-8 bytes + 1), rounded
    up to ``TEXT_MULTIPLE``, at most ``cap``."""
    needed = len(tokenizer(prompt).input_ids)
    return min(cap, -(-needed // TEXT_MULTIPLE) * TEXT_MULTIPLE)


def batch_text_length(prompts: list[str], cap: int, tokenizer) -> int:
    return max(text_length(prompt, cap, tokenizer) for prompt in prompts)
