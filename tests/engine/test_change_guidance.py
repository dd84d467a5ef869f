"""Change guidance (engine/change_guidance.py): on a model whose card says ``"guidance": "change"``, the request's
guidance scales how far each step's prediction moves from the unchanged input. The tiny model's random weights make
a prediction far from the copy, so every scale shows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from openkontext.engine.change_guidance import CHANGE_GUIDANCE_REFERENCE, change_scale
from openkontext.engine.loading import load_engine


@pytest.fixture(scope="module")
def engines():
    plain = load_engine("tiny", device="cpu")
    changing = load_engine("tiny", device="cpu")
    changing.info = dataclasses.replace(changing.info, guidance_mode="change")
    return plain, changing


def _scene() -> Image.Image:
    image = np.zeros((64, 64, 3), np.uint8)
    image[:] = (40, 90, 200)
    image[16:48, 20:44] = (230, 200, 30)
    return Image.fromarray(image)


def _distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_at_the_reference_guidance_the_model_samples_as_trained_in_one_pass_per_step(engines):
    plain, changing = engines
    scene = _scene()
    calls = []
    hook = changing.pipeline.transformer.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        guided = changing.edit([scene], "make it red", seed=3, steps=3, guidance=CHANGE_GUIDANCE_REFERENCE, preserve=0)
        assert len(calls) == 3  # the identity edit needs no second pass
        changing.edit([scene], "make it red", seed=3, steps=3, guidance=6.0, preserve=0)
        assert len(calls) == 6
    finally:
        hook.remove()
    expected = plain.edit([scene], "make it red", seed=3, steps=3, guidance=CHANGE_GUIDANCE_REFERENCE, preserve=0)
    assert guided.tobytes() == expected.tobytes()


def test_higher_guidance_moves_the_result_further_from_the_input(engines):
    _, changing = engines
    scene = _scene()
    # Guidance near 0 follows the copy velocity: the sample lands near the input's own latent (its autoencoder decode,
    # far from the input itself with the tiny model's random autoencoder).
    round_trip = changing.edit([scene], "make it red", seed=3, steps=4, guidance=0.1, preserve=0)
    distances = [_distance(changing.edit([scene], "make it red", seed=3, steps=4, guidance=g, preserve=0), round_trip)
                 for g in (0.5, 1.5, 3.0, 6.0)]  # fmt: skip
    assert distances == sorted(distances) and distances[0] > 0, distances


def test_text_to_image_has_no_input_to_move_from_and_samples_unguided(engines):
    plain, changing = engines
    for guidance in (0.5, 6.0):
        assert (changing.edit([], "a red ball", seed=5, steps=2, guidance=guidance).tobytes()
                == plain.edit([], "a red ball", seed=5, steps=2, guidance=guidance).tobytes())  # fmt: skip


def test_the_scale_is_one_at_the_reference_rises_with_guidance_and_never_turns_negative():
    scales = [change_scale(g) for g in (0.1, 1.0, CHANGE_GUIDANCE_REFERENCE, 5.0, 99.0)]
    assert scales[2] == 1.0 and scales == sorted(scales) and len(set(scales)) == 5
    assert change_scale(-1e6) == 0.0
