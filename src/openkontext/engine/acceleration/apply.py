"""Applying acceleration options to a pipeline, in place: dtype and placement, fused q/k/v, fp8, offload, attention
kernel, VAE tiling, step caches and ``torch.compile``, with the 'auto' values resolved for the device and model.

Compiling also sets torch's Dynamo and Inductor configuration, which is process-wide (``set_compiler_config``).
"""

from __future__ import annotations

import logging

import torch

from .devices import DeviceInfo, ModelTraits, best_attention_backend, device_info, missing, validate
from .options import AccelerationError, AccelerationOptions

log = logging.getLogger(__name__)

# Memory kept free for activations and the VAE when deciding offload="auto" (a 1024² Kontext edit in bf16 peaks at a
# few GiB above the weights, most of it in the VAE decoder).
OFFLOAD_HEADROOM_BYTES = 6 * 2**30
# Below this much GPU memory, vae_tiling="auto" turns tiling on.
VAE_TILING_AUTO_BELOW_BYTES = 24 * 2**30
VAE_TILE_MIN_PIXELS = 512  # tile side used when a VAE's config gives a smaller one (diffusers' default is 32)
RECOMPILE_LIMIT = 64  # one compiled graph per (bucket, reference count): 17 FLUX buckets x a few reference counts


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds: a quantized tensor subclass (torchao) counts its inner data and scales."""
    if hasattr(tensor, "__tensor_flatten__") and type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        inner = [getattr(tensor, name) for name in names]
        if inner and all(isinstance(t, torch.Tensor) for t in inner):
            return sum(tensor_bytes(t) for t in inner)
    return tensor.numel() * tensor.element_size()


def module_bytes(module: torch.nn.Module) -> int:
    return sum(tensor_bytes(t) for t in (*module.parameters(), *module.buffers()))


def model_traits(pipeline) -> ModelTraits:
    """What the option checks need to know about a loaded pipeline's transformer."""
    transformer = pipeline.transformer
    quantizer = getattr(transformer, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    return ModelTraits(adapters=bool(getattr(transformer, "peft_config", None)),
                       gguf=str(getattr(method, "value", method)) == "gguf")  # fmt: skip


def pipeline_modules(pipeline) -> dict[str, torch.nn.Module]:
    return {name: c for name, c in pipeline.components.items() if isinstance(c, torch.nn.Module)}


def resolve(options: AccelerationOptions, pipeline, device: torch.device | str | DeviceInfo) -> AccelerationOptions:
    """Replace 'auto' values by what this device and model call for."""
    info = device_info(device)
    changes = {}
    if options.attention_backend == "auto":
        changes["attention_backend"] = best_attention_backend(info)
    if options.offload == "auto":
        if info.type != "cuda" or info.total_memory is None:
            changes["offload"] = "none"
        else:
            sizes = {name: module_bytes(m) for name, m in pipeline_modules(pipeline).items()}
            if options.fp8 != "off" or options.quantize != "off":  # 8-bit weights: half the bf16 transformer
                sizes["transformer"] = sizes.get("transformer", 0) // 2
            if sum(sizes.values()) + OFFLOAD_HEADROOM_BYTES <= info.total_memory:
                changes["offload"] = "none"
            elif max(sizes.values()) + OFFLOAD_HEADROOM_BYTES <= info.total_memory and not missing("accelerate"):
                changes["offload"] = "model"
            elif not missing("accelerate"):
                changes["offload"] = "sequential"
            else:
                log.warning("The model (%.1f GiB) may not fit this GPU (%.1f GiB) and accelerate is not installed "
                            "for offloading: pip install accelerate", sum(sizes.values()) / 2**30,
                            info.total_memory / 2**30)  # fmt: skip
                changes["offload"] = "none"
        if changes.get("offload") in ("model", "sequential"):
            # Offloading moves weights at every call: no CUDA graphs, and no compile (the offload hooks sit in the
            # forward the compiler would trace). A GPU too small to hold the model is not the one to tune for speed.
            log.warning("The model does not fit this GPU's %.1f GiB: offload=%s, compile and CUDA graphs off",
                        info.total_memory / 2**30, changes["offload"])  # fmt: skip
            changes["cuda_graphs"] = False
            changes["compile"] = "off"
    if options.vae_tiling == "auto":
        small_gpu = info.type == "cuda" and (info.total_memory or 0) < VAE_TILING_AUTO_BELOW_BYTES
        offloading = changes.get("offload", options.offload) in ("model", "sequential")
        changes["vae_tiling"] = "on" if small_gpu or offloading else "off"
    return options.replace(**changes)



_UNFUSED = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")


def fuse_qkv(transformer: torch.nn.Module) -> int:
    """Fuse each attention's q, k, v projections into one Linear and release the separate ones.

    diffusers' ``fuse_qkv_projections`` keeps the unfused Linear layers, which the fused forward never reads: on
    FLUX.1 Kontext [dev] they are 2.15 B parameters (4.3 GB in bf16). They are dropped here, so the fusion cannot be
    undone (reload the model instead). Returns the number of parameters released.
    """
    transformer.fuse_qkv_projections()
    released = 0
    for module in transformer.modules():
        if getattr(module, "fused_projections", False):
            for name in _UNFUSED:
                linear = getattr(module, name, None)
                if isinstance(linear, torch.nn.Linear):
                    released += sum(p.numel() for p in linear.parameters())
                    setattr(module, name, None)
    return released


def _fp8_linear_filter(module: torch.nn.Module, fqn: str) -> bool:
    """The Linear layers of the transformer blocks whose shapes float8 GEMMs accept (multiples of 16)."""
    return (
        isinstance(module, torch.nn.Linear)
        and fqn.startswith(("transformer_blocks.", "single_transformer_blocks."))
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def quantize_fp8_dynamic(transformer: torch.nn.Module) -> None:
    """torchao dynamic float8 quantisation (e4m3, per-row scales) of the blocks' Linear weights and activations."""
    try:
        import torchao.quantization as tq
    except ImportError as exc:
        raise AccelerationError(f"fp8=weights+activations needs torchao: pip install torchao ({exc})") from None
    if hasattr(tq, "Float8DynamicActivationFloat8WeightConfig"):
        config = tq.Float8DynamicActivationFloat8WeightConfig(granularity=tq.PerRow())
    else:  # torchao < 0.10 spelled it as a function
        config = tq.float8_dynamic_activation_float8_weight(granularity=tq.PerRow())
    tq.quantize_(transformer, config, filter_fn=_fp8_linear_filter)


def _quantizable(module: torch.nn.Module, fqn: str) -> bool:
    """The Linear layers of the transformer blocks (not the LoRA adapters' own small layers)."""
    return (
        isinstance(module, torch.nn.Linear)
        and fqn.startswith(("transformer_blocks.", "single_transformer_blocks."))
        and ".lora_" not in fqn
    )


def quantize_weights(transformer: torch.nn.Module, mode: str) -> None:
    """torchao weight-only quantization of the blocks' Linear weights: ``int8`` (per-channel scales) or ``fp8``
    (e4m3, per-row scales); the matrix multiplies run in the compute dtype. The embedders, the final projection and
    LoRA adapters stay in full precision."""
    import torchao.quantization as tq

    config = tq.Int8WeightOnlyConfig() if mode == "int8" else tq.Float8WeightOnlyConfig()
    tq.quantize_(transformer, config, filter_fn=_quantizable)


def store_fp8_weights(transformer: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """diffusers layerwise casting: weights kept in float8 (e4m3), cast to ``compute_dtype`` layer by layer.

    diffusers skips the model's sensitive layers (FLUX: embeddings, norms, and so the AdaLN modulation Linears).
    """
    transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)


def set_compiler_config(options: AccelerationOptions) -> None:
    import torch._dynamo
    import torch._inductor.config as inductor

    # One graph per resolution bucket and reference count: without this, the 9th shape falls back to eager.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    torch._dynamo.config.accumulated_recompile_limit = max(
        torch._dynamo.config.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT
    )
    if options.compile == "max-autotune":
        # The Inductor settings of the flux-fast recipe (process-wide).
        inductor.conv_1x1_as_mm = True
        inductor.epilogue_fusion = False
        inductor.coordinate_descent_tuning = True
        inductor.coordinate_descent_check_all_directions = True


def apply(pipeline, options: AccelerationOptions, device: torch.device | str | DeviceInfo | None = None, *,
          varying_sequence: bool = False):  # fmt: skip
    """Apply ``options`` to ``pipeline`` (in place) and place it on ``device``; returns the pipeline.

    ``varying_sequence``: the model's token count follows the prompt (prompt-sized text, glyph strips), so the
    compiled transformer gets a dynamic sequence length (after its second length) instead of one graph per length,
    which would recompile on most requests and fall back to eager after torch's recompile limit.

    ``device`` defaults to where the transformer is. The pipeline should already have the options' dtype (loading
    builds it so); with offload it may be anywhere, and stays in CPU memory. Records what was applied as
    ``pipeline.openkontext_acceleration`` (the resolved options) and logs it.
    """
    info = device_info(device if device is not None else pipeline.transformer.device)
    traits = model_traits(pipeline)
    for warning in validate(options, info, traits):
        log.warning("acceleration: %s", warning)
    options = resolve(options, pipeline, info)
    validate(options, info, traits)  # what 'auto' resolved to must be valid too
    transformer = pipeline.transformer
    dtype = options.torch_dtype(info.torch_device)
    if transformer.dtype != dtype and not traits.gguf:
        pipeline.to(dtype=dtype)
    elif transformer.dtype != dtype:  # GGUF weights keep their storage; diffusers computes in compute_dtype
        for name, module in pipeline_modules(pipeline).items():
            if name != "transformer":
                module.to(dtype=dtype)
    done = []

    # Fusing and quantizing happen where the weights were loaded (CPU memory), before they move: the GPU never
    # holds the full-precision transformer that quantization exists to avoid.
    if options.fuse_qkv:
        released = fuse_qkv(transformer)
        done.append(f"fused q/k/v ({released / 1e6:.1f} M unfused parameters released)")
    if options.quantize != "off":
        quantize_weights(transformer, options.quantize)
        done.append(f"{options.quantize} weight-only quantization (torchao)")
    if options.offload == "none":
        pipeline.to(info.torch_device)
    if options.fp8 == "weights":
        store_fp8_weights(transformer, compute_dtype=dtype)
        done.append("fp8 weight storage")
    elif options.fp8 == "weights+activations":
        quantize_fp8_dynamic(transformer)
        done.append("fp8 dynamic quantisation (torchao)")
    if options.offload == "model":
        pipeline.enable_model_cpu_offload(device=info.torch_device)
        done.append("model CPU offload")
    elif options.offload == "sequential":
        pipeline.enable_sequential_cpu_offload(device=info.torch_device)
        done.append("sequential CPU offload")
    if options.attention_backend != "native":
        transformer.set_attention_backend(options.attention_backend)
        done.append(f"attention {options.attention_backend}")
    if options.vae_tiling == "on":
        vae = pipeline.vae
        vae.enable_tiling()
        if vae.tile_sample_min_size < VAE_TILE_MIN_PIXELS:  # a config without sample_size: diffusers would use 32 px
            vae.tile_sample_min_size = VAE_TILE_MIN_PIXELS
            vae.tile_latent_min_size = VAE_TILE_MIN_PIXELS // pipeline.vae_scale_factor
        done.append(f"VAE tiling ({vae.tile_sample_min_size} px tiles)")
    if options.vae_channels_last:
        use_channels_last(pipeline.vae)
        done.append("VAE channels-last")
    if options.step_cache != "off":
        transformer.enable_cache(step_cache_config(options, dtype))
        done.append(f"step cache {options.step_cache}")
    if options.compile != "off":
        set_compiler_config(options)
        # diffusers' cache / casting hooks and accelerate's offload hook break the graph
        fullgraph = options.step_cache == "off" and options.fp8 != "weights" and options.offload == "none"
        kwargs = dict(mode=options.compile_mode, fullgraph=fullgraph, dynamic=None if varying_sequence else False)
        if options.compile_scope == "regional":
            transformer.compile_repeated_blocks(**kwargs)
        else:
            transformer.compile(**kwargs)
        done.append(f"compile {options.compile_scope} mode={options.compile_mode}")
    pipeline.openkontext_acceleration = options
    log.info("acceleration on %s: %s", info.name or info.type, "; ".join(done) or "none")
    return pipeline


def use_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """``module``'s 4-d weights in channels-last memory format (in place): a convolutional autoencoder's convolutions
    then take oneDNN's fast path on a CPU (TAEF2 at 256², bf16: encode 1.6x, decode 1.3-1.5x; docs/benchmarks.md);
    the inputs need no change, the outputs follow the weights' format."""
    return module.to(memory_format=torch.channels_last)


def step_cache_config(options: AccelerationOptions, dtype: torch.dtype):
    from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

    if options.step_cache == "first-block":
        return FirstBlockCacheConfig(threshold=options.step_cache_threshold)
    # diffusers' recommended TaylorSeer setting for FLUX: first-order, 3 full warm-up steps, factors in fp32.
    return TaylorSeerCacheConfig(cache_interval=options.step_cache_interval, disable_cache_before_step=3,
                                 max_order=1, taylor_factors_dtype=torch.float32)  # fmt: skip

