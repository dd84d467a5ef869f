"""scripts/colour_word.py: the colour-word check, and its routing of CLIP's pooled vector from another prompt."""

from __future__ import annotations

import pytest
import torch

from openkontext.engine.kontext import MultiReferenceKontextPipeline
from openkontext.engine.loading import load_engine
from openkontext.toyworld import generate
from openkontext.training.checkpoint import export


@pytest.fixture
def restore_pipeline_class():
    encode = MultiReferenceKontextPipeline.encode_prompt
    yield
    MultiReferenceKontextPipeline.encode_prompt = encode


def test_a_routed_prompt_gets_the_other_prompts_pooled_vector_and_keeps_its_sequence(
        tiny_run, tmp_path, load_script, restore_pipeline_class):  # fmt: skip
    engine = load_engine(str(export(tiny_run, tmp_path / "model", name="tiny-colour")), device="cpu")
    seen = []
    hook = engine.pipeline.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((kwargs["encoder_hidden_states"], kwargs["pooled_projections"])),
        with_kwargs=True)  # fmt: skip
    image = generate(1, split="heldout", size=64, categories=["recolor_object"]).input_image
    a, b = "Turn the green box blue.", "Turn the green box orange."

    def fed(prompt: str):
        seen.clear()
        engine.edit([image], prompt, seed=0, steps=1, guidance=3.0)
        return seen[0]

    plain_a, plain_b = fed(a), fed(b)
    assert not torch.equal(plain_a[1], plain_b[1])
    routes = load_script("colour_word").route_pooled()
    routes[a] = b
    routed = fed(a)
    hook.remove()
    assert torch.equal(routed[0], plain_a[0]) and torch.equal(routed[1], plain_b[1])


def test_the_rest_of_the_picture_is_scored_as_the_engine_leaves_it(tiny_run, tmp_path, load_script, capsys,
                                                                   monkeypatch):  # fmt: skip
    """--preserve reaches the engine: with a paste-back that keeps every pixel, the outside is the input as the tiny
    model's 64² sampling size returns it (upscaled); with the paste-back off, the untrained model's own output."""
    model = str(export(tiny_run, tmp_path / "model", name="tiny-colour"))
    script = load_script("colour_word")

    def outside_psnr(preserve: str) -> float:
        monkeypatch.setattr("sys.argv", ["colour_word.py", model, "--cases", "1", "--steps", "1",
                                         "--preserve", preserve])  # fmt: skip
        script.main()
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert last.startswith("own prompt, mean PSNR outside the mask to the input: ")
        return float(last.split("input: ")[1].split(" dB")[0])

    kept, own = outside_psnr("1"), outside_psnr("0")
    assert kept > own + 6, (kept, own)
