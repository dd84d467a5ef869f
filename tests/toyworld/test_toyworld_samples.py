"""Every category and edit family yields a valid (input, instruction, target) triple with a correct mask."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from openkontext.toyworld import CATEGORIES, FAMILIES, Sample, generate
from openkontext.toyworld.characters import identity_count
from openkontext.toyworld.edits import category_of


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def union_box_mask(boxes, shape, pad: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes:
        m[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = True
    return m


def check_local_like(inp: Image.Image, target: Image.Image, mask: np.ndarray, meta: dict) -> None:
    a, b = arr(inp), arr(target)
    assert mask.any() and not mask.all()
    # outside the mask nothing changes, exactly
    assert np.array_equal(a[~mask], b[~mask])
    # the mask is the change (grown a little), and the change is confined to the edited items' boxes
    changed = np.any(a != b, axis=2)
    assert changed.any()
    assert mask.sum() <= changed.sum() * 4 + 400
    allowed = union_box_mask([it["bbox"] for it in meta["items"]], mask.shape, pad=4)
    assert not (mask & ~allowed).any(), meta["family"]


def check_sample(s: Sample) -> None:
    w, h = s.target.size
    assert s.target.mode == "RGB"
    assert s.mask.shape == (h, w) and s.mask.dtype == bool
    assert s.prompt and s.prompt[0].isupper()
    assert s.category in CATEGORIES and category_of(s.family) == s.category
    if s.category == "text_to_image":
        assert s.input_image is None and s.mask.all()
        return
    assert s.input_image.size == (w, h) and s.input_image.mode == "RGB"
    if s.category in ("local", "text"):
        check_local_like(s.input_image, s.target, s.mask, s.meta)
    elif s.category == "global":
        subjects = s.regions["subjects"]
        assert subjects.any() and np.array_equal(s.mask, ~subjects)
        assert np.array_equal(arr(s.input_image)[subjects], arr(s.target)[subjects])
        assert np.any(arr(s.input_image)[s.mask] != arr(s.target)[s.mask])
        # what changed, in the scene graphs (a studio picture's scene is its backdrop)
        key = {"change_scene": "backdrop" if s.meta.get("studio") else "kind", "change_time": "time",
               "change_weather": "weather"}[s.family]
        assert s.meta["before"][key] == s.meta["old"] and s.meta["after"][key] == s.meta["new"]
    elif s.category == "style":
        assert s.mask.all()
        assert np.abs(arr(s.input_image).astype(int) - arr(s.target)).mean() > 8
    elif s.category == "character_reference":
        assert s.mask.all()
        sil, src = s.regions["subject"], s.regions["source_subject"]
        assert sil.sum() > 300 and src.sum() > 300
        ys, xs = np.nonzero(sil)
        x0, y0, x1, y1 = s.meta["items"][0]["bbox"]
        assert x0 - 1 <= xs.min() and xs.max() <= x1 and y0 - 1 <= ys.min() and ys.max() <= y1
        # the same identity, somewhere else, in another scene
        assert s.meta["items"][0]["identity"] == s.meta["source"]["identity"] == s.meta["identity"]
        assert s.meta["before"]["kind"] != s.meta["after"]["kind"]
        assert (sil & src).sum() < 0.5 * sil.sum()
    elif s.category == "iterative":
        assert 3 <= len(s.turns) <= 8
        assert s.prompt == s.turns[0].prompt and s.target is s.turns[0].target
        prev = s.input_image
        for turn in s.turns:
            check_local_like(prev, turn.target, turn.mask, turn.meta)
            prev = turn.target


def test_every_family_is_produced_and_valid(family_samples):
    all_families = {f for fams in FAMILIES.values() for f in fams}
    assert set(family_samples) == all_families
    for fam, samples in family_samples.items():
        for s in samples:
            check_sample(s)


def test_heldout_non_square_samples_are_valid(heldout_family_samples):
    for samples in heldout_family_samples.values():
        for s in samples:
            assert s.target.size == (256, 192)
            check_sample(s)


def test_prompts_name_what_changes(family_samples):
    for s in family_samples["replace_text"]:
        assert s.meta["old_word"] in s.prompt and s.meta["new_word"] in s.prompt
    for s in family_samples["recolor_object"]:
        assert s.meta["new_color"] in s.prompt and s.meta["old_color"] in s.prompt
    for s in family_samples["style_brick"]:
        assert any(w in s.prompt.lower() for w in ("lego", "brick"))


@pytest.mark.parametrize("size", [256, (256, 192), (192, 256)])
def test_same_seed_same_bytes(size):
    for seed in (0, 1, 2, 3, 17):
        a, b = generate(seed, size=size), generate(seed, size=size)
        assert a.prompt == b.prompt and a.meta == b.meta and a.category == b.category
        assert a.target.tobytes() == b.target.tobytes()
        assert np.array_equal(a.mask, b.mask)
        assert (a.input_image is None) == (b.input_image is None)
        if a.input_image is not None:
            assert a.input_image.tobytes() == b.input_image.tobytes()
        for ta, tb in zip(a.turns, b.turns):
            assert ta.target.tobytes() == tb.target.tobytes() and ta.prompt == tb.prompt


def test_different_seeds_differ():
    targets = {generate(seed).target.tobytes() for seed in range(12)}
    assert len(targets) == 12


def test_categories_filter_and_errors():
    for seed in range(5):
        assert generate(seed, categories=["text"]).category == "text"
    with pytest.raises(ValueError, match="recolor_object"):  # the message lists the families too
        generate(0, categories=["nope"])
    with pytest.raises(ValueError):
        generate(0, split="validation")


def test_an_edit_family_can_be_drawn_alone_or_beside_categories():
    samples = [generate(seed, size=64, categories=["recolor_object"]) for seed in range(6)]
    assert {(s.category, s.meta["family"]) for s in samples} == {("local", "recolor_object")}
    studio = [generate(seed, size=64, categories=["add_object"]).meta.get("studio", False) for seed in range(60)]
    assert 0 < sum(studio) < 30  # a family keeps its category's share of studio pictures (STUDIO_SHARE)
    mixed = [generate(seed, size=64, categories=["move_object", "style"]).meta["family"] for seed in range(40)]
    assert "move_object" in mixed and set(mixed) - {"move_object"} <= set(FAMILIES["style"])


def test_thousands_of_identities():
    assert identity_count() > 10_000


def test_words_are_legible_size(family_samples):
    # cap height >= 14 px at 256 px: font size >= 0.08 * 256 ~ 20 px
    for s in family_samples["replace_text"] + family_samples["add_text"]:
        sign = [it for it in s.meta["items"] if it["type"] == "sign"][0]
        assert sign["text_size"] * 256 >= 20
