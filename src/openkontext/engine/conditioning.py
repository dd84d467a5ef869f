"""What a model may get besides the prompt and the context images, decided by its folder's ``openkontext.json``:

- **Glyph context** (``glyph_context``: the strip's layout, one of ``GLYPH_LAYOUTS``; empty: none): the quoted
  words of the prompt ("Change 'KELLAR' to 'SUMITH'") rendered as black letters on a white strip, encoded like any
  context image and appended at RoPE index ``GLYPH_INDEX``. It is meant to turn spelling a word into copying its
  letters. The strip is always there for such a model (blank when the prompt quotes nothing), so every sequence has
  the same layout. ``line``: all words on one line, as large as the strip allows (openkontext-toy-v2 … v8). ``rows``:
  one word per token row, left-aligned, in letters the size of the lettering the model writes
  (``LETTERING_SCALE``), so a letter of the strip is about the size of the letter it is to become.
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
}
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


def without_quotes(prompt: str) -> str:
    """The prompt with its quoted strings (and their quotes) removed."""
    return _QUOTED.sub(" ", prompt)


def glyph_strip(prompt: str, width: int, height: int, layout: str) -> Image.Image:
    """The glyph strip a model with glyph context ``layout`` gets for ``prompt`` and a ``width`` x ``height``
    target."""
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


def text_length(prompt: str, cap: int, tokenizer) -> int:
    """The prompt's tokens under ``tokenizer`` with the end token (a byte-level one: its UTF-8 bytes + 1), rounded
    up to ``TEXT_MULTIPLE``, at most ``cap``."""
    needed = len(tokenizer(prompt).input_ids)
    return min(cap, -(-needed // TEXT_MULTIPLE) * TEXT_MULTIPLE)


def batch_text_length(prompts: list[str], cap: int, tokenizer) -> int:
    return max(text_length(prompt, cap, tokenizer) for prompt in prompts)
