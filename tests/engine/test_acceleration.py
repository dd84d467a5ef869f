"""Acceleration options: parsing and validation, refusals with reasons, and what runs on the CPU, checked against the
plain pipeline on the tiny model (fused q/k/v, the prompt cache, step caches, fp8 weight storage, VAE tiling, warm-up).

GPU-only options are checked for their refusals here; their effect is measured by benchmarks/gpu_kontext.py on a GPU.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
from PIL import Image

from openkontext.engine.acceleration.apply import fuse_qkv, resolve
from openkontext.engine.acceleration import devices
from openkontext.engine.acceleration.devices import (
    DeviceInfo,
    best_attention_backend,
    configure,
    defaults_for,
    options_for,
    validate,
)
from openkontext.engine.acceleration.options import AccelerationError, AccelerationOptions
from openkontext.engine.acceleration.runtime import AccelerationRuntime, PromptCache
from openkontext.engine.configs import build_pipeline
from openkontext.engine.loading import load_engine
from openkontext.engine.startup import warm_up, warmup_buckets

CPU = DeviceInfo("cpu")
H100 = DeviceInfo("cuda", 0, "NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30)
A100 = DeviceInfo("cuda", 0, "NVIDIA A100-SXM4-40GB", (8, 0), 40 * 2**30)
L4 = DeviceInfo("cuda", 0, "NVIDIA L4", (8, 9), 24 * 2**30)
HAS_ACCELERATE = importlib.util.find_spec("accelerate") is not None
HAS_TORCHAO = importlib.util.find_spec("torchao") is not None


def picture(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
    return Image.fromarray(small, "RGB").resize((width, height), Image.Resampling.BILINEAR)


def run(engine, prompt="make it blue", images=None, **overrides) -> np.ndarray:
    params = dict(seed=1, steps=4, guidance=2.5) | overrides
    return np.asarray(engine.edit([picture()] if images is None else images, prompt, **params))


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


@pytest.fixture(scope="module")
def plain():
    return load_engine("tiny", device="cpu")


@pytest.fixture(scope="module")
def plain_output(plain):
    return run(plain)


# --- the options object ---------------------------------------------------------------------------------------------


def test_the_defaults_change_nothing():
    options = AccelerationOptions()
    assert options.describe() == "none"
    assert not options.lossy and not options.exclusive and options.compile_mode is None
    assert options.torch_dtype("cpu") == torch.float32 and options.torch_dtype("cuda") == torch.bfloat16


def test_values_are_normalised():
    options = AccelerationOptions(compile="MAX-AUTOTUNE", attention_backend="cudnn", fuse_qkv="on", step_cache="fbc",
                                  fp8="dynamic", prompt_cache="8")  # fmt: skip
    assert options.compile == "max-autotune" and options.attention_backend == "_native_cudnn"
    assert options.fuse_qkv is True and options.step_cache == "first-block"
    assert options.fp8 == "weights+activations" and options.prompt_cache == 8
    assert options.lossy
    assert AccelerationOptions(compile=True).compile == "default"
    assert AccelerationOptions(attention_backend="sdpa").attention_backend == "native"
    assert AccelerationOptions(attention_backend="fa3").attention_backend == "_flash_3"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("compile", "turbo", "compile must be one of off, default, max-autotune"),
     ("fp8", "int4", "fp8 must be one of off, weights, weights\\+activations"),
     ("step_cache", "teacache", "step_cache must be one of off, first-block, taylorseer"),
     ("offload", "disk", "offload must be one of none, auto, model, sequential"),
     ("vae_tiling", "maybe", "vae_tiling must be one of off, auto, on"),
     ("dtype", "fp16", "dtype must be one of auto, bf16, fp32"),
     ("fuse_qkv", "perhaps", "fuse_qkv must be on or off"),
     ("vae_channels_last", "sideways", "vae_channels_last must be on or off"),
     ("attention_backend", "warp-speed", "attention_backend must be auto, sdpa, cudnn, flash, fa3"),
     ("step_cache_threshold", 1.5, "between 0 and 1"),
     ("step_cache_interval", 0, "at least 1"),
     ("prompt_cache", -1, "0 \\(off\\) or a positive number"),
     ("prompt_cache", "many", "invalid number")],
)  # fmt: skip
def test_invalid_values_are_refused_with_the_choices(field, value, message):
    with pytest.raises(AccelerationError, match=message):
        AccelerationOptions(**{field: value})


def test_parse_and_describe_round_trip():
    options = AccelerationOptions.parse("compile=max-autotune, fuse-qkv=on ,fp8=weights+activations,cuda_graphs=on")
    assert options == AccelerationOptions(compile="max-autotune", fuse_qkv=True, fp8="weights+activations",
                                          cuda_graphs=True)  # fmt: skip
    assert AccelerationOptions.parse(options.describe()) == options
    assert options.compile_mode == "max-autotune"
    with pytest.raises(AccelerationError, match="expected name=value"):
        AccelerationOptions.parse("compile")
    with pytest.raises(AccelerationError, match="unknown acceleration option"):
        AccelerationOptions.parse("warp=9")


def test_replace_ignores_unset_values():
    base = AccelerationOptions(compile="default", fuse_qkv=True)
    assert base.replace(compile=None, fuse_qkv=None) == base
    assert base.replace(compile="off").compile == "off"


@pytest.mark.parametrize(
    ("compile_", "graphs", "mode"),
    [("off", False, None), ("default", False, "default"), ("default", True, "reduce-overhead"),
     ("max-autotune", False, "max-autotune-no-cudagraphs"), ("max-autotune", True, "max-autotune")],
)  # fmt: skip
def test_compile_modes(compile_, graphs, mode):
    assert AccelerationOptions(compile=compile_, cuda_graphs=graphs).compile_mode == mode


# --- presets ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("native_bf16", [True, False])
def test_cpu_defaults_use_bf16_only_where_the_cpu_computes_it(native_bf16, monkeypatch):
    monkeypatch.setattr(devices, "cxx_compiler", lambda: "/usr/bin/g++")
    options = defaults_for(DeviceInfo(type="cpu", native_bf16=native_bf16))
    dtype = "dtype=bf16," if native_bf16 else "dtype=fp32,"
    assert options.describe() == dtype + "compile=default,fuse_qkv=on,vae_channels_last=on,prompt_cache=32"  # lossless
    assert not options.lossy
    assert validate(options, DeviceInfo(type="cpu", native_bf16=native_bf16)) == []


def test_cpu_defaults_do_not_compile_without_a_compiler(monkeypatch):
    monkeypatch.setattr(devices, "cxx_compiler", lambda: None)
    options = defaults_for(DeviceInfo(type="cpu", native_bf16=True))
    assert options.compile == "off"
    with pytest.raises(AccelerationError, match="no C\\+\\+ compiler"):
        validate(options.replace(compile="default"), DeviceInfo(type="cpu"))


def test_bf16_on_a_cpu_that_emulates_it_is_warned_about():
    warnings = validate(AccelerationOptions(dtype="bf16"), DeviceInfo(type="cpu", native_bf16=False))
    assert any("emulated" in warning for warning in warnings)


def test_hopper_defaults_are_lossless_and_fast():
    options = defaults_for(H100)
    assert (options.dtype, options.compile, options.fuse_qkv, options.attention_backend) == ("bf16", "default", True,
                                                                                            "auto")  # fmt: skip
    assert not options.lossy and options.offload == "auto" and options.vae_tiling == "auto"


def test_fast_preset_adds_fp8_only_where_tensor_cores_have_it():
    fast = options_for(H100, "fast")
    assert fast.fp8 == "weights+activations" and fast.compile == "max-autotune" and fast.cuda_graphs
    assert options_for(A100, "fast").fp8 == "off"
    assert options_for(L4, "fast").fp8 == "weights+activations"
    assert options_for(CPU, "fast") == defaults_for(CPU)
    assert options_for(H100, "none") == AccelerationOptions()
    assert options_for(H100, "auto", compile="off", fuse_qkv=None).compile == "off"
    with pytest.raises(AccelerationError, match="preset must be one of none, auto, fast"):
        options_for(CPU, "ludicrous")


# --- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [(dict(compile="default", cuda_graphs=True), "cuda_graphs is not available on device cpu: CUDA graphs need a CUDA"),
     (dict(fp8="weights+activations"), "fp8=weights\\+activations is not available on device cpu: float8 matrix"),
     (dict(offload="model"), "offload=model is not available on device cpu: offloading moves weights"),
     (dict(offload="sequential"), "offload=sequential is not available on device cpu"),
     (dict(attention_backend="cudnn"), "attention_backend=_native_cudnn is not available on device cpu: this kernel"),
     (dict(attention_backend="fa3"), "attention_backend=_flash_3 is not available on device cpu")],
)  # fmt: skip
def test_cuda_options_are_refused_on_the_cpu_with_the_reason(options, message):
    with pytest.raises(AccelerationError, match=message):
        validate(AccelerationOptions(**options), CPU)


def test_load_engine_refuses_rather_than_ignores():
    with pytest.raises(AccelerationError, match="offload=model is not available on device cpu"):
        load_engine("tiny", device="cpu", acceleration=AccelerationOptions(offload="model"))


@pytest.mark.parametrize(
    ("options", "message"),
    [(dict(cuda_graphs=True), "cuda_graphs needs compile"),
     (dict(compile="default", cuda_graphs=True, step_cache="first-block"), "step_cache cannot be combined with cuda"),
     (dict(compile="default", offload="sequential"), "compile cannot be combined with offload=sequential"),
     (dict(attention_backend="_flash_3_hub"), "downloads its kernel from the Hugging Face Hub")],
)  # fmt: skip
def test_combinations_that_cannot_work_are_refused(options, message):
    with pytest.raises(AccelerationError, match=message):
        validate(AccelerationOptions(**options), H100)


def test_fp8_compute_needs_ada_or_hopper():
    with pytest.raises(AccelerationError, match="compute capability 8.9"):
        validate(AccelerationOptions(fp8="weights+activations", compile="default"), A100)


@pytest.mark.skipif(HAS_TORCHAO, reason="torchao is installed here")
def test_fp8_compute_without_torchao_says_what_to_install():
    with pytest.raises(AccelerationError, match="needs torchao: pip install torchao"):
        validate(AccelerationOptions(fp8="weights+activations", compile="default"), H100)


@pytest.mark.skipif(HAS_ACCELERATE, reason="accelerate is installed here")
@pytest.mark.parametrize("offload", ["model", "sequential"])
def test_offload_without_accelerate_says_what_to_install(offload):
    with pytest.raises(AccelerationError, match=f"offload={offload} needs the accelerate package: pip install"):
        validate(AccelerationOptions(offload=offload), H100)


def test_missing_attention_kernels_are_named():
    from diffusers.models import attention_dispatch

    if getattr(attention_dispatch, "_CAN_USE_FLASH_ATTN_3", False):
        pytest.skip("FA3 is installed here")
    with pytest.raises(AccelerationError, match="attention_backend=_flash_3 cannot be used"):
        validate(AccelerationOptions(attention_backend="fa3"), H100)


def test_fp8_compute_without_compile_is_allowed_with_a_warning():
    if not HAS_TORCHAO:
        pytest.skip("needs torchao to get past the package check")
    warnings = validate(AccelerationOptions(fp8="weights+activations"), H100)
    assert any("slower than bf16" in w for w in warnings)


# --- 'auto' resolution ----------------------------------------------------------------------------------------------


def test_auto_values_resolve_for_the_device_and_model():
    pipeline = build_pipeline("tiny")
    on_cpu = resolve(defaults_for(H100).replace(offload="auto"), pipeline, CPU)
    assert (on_cpu.offload, on_cpu.vae_tiling, on_cpu.attention_backend) == ("none", "off", "native")
    big = resolve(defaults_for(H100), pipeline, H100)
    assert big.offload == "none" and big.vae_tiling == "off"  # a tiny model on an 80 GB GPU
    small = resolve(defaults_for(L4), pipeline, DeviceInfo("cuda", 0, "small", (8, 9), 16 * 2**30))
    assert small.vae_tiling == "on"
    assert best_attention_backend(CPU) == "native"
    assert best_attention_backend(H100) in ("_flash_3", "_native_cudnn", "native")


def test_auto_offload_on_a_gpu_too_small_for_the_model(caplog):
    pipeline = build_pipeline("tiny")
    tiny_gpu = DeviceInfo("cuda", 0, "tiny", (8, 9), 2**30)  # less than the 6 GiB headroom alone
    options = resolve(defaults_for(tiny_gpu), pipeline, tiny_gpu)
    if HAS_ACCELERATE:
        assert options.offload == "sequential" and options.compile == "off" and not options.cuda_graphs
    else:
        assert options.offload == "none" and "pip install accelerate" in caplog.text


# --- what runs on the CPU -------------------------------------------------------------------------------------------


def test_empty_options_give_byte_identical_output(plain_output):
    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions())
    assert run(engine).tobytes() == plain_output.tobytes()


def test_a_model_folder_loads_with_options(plain, tmp_path):
    plain.pipeline.save_pretrained(tmp_path, safe_serialization=True)
    (tmp_path / "openkontext.json").write_text('{"native_side": 64, "max_sequence_length": 48}')
    reference = run(load_engine(str(tmp_path), device="cpu"))
    engine = load_engine(str(tmp_path), device="cpu", acceleration=AccelerationOptions(prompt_cache=2, fuse_qkv=True))
    assert (
        engine.runtime.prompt_cache is not None and engine.pipeline.transformer.transformer_blocks[0].attn.to_q is None
    )
    assert np.abs(run(engine).astype(int) - reference.astype(int)).max() <= 1


def test_fused_qkv_matches_unfused():
    torch.manual_seed(0)
    unfused, fused = build_pipeline("tiny").transformer, build_pipeline("tiny").transformer

    released = fuse_qkv(fused)
    assert released > 0
    attention = fused.transformer_blocks[0].attn
    assert attention.fused_projections and attention.to_q is None and attention.add_q_proj is None
    tokens, text = 32, 8
    inputs = dict(
        hidden_states=torch.randn(1, tokens, 64), encoder_hidden_states=torch.randn(1, text, 32),
        pooled_projections=torch.randn(1, 32), timestep=torch.tensor([0.5]), guidance=torch.tensor([2.5]),
        txt_ids=torch.zeros(text, 3), img_ids=torch.randn(tokens, 3), return_dict=False,
    )  # fmt: skip
    with torch.no_grad():
        a, b = unfused(**inputs)[0], fused(**inputs)[0]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fused_engine_output_matches_the_plain_one(plain_output):
    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions(fuse_qkv=True))
    assert diff(run(engine), plain_output) < 0.05
    assert np.abs(run(engine).astype(int) - plain_output.astype(int)).max() <= 1


def test_prompt_cache_is_bit_identical_and_hits(plain, plain_output):
    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions(prompt_cache=2))
    cache = engine.runtime.prompt_cache
    assert run(engine).tobytes() == plain_output.tobytes()  # miss
    assert run(engine).tobytes() == plain_output.tobytes()  # hit
    assert (cache.hits, cache.misses) == (1, 1)
    assert run(engine, prompt="make it red").tobytes() == run(plain, prompt="make it red").tobytes()
    text_only = engine.edit([], "a red ball", seed=4, steps=2, guidance=3.0)
    assert np.asarray(text_only).tobytes() == np.asarray(plain.edit([], "a red ball", seed=4, steps=2,
                                                                     guidance=3.0)).tobytes()  # fmt: skip
    assert len(cache) == 2  # three prompts through a two-entry LRU


def test_prompt_cache_is_an_lru():
    cache = PromptCache(2)
    calls = []

    def compute(key):
        return lambda: calls.append(key) or key

    for key in ["a", "b", "a", "c", "b"]:
        cache.get(key, compute(key))
    assert calls == ["a", "b", "c", "b"]  # "b" was evicted by "c" ("a" had been used more recently)
    assert (cache.hits, cache.misses, len(cache)) == (1, 4, 2)


def test_first_block_cache_applies_the_diffusers_hook_and_stays_close(plain_output):
    from diffusers.hooks import HookRegistry

    options = AccelerationOptions(step_cache="first-block", step_cache_threshold=0.5)
    engine = load_engine("tiny", device="cpu", acceleration=options)
    transformer = engine.pipeline.transformer
    assert transformer.is_cache_enabled
    head = HookRegistry.check_if_exists_or_initialize(transformer.transformer_blocks[0])
    assert "fbc_leader_block_hook" in head.hooks
    first = run(engine, steps=8)
    reference = run(load_engine("tiny", device="cpu"), steps=8)
    assert 0 < diff(first, reference) < 5  # some steps reused the cache: close, not equal (lossy)
    assert run(engine, steps=8).tobytes() == first.tobytes()  # the cache state is reset between edits
    assert engine.runtime.options.exclusive


def test_step_cache_state_is_reset_after_a_cancelled_edit():
    from openkontext.engine.kontext import EditCancelled

    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions(step_cache="first-block",
                                                                                step_cache_threshold=0.5))  # fmt: skip
    first = run(engine, steps=8)
    with pytest.raises(EditCancelled):
        run(engine, steps=8, on_step=lambda step, total, latents: step < 3)
    assert run(engine, steps=8).tobytes() == first.tobytes()


def test_taylorseer_applies_and_stays_close():
    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions(step_cache="taylorseer",
                                                                                step_cache_interval=2))  # fmt: skip
    assert engine.pipeline.transformer.is_cache_enabled
    reference = run(load_engine("tiny", device="cpu"), steps=8)
    assert diff(run(engine, steps=8), reference) < 5


def test_fp8_weight_storage_runs_on_the_cpu_and_stays_close(plain_output):
    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions(fp8="weights"))
    linear = engine.pipeline.transformer.transformer_blocks[0].ff.net[2]
    assert linear.weight.dtype == torch.float8_e4m3fn
    assert 0 < diff(run(engine), plain_output) < 5


def test_vae_tiling_on_sets_a_useful_tile_size(plain_output):
    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions(vae_tiling="on"))
    assert engine.pipeline.vae.use_tiling and engine.pipeline.vae.tile_sample_min_size == 512
    assert run(engine).tobytes() == plain_output.tobytes()  # 64 px images fit in one tile


def test_vae_channels_last_changes_the_memory_layout_not_the_image(plain_output):
    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions(vae_channels_last="on"))
    convs = [m.weight for m in engine.pipeline.vae.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not any(w.is_contiguous() for w in convs)
    assert diff(run(engine), plain_output) < 0.5  # another summation order: at most rounding


def test_configure_layers_preset_overrides_and_fields():
    options = configure(H100, "auto", "compile=max-autotune,fp8=weights+activations", fuse_qkv=False, offload=None)
    assert (options.compile, options.fp8, options.fuse_qkv, options.offload) == (
        "max-autotune",
        "weights+activations",
        False,
        "auto",
    )
    assert configure("cpu", "none") == AccelerationOptions()
    assert configure("cpu") == defaults_for("cpu")


def test_runtime_without_options_passes_the_prompt_through():
    runtime = AccelerationRuntime()
    assert runtime.prompt_cache is None
    assert runtime.prompt_arguments(None, "hello", 48) == {"prompt": "hello"}


# --- warm-up --------------------------------------------------------------------------------------------------------


def test_warmup_buckets():
    buckets = ((48, 80), (64, 64), (80, 48))
    assert warmup_buckets("native", buckets) == [(64, 64)]
    assert warmup_buckets("all", buckets) == list(buckets)
    assert warmup_buckets("none", buckets) == []
    assert warmup_buckets("1024x1024, 1184x880", buckets) == [(1024, 1024), (1184, 880)]
    with pytest.raises(AccelerationError, match="look like 1024x1024"):
        warmup_buckets("big", buckets)


def test_warm_up_runs_each_bucket_and_changes_nothing(plain_output):
    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions(prompt_cache=32))
    assert warm_up(engine, [(64, 64)]) == []  # nothing is compiled: nothing to warm up
    done = warm_up(engine, [(64, 64), (80, 48)], steps=2, text_to_image=True, force=True)
    assert [(d["size"], d["references"]) for d in done] == [((64, 64), 0), ((64, 64), 1), ((80, 48), 0), ((80, 48), 1)]
    assert all(d["seconds"] > 0 for d in done)
    assert run(engine).tobytes() == plain_output.tobytes()


@pytest.mark.skipif(not os.environ.get("OPENKONTEXT_SLOW_TESTS"), reason="Inductor compiles for ~1 min on 2 CPU cores; "
                    "set OPENKONTEXT_SLOW_TESTS=1")  # fmt: skip
def test_compile_on_the_cpu_matches_eager(plain_output):
    engine = load_engine("tiny", device="cpu", acceleration=AccelerationOptions(compile="default", fuse_qkv=True))
    warm_up(engine, [(64, 64)], steps=2)
    assert np.abs(run(engine).astype(int) - plain_output.astype(int)).max() <= 1
