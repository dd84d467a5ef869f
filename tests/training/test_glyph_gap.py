"""scripts/glyph_gap.py: the text edits' changed-token error with each case's own glyph strip, another quoting
case's and a blank one. Only quoting cases swap strips, so a case that quotes nothing ("Remove the writing…") must
score exactly the same with its own strip and "another case's"; an untrained model reads every context token, so a
case that quotes a word must not."""

from __future__ import annotations

import subprocess
import sys

import torch

from openkontext.engine.conditioning import quoted_words, word_to_write
from openkontext.training.checkpoint import build_trained_pipeline


def test_only_quoting_cases_change_with_the_strip(tiny_run, load_script):
    pipeline, cfg, _ = build_trained_pipeline(tiny_run)
    result = load_script("glyph_gap").strip_errors(pipeline, cfg, 16)
    quoting = [bool(quoted_words(prompt)) for prompt in result.prompts]
    assert any(quoting) and not all(quoting)
    for by_kind in result.errors.values():
        own, another, blank = by_kind["own strip"], by_kind["another case's"], by_kind["blank"]
        for case, quotes in enumerate(quoting):
            assert torch.equal(own[case], another[case]) != quotes
        # the blank strip is encoded on its own, so it matches a blank own strip only up to float rounding: far
        # closer than any case's own strip with letters
        gap = [float((own[case] - blank[case]).abs().max()) for case in range(len(quoting))]
        assert max(g for g, q in zip(gap, quoting) if not q) < min(g for g, q in zip(gap, quoting) if q) / 4
    ratios = load_script("glyph_gap").family_ratios(result)
    assert set(ratios) == {0.9, 0.5, 0.2} and all(set(r) == set(result.families) for r in ratios.values())


def test_an_aligned_canvas_swaps_only_the_letters(tiny_run, load_script):
    import dataclasses

    pipeline, cfg, _ = build_trained_pipeline(tiny_run)
    cfg = dataclasses.replace(cfg, model="tiny-aligned")  # the same weights, given an aligned canvas
    script = load_script("glyph_gap")
    result = script.strip_errors(pipeline, cfg, 16)
    writing = [word_to_write(prompt) is not None for prompt in result.prompts]
    assert any(writing) and not all(writing)
    for by_kind in result.errors.values():
        own, another = by_kind["own strip"], by_kind["another case's"]
        for case, writes in enumerate(writing):
            assert torch.equal(own[case], another[case]) != writes


def test_the_script_prints_a_row_per_sigma_and_family(tiny_run, load_script):
    script = load_script("glyph_gap").__file__
    out = subprocess.run([sys.executable, script, "--run", str(tiny_run), "--cases", "16"], capture_output=True,
                         text=True, timeout=300, check=True).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| 0.")]
    assert len(rows) == 3 * 3 and "| own strip | another case's | blank |" in out


def test_glyph_box_records_the_engines_own_first_pass_box(load_script, monkeypatch):
    import dataclasses

    from openkontext.engine import kontext
    from openkontext.engine.loading import load_engine

    script = load_script("glyph_box")
    assert script.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and script.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert script.iou((0, 0, 10, 10), (5, 0, 15, 10)) == 50 / 150
    assert script.letter_similarity("Moth", ["OTLY", "MOTH"]) == 1.0 and script.letter_similarity("MOTH", []) == 0.0
    assert script.letter_similarity("MOTH", ["OTLY"]) == 0.5  # O, T of 4 + 4 letters
    engine = load_engine("tiny-glyph", device="cpu")
    engine.info = dataclasses.replace(engine.info, glyph_context="aligned")
    # a random model's decodes barely differ from the context's: count any difference as the first pass's change
    monkeypatch.setattr(kontext, "GLYPH_BOX_THRESHOLD", 0.02)
    records = script.first_pass_boxes(engine, cases=2, steps=1)
    assert len(records) == 2 and all(r["word"] and r["mask_box"] for r in records)
    assert all(r["box"] is not None and isinstance(r["read"], list) and r["seconds"] > 0 for r in records)
    assert kontext.region_box.__name__ == "region_box"  # the engine's own, restored
