"""What the default model gets besides prompt and images (glyph strip, prompt-sized text) and the paste-back that
keeps unchanged pixels exact: real images, the tiny-glyph model run end to end through the engine."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from transformers import ByT5Tokenizer

from openkontext.engine.conditioning import (GLYPH_INDEX, TOKEN_PX, glyph_strip, glyph_strip_size, quoted_words,
                                             render_glyphs, text_length, word_to_write)  # fmt: skip
from openkontext.engine.loading import load_engine
from openkontext.engine.preserve import changed_region, mask_box, paste_back, region_box
from openkontext.engine.word_tokenizer import word_tokenizer


@pytest.mark.parametrize("prompt, words", [
    ("Change 'KELLAR' to 'SUMITH'", ["KELLAR", "SUMITH"]),
    ('Replace the word "OLD" with "NEW".', ["OLD", "NEW"]),
    ("Write \u2018HELLO WORLD\u2019 on the sign", ["HELLO WORLD"]),
    ("Don't change the dog's hat", []),
    ("Make the sign blank.", []),
])  # fmt: skip
def test_quoted_words_are_found_and_apostrophes_are_not_quotes(prompt, words):
    assert quoted_words(prompt) == words


def test_glyph_strip_shows_the_quoted_words_and_is_blank_without_them():
    size = glyph_strip_size(256, 256)
    assert size == (256, 64)
    assert glyph_strip_size(128, 40) == (128, 16)  # at least one token row
    ink = np.asarray(render_glyphs("Change 'KELLAR' to 'SUMITH'", size).convert("L")) < 128
    assert 0.05 < ink.mean() < 0.5
    columns = np.nonzero(ink.any(axis=0))[0]
    assert columns[0] > 0 and columns[-1] < 255  # fits inside the strip
    blank = np.asarray(render_glyphs("Make the sign blank.", size))
    assert (blank == 255).all()
    long = np.asarray(render_glyphs("Write 'ABCDEFGHIJKLMNOPQRSTUVWXYZ' now", size).convert("L")) < 128
    assert long.any() and long.any(axis=0).nonzero()[0][-1] < 255  # shrunk to fit, not cut off


def _ink_rows(strip: Image.Image) -> list[tuple[int, int]]:
    """(first, last) inked pixel row of each run of inked rows."""
    rows = (np.asarray(strip.convert("L")) < 128).any(axis=1).nonzero()[0]
    runs = np.split(rows, np.nonzero(np.diff(rows) > 1)[0] + 1)
    return [(int(run[0]), int(run[-1])) for run in runs if len(run)]


@pytest.mark.parametrize("side", [256, 128])
def test_rows_strip_puts_each_word_in_its_token_row_at_the_lettering_size(side):
    strip = glyph_strip("Change the text 'REPEAL' to 'TENSE'.", side, side, "rows")
    assert strip.size == glyph_strip_size(side, side)
    runs = _ink_rows(strip)
    assert len(runs) == 2  # one word per row
    for row, (top, bottom) in enumerate(runs):
        assert row * TOKEN_PX <= top and bottom < (row + 1) * TOKEN_PX  # inside its own token row
        assert abs((bottom - top + 1) - 0.08 * side * 0.73) <= 2  # capitals ~0.73 of the font, 0.08 of the side
    ink = np.asarray(strip.convert("L")) < 128
    assert ink.any(axis=0).nonzero()[0][0] >= TOKEN_PX  # starts one token in
    line = glyph_strip("Change the text 'REPEAL' to 'TENSE'.", side, side, "line")
    assert line.tobytes() == render_glyphs("Change the text 'REPEAL' to 'TENSE'.", strip.size).tobytes()
    assert line.tobytes() != strip.tobytes()


def test_rows_strip_shrinks_a_long_word_and_leaves_out_words_beyond_its_rows():
    long = np.asarray(glyph_strip("Write 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'", 256, 256, "rows").convert("L")) < 128
    assert long.any() and long.any(axis=0).nonzero()[0][-1] < 256 - TOKEN_PX  # shrunk to fit, not cut off
    five = glyph_strip("'A' 'B' 'C' 'D' 'E'", 256, 256, "rows")  # the strip is 64 px: four rows
    assert len(_ink_rows(five)) == 4
    assert (np.asarray(glyph_strip("Make the sign blank.", 256, 256, "rows")) == 255).all()
    with pytest.raises(ValueError, match="unknown glyph layout 'grid'"):
        glyph_strip("Write 'A'", 64, 64, "grid")


@pytest.mark.parametrize("prompt, word", [
    ("Change 'KELLAR' to 'SUMITH'", "SUMITH"),
    ("Make the sign say 'NEW' instead of 'OLD'.", "NEW"),
    ('Edit the badge so it reads "NEW" instead of "OLD".', "NEW"),
    ("Write \u2018HELLO WORLD\u2019 on the sign", "HELLO WORLD"),
    ("Add a sign that says 'OPEN' next to the door", "OPEN"),
    ("Remove the text 'OLD'.", None),
    ("  erase 'OLD' from the sign", None),
    ("Take the word 'OLD' off the banner.", None),
    ("Make the sign blank.", None),
    ("Don't change the dog's hat", None),
])  # fmt: skip
def test_word_to_write_is_the_new_word_and_none_for_removals(prompt, word):
    assert word_to_write(prompt) == word


def test_word_to_write_reads_every_text_template_of_the_toy_world():
    from openkontext.toyworld.prompts import TEMPLATES

    for family in ("replace_text", "add_text", "remove_text"):
        for template in TEMPLATES[family]:
            prompt = template.format(old="OLDWORD", new="NEWWORD", carrier="sign")
            expected = None if family == "remove_text" else "NEWWORD"
            assert word_to_write(prompt) == expected, prompt


def _ink_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    return mask_box(np.asarray(image.convert("L")) < 128)


def test_aligned_canvas_draws_the_word_to_write_inside_its_box_at_the_images_size():
    box = (60, 100, 200, 124)
    canvas = glyph_strip("Change 'KELLAR' to 'SUMITH'", 256, 192, "aligned", box=box)
    assert canvas.size == (256, 192)  # the image's own size: its tokens take the target's positions
    left, top, right, bottom = _ink_box(canvas)
    assert box[0] <= left and right <= box[2] and box[1] <= top and bottom <= box[3]
    assert bottom - top >= 0.7 * (box[3] - box[1])  # as large as the box allows, not a token-row size
    assert abs((left + right) / 2 - (box[0] + box[2]) / 2) <= 2  # centred
    other = glyph_strip("Change 'KELLAR' to 'TOMATO'", 256, 192, "aligned", box=box)
    assert other.tobytes() != canvas.tobytes()  # the new word's letters, not the old one's
    assert glyph_strip("Change 'KELLAR' to 'TOMATO'", 256, 192, "aligned", box=box).tobytes() == other.tobytes()
    for blank in (glyph_strip("Change 'KELLAR' to 'SUMITH'", 256, 192, "aligned"),  # no box yet: the first pass
                  glyph_strip("Remove the text 'KELLAR'.", 256, 192, "aligned", box=box)):  # fmt: skip
        assert blank.size == (256, 192) and (np.asarray(blank) == 255).all()


def test_text_length_follows_the_prompt_bytes_up_to_the_cap():
    tokenizer = ByT5Tokenizer()
    assert text_length("abc", 160, tokenizer) == 8
    assert text_length("a" * 7, 160, tokenizer) == 8 and text_length("a" * 8, 160, tokenizer) == 16
    assert text_length("é" * 10, 160, tokenizer) == 24  # bytes, not characters
    assert text_length("x" * 500, 160, tokenizer) == 160


def test_text_length_counts_word_tokens_for_a_word_tokenizer():
    tokenizer = word_tokenizer(["make", "the", "ball", "red"], 160)
    assert text_length("Make the ball red.", 160, tokenizer) == 8  # 5 tokens + the end token
    assert text_length("Make the ball vermilion.", 160, tokenizer) == 16  # 'vermilion' spelled: 9 letters


def _square(color, box_color=None):
    image = Image.new("RGB", (64, 64), color)
    if box_color:
        ImageDraw.Draw(image).rectangle((20, 20, 40, 40), fill=box_color)
    return image


def test_paste_back_keeps_the_input_where_the_decodes_agree():
    context = _square((40, 90, 200))
    context_decode = _square((44, 86, 204))  # a blurred round trip: within the threshold everywhere
    output = _square((46, 88, 199), box_color=(230, 30, 30))  # the model changed the box only
    region = changed_region(output, context_decode, threshold=0.1, grow=2)
    assert region[30, 30] and region[19, 30] and not region[5, 5]  # the box, grown by 2 px; not the rest
    result = np.asarray(paste_back(output, context, context_decode, threshold=0.1, grow=2))
    assert (result[5, 5] == (40, 90, 200)).all()  # exact input pixels outside
    assert (result[30, 30] == (230, 30, 30)).all()  # the model's pixels inside
    untouched = paste_back(output, context, context_decode, threshold=1.0)
    assert untouched.tobytes() == context.tobytes()  # threshold 1: nothing counts as changed


def test_region_box_is_the_largest_changed_region_without_the_specks():
    mask = np.zeros((64, 96), dtype=bool)
    mask[20:30, 10:50] = True  # the word's region
    mask[22:26, 50:52] = True  # touching it: part of the same region
    mask[5, 90] = mask[60, 2] = mask[40:43, 80:83] = True  # specks elsewhere
    assert region_box(mask) == (10, 20, 52, 30)
    assert mask_box(mask) == (2, 5, 91, 61)  # the plain box would span the specks
    assert region_box(np.zeros((8, 8), dtype=bool)) is None


@pytest.fixture(scope="module")
def glyph_engine():
    return load_engine("tiny-glyph", device="cpu")


def test_engine_appends_the_glyph_strip_and_sizes_the_text(glyph_engine):
    seen = {}

    def record(module, args, kwargs):
        seen["ids"] = kwargs["img_ids"][:, 0].tolist()
        seen["text"] = kwargs["encoder_hidden_states"].shape[1]

    hook = glyph_engine.pipeline.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        glyph_engine.edit([_square((200, 200, 40))], "Write 'HI'", seed=0, steps=1, guidance=3.0)
        assert seen["ids"].count(0) == seen["ids"].count(1) == 16 and seen["ids"].count(GLYPH_INDEX) == 4
        assert seen["text"] == 16
        glyph_engine.edit([], "A sign that says 'HI' on a beach", seed=0, steps=1, guidance=3.0)
        assert seen["ids"].count(0) == 16 and seen["ids"].count(1) == 0 and seen["ids"].count(GLYPH_INDEX) == 4
        assert seen["text"] == 40
    finally:
        hook.remove()


def test_the_engine_renders_the_strip_in_the_models_layout():
    import dataclasses

    engine = load_engine("tiny-glyph", device="cpu")
    strips = []
    original = engine._pipeline_for_one_call

    def recording():
        pipeline = original()
        strips.append(pipeline)
        return pipeline

    engine._pipeline_for_one_call = recording
    for layout in ("line", "rows"):
        engine.info = dataclasses.replace(engine.info, glyph_context=layout)
        engine.edit([_square((200, 200, 40))], "Write 'HI'", seed=0, steps=1, guidance=3.0)
        assert strips[-1].glyph_image.tobytes() == glyph_strip("Write 'HI'", 64, 64, layout).tobytes()


def test_an_aligned_model_finds_the_box_with_a_first_pass_and_writes_the_word_there(monkeypatch):
    import dataclasses

    import openkontext.engine.kontext as kontext

    # A random model's decodes differ from the context's by at most ~10 % anywhere: count any difference as a change
    # (the threshold is the default model's paste-back one, meant for trained weights).
    monkeypatch.setattr(kontext, "GLYPH_BOX_THRESHOLD", 0.02)
    boxes = []
    monkeypatch.setattr(kontext, "changed_region", lambda *args: boxes.append(changed_region(*args)) or boxes[-1])
    engine = load_engine("tiny-glyph", device="cpu")
    engine.info = dataclasses.replace(engine.info, glyph_context="aligned")
    canvases, progress = [], []
    original = engine.pipeline.transformer.forward

    def record(*args, **kwargs):
        canvases.append(engine_canvas[0].glyph_image)
        return original(*args, **kwargs)

    engine_canvas = []
    make_pipeline = engine._pipeline_for_one_call

    def recording():
        engine_canvas[:] = [make_pipeline()]
        return engine_canvas[0]

    engine._pipeline_for_one_call = recording
    engine.pipeline.transformer.forward = record
    image = _square((200, 200, 40))
    try:
        engine.edit([image], "Write 'HI' on the sign", seed=0, steps=2, guidance=3.0,
                    on_step=lambda step, total, preview: progress.append((step, total)))  # fmt: skip
        assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]  # two passes of two steps, reported as one run
        first, second = canvases[0], canvases[-1]
        assert (np.asarray(first) == 255).all()  # the first pass sees a blank canvas
        assert first.size == second.size == (64, 64)
        left, top, right, bottom = _ink_box(second)  # the second pass has the word drawn in the changed region
        region = region_box(boxes[0])
        assert region[0] <= left and region[1] <= top and right <= region[2] and bottom <= region[3]
        assert second.tobytes() == glyph_strip("Write 'HI' on the sign", 64, 64, "aligned", box=region).tobytes()
        canvases.clear(), progress.clear()
        engine.edit([image], "Remove the text 'HI'", seed=0, steps=2, guidance=3.0,
                    on_step=lambda step, total, preview: progress.append((step, total)))  # fmt: skip
        assert progress == [(1, 2), (2, 2)] and all((np.asarray(c) == 255).all() for c in canvases)  # one pass
    finally:
        engine.pipeline.transformer.forward = original


def test_glyph_guidance_moves_the_prediction_away_from_the_blank_canvas_by_the_scale(glyph_engine):
    import torch

    from openkontext.engine.glyph_guidance import GlyphGuidedTransformer

    transformer = glyph_engine.pipeline.transformer
    config = transformer.config
    generator = torch.Generator().manual_seed(0)
    target, context, canvas, blank = (torch.randn(1, 16, config.in_channels, generator=generator) for _ in range(4))
    ids = torch.zeros(48, 3)
    ids[16:32, 0], ids[32:, 0] = 1, GLYPH_INDEX
    grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).view(16, 2)
    ids[:, 1:] = grid.repeat(3, 1)  # each block at the same 4x4 positions, as the pipeline lays them out
    kwargs = dict(timestep=torch.tensor([0.7]), guidance=torch.tensor([3.0]),
                  pooled_projections=torch.randn(1, config.pooled_projection_dim, generator=generator),
                  encoder_hidden_states=torch.randn(1, 8, config.joint_attention_dim, generator=generator),
                  txt_ids=torch.zeros(8, 3), img_ids=ids)  # fmt: skip
    with torch.no_grad():
        word = transformer(hidden_states=torch.cat([target, context, canvas], 1), return_dict=False, **kwargs)[0]
        plain = transformer(hidden_states=torch.cat([target, context, blank], 1), return_dict=False, **kwargs)[0]
        guided = GlyphGuidedTransformer(transformer, blank, scale=4.0)(
            hidden_states=torch.cat([target, context, canvas], 1), return_dict=False, **kwargs)[0]
    assert not torch.allclose(word, plain, atol=1e-4)  # the canvas matters to this model at all
    torch.testing.assert_close(guided, plain + 4.0 * (word - plain), atol=1e-4, rtol=1e-4)
    assert GlyphGuidedTransformer(transformer, blank, 4.0).config is transformer.config  # a stand-in


def test_an_aligned_model_guides_only_the_second_pass_by_its_glyph_guidance(monkeypatch):
    import dataclasses

    import openkontext.engine.kontext as kontext

    monkeypatch.setattr(kontext, "GLYPH_BOX_THRESHOLD", 0.02)  # a random model: any difference is a change
    engine = load_engine("tiny-glyph", device="cpu")
    engine.info = dataclasses.replace(engine.info, glyph_context="aligned")
    calls, pipelines = [], []

    def record(module, args, kwargs):
        canvas = kwargs["img_ids"][:, 0] == GLYPH_INDEX
        calls.append(kwargs["hidden_states"][:, canvas].clone())

    make_pipeline = engine._pipeline_for_one_call
    engine._pipeline_for_one_call = lambda: pipelines.append(make_pipeline()) or pipelines[-1]
    hook = engine.pipeline.transformer.register_forward_pre_hook(record, with_kwargs=True)
    image = _square((200, 200, 40))
    try:
        plain = engine.edit([image], "Write 'HI' on the sign", seed=0, steps=2, guidance=3.0, preserve=0)
        assert [c.shape[0] for c in calls] == [1, 1, 1, 1]  # the model's default, 1: plain sampling
        calls.clear()
        guided = load_engine("tiny-glyph", device="cpu", glyph_guidance=3.0).info.glyph_guidance
        engine.info = dataclasses.replace(engine.info, glyph_guidance=guided)
        strong = engine.edit([image], "Write 'HI' on the sign", seed=0, steps=2, guidance=3.0, preserve=0)
    finally:
        hook.remove()
    assert [c.shape[0] for c in calls] == [1, 1, 2, 2]  # first pass plain; second pass word and blank, one batch
    blank_canvas = calls[0][0]
    assert torch_equal(calls[2][1], blank_canvas) and not torch_equal(calls[2][0], blank_canvas)
    assert strong.tobytes() != plain.tobytes()
    assert pipelines[-1].transformer is engine.pipeline.transformer  # the stand-in does not outlive the pass


def test_a_requests_glyph_guidance_overrides_the_models(monkeypatch):
    import dataclasses

    import openkontext.engine.kontext as kontext

    monkeypatch.setattr(kontext, "GLYPH_BOX_THRESHOLD", 0.02)  # a random model: any difference is a change
    engine = load_engine("tiny-glyph", device="cpu")
    engine.info = dataclasses.replace(engine.info, glyph_context="aligned")
    image, prompt, args = _square((200, 200, 40)), "Write 'HI' on the sign", dict(seed=0, steps=2, guidance=3.0,
                                                                                  preserve=0)  # fmt: skip
    plain = engine.edit([image], prompt, **args)
    asked = engine.edit([image], prompt, glyph_guidance=3.0, **args)
    engine.info = dataclasses.replace(engine.info, glyph_guidance=3.0)
    by_default = engine.edit([image], prompt, **args)
    asked_plain = engine.edit([image], prompt, glyph_guidance=1.0, **args)
    assert asked.tobytes() == by_default.tobytes() != plain.tobytes() == asked_plain.tobytes()
    for out_of_range in (-1.0, 31.0):
        with pytest.raises(ValueError, match="glyph_guidance must be 0 or more"):
            engine.edit([image], prompt, glyph_guidance=out_of_range, **args)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_the_glyph_strip_conditions_the_output(glyph_engine):
    # same prompt length and bytes except the quoted word: the strip (and the text) differ, so must the output
    image = _square((200, 200, 40))
    a = glyph_engine.edit([image], "Write 'AB'", seed=0, steps=2, guidance=3.0, preserve=0)
    b = glyph_engine.edit([image], "Write 'AB'", seed=0, steps=2, guidance=3.0, preserve=0)
    c = glyph_engine.edit([image], "Write 'XY'", seed=0, steps=2, guidance=3.0, preserve=0)
    assert a.tobytes() == b.tobytes() != c.tobytes()


def test_engine_paste_back_follows_the_request_then_the_model_default(glyph_engine):
    image = _square((200, 200, 40), box_color=(10, 120, 10))
    plain = glyph_engine.edit([image], "Write 'AB'", seed=0, steps=2, guidance=3.0, preserve=0)
    kept = glyph_engine.edit([image], "Write 'AB'", seed=0, steps=2, guidance=3.0, preserve=1.0)
    assert kept.tobytes() == image.tobytes() != plain.tobytes()  # threshold 1: every pixel is the input's
    assert glyph_engine.info.preserve == 0.0  # the tiny model's default: off
    default = glyph_engine.edit([image], "Write 'AB'", seed=0, steps=2, guidance=3.0)
    assert default.tobytes() == plain.tobytes()
    overridden = load_engine("tiny-glyph", device="cpu", preserve=1.0)
    assert overridden.edit([image], "Write 'AB'", seed=0, steps=2, guidance=3.0).tobytes() == image.tobytes()


@pytest.mark.parametrize("preset", ["none", "auto"])  # auto on a CPU: bf16 where native, fused q/k/v, prompt cache
def test_cfg_guidance_mode_runs_two_passes_per_step_and_follows_the_scale(preset):
    import dataclasses

    import torch

    from openkontext.engine.acceleration.devices import configure

    engine = load_engine("tiny-glyph", device="cpu", acceleration=configure(torch.device("cpu"), preset,
                                                                                 "compile=off"))  # fmt: skip
    image = _square((200, 200, 40))
    embedded = engine.edit([image], "Write 'AB'", seed=0, steps=2, guidance=3.0, preserve=0)
    engine.info = dataclasses.replace(engine.info, guidance_mode="cfg")
    calls = []
    hook = engine.pipeline.transformer.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        weak = engine.edit([image], "Write 'AB'", seed=0, steps=2, guidance=1.0, preserve=0)
        assert len(calls) == 2  # guidance 1: plain conditional sampling, one pass per step
        strong = engine.edit([image], "Write 'AB'", seed=0, steps=2, guidance=3.0, preserve=0)
        assert len(calls) == 2 + 4
    finally:
        hook.remove()
    assert len({embedded.tobytes(), weak.tobytes(), strong.tobytes()}) == 3
