"""Loading a Kontext model from local files only: the shipped default model, a diffusers-format folder (such as
FLUX.1-Kontext-dev's), optionally with a single-file transformer (BFL's .safetensors, or a quantized .gguf), or the
random placeholder; then the LoRA adapters (engine/lora.py) and the acceleration options.

Nothing here reaches a model hub: every ``from_pretrained`` runs with ``local_files_only=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import FluxKontextPipeline, FluxTransformer2DModel, GGUFQuantizationConfig
from diffusers.loaders.single_file_utils import load_single_file_checkpoint

from .acceleration.apply import apply
from .acceleration.options import AccelerationOptions
from .adapters import Adapter
from .configs import CONFIGS, build_pipeline
from .kontext import KontextEngine
from .lora import load_adapters
from .model_info import DEFAULT_MODEL_DIR, PLACEHOLDER_CONFIG, ModelInfo, config_info, folder_info, placeholder_name
from .prediction import apply_prediction
from .tiny_autoencoder import TinyAutoencoder

# diffusers loads a component class that model_index.json names from a module only if that module is already
# imported (it never imports code because a folder names it); the default model's autoencoder is this one.
LOCAL_COMPONENTS = (TinyAutoencoder,)


class _ExpectedLocalComponents(logging.Filter):
    """diffusers warns that a pipeline's autoencoder is not an AutoencoderKL; ours is one of LOCAL_COMPONENTS."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Expected types for") and
                    any(cls.__name__ in message for cls in LOCAL_COMPONENTS))  # fmt: skip


logging.getLogger("diffusers.pipelines.pipeline_utils").addFilter(_ExpectedLocalComponents())

log = logging.getLogger(__name__)

class ModelNotFoundError(FileNotFoundError):
    pass


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load_engine(
    model: str = "default",
    *,
    device: str = "auto",
    transformer_file: Path | None = None,
    acceleration: AccelerationOptions | None = None,
    preserve: float | None = None,
    glyph_guidance: float | None = None,
    adapters: Sequence[Adapter] = (),
) -> KontextEngine:
    """Build the engine for ``model``: 'default', 'random', a named test config ('tiny'), or a folder path.

    ``transformer_file`` replaces the folder's transformer: BFL's single .safetensors, or a GGUF file (.gguf,
    quantized; loaded with diffusers' GGUF support and computed in the options' dtype). ``adapters`` are LoRA files
    loaded under their names, all inactive until an edit asks for them (engine/lora.py). ``acceleration`` (see
    engine/acceleration/) is applied to the pipeline; None keeps the plain pipeline. ``preserve`` and
    ``glyph_guidance`` replace the model's default paste-back threshold (engine/preserve.py) and glyph guidance
    scale (engine/glyph_guidance.py) when not None.
    """
    torch_device = pick_device(device)
    dtype = (acceleration or AccelerationOptions()).torch_dtype(torch_device)  # auto: options.default_dtype
    pipeline, info = _load(model, dtype, transformer_file)
    load_adapters(pipeline, adapters)  # before the options: they place, cast and compile the adapters too
    pipeline, applied = _place(pipeline, torch_device, acceleration,
                               varying_sequence=info.prompt_sized_text or info.glyph_context)  # fmt: skip
    info = info.with_defaults(preserve=preserve, glyph_guidance=glyph_guidance)
    return KontextEngine(pipeline, info, acceleration=applied, adapters=[adapter.name for adapter in adapters])


def _load(model: str, dtype: torch.dtype, transformer_file: Path | None) -> tuple[FluxKontextPipeline, ModelInfo]:
    if model == "default":
        if (DEFAULT_MODEL_DIR / "model_index.json").exists():
            return _load_folder(DEFAULT_MODEL_DIR, dtype, transformer_file)
        log.warning("No trained default model is installed: serving a RANDOMLY INITIALISED placeholder model.")
        model = "random"
    if model in ("random", *CONFIGS):
        config = CONFIGS[PLACEHOLDER_CONFIG if model == "random" else model]
        return _placeholder(config, model, dtype)
    return _load_folder(Path(model).expanduser(), dtype, transformer_file)


def _place(pipeline, device: torch.device, acceleration: AccelerationOptions | None, varying_sequence: bool):
    """Move the pipeline to ``device``, or leave placement to the options (offload keeps weights in CPU memory)."""
    if acceleration is None:
        return pipeline.to(device), None
    pipeline = apply(pipeline, acceleration, device, varying_sequence=varying_sequence)
    return pipeline, pipeline.openkontext_acceleration


def _placeholder(config, name: str, dtype: torch.dtype) -> tuple[FluxKontextPipeline, ModelInfo]:
    info = config_info(config, name=placeholder_name(name),
                       description="randomly initialised Kontext model (no trained weights): outputs are noise-like, "
                       "not edits", placeholder=True)  # fmt: skip
    return build_pipeline(config, seed=0, dtype=dtype), info


def _load_folder(path: Path, dtype: torch.dtype,
                 transformer_file: Path | None) -> tuple[FluxKontextPipeline, ModelInfo]:  # fmt: skip
    if not (path / "model_index.json").is_file():
        raise ModelNotFoundError(
            f"No diffusers-format model at {path}: expected {path / 'model_index.json'} "
            "(a folder such as FLUX.1-Kontext-dev's, or 'default' / 'random')."
        )
    components = {}
    if transformer_file is not None:
        components["transformer"] = load_single_file_transformer(transformer_file, path, dtype)
    pipeline = FluxKontextPipeline.from_pretrained(path, dtype=dtype, local_files_only=True, **components)
    info = folder_info(path, pipeline)
    apply_prediction(pipeline.transformer, info.prediction)
    return pipeline, info


def is_gguf(file: Path | None) -> bool:
    """Whether a transformer file is GGUF (quantized blocks), by its name as published (``….gguf``)."""
    return file is not None and file.suffix.lower() == ".gguf"


def load_single_file_transformer(file: Path, config_folder: Path, dtype: torch.dtype) -> FluxTransformer2DModel:
    """A transformer from one file: BFL's original checkpoint (e.g. flux1-kontext-dev.safetensors), or a GGUF file
    (e.g. flux1-kontext-dev-Q8_0.gguf, in BFL's or diffusers' tensor names), which stays quantized in memory and is
    dequantized layer by layer to ``dtype`` as it computes (diffusers' GGUF support).

    Its architecture comes from the diffusers folder's ``transformer/config.json``, so no hub is consulted.
    """
    if not file.is_file():
        raise ModelNotFoundError(f"Transformer file not found: {file}")
    checkpoint = load_single_file_checkpoint(str(file), local_files_only=True)
    if any(key.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for key in checkpoint):
        # diffusers' own converter assumes FLUX.1's width (3072); ours takes it from the config, so any size loads.
        config = FluxTransformer2DModel.load_config(config_folder / "transformer", local_files_only=True)
        checkpoint = convert_bfl_transformer(checkpoint, config["num_attention_heads"] * config["attention_head_dim"])
    if is_gguf(file):
        quantized = dict(quantization_config=GGUFQuantizationConfig(compute_dtype=dtype))
    else:
        # safetensors hands out views of the memory-mapped file, 8 bytes off alignment; with accelerate installed,
        # diffusers keeps them as the parameters, and CPU kernels then take other paths (last-bit differences from
        # the same weights loaded from a folder). Copies own aligned memory, as a folder's weights do.
        checkpoint, quantized = {key: value.clone() for key, value in checkpoint.items()}, {}
    return FluxTransformer2DModel.from_single_file(
        checkpoint, config=str(config_folder), subfolder="transformer", dtype=dtype, local_files_only=True,
        **quantized,
    )  # fmt: skip


# BFL name → diffusers name of the tensors that are only renamed, as in diffusers'
# convert_flux_transformer_checkpoint_to_diffusers; "{}" is a block index.
# Names without ".scale" stand for both the ".weight" and the ".bias" tensor.
_BFL_RENAMES = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
    "double_blocks.{}.img_mod.lin": "transformer_blocks.{}.norm1.linear",
    "double_blocks.{}.txt_mod.lin": "transformer_blocks.{}.norm1_context.linear",
    "double_blocks.{}.img_attn.norm.query_norm.scale": "transformer_blocks.{}.attn.norm_q.weight",
    "double_blocks.{}.img_attn.norm.key_norm.scale": "transformer_blocks.{}.attn.norm_k.weight",
    "double_blocks.{}.txt_attn.norm.query_norm.scale": "transformer_blocks.{}.attn.norm_added_q.weight",
    "double_blocks.{}.txt_attn.norm.key_norm.scale": "transformer_blocks.{}.attn.norm_added_k.weight",
    "double_blocks.{}.img_mlp.0": "transformer_blocks.{}.ff.net.0.proj",
    "double_blocks.{}.img_mlp.2": "transformer_blocks.{}.ff.net.2",
    "double_blocks.{}.txt_mlp.0": "transformer_blocks.{}.ff_context.net.0.proj",
    "double_blocks.{}.txt_mlp.2": "transformer_blocks.{}.ff_context.net.2",
    "double_blocks.{}.img_attn.proj": "transformer_blocks.{}.attn.to_out.0",
    "double_blocks.{}.txt_attn.proj": "transformer_blocks.{}.attn.to_add_out",
    "single_blocks.{}.modulation.lin": "single_transformer_blocks.{}.norm.linear",
    "single_blocks.{}.norm.query_norm.scale": "single_transformer_blocks.{}.attn.norm_q.weight",
    "single_blocks.{}.norm.key_norm.scale": "single_transformer_blocks.{}.attn.norm_k.weight",
    "single_blocks.{}.linear2": "single_transformer_blocks.{}.proj_out",
}


def convert_bfl_transformer(checkpoint: dict[str, torch.Tensor], inner_dim: int) -> dict[str, torch.Tensor]:
    """BFL's original Flux transformer layout → diffusers', for a model ``inner_dim`` wide (3072 for FLUX.1).

    The same mapping as diffusers' converter, which hard-codes 3072 and so cannot load any other size.
    """
    source = {key.removeprefix("model.diffusion_model."): value for key, value in checkpoint.items()}
    doubles = sorted({int(key.split(".")[1]) for key in source if key.startswith("double_blocks.")})
    singles = sorted({int(key.split(".")[1]) for key in source if key.startswith("single_blocks.")})
    has_guidance = any(key.startswith("guidance_in.") for key in source)
    renames = []
    for bfl, diffusers in _BFL_RENAMES.items():
        if bfl.startswith(("double_blocks", "single_blocks")):
            indices = doubles if bfl.startswith("double_blocks") else singles
            renames += [(bfl.format(i), diffusers.format(i)) for i in indices]
        elif has_guidance or not bfl.startswith("guidance_in."):
            renames.append((bfl, diffusers))
    out = {}
    for bfl, diffusers in renames:
        if bfl.endswith(".scale"):
            out[diffusers] = source[bfl]
        else:
            out[diffusers + ".weight"], out[diffusers + ".bias"] = source[bfl + ".weight"], source[bfl + ".bias"]
    for suffix in (".weight", ".bias"):
        # BFL's final modulation holds (shift, scale); diffusers' AdaLayerNormContinuous expects (scale, shift).
        shift, scale = source["final_layer.adaLN_modulation.1" + suffix].chunk(2)
        out["norm_out.linear" + suffix] = torch.cat([scale, shift])
        for i in doubles:
            block = f"transformer_blocks.{i}.attn."
            for name, part in zip("qkv", source[f"double_blocks.{i}.img_attn.qkv{suffix}"].chunk(3)):
                out[f"{block}to_{name}{suffix}"] = part
            for name, part in zip("qkv", source[f"double_blocks.{i}.txt_attn.qkv{suffix}"].chunk(3)):
                out[f"{block}add_{name}_proj{suffix}"] = part
        for i in singles:
            fused = source[f"single_blocks.{i}.linear1{suffix}"]  # q, k, v and the MLP input, concatenated
            parts = fused.split([inner_dim, inner_dim, inner_dim, len(fused) - 3 * inner_dim])
            for name, part in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), parts):
                out[f"single_transformer_blocks.{i}.{name}{suffix}"] = part
    return out
