"""Loading a Kontext model from local files only: the shipped default model, a diffusers-format folder (such as
FLUX.1-Kontext-dev's), optionally with a BFL single-file transformer, or the random placeholder.

Nothing here reaches a model hub: every ``from_pretrained`` runs with ``local_files_only=True``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers import FluxKontextPipeline, FluxTransformer2DModel

from .buckets import FLUX_KONTEXT_BUCKETS, make_buckets
from .configs import CONFIGS, build_pipeline
from .kontext import KontextEngine, ModelInfo

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
PLACEHOLDER_CONFIG = "small"
MODEL_CARD_FILE = "openkontext.json"  # our metadata beside model_index.json: native side, text length, name


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


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type in ("cuda", "mps") else torch.float32


def load_engine(model: str = "default", *, device: str = "auto", transformer_file: Path | None = None) -> KontextEngine:
    """Build the engine for ``model``: 'default', 'random', a named test config ('tiny'), or a folder path."""
    torch_device = pick_device(device)
    dtype = default_dtype(torch_device)
    if model == "default":
        if (DEFAULT_MODEL_DIR / "model_index.json").exists():
            return _load_folder(DEFAULT_MODEL_DIR, torch_device, dtype, transformer_file)
        log.warning("No trained default model is installed: serving a RANDOMLY INITIALISED placeholder model.")
        model = "random"
    if model in ("random", *CONFIGS):
        return _placeholder(CONFIGS[PLACEHOLDER_CONFIG if model == "random" else model], model, torch_device, dtype)
    return _load_folder(Path(model).expanduser(), torch_device, dtype, transformer_file)


def _placeholder(config, name: str, device: torch.device, dtype: torch.dtype) -> KontextEngine:
    pipeline = build_pipeline(config, seed=0, dtype=dtype).to(device)
    info = ModelInfo(
        name=f"random-{name}" if name != "random" else "random-placeholder",
        description="randomly initialised Kontext model (no trained weights): outputs are noise-like, not edits",
        placeholder=True,
        buckets=make_buckets(config.native_side),
        max_sequence_length=config.t5_max_length,
    )
    return KontextEngine(pipeline, info)


def _load_folder(path: Path, device: torch.device, dtype: torch.dtype, transformer_file: Path | None) -> KontextEngine:
    if not (path / "model_index.json").is_file():
        raise ModelNotFoundError(
            f"No diffusers-format model at {path}: expected {path / 'model_index.json'} "
            "(a folder such as FLUX.1-Kontext-dev's, or 'default' / 'random')."
        )
    components = {}
    if transformer_file is not None:
        components["transformer"] = load_single_file_transformer(transformer_file, path, dtype)
    pipeline = FluxKontextPipeline.from_pretrained(path, torch_dtype=dtype, local_files_only=True, **components)
    pipeline.to(device)
    card = json.loads((path / MODEL_CARD_FILE).read_text()) if (path / MODEL_CARD_FILE).exists() else {}
    is_flux_dev = pipeline.transformer.config.joint_attention_dim == 4096
    if "native_side" in card:
        buckets = make_buckets(card["native_side"])
    elif is_flux_dev:
        buckets = FLUX_KONTEXT_BUCKETS
    else:
        buckets = make_buckets(pipeline.vae_scale_factor * pipeline.default_sample_size)
    info = ModelInfo(
        name=card.get("name", path.name),
        description=card.get("description", f"Kontext model loaded from {path}"),
        placeholder=False,
        buckets=buckets,
        max_sequence_length=card.get("max_sequence_length", 512),
    )
    return KontextEngine(pipeline, info)


def load_single_file_transformer(file: Path, config_folder: Path, dtype: torch.dtype) -> FluxTransformer2DModel:
    """A transformer from BFL's original single-file checkpoint (e.g. flux1-kontext-dev.safetensors).

    Its architecture comes from the diffusers folder's ``transformer/config.json``, so no hub is consulted.
    """
    if not file.is_file():
        raise ModelNotFoundError(f"Transformer file not found: {file}")
    return FluxTransformer2DModel.from_single_file(
        str(file), config=str(config_folder), subfolder="transformer", torch_dtype=dtype, local_files_only=True
    )
