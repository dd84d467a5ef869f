"""What the engine knows about a model besides its weights (``ModelInfo``), made in one place: ``model_info``, from a
model folder's card (``openkontext.json`` beside ``model_index.json``) or a named configuration's numbers.

Plain data, no torch: the API layer reads ``MAX_REFERENCES`` here without importing model code.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .buckets import FLUX_KONTEXT_BUCKETS, make_buckets
from .configs import CONFIGS
from .conditioning import GLYPH_LAYOUTS, text_length

# The largest glyph guidance scale a request, a setting or a command may ask for (the model cards' measured scales
# are 6-12; far above, the guided prediction is mostly amplified error).
MAX_GLYPH_GUIDANCE = 30.0
GUIDANCE_MODES = ("embedded", "cfg", "change")  # how the engine applies a request's guidance (ModelInfo.guidance_mode)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"  # the shipped model
PLACEHOLDER_CONFIG = "small"  # the configuration 'random' (and 'default' without trained weights) builds
MAX_REFERENCES = 4  # context images per edit: the image to edit and three more, at RoPE indices 1-4
MODEL_CARD_FILE = "openkontext.json"  # our metadata beside model_index.json: native side, text length, name
FLUX_TEXT_WIDTH = 4096  # FLUX.1's transformer takes T5-XXL's 4096-wide tokens (joint_attention_dim); ours are narrower


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    placeholder: bool  # True: random weights, the outputs mean nothing
    buckets: tuple[tuple[int, int], ...]
    max_sequence_length: int
    glyph_context: str = ""  # the glyph strip's layout (conditioning.py); "": none
    prompt_sized_text: bool = False
    preserve: float = 0.0  # the default paste-back threshold for this model (see preserve.py); 0: off
    # "embedded": guidance goes to the transformer's guidance input (FLUX.1 [dev], guidance-distilled);
    # "cfg": true classifier-free guidance against the empty prompt at that scale (two passes per step);
    # "change": the guidance scales how far each step's prediction moves from the unchanged input (change_guidance.py)
    guidance_mode: str = "embedded"
    prediction: str = "velocity"  # what the transformer's output means (engine/prediction.py)
    # how strongly an aligned canvas's drawn word steers the second pass (engine/glyph_guidance.py); 1: plain
    glyph_guidance: float = 1.0

    def text_length(self, prompt: str, tokenizer) -> int:
        """The T5 sequence length for ``prompt``; ``tokenizer`` is the model's own (``tokenizer_2``)."""
        if not self.prompt_sized_text:
            return self.max_sequence_length
        return text_length(prompt, self.max_sequence_length, tokenizer)

    @property
    def native_area(self) -> int:
        return max(width * height for width, height in self.buckets)

    def with_defaults(self, *, preserve: float | None = None, glyph_guidance: float | None = None) -> ModelInfo:
        """This model with a server's own defaults for the request extensions, where given (not None)."""
        return dataclasses.replace(self, **_given(preserve=preserve, glyph_guidance=glyph_guidance))


@dataclass(frozen=True)
class EditDefaults:
    """What a request's OpenKontext extensions default to on a server: ``GET /health`` reports it, so a client (the
    playground) can show the value an empty field stands for."""

    preserve: float  # the paste-back threshold (preserve.py); 0: off
    glyph_guidance: float | None  # None: the model draws no aligned glyph canvas, so it ignores the field

    @classmethod
    def of(cls, info: ModelInfo) -> EditDefaults:
        return cls.resolve(preserve=info.preserve, glyph_guidance=info.glyph_guidance, glyph_context=info.glyph_context)

    @classmethod
    def resolve(cls, *, preserve: float, glyph_guidance: float, glyph_context: str) -> EditDefaults:
        return cls(preserve, glyph_guidance if glyph_context == "aligned" else None)


def model_info(card: Mapping, *, name: str, description: str, transformer: Mapping, native_side: int,
               placeholder: bool = False) -> ModelInfo:  # fmt: skip
    """The model's facts: what its ``card`` says, else the defaults given here and FLUX.1 Kontext [dev]'s.

    The buckets: around the card's ``native_side`` when it has one; else FLUX.1 Kontext's own 17 for a transformer
    of FLUX.1's width (``transformer`` is its config); else around ``native_side``, the model's default sample size.
    """
    if "native_side" in card:
        buckets = make_buckets(card["native_side"])
    elif transformer.get("joint_attention_dim") == FLUX_TEXT_WIDTH:
        buckets = FLUX_KONTEXT_BUCKETS
    else:
        buckets = make_buckets(native_side)
    return ModelInfo(
        name=card.get("name", name),
        description=card.get("description", description),
        placeholder=placeholder,
        buckets=buckets,
        max_sequence_length=card.get("max_sequence_length", 512),
        prompt_sized_text=card.get("prompt_sized_text", False),
        guidance_mode=_guidance_mode(card.get("guidance", "embedded")),
        prediction=card.get("prediction", "velocity"),
        **_request_extension_fields(card),
    )


def _request_extension_fields(card: Mapping) -> dict:
    """The card's fields behind the request extensions' defaults (``EditDefaults``)."""
    return dict(glyph_context=_glyph_layout(card.get("glyph_context", "")), preserve=card.get("preserve", 0.0),
                glyph_guidance=float(card.get("glyph_guidance", 1.0)))  # fmt: skip


def _guidance_mode(value: str) -> str:
    if value not in GUIDANCE_MODES:
        raise ValueError(f"the model card's guidance {value!r} is not one of {', '.join(GUIDANCE_MODES)}")
    return value


def _glyph_layout(value) -> str:
    """A card's ``glyph_context``: a layout name, or (cards written before there were layouts) true for "line"."""
    if isinstance(value, bool):
        return "line" if value else ""
    if value and value not in GLYPH_LAYOUTS:
        raise ValueError(f"the model card's glyph_context {value!r} is not a glyph layout: expected one of "
                         f"{', '.join(GLYPH_LAYOUTS)}, or false")
    return value


def read_card(folder: Path) -> dict:
    """The folder's ``openkontext.json``; empty for a folder without one (such as FLUX.1-Kontext-dev's)."""
    file = Path(folder) / MODEL_CARD_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


def folder_info(folder: Path, pipeline) -> ModelInfo:
    """A diffusers folder's model, loaded as ``pipeline``: its card, then its transformer and default sample size."""
    return model_info(read_card(folder), name=Path(folder).name, description=f"Kontext model loaded from {folder}",
                      transformer=pipeline.transformer.config,
                      native_side=pipeline.vae_scale_factor * pipeline.default_sample_size)  # fmt: skip


def config_card(config) -> dict:
    """A named configuration's facts in the card's terms."""
    return {"max_sequence_length": config.t5_max_length, "glyph_context": config.glyph_context,
            "prompt_sized_text": config.prompt_sized_text, "prediction": config.prediction}  # fmt: skip


def config_info(config, *, name: str, description: str, placeholder: bool) -> ModelInfo:
    """A model built from a named configuration (engine/configs.py ``KontextConfig``), random or trained."""
    return model_info(config_card(config), name=name, description=description, transformer=config.transformer,
                      native_side=config.native_side, placeholder=placeholder)  # fmt: skip


def model_label(model: str, *, preserve: float | None = None,
                glyph_guidance: float | None = None) -> tuple[str, bool, EditDefaults]:  # fmt: skip
    """The name, placeholder flag and request defaults that ``load_engine(model, preserve=…, glyph_guidance=…)``
    reports, read from the model folder's card (or the named configuration) without loading weights: what an
    API-only replica (``--workers 0``) says its workers serve."""
    if model == "default" and (DEFAULT_MODEL_DIR / "model_index.json").exists():
        folder = DEFAULT_MODEL_DIR
    elif model in ("default", "random", *CONFIGS):
        name = "random" if model == "default" else model
        card = config_card(CONFIGS[PLACEHOLDER_CONFIG if name == "random" else name])
        return placeholder_name(name), True, _edit_defaults(card, preserve, glyph_guidance)
    else:
        folder = Path(model).expanduser()
    card = read_card(folder)
    return card.get("name", folder.name), False, _edit_defaults(card, preserve, glyph_guidance)


def _edit_defaults(card: Mapping, preserve: float | None, glyph_guidance: float | None) -> EditDefaults:
    overrides = _given(preserve=preserve, glyph_guidance=glyph_guidance)
    return EditDefaults.resolve(**_request_extension_fields(card) | overrides)


def _given(**values) -> dict:
    return {name: value for name, value in values.items() if value is not None}


def placeholder_name(model: str) -> str:
    """The name of a randomly initialised model: 'random' or a named configuration ('tiny' …)."""
    return f"random-{model}" if model != "random" else "random-placeholder"
