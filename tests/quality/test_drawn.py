"""The images drawn outside the toy world: the same pixels every time, every edit names one of them, and each
shows what its prompts talk about."""

from __future__ import annotations

import numpy as np

from openkontext.quality.drawn import DRAWN_EDITS, drawn_images


def test_drawn_images_are_deterministic_and_cover_every_edit():
    first, second = drawn_images(), drawn_images()
    assert list(first) == list(second) and all(first[k].tobytes() == second[k].tobytes() for k in first)
    assert {name for name, _ in DRAWN_EDITS} <= set(first)
    assert all(image.size == (256, 256) for image in first.values())
    assert drawn_images(128)["logo on white"].size == (128, 128)


def test_the_prompts_match_the_pictures():
    images = {name: np.asarray(image) for name, image in drawn_images().items()}
    shapes = images["gradient + shapes"]
    assert (shapes[110, 90] == (30, 60, 200)).all()  # the blue circle the prompt recolours
    assert (shapes[190, 190] == (20, 160, 60)).all()  # the green triangle it removes
    logo = images["logo on white"]
    assert (logo[90, 60] == (200, 20, 60)).all() and (logo[5, 5] == 255).all()  # a red badge on white
    assert (logo[100:160, 60:200] == 255).all(axis=-1).any()  # white letters inside the badge
