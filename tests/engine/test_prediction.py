"""The context-residual output (engine/prediction.py) on the tiny model: the velocity it turns the transformer's
output into, an exact copy of the context image from a zero output whatever the seed, and the card that selects it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from openkontext.engine.configs import CONFIGS, build_pipeline
from openkontext.engine.loading import load_engine
from openkontext.engine.prediction import apply_prediction, context_base
from openkontext.training.checkpoint import zero_output
from openkontext.training.flow import context_sequence, pack

RESIDUAL = dataclasses.replace(CONFIGS["tiny-glyph"], prediction="context_residual")  # with a glyph strip
COPIER = dataclasses.replace(CONFIGS["tiny"], prediction="context_residual")  # its random decoder tells inputs apart


def _inputs(pipeline, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    channels = pipeline.transformer.config.in_channels // 4
    target, ids = pack(torch.randn(2, channels, 4, 6, generator=g), 0, "cpu")
    context, context_ids = context_sequence(torch.randn(2, channels, 4, 6, generator=g),
                                            torch.randn(2, channels, 2, 6, generator=g), "cpu")  # fmt: skip
    text = torch.randn(2, 5, pipeline.transformer.config.joint_attention_dim, generator=g)
    return dict(
        hidden_states=torch.cat([target, context], 1), img_ids=torch.cat([ids, context_ids]),
        timestep=torch.tensor([0.9, 0.3]), guidance=torch.tensor([3.0, 3.0]), encoder_hidden_states=text,
        pooled_projections=torch.randn(2, pipeline.transformer.config.pooled_projection_dim, generator=g),
        txt_ids=torch.zeros(5, 3), return_dict=False,
    ), target.shape[1]  # fmt: skip


def test_the_velocity_is_the_way_from_the_noisy_latent_to_context_plus_output():
    plain = build_pipeline("tiny-glyph", seed=3).transformer
    residual = build_pipeline(RESIDUAL, seed=3).transformer  # the same weights, the hook installed
    kwargs, n = _inputs(build_pipeline("tiny-glyph", seed=3))
    raw = plain(**kwargs)[0]
    velocity = residual(**kwargs)[0]
    noisy, context = kwargs["hidden_states"][:, :n], kwargs["hidden_states"][:, n : 2 * n]
    sigma = kwargs["timestep"].view(-1, 1, 1)
    expected = (noisy - (context + raw[:, :n])) / sigma
    assert torch.allclose(velocity[:, :n], expected, atol=1e-5)
    # the glyph strip and the context are not targets: no base there
    assert torch.allclose(context_base(kwargs["hidden_states"], kwargs["img_ids"])[:, n:], torch.zeros(1))


def test_installing_twice_converts_once():
    pipeline = build_pipeline(RESIDUAL, seed=3)
    kwargs, n = _inputs(pipeline)
    once = pipeline.transformer(**kwargs)[0]
    apply_prediction(pipeline.transformer, "context_residual")
    assert torch.equal(pipeline.transformer(**kwargs)[0], once)


def test_an_unknown_prediction_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown prediction 'x0'.*velocity, context_residual"):
        apply_prediction(build_pipeline("tiny", seed=0).transformer, "x0")


@pytest.fixture(scope="module")
def copier_folder(tmp_path_factory):
    """The tiny residual model with its output layer at zero, saved as a model folder whose card declares it."""
    pipeline = build_pipeline(COPIER, seed=0)
    zero_output(pipeline.transformer)
    folder = tmp_path_factory.mktemp("copier")
    pipeline.save_pretrained(folder, safe_serialization=True)
    card = {"name": "tiny-copier", "native_side": 64, "max_sequence_length": 48, "prediction": "context_residual"}
    (folder / "openkontext.json").write_text(json.dumps(card))
    return folder


def _picture(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(pixels).resize((64, 64), Image.Resampling.BILINEAR)


def test_a_zero_output_gives_back_the_context_image_whatever_the_seed_and_prompt(copier_folder):
    engine = load_engine(str(copier_folder), device="cpu")
    assert engine.info.prediction == "context_residual"
    image = _picture(1)
    first = np.asarray(engine.edit([image], "Make the ball red.", seed=1, steps=4, guidance=3.0, preserve=0))
    second = np.asarray(engine.edit([image], "Change 'A' to 'B'.", seed=2, steps=7, guidance=1.0, preserve=0))
    assert np.abs(first.astype(int) - second.astype(int)).max() <= 1
    other = np.asarray(engine.edit([_picture(2)], "Make the ball red.", seed=1, steps=4, guidance=3.0, preserve=0))
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 5  # it follows the context image
    # the same weights read as velocities (no card entry) do depend on the seed
    (copier_folder / "openkontext.json").write_text(json.dumps({"native_side": 64, "max_sequence_length": 48}))
    try:
        plain = load_engine(str(copier_folder), device="cpu")
        a = np.asarray(plain.edit([image], "Make the ball red.", seed=1, steps=4, guidance=3.0, preserve=0))
        b = np.asarray(plain.edit([image], "Make the ball red.", seed=2, steps=4, guidance=3.0, preserve=0))
        assert np.abs(a.astype(int) - b.astype(int)).max() > 1
    finally:
        (copier_folder / "openkontext.json").unlink()
