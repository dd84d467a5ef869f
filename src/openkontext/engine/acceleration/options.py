"""What the engine is asked to do to run faster: ``AccelerationOptions``, parsed from settings and normalised.

Which options a device gets and can honour is ``devices.py``; applying them to a pipeline is ``apply.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

DTYPES = ("auto", "bf16", "fp32")
COMPILE_MODES = ("off", "default", "max-autotune")
COMPILE_SCOPES = ("full", "regional")
FP8_MODES = ("off", "weights", "weights+activations")
QUANTIZE_MODES = ("off", "int8", "fp8")  # torchao weight-only, at load time
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


def one_of(value, name: str, choices: tuple[str, ...]) -> str:
    """``value`` lower-cased, if it is one of ``choices``; else an ``AccelerationError`` that lists them."""
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
    quantize: str = "off"  # off | int8 | fp8: torchao weight-only quantization of the transformer's blocks
    cuda_graphs: bool = False  # needs compile
    step_cache: str = "off"  # off | first-block | taylorseer  (lossy)
    step_cache_threshold: float = 0.05  # First-Block-Cache: residual change below which a step reuses the cache
    step_cache_interval: int = 5  # TaylorSeer: steps predicted between two full computations
    offload: str = "none"  # none | auto | model | sequential
    vae_tiling: str = "off"  # off | auto | on
    vae_channels_last: bool = False  # the VAE's weights in channels-last memory: oneDNN's fast convolutions on a CPU
    prompt_cache: int = 0  # entries in the prompt-embedding LRU; 0: off

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "dtype", one_of(self.dtype, "dtype", DTYPES))
        compile_ = {True: "default", False: "off", None: "off"}.get(self.compile, self.compile)
        compile_ = {"on": "default", "max_autotune": "max-autotune"}.get(str(compile_).strip().lower(), compile_)
        set_(self, "compile", one_of(compile_, "compile", COMPILE_MODES))
        set_(self, "compile_scope", one_of(self.compile_scope, "compile_scope", COMPILE_SCOPES))
        set_(self, "fuse_qkv", _as_bool(self.fuse_qkv, "fuse_qkv"))
        set_(self, "attention_backend", _attention_name(self.attention_backend))
        fp8 = "weights+activations" if str(self.fp8).strip().lower() in ("dynamic", "weights-activations") else self.fp8
        set_(self, "fp8", one_of("off" if fp8 in (False, None) else fp8, "fp8", FP8_MODES))
        quantize = {"none": "off", "int8wo": "int8", "int8-weights": "int8", "fp8wo": "fp8", "fp8-weights": "fp8",
                    "float8": "fp8"}.get(str(self.quantize).strip().lower(), self.quantize)  # fmt: skip
        set_(self, "quantize", one_of("off" if quantize in (False, None) else quantize, "quantize", QUANTIZE_MODES))
        set_(self, "cuda_graphs", _as_bool(self.cuda_graphs, "cuda_graphs"))
        step_cache = {"fbc": "first-block", "first-block-cache": "first-block"}.get(
            str(self.step_cache).strip().lower(), self.step_cache
        )
        set_(self, "step_cache", one_of("off" if step_cache in (False, None) else step_cache, "step_cache",
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
        set_(self, "offload", one_of(self.offload, "offload", OFFLOADS))
        set_(self, "vae_tiling", one_of(self.vae_tiling, "vae_tiling", VAE_TILINGS))
        set_(self, "vae_channels_last", _as_bool(self.vae_channels_last, "vae_channels_last"))

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
        return default_dtype(device)

    @property
    def lossy(self) -> bool:
        """True when outputs may differ visibly from the plain pipeline's at the same dtype."""
        return self.fp8 != "off" or self.quantize != "off" or self.step_cache != "off"

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


def default_dtype(device: torch.device | str) -> torch.dtype:
    """bf16 on CUDA and MPS, fp32 on the CPU: what ``dtype=auto`` means, and what a plain pipeline is loaded in."""
    return torch.bfloat16 if torch.device(device).type in ("cuda", "mps") else torch.float32
