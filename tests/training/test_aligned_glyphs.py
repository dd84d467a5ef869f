"""The aligned glyph canvas in training (training/glyphs.py): the word the prompt writes, drawn in the edit's change
mask's box moved by a jitter, a share of examples blank as the engine's first pass sees them; real toy-world text
edits, rendered and encoded as a training chunk is."""

from __future__ import annotations

import numpy as np
import torch

from openkontext.engine.conditioning import glyph_strip, word_to_write
from openkontext.engine.configs import build_pipeline
from openkontext.engine.preserve import mask_box
from openkontext.toyworld import generate
from openkontext.training.config import PRESETS, preset
from openkontext.training.data import edit_examples
from openkontext.training.glyphs import BLANK_SHARE, BOX_JITTER, jittered, training_glyph
from openkontext.training.latents import ChunkedBatches, chunk_example


def _text_edits(n: int, size=(256, 256)):
    """(prompt, change mask) of n toy-world text edits that write a word."""
    found = []
    for seed in range(200):
        sample = generate(5000 + seed, split="train", size=size, categories=["text"])
        _, prompt, _, mask = edit_examples(sample, np.random.default_rng(0))
        if word_to_write(prompt):
            found.append((prompt, np.asarray(mask)))
        if len(found) == n:
            return found
    raise AssertionError("too few text edits that write a word")


def _ink(image) -> np.ndarray:
    return np.asarray(image.convert("L")) < 128


def test_the_word_is_drawn_in_the_masks_box_moved_by_at_most_the_jitter():
    drawn = blank = 0
    for k, (prompt, mask) in enumerate(_text_edits(40)):
        image = training_glyph(prompt, (256, 256), "aligned", mask, np.random.default_rng(k))
        assert image.size == (256, 256)
        ink = mask_box(_ink(image))
        if ink is None:
            blank += 1
            continue
        drawn += 1
        left, top, right, bottom = mask_box(mask)
        slack_x, slack_y = BOX_JITTER * (right - left) + 1, BOX_JITTER * (bottom - top) + 1
        assert left - slack_x <= ink[0] and ink[2] <= right + slack_x
        assert top - slack_y <= ink[1] and ink[3] <= bottom + slack_y
        again = training_glyph(prompt, (256, 256), "aligned", mask, np.random.default_rng(k))
        assert again.tobytes() == image.tobytes()  # a pure function of its rng
    assert 0 < blank < 0.5 * 40 and drawn > 0.5 * 40  # BLANK_SHARE of them blank
    assert abs(blank / 40 - BLANK_SHARE) < 0.2


def test_jitter_moves_the_box_and_keeps_it_inside_the_image():
    rng = np.random.default_rng(0)
    boxes = {jittered((100, 100, 200, 130), (256, 256), rng) for _ in range(50)}
    assert len(boxes) > 40
    for left, top, right, bottom in boxes:
        assert 85 <= left <= 115 and 95 <= top <= 105 and 185 <= right <= 215 and 125 <= bottom <= 135
    for left, top, right, bottom in (jittered((0, 250, 4, 256), (256, 256), rng) for _ in range(50)):
        assert 0 <= left < right <= 256 and 0 <= top < bottom <= 256


def test_other_layouts_ignore_the_mask():
    prompt, mask = _text_edits(1)[0]
    for layout in ("line", "rows"):
        image = training_glyph(prompt, (256, 256), layout, mask, np.random.default_rng(0))
        assert image.tobytes() == glyph_strip(prompt, 256, 256, layout).tobytes()


def test_an_aligned_chunk_encodes_image_sized_canvases_at_the_targets_positions():
    cfg = preset("tiny-glyph", categories=("text",))
    vae = build_pipeline(cfg.architecture, seed=0).vae
    batch = ChunkedBatches(cfg, vae, "aligned", torch.device("cpu"))(0)
    assert batch.glyphs.shape == batch.target.shape  # one canvas token per target token
    size = tuple(8 * side for side in batch.target.shape[-2:][::-1])
    example = chunk_example(cfg, 0, 0, size, ["text"], "aligned")
    assert example[5].shape[-2:] == example[2].shape[-2:]


def test_the_aligned_preset_trains_text_three_times_as_often():
    cfg = PRESETS["default-aligned"]
    assert cfg.architecture.glyph_context == "aligned"
    assert cfg.categories.count("text") == 3 and cfg.categories.count("local") == 1
    _assert_warm_starts_from_an_aligned_candidate("default-aligned")


def _assert_warm_starts_from_an_aligned_candidate(name: str) -> None:
    """The preset starts from a committed candidate of the aligned line, which the engine serves with its canvas."""
    from pathlib import Path

    from openkontext.engine.model_info import read_card

    folder = Path(__file__).resolve().parents[2] / PRESETS[name].flow.init_from
    assert read_card(folder)["glyph_context"] == "aligned", name


def test_the_family_presets_draw_single_edit_families_the_failing_ones_more_often():
    for name in ("default-families", "families-weighted"):
        _assert_warm_starts_from_an_aligned_candidate(name)
    families = PRESETS["default-families"].categories
    assert families.count("recolor_object") == families.count("remove_text") == 1 and "local" not in families
    weighted = PRESETS["families-weighted"].categories
    assert (weighted.count("recolor_object"), weighted.count("move_object"), weighted.count("remove_text")) == (4, 2, 1)
    assert set(weighted) == set(families) and len(weighted) == 63  # the mixture candidate a8 was trained on


def test_an_aligned_run_exports_a_model_the_engine_serves_with_its_canvas(tmp_path):
    import json

    from openkontext.engine.loading import load_engine
    from openkontext.training.checkpoint import export
    from openkontext.training.loop import train_flow

    train_flow(preset("tiny-glyph", model="tiny-aligned", **{"flow.steps": 2}), tmp_path / "run")
    export(tmp_path / "run", tmp_path / "model", glyph_guidance=6.0)
    written = json.loads((tmp_path / "model" / "openkontext.json").read_text())
    assert (written["glyph_context"], written["glyph_guidance"]) == ("aligned", 6.0)
    card = (tmp_path / "model" / "README.md").read_text()
    assert "canvas of the image's size" in card and "quarter of the image high" not in card
    assert "guided towards the drawn letters at scale 6" in card
    info = load_engine(str(tmp_path / "model"), device="cpu").info
    assert (info.glyph_context, info.glyph_guidance) == ("aligned", 6.0)
