"""The engine end to end on the tiny random model: the real diffusers FluxKontextPipeline, real tensors, no mocks."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from openkontext.engine.kontext import EditCancelled
from openkontext.engine.loading import load_engine

PATCH = 16  # pixels per transformer token side: VAE factor 8 x 2x2 packing


@pytest.fixture(scope="module")
def engine():
    return load_engine("tiny", device="cpu")


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    return Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BILINEAR)


def run(engine, images=None, prompt="make it blue", **overrides) -> np.ndarray:
    params = dict(seed=1, steps=3, guidance=2.5) | overrides
    images = [picture(200, 100)] if images is None else images
    return np.asarray(engine.edit(images, prompt, **params))


def test_tiny_engine_describes_itself(engine):
    assert engine.info.placeholder is True
    assert engine.pipeline.transformer.config.guidance_embeds is True
    assert (64, 64) in engine.info.buckets
    assert str(engine.device) == "cpu"


# --- determinism ----------------------------------------------------------------------------------------------------


def test_same_arguments_give_byte_identical_output(engine):
    first, second = run(engine), run(engine)
    assert first.dtype == np.uint8 and first.std() > 0
    assert first.tobytes() == second.tobytes()


def test_a_fresh_engine_gives_the_same_output(engine):
    assert run(load_engine("tiny", device="cpu")).tobytes() == run(engine).tobytes()


def test_different_seeds_differ(engine):
    assert not np.array_equal(run(engine, seed=1), run(engine, seed=2))


def test_large_seed_works(engine):
    assert run(engine, seed=2**64 - 1).shape == run(engine, seed=0).shape


def test_different_prompts_differ(engine):
    assert not np.array_equal(run(engine, prompt="make it blue"), run(engine, prompt="make it red"))


def test_guidance_changes_the_output(engine):
    assert not np.array_equal(run(engine, guidance=1.0), run(engine, guidance=5.0))


def test_the_context_image_conditions_the_output(engine):
    a = run(engine, images=[picture(200, 100, seed=10)])
    b = run(engine, images=[picture(200, 100, seed=11)])
    assert not np.array_equal(a, b)


def test_text_to_image_without_images(engine):
    image = engine.edit([], "a red ball", seed=4, steps=2, guidance=3.0)
    assert image.mode == "RGB" and image.size == engine.output_size([]) == (64, 64)
    again = engine.edit([], "a red ball", seed=4, steps=2, guidance=3.0)
    assert np.array_equal(np.asarray(image), np.asarray(again))


def test_concurrent_edits_match_sequential_ones(engine):
    """Worker threads share one set of weights; each call has its own scheduler state."""
    expected = {seed: run(engine, seed=seed, steps=4) for seed in (5, 6)}
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(seed):
        try:
            results[seed] = run(engine, seed=seed, steps=4)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    for seed, array in expected.items():
        assert np.array_equal(results[seed], array)


# --- output size ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("input_size", "orientation"),
    [((200, 100), "wide"), ((100, 200), "tall"), ((90, 90), "square"), ((120, 90), "wide"), ((90, 160), "tall"),
     ((1000, 430), "wide"), ((33, 77), "tall")],
)  # fmt: skip
def test_output_follows_the_input_aspect(engine, input_size, orientation):
    image = picture(*input_size)
    expected = engine.output_size([image])
    result = engine.edit([image], "edit", seed=0, steps=1, guidance=2.5)
    assert result.size == expected
    assert expected in engine.info.buckets
    width, height = result.size
    assert {"wide": width > height, "tall": height > width, "square": width == height}[orientation]
    assert width % PATCH == 0 and height % PATCH == 0


def test_two_to_one_input_gets_an_exact_two_to_one_output_both_ways(engine):
    assert engine.edit([picture(200, 100)], "x", seed=0, steps=1, guidance=2.5).size == (96, 48)
    assert engine.edit([picture(100, 200)], "x", seed=0, steps=1, guidance=2.5).size == (48, 96)


@pytest.mark.parametrize("size", [(112, 32), (32, 112), (64, 64), (16, 16)])
def test_size_overrides_the_input_aspect(engine, size):
    assert engine.output_size([picture(200, 100)], size=size) == size
    assert engine.edit([picture(200, 100)], "x", seed=0, steps=1, guidance=2.5, size=size).size == size


@pytest.mark.parametrize("size", [(100, 60), (0, 64), (64, 8)])
def test_size_the_model_cannot_make_is_refused(engine, size):
    """The pipeline would silently round it down; the caller must not get a size it did not ask for."""
    with pytest.raises(ValueError, match="multiples of 16"):
        engine.edit([picture(200, 100)], "x", seed=0, steps=1, guidance=2.5, size=size)


@pytest.mark.parametrize(("ratio", "wide"), [(21 / 9, True), (16 / 9, True), (9 / 21, False), (9 / 16, False)])
def test_aspect_ratio_overrides_the_input_aspect(engine, ratio, wide):
    square_input = picture(80, 80)
    size = engine.output_size([square_input], aspect_ratio=ratio)
    assert size in engine.info.buckets
    assert (size[0] > size[1]) is wide
    assert engine.edit([square_input], "x", seed=0, steps=1, guidance=2.5, aspect_ratio=ratio).size == size


# --- progress and cancellation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 3, 150])
def test_on_step_is_called_once_per_step_in_order(engine, steps):
    calls = []
    result = engine.edit(
        [picture(200, 100)], "x", seed=0, steps=steps, guidance=2.5,
        on_step=lambda step, total, preview: calls.append((step, total)),
    )  # fmt: skip
    assert result.size == (96, 48)
    assert [step for step, _ in calls] == list(range(1, steps + 1))
    assert all(total == steps for _, total in calls)


def test_on_step_offers_a_small_jpeg_preview_of_the_current_latents(engine):
    previews = []
    engine.edit([picture(200, 100)], "x", seed=0, steps=3, guidance=2.5,
                on_step=lambda step, total, preview: previews.append(preview()))  # fmt: skip
    images = [Image.open(io.BytesIO(data)) for data in previews]
    assert [image.format for image in images] == ["JPEG"] * 3
    assert all(max(image.size) <= 64 and image.size[0] > image.size[1] for image in images)  # the 2:1 output's shape


def test_returning_false_cancels_after_that_step(engine):
    calls = []

    def on_step(step, total, latents):
        calls.append(step)
        return step < 2

    with pytest.raises(EditCancelled):
        engine.edit([picture(200, 100)], "x", seed=0, steps=6, guidance=2.5, on_step=on_step)
    assert calls == [1, 2]


def test_returning_none_or_true_does_not_cancel(engine):
    returns = iter([None, True, None, True])
    result = engine.edit([picture(200, 100)], "x", seed=0, steps=4, guidance=2.5, on_step=lambda *_: next(returns))
    assert result.size == (96, 48)


def test_a_cancelled_run_does_not_affect_the_next(engine):
    expected = run(engine, seed=9)
    with pytest.raises(EditCancelled):
        engine.edit([picture(200, 100)], "make it blue", seed=9, steps=3, guidance=2.5, on_step=lambda *_: False)
    assert np.array_equal(run(engine, seed=9), expected)


# --- what the transformer sees --------------------------------------------------------------------------------------


@pytest.fixture
def transformer_inputs(engine):
    captured: list[dict] = []

    def hook(module, args, kwargs):
        captured.append({"hidden_states": kwargs["hidden_states"].shape, "img_ids": kwargs["img_ids"].clone()})

    handle = engine.pipeline.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    yield captured
    handle.remove()


@pytest.mark.parametrize("input_size", [(200, 100), (100, 200), (300, 310)])
def test_sequence_is_target_tokens_then_context_tokens(engine, transformer_inputs, input_size):
    steps = 2
    image = picture(*input_size)
    width, height = engine.output_size([image])
    engine.edit([image], "x", seed=0, steps=steps, guidance=2.5)
    assert len(transformer_inputs) == steps  # one forward per step: no classifier-free-guidance batch
    columns, rows = width // PATCH, height // PATCH
    tokens = columns * rows
    for call in transformer_inputs:
        ids = call["img_ids"]
        assert tuple(call["hidden_states"]) == (1, 2 * tokens, 64)
        assert tuple(ids.shape) == (2 * tokens, 3)
        target, context = ids[:tokens], ids[tokens:]
        assert torch.all(target[:, 0] == 0) and torch.all(context[:, 0] == 1)  # RoPE index: 0 target, 1 context
        # Both cover the same grid of positions: row in column 1, column in column 2.
        assert torch.equal(target[:, 1:], context[:, 1:])
        assert target[:, 1].max().item() == rows - 1 and target[:, 2].max().item() == columns - 1
        assert len({(int(r), int(c)) for r, c in target[:, 1:].tolist()}) == tokens


def test_text_to_image_sequence_has_only_target_tokens(engine, transformer_inputs):
    engine.edit([], "x", seed=0, steps=1, guidance=2.5)
    (call,) = transformer_inputs
    tokens = (64 // PATCH) ** 2
    assert tuple(call["hidden_states"]) == (1, tokens, 64)
    assert torch.all(call["img_ids"][:, 0] == 0)
