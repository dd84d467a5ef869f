"""The OCR engine reads the words the toy world renders (the ground truth of the text metrics)."""

from __future__ import annotations

import pytest

from openkontext.quality import ocr
from openkontext.toyworld import generate

pytestmark = pytest.mark.skipif(not ocr.available(), reason="rapidocr + onnxruntime not installed")


def test_ocr_reads_rendered_words_of_heldout_targets():
    cases = []
    seed = 0
    while len(cases) < 30:
        s = generate(seed, split="heldout", categories=["text"])
        seed += 1
        if s.meta["new_word"]:
            cases.append((s.target, s.meta["text_box"], s.meta["new_word"], s.input_image, s.meta["old_word"]))
    read = sum(ocr.contains_word(img, word, box) for img, box, word, _, _ in cases)
    assert read / len(cases) >= 0.9
    # and it does not hallucinate the new word where it is not written
    false = sum(ocr.contains_word(inp, word, box) for _, box, word, inp, _ in cases)
    assert false == 0


def test_ocr_of_a_blank_board_is_empty():
    for seed in range(40):
        s = generate(seed, split="heldout", categories=["text"])
        if s.family == "remove_text":
            assert s.meta["old_word"] not in ocr.read_words(s.target, s.meta["text_box"])
            assert s.meta["old_word"] in ocr.read_words(s.input_image, s.meta["text_box"])
            return
    raise AssertionError("no remove_text sample found")
