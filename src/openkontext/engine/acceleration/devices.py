"""Acceleration per device: what a device is (``DeviceInfo``), what it gets by default (the presets), and what it
cannot do (``validate``, which refuses with the reason and the fix).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .options import AccelerationError, AccelerationOptions, one_of

PRESETS = ("none", "auto", "fast")
CPU_ATTENTION_BACKENDS = ("native", "_native_math")


@dataclass(frozen=True)
class DeviceInfo:
    """What the option checks need to know about a device (constructible by hand, for tests and planning)."""

    type: str  # cuda | cpu | mps
    index: int | None = None
    name: str = ""
    capability: tuple[int, int] | None = None  # CUDA compute capability, e.g. (9, 0) for H100
    total_memory: int | None = None  # bytes
    native_bf16: bool = False  # CPU: bf16 arithmetic in hardware (AVX512-BF16, AMX, Arm BF16), not emulated

    @classmethod
    def detect(cls, device: torch.device | str) -> DeviceInfo:
        device = torch.device(device)
        if device.type != "cuda":
            return cls(type=device.type, index=device.index, name=device.type,
                       native_bf16=device.type == "cpu" and cpu_has_native_bf16())  # fmt: skip
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


@dataclass(frozen=True)
class ModelTraits:
    """What the option checks need to know about the model: LoRA adapters loaded, a GGUF (pre-quantized)
    transformer."""

    adapters: bool = False
    gguf: bool = False


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 in hardware (x86: AVX512-BF16 or AMX-BF16; Arm: the BF16 extension).
    Read from /proc/cpuinfo; elsewhere False (bf16 would be emulated, slower than fp32)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"}) or (platform.machine() == "aarch64" and "bf16" in flags)


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (Inductor) would use, or None."""
    configured = os.environ.get("CXX")
    return shutil.which(configured) if configured else shutil.which("g++") or shutil.which("clang++")


def device_info(device) -> DeviceInfo:
    return device if isinstance(device, DeviceInfo) else DeviceInfo.detect(device)


def defaults_for(device: torch.device | str | DeviceInfo) -> AccelerationOptions:
    """The recommended lossless options for a device (the 'auto' preset).

    CUDA: bf16, compiled transformer, fused q/k/v, the fastest attention kernel installed (FA3 on Hopper, else cuDNN
    SDPA on sm80+), offload and VAE tiling decided by the GPU's memory, a prompt cache. No fp8, no step caching: both
    are lossy and opt-in. CPU: bf16 where the CPU computes it in hardware (else fp32), fused q/k/v, the transformer
    compiled when a C++ compiler is there for Inductor, the VAE in channels-last memory, a prompt cache — 2.4x plain
    diffusers on the default model at 256², 50 dB PSNR to the fp32 output (docs/benchmarks.md). MPS: as before (fp32
    weights) plus the prompt cache.
    """
    info = device_info(device)
    if info.type == "cpu":
        return AccelerationOptions(dtype="bf16" if info.native_bf16 else "fp32", fuse_qkv=True,
                                   compile="default" if cxx_compiler() else "off", vae_channels_last=True,
                                   prompt_cache=32)  # fmt: skip
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


def options_for(device: torch.device | str | DeviceInfo, preset: str = "auto", *, model: ModelTraits | None = None,
                **overrides) -> AccelerationOptions:  # fmt: skip
    """Options for ``preset`` on ``device``, with ``overrides`` (``None`` = keep the preset's value).

    ``none``: nothing (the plain pipeline). ``auto``: ``defaults_for(device)``. ``fast``: ``auto`` plus the lossy and
    slow-to-build options that reach the issue's H100 target: max-autotune compile with CUDA graphs and fp8 weights +
    activations (on GPUs with fp8 tensor cores, compute capability 8.9+). A ``model`` with LoRA adapters or a GGUF
    transformer gets neither fused q/k/v nor fp8 from a preset (``validate`` says why).
    """
    preset = one_of(preset, "preset", PRESETS)
    info = device_info(device)
    if preset == "none":
        base = AccelerationOptions()
    else:
        base = defaults_for(info)
        if preset == "fast" and info.type == "cuda":
            base = base.replace(compile="max-autotune", cuda_graphs=True,
                                fp8="weights+activations" if info.at_least(8, 9) else "off")  # fmt: skip
    model = model or ModelTraits()
    if model.adapters or model.gguf:
        base = base.replace(fuse_qkv=False)
    if model.gguf:
        base = base.replace(fp8="off")
    return base.replace(**overrides)


def configure(device: torch.device | str | DeviceInfo, preset: str = "auto", overrides: str | None = None, *,
              model: ModelTraits | None = None, **fields) -> AccelerationOptions:  # fmt: skip
    """Options from settings: a preset (for ``model``), then ``overrides`` in ``parse`` form
    ("compile=off,fp8=weights"), then individual ``fields`` (``None`` = unset). What ``engine/startup.py`` passes to
    ``load_engine``."""
    options = options_for(device, preset, model=model)
    if overrides:
        options = AccelerationOptions.parse(overrides, base=options)
    return options.replace(**fields)


def missing(module: str) -> bool:
    """True when ``module`` is not installed."""
    return importlib.util.find_spec(module) is None


def torchao_problem() -> str | None:
    """Why torchao cannot quantize here (not installed, or its import fails), or None."""
    try:
        import torchao.quantization  # noqa: F401
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "torchao":  # torchao is there; something it needs is not
            return f"torchao does not import: {exc}"
        return "torchao is not installed: pip install torchao (the release matching your torch version)"
    except Exception as exc:  # a torchao built for another torch can fail in many ways at import
        return f"torchao does not import with torch {torch.__version__}: {type(exc).__name__}: {exc}"
    return None


def validate(options: AccelerationOptions, device: torch.device | str | DeviceInfo,
             model: ModelTraits | None = None) -> list[str]:  # fmt: skip
    """Raise ``AccelerationError`` for what ``device`` (or ``model``) cannot do; return warnings for what it can but
    should not."""
    info = device_info(device)
    model = model or ModelTraits()
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
    quantize = f"quantize={options.quantize}"
    if options.quantize != "off" and options.fp8 != "off":
        raise AccelerationError(f"{quantize} cannot be combined with fp8={options.fp8}: both quantize the same "
                                "weights; choose one")  # fmt: skip
    if options.quantize != "off" and options.offload == "sequential":
        raise AccelerationError(f"{quantize} cannot be combined with offload=sequential (it moves weights per layer, "
                                "which torchao's quantized tensors do not support); use offload=model")  # fmt: skip
    if model.gguf:
        for option, value in (("quantize", options.quantize), ("fp8", options.fp8)):
            if value != "off":
                raise AccelerationError(f"{option}={value} cannot be applied to a GGUF transformer: its weights are "
                                        "quantized already (use a full-precision transformer to quantize at load "
                                        "time)")  # fmt: skip
        if options.fuse_qkv:
            raise AccelerationError("fuse_qkv cannot be applied to a GGUF transformer: its q, k, v weights are "
                                    "quantized blocks that cannot be concatenated into one layer; fuse_qkv=off")
    if options.fuse_qkv and model.adapters:
        raise AccelerationError("fuse_qkv cannot be combined with LoRA adapters: the adapters apply to the separate "
                                "q, k, v projections that fusing replaces; fuse_qkv=off")  # fmt: skip
    if options.quantize != "off":
        problem = torchao_problem()
        if problem:
            raise AccelerationError(f"{quantize} needs torchao: {problem}")
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
        if info.type == "cpu":
            if options.compile != "off" and cxx_compiler() is None:
                refuse("compile", "Inductor compiles the transformer to C++ on the CPU and no C++ compiler was "
                       "found (install g++, or set CXX); or compile=off")  # fmt: skip
            if options.dtype == "bf16" and not info.native_bf16:
                warnings.append("dtype=bf16 on a CPU without bf16 instructions (AVX512-BF16, AMX, Arm BF16) is "
                                "emulated and usually slower than fp32")  # fmt: skip
        if info.type == "mps":
            if options.compile != "off":
                refuse("compile", "torch.compile does not support MPS well enough to serve with")
            if options.fp8 != "off":
                refuse("fp8", "MPS has no float8 dtype")
            if options.quantize != "off":
                refuse(quantize, "torchao's quantized weights have no MPS kernels; use a GGUF transformer file")
    else:
        if options.fp8 == "weights+activations":
            if not info.at_least(8, 9):
                refuse("fp8=weights+activations", f"float8 tensor cores need compute capability 8.9+ (Ada, Hopper, "
                       f"Blackwell), this GPU has {info.capability}; fp8=weights still saves memory")  # fmt: skip
            if missing("torchao"):
                raise AccelerationError("fp8=weights+activations needs torchao: pip install torchao (the release "
                                        "matching your torch version)")  # fmt: skip
            if options.dtype == "fp32":
                raise AccelerationError("fp8=weights+activations quantizes bf16 activations: use dtype bf16")
            if options.compile == "off":
                warnings.append("fp8=weights+activations without compile is slower than bf16: the dynamic "
                                "quantisation of activations only pays off when Inductor fuses it")  # fmt: skip
        if options.offload in ("model", "sequential") and missing("accelerate"):
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
    if cuda and options.quantize != "off" and options.compile == "off":
        warnings.append(f"{quantize} without compile saves memory but is slower than bf16: each layer dequantizes "
                        "its weights on every call unless Inductor fuses it into the matrix multiply")  # fmt: skip
    if options.compile != "off" and model.adapters:
        warnings.append("compile with LoRA adapters recompiles the transformer for each new combination of adapters "
                        "and scales a request asks for (one graph each; warm-up compiles the base model only)")
    if options.compile != "off" and options.step_cache != "off":
        warnings.append("step caching breaks the compiled graph at each cached block (compiled without fullgraph)")
    if options.compile != "off" and options.offload == "model":
        warnings.append("compile with offload=model is untested: the offload hook runs inside the compiled forward "
                        "(compiled without fullgraph)")  # fmt: skip
    return warnings


def best_attention_backend(device: torch.device | str | DeviceInfo) -> str:
    """FA3 on Hopper when installed, else cuDNN SDPA on sm80+ GPUs, else torch's SDPA."""
    info = device_info(device)
    if info.type != "cuda":
        return "native"
    from diffusers.models import attention_dispatch

    if info.at_least(9, 0) and not info.at_least(10, 0) and getattr(attention_dispatch, "_CAN_USE_FLASH_ATTN_3", False):
        return "_flash_3"
    if info.at_least(8, 0) and torch.backends.cudnn.is_available() and (torch.backends.cudnn.version() or 0) >= 90000:
        return "_native_cudnn"
    return "native"
