"""Loading models from local files: a diffusers-format folder and a BFL single-file transformer, offline."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from diffusers import FluxKontextPipeline, FluxTransformer2DModel
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers
from engine.bfl_format import diffusers_to_bfl
from PIL import Image
from safetensors.torch import load_file, save_file

from openkontext.engine.buckets import make_buckets
from openkontext.engine.configs import CONFIGS, build_pipeline
from openkontext.engine.kontext import KontextEngine
from openkontext.engine.loading import ModelNotFoundError, convert_bfl_transformer, load_engine

@pytest.fixture(scope="module")
def engine():
    return load_engine("tiny", device="cpu")


@pytest.fixture
def offline(monkeypatch):
    """No hub, and no network at all: any connection attempt fails the test."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"test is offline: connection to {address} refused")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
    assert not attempts, f"tried to reach the network: {attempts}"


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BILINEAR)


def outputs(engine) -> list[np.ndarray]:
    """An edit and a text-to-image run, fixed seeds."""
    return [
        np.asarray(engine.edit([picture(200, 100)], "make it blue", seed=7, steps=3, guidance=2.5)),
        np.asarray(engine.edit([], "a cat", seed=8, steps=2, guidance=4.0)),
    ]


# --- diffusers-format folder ----------------------------------------------------------------------------------------


def test_saved_folder_is_safetensors(model_folder):
    assert (model_folder / "model_index.json").is_file()
    assert (model_folder / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(model_folder.rglob("*.bin"))


def test_folder_loads_back_with_identical_outputs(engine, model_folder, offline):
    loaded = load_engine(str(model_folder), device="cpu")
    assert loaded.info.name == "tiny-saved"
    assert loaded.info.placeholder is False
    assert loaded.info.buckets == make_buckets(64) == engine.info.buckets
    assert loaded.info.max_sequence_length == 48
    for ours, theirs in zip(outputs(loaded), outputs(engine), strict=True):
        assert ours.tobytes() == theirs.tobytes()


def test_folder_without_model_card_uses_defaults(engine, tmp_path, offline):
    folder = tmp_path / "no-card"
    engine.pipeline.save_pretrained(folder, safe_serialization=True)
    loaded = load_engine(str(folder), device="cpu")
    assert loaded.info.name == "no-card"
    assert loaded.info.max_sequence_length == 512
    side = loaded.pipeline.vae_scale_factor * loaded.pipeline.default_sample_size
    assert loaded.info.buckets == make_buckets(side)


def test_missing_folder_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as caught:
        load_engine(str(missing), device="cpu")
    assert str(missing) in str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)


def test_folder_without_model_index_names_the_path(tmp_path):
    (tmp_path / "transformer").mkdir()
    with pytest.raises(ModelNotFoundError, match="model_index.json") as caught:
        load_engine(str(tmp_path), device="cpu")
    assert str(tmp_path) in str(caught.value)


def test_missing_transformer_file_names_the_file(model_folder, tmp_path):
    missing = tmp_path / "flux1-kontext-dev.safetensors"
    with pytest.raises(ModelNotFoundError) as caught:
        load_engine(str(model_folder), device="cpu", transformer_file=missing)
    assert str(missing) in str(caught.value)


# --- BFL single-file transformer ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_transformer():
    """A transformer with different weights from the folder's, so a test can tell which one was used."""
    return build_pipeline("tiny", seed=1).transformer


@pytest.fixture(scope="module")
def bfl_file(other_transformer, tmp_path_factory):
    path = tmp_path_factory.mktemp("bfl") / "flux1-kontext-tiny.safetensors"
    save_file(diffusers_to_bfl(other_transformer.state_dict()), str(path))
    return path


def test_bfl_file_has_bfl_keys(bfl_file):
    keys = set(load_file(str(bfl_file)))
    expected = {
        "img_in.weight", "txt_in.weight", "time_in.in_layer.weight", "vector_in.out_layer.bias",
        "guidance_in.in_layer.weight", "final_layer.linear.weight", "final_layer.adaLN_modulation.1.weight",
        "double_blocks.0.img_attn.qkv.weight", "double_blocks.0.txt_attn.qkv.bias",
        "double_blocks.0.img_attn.norm.query_norm.scale", "double_blocks.0.img_mlp.0.weight",
        "single_blocks.0.linear1.weight", "single_blocks.0.linear2.weight", "single_blocks.0.modulation.lin.weight",
    }  # fmt: skip
    assert expected <= keys
    assert not any(key.startswith(("transformer_blocks.", "single_transformer_blocks.", "x_embedder")) for key in keys)


def expected_engine(folder_engine: KontextEngine, transformer) -> KontextEngine:
    pipeline = FluxKontextPipeline(**dict(folder_engine.pipeline.components, transformer=transformer))
    return KontextEngine(pipeline, folder_engine.info)


def test_single_file_transformer_reproduces_its_outputs(model_folder, bfl_file, other_transformer, offline):
    loaded = load_engine(str(model_folder), device="cpu", transformer_file=bfl_file)
    reference = expected_engine(load_engine(str(model_folder), device="cpu"), other_transformer)
    # The weights themselves, then what they make.
    ours, theirs = loaded.pipeline.transformer.state_dict(), other_transformer.state_dict()
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key
    for got, want in zip(outputs(loaded), outputs(reference), strict=True):
        assert np.abs(got.astype(int) - want.astype(int)).max() == 0
    # … and the file's transformer, not the folder's, made them.
    folder_only = outputs(load_engine(str(model_folder), device="cpu"))
    assert not np.array_equal(outputs(loaded)[0], folder_only[0])


def test_single_file_with_comfyui_prefix_loads(model_folder, other_transformer, tmp_path, offline):
    prefixed = {f"model.diffusion_model.{k}": v for k, v in diffusers_to_bfl(other_transformer.state_dict()).items()}
    path = tmp_path / "prefixed.safetensors"
    save_file(prefixed, str(path))
    loaded = load_engine(str(model_folder), device="cpu", transformer_file=path)
    for key, value in other_transformer.state_dict().items():
        assert torch.equal(loaded.pipeline.transformer.state_dict()[key], value), key


def test_bfloat16_single_file_loads_as_float32_on_cpu(model_folder, other_transformer, tmp_path, offline):
    """BFL ships bf16 files; the CPU engine runs float32."""
    bf16 = {k: v.to(torch.bfloat16) for k, v in diffusers_to_bfl(other_transformer.state_dict()).items()}
    path = tmp_path / "bf16.safetensors"
    save_file(bf16, str(path))
    loaded = load_engine(str(model_folder), device="cpu", transformer_file=path)
    state = loaded.pipeline.transformer.state_dict()
    for key, value in other_transformer.state_dict().items():
        assert state[key].dtype == torch.float32
        assert torch.equal(state[key], value.to(torch.bfloat16).float()), key


# --- the key mapping, checked against diffusers' own converter ------------------------------------------------------


def flux_width_state_dict(num_layers: int = 2, num_single_layers: int = 3) -> dict[str, torch.Tensor]:
    """A diffusers-layout state dict whose fused single-block tensors are FLUX.1-sized (3072 wide, MLP x4), the only
    size diffusers' converter handles; every tensor is thin (one column) so it costs nothing. Values are distinct."""
    config = dict(CONFIGS["tiny"].transformer, num_layers=num_layers, num_single_layers=num_single_layers)
    with torch.device("meta"):
        keys = list(FluxTransformer2DModel(**config).state_dict())
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key in keys:
        rows = 4
        if key.startswith("single_transformer_blocks.") and ".attn.to_" in key:
            rows = 3072
        elif key.startswith("single_transformer_blocks.") and ".proj_mlp." in key:
            rows = 4 * 3072
        shape = (rows,) if key.endswith(".bias") or ".norm_" in key else (rows, 2)  # norms: a scale vector
        state[key] = torch.randn(shape, generator=generator)
    return state


def test_test_helper_inverts_diffusers_converter():
    """diffusers' converter applied to our BFL layout gives back exactly what we started from."""
    state = flux_width_state_dict()
    round_trip = convert_flux_transformer_checkpoint_to_diffusers(diffusers_to_bfl(state))
    assert round_trip.keys() == state.keys()
    for key in state:
        assert torch.equal(round_trip[key], state[key]), key


def test_engine_converter_matches_diffusers_converter_at_flux_width():
    bfl = diffusers_to_bfl(flux_width_state_dict())
    ours = convert_bfl_transformer(dict(bfl), inner_dim=3072)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_engine_converter_handles_any_width(other_transformer):
    state = other_transformer.state_dict()
    inner_dim = other_transformer.config.num_attention_heads * other_transformer.config.attention_head_dim
    assert inner_dim != 3072
    converted = convert_bfl_transformer(diffusers_to_bfl(state), inner_dim=inner_dim)
    assert converted.keys() == state.keys()
    for key in state:
        assert torch.equal(converted[key], state[key]), key


def test_norm_out_halves_are_swapped_in_bfl_layout(other_transformer):
    state = other_transformer.state_dict()
    bfl = diffusers_to_bfl(state)
    scale, shift = state["norm_out.linear.weight"].chunk(2)
    assert torch.equal(bfl["final_layer.adaLN_modulation.1.weight"], torch.cat([shift, scale]))
    assert not torch.equal(bfl["final_layer.adaLN_modulation.1.weight"], state["norm_out.linear.weight"])
