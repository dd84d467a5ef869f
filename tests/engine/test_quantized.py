"""Quantized transformers on the tiny model: a GGUF file written here loads through diffusers' GGUF support and
matches the float model; torchao's int8 / fp8 weight-only quantization at load time; LoRA adapters on both; and
what the option checks refuse, with the reason."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers.quantizers.gguf.utils import GGUFLinear, GGUFParameter
from engine.bfl_format import diffusers_to_bfl
from engine.lora_formats import write_lora
from PIL import Image

from openkontext.engine.acceleration.apply import module_bytes
from openkontext.engine.acceleration.devices import DeviceInfo, ModelTraits, torchao_problem, validate
from openkontext.engine.acceleration.options import AccelerationError, AccelerationOptions
from openkontext.engine.adapters import Adapter
from openkontext.engine.gguf import save_gguf
from openkontext.engine.loading import load_engine
from openkontext.engine.startup import start_engine

CPU = DeviceInfo(type="cpu", name="cpu")
MPS = DeviceInfo(type="mps", name="mps")
H100 = DeviceInfo(type="cuda", index=0, name="NVIDIA H100 80GB HBM3", capability=(9, 0), total_memory=80 * 2**30)
TORCHAO = torchao_problem()


def picture() -> Image.Image:
    rng = np.random.default_rng(5)
    return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB").resize((64, 64))


def edit(engine, loras=()) -> np.ndarray:
    image = engine.edit([picture()], "make it blue", seed=4, steps=2, guidance=2.5, preserve=0, loras=loras)
    return np.asarray(image).astype(np.int16)


def transformer_output(transformer, seed: int = 0) -> torch.Tensor:
    """One forward of the tiny transformer on fixed random inputs (the numbers the images are made of)."""
    generator = torch.Generator().manual_seed(seed)
    config = transformer.config
    tokens, text = 16, 6
    with torch.no_grad():
        return transformer(
            hidden_states=torch.randn(1, tokens, config.in_channels, generator=generator),
            encoder_hidden_states=torch.randn(1, text, config.joint_attention_dim, generator=generator),
            pooled_projections=torch.randn(1, config.pooled_projection_dim, generator=generator),
            timestep=torch.tensor([0.5]),
            img_ids=torch.zeros(tokens, 3),
            txt_ids=torch.zeros(text, 3),
            guidance=torch.tensor([2.5]),
            return_dict=False,
        )[0]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def reference():
    return load_engine("tiny", device="cpu")


@pytest.fixture(scope="module")
def gguf_file(reference, tmp_path_factory):
    """A Q8_0 GGUF of the tiny transformer in BFL's tensor names, as the published Kontext GGUF files have them."""
    path = tmp_path_factory.mktemp("gguf") / "tiny-kontext-Q8_0.gguf"
    return save_gguf(diffusers_to_bfl(reference.pipeline.transformer.state_dict()), path, "Q8_0")


@pytest.fixture(scope="module")
def lora_file(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("lora") / "style.safetensors"
    write_lora("peft", reference.pipeline.transformer, path)
    return path


# --- GGUF ---------------------------------------------------------------------------------------------------------


def test_a_q8_0_gguf_file_loads_quantized_and_matches_the_float_model(reference, model_folder, gguf_file):
    import gguf

    reader = gguf.GGUFReader(str(gguf_file))
    kinds = {tensor.name: tensor.tensor_type.name for tensor in reader.tensors}
    assert kinds["double_blocks.0.img_attn.qkv.weight"] == "Q8_0" and kinds["img_in.bias"] == "F32"

    engine = load_engine(str(model_folder), device="cpu", transformer_file=gguf_file)
    transformer = engine.pipeline.transformer
    assert isinstance(transformer.transformer_blocks[0].attn.to_q, GGUFLinear)
    assert isinstance(transformer.transformer_blocks[0].attn.to_q.weight, GGUFParameter)
    assert module_bytes(transformer) < 0.45 * module_bytes(reference.pipeline.transformer)  # 8.5 bits vs 32
    error = relative_error(transformer_output(transformer), transformer_output(reference.pipeline.transformer))
    assert 0 < error < 0.01, error  # quantized (not the same numbers), and close
    difference = np.abs(edit(engine) - edit(reference))
    assert difference.mean() < 1.0 and difference.max() <= 16, (difference.mean(), difference.max())


def test_a_gguf_file_with_diffusers_tensor_names_loads_too(reference, model_folder, tmp_path):
    path = save_gguf(reference.pipeline.transformer.state_dict(), tmp_path / "diffusers-names.gguf", "Q8_0")
    engine = load_engine(str(model_folder), device="cpu", transformer_file=path)
    assert isinstance(engine.pipeline.transformer.single_transformer_blocks[0].proj_out, GGUFLinear)
    assert relative_error(transformer_output(engine.pipeline.transformer),
                          transformer_output(reference.pipeline.transformer)) < 0.01  # fmt: skip


def test_lower_bit_gguf_files_lose_more(reference, model_folder, tmp_path):
    errors = {}
    for quant in ("Q8_0", "Q4_0"):
        path = save_gguf(reference.pipeline.transformer.state_dict(), tmp_path / f"{quant}.gguf", quant)
        engine = load_engine(str(model_folder), device="cpu", transformer_file=path)
        errors[quant] = relative_error(transformer_output(engine.pipeline.transformer),
                                       transformer_output(reference.pipeline.transformer))  # fmt: skip
    assert errors["Q8_0"] < errors["Q4_0"] < 0.2, errors


def test_lora_adapters_apply_to_a_gguf_transformer(model_folder, gguf_file, lora_file):
    plain = load_engine(str(model_folder), device="cpu", transformer_file=gguf_file)
    adapted = load_engine(str(model_folder), device="cpu", transformer_file=gguf_file,
                          adapters=[Adapter(name="style", path=lora_file)])  # fmt: skip
    assert np.array_equal(edit(adapted), edit(plain))
    assert np.abs(edit(adapted, [("style", 1.0)]) - edit(plain)).mean() > 1.0


def test_the_options_refuse_to_requantize_or_fuse_a_gguf_transformer(model_folder, gguf_file):
    for overrides, reason in (("quantize=int8", "quantized already"), ("fp8=weights", "quantized already"),
                              ("fuse_qkv=on", "cannot be concatenated")):  # fmt: skip
        with pytest.raises(AccelerationError, match=reason):
            start_engine(str(model_folder), device="cpu", transformer_file=gguf_file, overrides=overrides)


# --- torchao int8 / fp8 weight-only -------------------------------------------------------------------------------


@pytest.mark.skipif(TORCHAO is not None, reason=f"torchao cannot quantize here: {TORCHAO}")
@pytest.mark.parametrize("mode", ["int8", "fp8"])
def test_torchao_weight_only_quantization_at_load_time(reference, lora_file, mode):
    engine = start_engine("tiny", device="cpu", preset="none", quantize=mode,  # quantization alone, in fp32
                          adapters=[Adapter(name="style", path=lora_file)])  # fmt: skip
    assert engine.runtime.options.quantize == mode and engine.runtime.options.lossy
    transformer = engine.pipeline.transformer
    weight = transformer.transformer_blocks[0].attn.to_q.base_layer.weight
    assert type(weight).__name__ == ("Int8Tensor" if mode == "int8" else "Float8Tensor")
    assert type(transformer.x_embedder.weight) is torch.nn.Parameter  # embedders stay full precision
    assert type(transformer.transformer_blocks[0].attn.to_q.lora_A["style"].weight) is torch.nn.Parameter
    assert module_bytes(transformer) < 0.75 * module_bytes(reference.pipeline.transformer)
    error = relative_error(transformer_output(transformer), transformer_output(reference.pipeline.transformer))
    assert 0 < error < 0.05, error
    assert np.abs(edit(engine) - edit(reference)).mean() < 2.0
    assert np.abs(edit(engine, [("style", 1.0)]) - edit(engine)).mean() > 1.0  # adapters work on top


def test_quantize_is_a_setting_and_an_option():
    assert AccelerationOptions.parse("quantize=INT8").quantize == "int8"
    assert AccelerationOptions(quantize="fp8-weights").quantize == "fp8"
    assert AccelerationOptions(quantize=None).quantize == "off"
    assert AccelerationOptions(quantize="fp8").describe() == "quantize=fp8"
    with pytest.raises(AccelerationError, match="quantize must be one of off, int8, fp8"):
        AccelerationOptions(quantize="int4")


@pytest.mark.parametrize(
    ("options", "device", "model", "reason"),
    [
        (dict(quantize="int8", fp8="weights"), CPU, ModelTraits(), "both quantize the same weights"),
        (dict(quantize="fp8", offload="sequential"), H100, ModelTraits(), "offload=sequential"),
        (dict(quantize="int8"), MPS, ModelTraits(), "quantize=int8 is not available on device mps"),
        (dict(quantize="int8"), CPU, ModelTraits(gguf=True), "GGUF transformer: its weights are quantized already"),
        (dict(fp8="weights"), H100, ModelTraits(gguf=True), "GGUF transformer"),
        (dict(fuse_qkv=True), H100, ModelTraits(gguf=True), "fuse_qkv cannot be applied to a GGUF transformer"),
        (dict(fuse_qkv=True), CPU, ModelTraits(adapters=True), "fuse_qkv cannot be combined with LoRA adapters"),
    ],
)  # fmt: skip
def test_what_cannot_run_is_refused_with_the_reason(options, device, model, reason):
    with pytest.raises(AccelerationError, match=reason):
        validate(AccelerationOptions(**options), device, model)


def test_warnings_for_what_runs_but_should_not():
    slow = validate(AccelerationOptions(quantize="int8", dtype="bf16"), H100)
    assert any("slower than bf16" in warning for warning in slow)
    assert any("recompiles" in warning for warning in
               validate(AccelerationOptions(compile="default"), CPU, ModelTraits(adapters=True)))  # fmt: skip


def test_presets_leave_fusion_and_fp8_off_where_they_cannot_apply():
    from openkontext.engine.acceleration.devices import options_for

    assert options_for(H100, "auto").fuse_qkv
    assert not options_for(H100, "auto", model=ModelTraits(adapters=True)).fuse_qkv
    fast = options_for(H100, "fast", model=ModelTraits(gguf=True))
    assert not fast.fuse_qkv and fast.fp8 == "off" and fast.compile == "max-autotune"
    validate(fast, H100, ModelTraits(gguf=True))  # what the preset gives is valid


def test_without_torchao_quantize_is_refused_with_the_reason():
    """A machine where torchao does not import (not installed, or built for another torch)."""
    probe = ("import sys; sys.modules['torchao'] = None\n"  # import torchao now fails, as where it is absent
             "from openkontext.engine.acceleration.devices import validate\n"
             "from openkontext.engine.acceleration.options import AccelerationError, AccelerationOptions\n"
             "try:\n    validate(AccelerationOptions(quantize='int8'), 'cpu')\n"
             "except AccelerationError as exc:\n    print(exc)\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "quantize=int8 needs torchao" in done.stdout and "pip install torchao" in done.stdout, done.stdout
