"""Engine acceleration: how a Kontext pipeline runs on the hardware it has, without changing what it computes
(lossless options) or, where asked, trading a little accuracy for speed or memory (lossy options).

``AccelerationOptions`` says what to do; ``options_for(device, preset)`` gives the recommended options for a device;
``apply(pipeline, options, device)`` applies them with diffusers / torch / torchao facilities; ``EngineRuntime`` is
the per-call part the engine uses (prompt-embedding cache, step-cache context, serialisation of stateful options);
``warm_up(engine, buckets)`` compiles ahead of the first request.

What each option does, and its caveats, is in docs/gpu.md. In short:

============================  =========  ===================================================================
option                        lossless?  facility
============================  =========  ===================================================================
dtype bf16                    ~          the weights and activations in bfloat16 (FLUX.1's release dtype)
compile                       yes*       ``torch.compile`` of the transformer (Inductor); *numerically close
fuse_qkv                      yes*       diffusers ``fuse_qkv_projections``: one GEMM for q, k and v
attention_backend             yes*       diffusers ``set_attention_backend`` (FA3, cuDNN SDPA, ...)
cuda_graphs                   yes        Inductor CUDA graphs (compile mode reduce-overhead / max-autotune)
fp8 weights                   no         diffusers layerwise casting: fp8 storage, bf16 compute (memory only)
fp8 weights+activations       no         torchao dynamic float8 (per-row scales) for the blocks' Linear layers
step_cache                    no         diffusers First-Block-Cache or TaylorSeer hooks
offload                       yes        diffusers model / sequential CPU offload (accelerate)
vae_tiling                    ~          diffusers VAE tiling (tile seams are blended)
prompt_cache                  exact      LRU of text-encoder outputs per (prompt, max_sequence_length)
============================  =========  ===================================================================

Options that need a CUDA device are refused elsewhere with an ``AccelerationError`` that says why; options with a
meaningful CPU equivalent (compile, fuse_qkv, fp8 weights, step caching, VAE tiling, the prompt cache) run there too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch

from ..sizes import parse_sizes

log = logging.getLogger(__name__)

PRESETS = ("none", "auto", "fast")
DTYPES = ("auto", "bf16", "fp32")
COMPILE_MODES = ("off", "default", "max-autotune")
COMPILE_SCOPES = ("full", "regional")
FP8_MODES = ("off", "weights", "weights+activations")
STEP_CACHES = ("off", "first-block", "taylorseer")
OFFLOADS = ("none", "auto", "model", "sequential")
VAE_TILINGS = ("off", "auto", "on")

# Our short names → diffusers' AttentionBackendName values. Any other diffusers value is accepted as it is.
ATTENTION_ALIASES = {
    "auto": "auto",
    "sdpa": "native",
    "native": "native",
    "cudnn": "_native_cudnn",
    "flash": "flash",
    "fa2": "flash",
    "fa3": "_flash_3",
    "flash3": "_flash_3",
    "flash-3": "_flash_3",
    "math": "_native_math",
    "efficient": "_native_efficient",
}
CPU_ATTENTION_BACKENDS = ("native", "_native_math")
# Memory kept free for activations and the VAE when deciding offload="auto" (a 1024² Kontext edit in bf16 peaks at a
# few GiB above the weights, most of it in the VAE decoder).
OFFLOAD_HEADROOM_BYTES = 6 * 2**30
# Below this much GPU memory, vae_tiling="auto" turns tiling on.
VAE_TILING_AUTO_BELOW_BYTES = 24 * 2**30
VAE_TILE_MIN_PIXELS = 512  # tile side used when a VAE's config gives a smaller one (diffusers' default is 32)
RECOMPILE_LIMIT = 64  # one compiled graph per (bucket, reference count): 17 FLUX buckets x a few reference counts


class AccelerationError(ValueError):
    """An option this device, build or combination cannot honour; the message says why and what to do."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _as_bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise AccelerationError(f"{name} must be on or off, not {value!r}")


def _choice(value, name: str, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise AccelerationError(f"{name} must be one of {', '.join(choices)}; not {value!r}")
    return text


def _attention_name(value) -> str:
    text = str(value).strip().lower()
    if text in ATTENTION_ALIASES:
        return ATTENTION_ALIASES[text]
    from diffusers.models.attention_dispatch import AttentionBackendName

    known = {member.value for member in AttentionBackendName}
    if text not in known:
        raise AccelerationError(
            f"attention_backend must be auto, sdpa, cudnn, flash, fa3 or a diffusers backend "
            f"({', '.join(sorted(known))}); not {value!r}"
        )
    return text


@dataclass(frozen=True)
class AccelerationOptions:
    """How the engine runs its pipeline. The defaults change nothing: the engine behaves exactly as without options.

    Values are validated and normalised on construction (``compile="MAX-AUTOTUNE"`` → ``"max-autotune"``,
    ``attention_backend="cudnn"`` → ``"_native_cudnn"``); an invalid value raises ``AccelerationError``.
    """

    dtype: str = "auto"  # auto (bf16 on CUDA/MPS, fp32 on CPU) | bf16 | fp32
    compile: str = "off"  # off | default | max-autotune
    compile_scope: str = "full"  # full (the whole transformer) | regional (each repeated block; compiles faster)
    fuse_qkv: bool = False
    attention_backend: str = "native"  # auto | native (sdpa) | cudnn | flash | fa3 | any diffusers backend name
    fp8: str = "off"  # off | weights (storage only) | weights+activations (torchao dynamic float8)
    cuda_graphs: bool = False  # needs compile
    step_cache: str = "off"  # off | first-block | taylorseer  (lossy)
    step_cache_threshold: float = 0.05  # First-Block-Cache: residual change below which a step reuses the cache
    step_cache_interval: int = 5  # TaylorSeer: steps predicted between two full computations
    offload: str = "none"  # none | auto | model | sequential
    vae_tiling: str = "off"  # off | auto | on
    prompt_cache: int = 0  # entries in the prompt-embedding LRU; 0: off

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "dtype", _choice(self.dtype, "dtype", DTYPES))
        compile_ = {True: "default", False: "off", None: "off"}.get(self.compile, self.compile)
        compile_ = {"on": "default", "max_autotune": "max-autotune"}.get(str(compile_).strip().lower(), compile_)
        set_(self, "compile", _choice(compile_, "compile", COMPILE_MODES))
        set_(self, "compile_scope", _choice(self.compile_scope, "compile_scope", COMPILE_SCOPES))
        set_(self, "fuse_qkv", _as_bool(self.fuse_qkv, "fuse_qkv"))
        set_(self, "attention_backend", _attention_name(self.attention_backend))
        fp8 = "weights+activations" if str(self.fp8).strip().lower() in ("dynamic", "weights-activations") else self.fp8
        set_(self, "fp8", _choice("off" if fp8 in (False, None) else fp8, "fp8", FP8_MODES))
        set_(self, "cuda_graphs", _as_bool(self.cuda_graphs, "cuda_graphs"))
        step_cache = {"fbc": "first-block", "first-block-cache": "first-block"}.get(
            str(self.step_cache).strip().lower(), self.step_cache
        )
        set_(self, "step_cache", _choice("off" if step_cache in (False, None) else step_cache, "step_cache",
                                         STEP_CACHES))  # fmt: skip
        try:
            set_(self, "step_cache_threshold", float(self.step_cache_threshold))
            set_(self, "step_cache_interval", int(self.step_cache_interval))
            set_(self, "prompt_cache", int(self.prompt_cache))
        except (TypeError, ValueError) as exc:
            raise AccelerationError(f"invalid number: {exc}") from None
        if not 0 < self.step_cache_threshold < 1:
            raise AccelerationError("step_cache_threshold must be between 0 and 1 (0.05 to 0.1 are typical)")
        if self.step_cache_interval < 1:
            raise AccelerationError("step_cache_interval must be at least 1")
        if self.prompt_cache < 0:
            raise AccelerationError("prompt_cache must be 0 (off) or a positive number of entries")
        set_(self, "offload", _choice(self.offload, "offload", OFFLOADS))
        set_(self, "vae_tiling", _choice(self.vae_tiling, "vae_tiling", VAE_TILINGS))

    # --- building -----------------------------------------------------------------------------------------------

    def replace(self, **overrides) -> AccelerationOptions:
        """A copy with ``overrides`` applied; ``None`` values are ignored (an unset setting keeps the preset's)."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise AccelerationError(f"unknown acceleration option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{name: value for name, value in overrides.items() if value is not None})

    @classmethod
    def parse(cls, text: str, base: AccelerationOptions | None = None) -> AccelerationOptions:
        """``"compile=max-autotune,fuse_qkv=on,fp8=weights+activations"`` → options (on top of ``base``)."""
        overrides = {}
        for part in filter(None, (piece.strip() for piece in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep:
                raise AccelerationError(f"expected name=value, not {part!r}")
            overrides[name.strip().replace("-", "_")] = value.strip()
        return (base or cls()).replace(**overrides)

    # --- properties ---------------------------------------------------------------------------------------------

    def torch_dtype(self, device: torch.device | str) -> torch.dtype:
        if self.dtype == "bf16":
            return torch.bfloat16
        if self.dtype == "fp32":
            return torch.float32
        return torch.bfloat16 if torch.device(device).type in ("cuda", "mps") else torch.float32

    @property
    def lossy(self) -> bool:
        """True when outputs may differ visibly from the plain pipeline's at the same dtype."""
        return self.fp8 != "off" or self.step_cache != "off"

    @property
    def exclusive(self) -> bool:
        """Options whose state lives on the shared modules: concurrent edits must take turns."""
        return self.step_cache != "off" or self.cuda_graphs or self.offload in ("auto", "model", "sequential")

    @property
    def compile_mode(self) -> str | None:
        """The ``torch.compile`` mode: CUDA graphs come with ``reduce-overhead`` and ``max-autotune``."""
        if self.compile == "off":
            return None
        if self.compile == "max-autotune":
            return "max-autotune" if self.cuda_graphs else "max-autotune-no-cudagraphs"
        return "reduce-overhead" if self.cuda_graphs else "default"

    def describe(self) -> str:
        """The options that differ from the defaults, as ``parse`` reads them; 'none' when there are none."""
        default = AccelerationOptions()
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                parts.append(f"{f.name}={'on' if value is True else 'off' if value is False else value}")
        return ",".join(parts) or "none"


# --- devices ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """What the option checks need to know about a device (constructible by hand, for tests and planning)."""

    type: str  # cuda | cpu | mps
    index: int | None = None
    name: str = ""
    capability: tuple[int, int] | None = None  # CUDA compute capability, e.g. (9, 0) for H100
    total_memory: int | None = None  # bytes

    @classmethod
    def detect(cls, device: torch.device | str) -> DeviceInfo:
        device = torch.device(device)
        if device.type != "cuda":
            return cls(type=device.type, index=device.index, name=device.type)
        if not torch.cuda.is_available():
            raise AccelerationError(f"device {device} was requested but CUDA is not available in this torch build")
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return cls(type="cuda", index=index, name=props.name, capability=(props.major, props.minor),
                   total_memory=props.total_memory)  # fmt: skip

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.type if self.index is None else f"{self.type}:{self.index}")

    def at_least(self, major: int, minor: int = 0) -> bool:
        return self.capability is not None and self.capability >= (major, minor)


def _device_info(device) -> DeviceInfo:
    return device if isinstance(device, DeviceInfo) else DeviceInfo.detect(device)


def defaults_for(device: torch.device | str | DeviceInfo) -> AccelerationOptions:
    """The recommended lossless options for a device (the 'auto' preset).

    CUDA: bf16, compiled transformer, fused q/k/v, the fastest attention kernel installed (FA3 on Hopper, else cuDNN
    SDPA on sm80+), offload and VAE tiling decided by the GPU's memory, a prompt cache. No fp8, no step caching: both
    are lossy and opt-in. CPU and MPS: their current behaviour (fp32 on CPU) plus the exact prompt cache.
    """
    info = _device_info(device)
    if info.type != "cuda":
        return AccelerationOptions(prompt_cache=32)
    return AccelerationOptions(
        dtype="bf16",
        compile="default",
        fuse_qkv=True,
        attention_backend="auto",
        offload="auto",
        vae_tiling="auto",
        prompt_cache=32,
    )


def options_for(device: torch.device | str | DeviceInfo, preset: str = "auto", **overrides) -> AccelerationOptions:
    """Options for ``preset`` on ``device``, with ``overrides`` (``None`` = keep the preset's value).

    ``none``: nothing (the plain pipeline). ``auto``: ``defaults_for(device)``. ``fast``: ``auto`` plus the lossy and
    slow-to-build options that reach the issue's H100 target: max-autotune compile with CUDA graphs and fp8 weights +
    activations (on GPUs with fp8 tensor cores, compute capability 8.9+).
    """
    preset = _choice(preset, "preset", PRESETS)
    info = _device_info(device)
    if preset == "none":
        base = AccelerationOptions()
    else:
        base = defaults_for(info)
        if preset == "fast" and info.type == "cuda":
            base = base.replace(compile="max-autotune", cuda_graphs=True,
                                fp8="weights+activations" if info.at_least(8, 9) else "off")  # fmt: skip
    return base.replace(**overrides)


def configure(device: torch.device | str | DeviceInfo, preset: str = "auto", overrides: str | None = None,
              **fields) -> AccelerationOptions:  # fmt: skip
    """Options from settings: a preset, then ``overrides`` in ``parse`` form ("compile=off,fp8=weights"), then
    individual ``fields`` (``None`` = unset). The one call config / CLI code needs before ``load_engine``."""
    options = options_for(device, preset)
    if overrides:
        options = AccelerationOptions.parse(overrides, base=options)
    return options.replace(**fields)


# --- checks -------------------------------------------------------------------------------------------------------


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


def validate(options: AccelerationOptions, device: torch.device | str | DeviceInfo) -> list[str]:
    """Raise ``AccelerationError`` for what ``device`` cannot do; return warnings for what it can but should not."""
    info = _device_info(device)
    where = f"device {info.type}" + (f" ({info.name})" if info.name and info.name != info.type else "")
    cuda = info.type == "cuda"
    warnings: list[str] = []

    def refuse(option: str, reason: str) -> None:
        raise AccelerationError(f"{option} is not available on {where}: {reason}")

    # Combinations that cannot work anywhere come first: no package or device would help.
    if options.cuda_graphs and options.compile == "off":
        raise AccelerationError("cuda_graphs needs compile (default or max-autotune): the graphs are Inductor's")
    if options.cuda_graphs and options.step_cache != "off":
        raise AccelerationError("step_cache cannot be combined with cuda_graphs: the cache keeps block outputs "
                                "across steps, which a graph replay overwrites. Turn one of them off")  # fmt: skip
    if options.cuda_graphs and options.offload in ("model", "sequential"):
        raise AccelerationError("cuda_graphs cannot be combined with offload: a graph needs its weights to stay at "
                                "fixed GPU addresses")  # fmt: skip
    if options.compile != "off" and options.offload == "sequential":
        raise AccelerationError("compile cannot be combined with offload=sequential (weights move per layer); "
                                "use offload=model, or compile=off")  # fmt: skip
    if options.fp8 == "weights+activations" and options.offload == "sequential":
        raise AccelerationError("fp8=weights+activations cannot be combined with offload=sequential; use "
                                "fp8=weights (storage only) to save memory with sequential offload")  # fmt: skip
    if not cuda:
        if options.cuda_graphs:
            refuse("cuda_graphs", "CUDA graphs need a CUDA GPU (use --device cuda, or turn cuda_graphs off)")
        if options.fp8 == "weights+activations":
            refuse("fp8=weights+activations", "float8 matrix multiplies need a CUDA GPU with compute capability "
                   "8.9+ (Ada, Hopper); fp8=weights (storage only) works on the CPU")  # fmt: skip
        if options.offload in ("model", "sequential"):
            refuse(f"offload={options.offload}", "offloading moves weights between CPU and GPU memory; on the CPU "
                   "everything is in CPU memory already")  # fmt: skip
        if options.attention_backend not in (*CPU_ATTENTION_BACKENDS, "auto"):
            refuse(f"attention_backend={options.attention_backend}", "this kernel runs on CUDA GPUs only; use sdpa "
                   "(torch's scaled_dot_product_attention)")  # fmt: skip
        if info.type == "mps":
            if options.compile != "off":
                refuse("compile", "torch.compile does not support MPS well enough to serve with")
            if options.fp8 != "off":
                refuse("fp8", "MPS has no float8 dtype")
    else:
        if options.fp8 == "weights+activations":
            if not info.at_least(8, 9):
                refuse("fp8=weights+activations", f"float8 tensor cores need compute capability 8.9+ (Ada, Hopper, "
                       f"Blackwell), this GPU has {info.capability}; fp8=weights still saves memory")  # fmt: skip
            if _missing("torchao"):
                raise AccelerationError("fp8=weights+activations needs torchao: pip install torchao (the release "
                                        "matching your torch version)")  # fmt: skip
            if options.dtype == "fp32":
                raise AccelerationError("fp8=weights+activations quantizes bf16 activations: use dtype bf16")
            if options.compile == "off":
                warnings.append("fp8=weights+activations without compile is slower than bf16: the dynamic "
                                "quantisation of activations only pays off when Inductor fuses it")  # fmt: skip
        if options.offload in ("model", "sequential") and _missing("accelerate"):
            raise AccelerationError(f"offload={options.offload} needs the accelerate package: pip install accelerate")
        backend = options.attention_backend
        if backend.endswith("_hub"):
            raise AccelerationError(f"attention_backend={backend} downloads its kernel from the Hugging Face Hub; "
                                    "OpenKontext loads nothing from a hub. Install flash-attn (flash) or FA3 "
                                    "(fa3) locally, or use cudnn / sdpa")  # fmt: skip
        if backend not in ("auto", "native"):
            from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

            try:
                _check_attention_backend_requirements(AttentionBackendName(backend))
            except (RuntimeError, ImportError) as exc:
                raise AccelerationError(f"attention_backend={backend} cannot be used: {exc}") from None
            if backend in ("_flash_3", "_flash_varlen_3") and not info.at_least(9, 0):
                refuse(f"attention_backend={backend}", "Flash-Attention 3 runs on Hopper (compute capability 9.0)")
    if options.compile != "off" and options.step_cache != "off":
        warnings.append("step caching breaks the compiled graph at each cached block (compiled without fullgraph)")
    if options.compile != "off" and options.offload == "model":
        warnings.append("compile with offload=model is untested: the offload hook runs inside the compiled forward "
                        "(compiled without fullgraph)")  # fmt: skip
    return warnings


# --- applying -----------------------------------------------------------------------------------------------------


def module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def pipeline_modules(pipeline) -> dict[str, torch.nn.Module]:
    return {name: c for name, c in pipeline.components.items() if isinstance(c, torch.nn.Module)}


def resolve(options: AccelerationOptions, pipeline, device: torch.device | str | DeviceInfo) -> AccelerationOptions:
    """Replace 'auto' values by what this device and model call for."""
    info = _device_info(device)
    changes = {}
    if options.attention_backend == "auto":
        changes["attention_backend"] = best_attention_backend(info)
    if options.offload == "auto":
        if info.type != "cuda" or info.total_memory is None:
            changes["offload"] = "none"
        else:
            sizes = {name: module_bytes(m) for name, m in pipeline_modules(pipeline).items()}
            if options.fp8 != "off":  # fp8 storage halves the transformer's bf16 weights (roughly)
                sizes["transformer"] = sizes.get("transformer", 0) // 2
            if sum(sizes.values()) + OFFLOAD_HEADROOM_BYTES <= info.total_memory:
                changes["offload"] = "none"
            elif max(sizes.values()) + OFFLOAD_HEADROOM_BYTES <= info.total_memory and not _missing("accelerate"):
                changes["offload"] = "model"
            elif not _missing("accelerate"):
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


def best_attention_backend(device: torch.device | str | DeviceInfo) -> str:
    """FA3 on Hopper when installed, else cuDNN SDPA on sm80+ GPUs, else torch's SDPA."""
    info = _device_info(device)
    if info.type != "cuda":
        return "native"
    from diffusers.models import attention_dispatch

    if info.at_least(9, 0) and not info.at_least(10, 0) and getattr(attention_dispatch, "_CAN_USE_FLASH_ATTN_3", False):
        return "_flash_3"
    if info.at_least(8, 0) and torch.backends.cudnn.is_available() and (torch.backends.cudnn.version() or 0) >= 90000:
        return "_native_cudnn"
    return "native"


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


def store_fp8_weights(transformer: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """diffusers layerwise casting: weights kept in float8 (e4m3), cast to ``compute_dtype`` layer by layer.

    diffusers skips the model's sensitive layers (FLUX: embeddings, norms, and so the AdaLN modulation Linears).
    """
    transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)


def _set_compile_config(options: AccelerationOptions) -> None:
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


def apply(pipeline, options: AccelerationOptions, device: torch.device | str | DeviceInfo | None = None):
    """Apply ``options`` to ``pipeline`` (in place) and place it on ``device``; returns the pipeline.

    ``device`` defaults to where the transformer is. The pipeline should already have the options' dtype (loading
    builds it so); with offload it may be anywhere, and stays in CPU memory. Records what was applied as
    ``pipeline.openkontext_acceleration`` (the resolved options) and logs it.
    """
    info = _device_info(device if device is not None else pipeline.transformer.device)
    for warning in validate(options, info):
        log.warning("acceleration: %s", warning)
    options = resolve(options, pipeline, info)
    validate(options, info)  # what 'auto' resolved to must be valid too
    transformer = pipeline.transformer
    dtype = options.torch_dtype(info.torch_device)
    if transformer.dtype != dtype:
        pipeline.to(dtype=dtype)
    if options.offload == "none":
        pipeline.to(info.torch_device)
    done = []

    if options.fuse_qkv:
        released = fuse_qkv(transformer)
        done.append(f"fused q/k/v ({released / 1e6:.1f} M unfused parameters released)")
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
    if options.step_cache != "off":
        transformer.enable_cache(step_cache_config(options, dtype))
        done.append(f"step cache {options.step_cache}")
    if options.compile != "off":
        _set_compile_config(options)
        # diffusers' cache / casting hooks and accelerate's offload hook break the graph
        fullgraph = options.step_cache == "off" and options.fp8 != "weights" and options.offload == "none"
        kwargs = dict(mode=options.compile_mode, fullgraph=fullgraph, dynamic=False)
        if options.compile_scope == "regional":
            transformer.compile_repeated_blocks(**kwargs)
        else:
            transformer.compile(**kwargs)
        done.append(f"compile {options.compile_scope} mode={options.compile_mode}")
    pipeline.openkontext_acceleration = options
    log.info("acceleration on %s: %s", info.name or info.type, "; ".join(done) or "none")
    return pipeline


def step_cache_config(options: AccelerationOptions, dtype: torch.dtype):
    from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

    if options.step_cache == "first-block":
        return FirstBlockCacheConfig(threshold=options.step_cache_threshold)
    # diffusers' recommended TaylorSeer setting for FLUX: first-order, 3 full warm-up steps, factors in fp32.
    return TaylorSeerCacheConfig(cache_interval=options.step_cache_interval, disable_cache_before_step=3,
                                 max_order=1, taylor_factors_dtype=torch.float32)  # fmt: skip


# --- per-call runtime ---------------------------------------------------------------------------------------------


@dataclass
class PromptCache:
    """LRU of text-encoder outputs, keyed by (prompt, max_sequence_length); thread-safe.

    The cached tensors are exactly what the pipeline would compute (the same call), so outputs are bit-identical.
    """

    size: int
    hits: int = 0
    misses: int = 0
    _entries: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self, key, compute: Callable[[], tuple[torch.Tensor, torch.Tensor]]):
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        value = compute()  # outside the lock: a slow encode does not block hits for other prompts
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_OFFLOAD_STATE = ("_all_hooks", "_offload_device", "_offload_gpu_id")


class EngineRuntime:
    """The per-call side of the options, used by ``KontextEngine.edit``: prompt cache, cache context, turn-taking."""

    def __init__(self, options: AccelerationOptions | None = None):
        self.options = options or AccelerationOptions()
        self.prompt_cache = PromptCache(self.options.prompt_cache) if self.options.prompt_cache else None
        self._turn = threading.Lock() if self.options.exclusive else None

    def prompt_arguments(self, pipeline, prompt: str, max_sequence_length: int, negative: bool = False) -> dict:
        """The pipeline's prompt arguments: the prompt itself, or its cached embeddings (``negative``: as the
        negative prompt of true classifier-free guidance)."""
        if negative:
            arguments = self.prompt_arguments(pipeline, prompt, max_sequence_length)
            return {f"negative_{name}": value for name, value in arguments.items() if value is not None}
        if self.prompt_cache is None:
            return {"prompt": prompt}

        def encode():
            with torch.no_grad():
                embeds, pooled, _ = pipeline.encode_prompt(prompt=prompt, prompt_2=None,
                                                           device=pipeline._execution_device, num_images_per_prompt=1,
                                                           max_sequence_length=max_sequence_length)  # fmt: skip
            return embeds, pooled

        embeds, pooled = self.prompt_cache.get((prompt, max_sequence_length), encode)
        return {"prompt": None, "prompt_embeds": embeds, "pooled_prompt_embeds": pooled}

    def adopt(self, call_pipeline, source_pipeline) -> None:
        """Give a per-call pipeline the offload bookkeeping of the pipeline it shares modules with."""
        for name in _OFFLOAD_STATE:
            if hasattr(source_pipeline, name):
                setattr(call_pipeline, name, getattr(source_pipeline, name))

    @contextlib.contextmanager
    def session(self, pipeline) -> Iterator[None]:
        """Around one pipeline call: take turns if the options keep state; give step caches their context."""
        with self._turn if self._turn is not None else contextlib.nullcontext():
            transformer = pipeline.transformer
            if not getattr(transformer, "is_cache_enabled", False):
                yield
                return
            try:
                # FluxKontextPipeline (diffusers 0.42) does not open a cache context itself; FluxPipeline does.
                with transformer.cache_context("cond"):
                    yield
            finally:
                transformer._reset_stateful_cache()  # also after an error or a cancel mid-run


# --- warm-up ------------------------------------------------------------------------------------------------------


def warmup_buckets(spec: str, buckets: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """``native`` (the squarest bucket), ``all``, ``none``, or ``"1024x1024,1184x880"``."""
    spec = spec.strip().lower()
    if spec in ("", "none", "off"):
        return []
    if spec == "all":
        return list(buckets)
    if spec == "native":
        return [min(buckets, key=lambda wh: (abs(wh[0] / wh[1] - 1), -wh[0] * wh[1]))]
    try:
        return parse_sizes(spec)
    except ValueError as exc:
        raise AccelerationError(f"warm-up {exc}") from None


def warm_up(engine, buckets: Iterable[tuple[int, int]] | None = None, *, steps: int = 3, references: int = 1,
            text_to_image: bool = False, prompt: str = "warm-up", force: bool = False) -> list[dict]:  # fmt: skip
    """Run a short edit at each bucket so compilation (one graph per shape) happens now, not on a user's request.

    Does nothing (returns []) when the engine's options compile nothing, unless ``force``. ``buckets`` defaults to
    the squarest of the engine's buckets. Each (bucket, reference count) is its own compiled graph: a request at a
    shape not warmed up compiles on arrival (minutes for a FLUX-sized transformer, more with max-autotune). Three steps: CUDA graphs are recorded on the second call of a shape and replayed from the
    third. Inductor's compiled code is process-wide, but CUDA graphs are recorded per thread: call this from the
    thread that serves edits, or each worker thread records its own on its first edit (a few steps, no
    recompilation, but its own graph memory pool). Returns one ``{"size", "references", "seconds"}`` per run.
    """
    from PIL import Image

    if engine.runtime.options.compile == "off" and not force:
        return []
    sizes = list(buckets) if buckets is not None else warmup_buckets("native", engine.info.buckets)
    results = []
    for width, height in sizes:
        for count in ([0] if text_to_image else []) + ([references] if references else []):
            images = [Image.new("RGB", (width, height), (127 + 20 * i, 127, 127)) for i in range(count)]
            started = time.perf_counter()
            engine.edit(images, prompt, seed=0, steps=steps, guidance=2.5, size=(width, height))
            if engine.device.type == "cuda":
                torch.cuda.synchronize(engine.device)
            seconds = time.perf_counter() - started
            results.append({"size": (width, height), "references": count, "seconds": seconds})
            log.info("warm-up %dx%d with %d reference(s): %.1f s", width, height, count, seconds)
    return results
