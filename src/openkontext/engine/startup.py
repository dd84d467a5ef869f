"""Starting an engine, the one recipe the server and the CLI share: choose the device, the acceleration options for
it (a preset plus overrides, docs/gpu.md), load the model, and warm it up so that compilation happens now, not on a
user's request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from PIL import Image

from ..sizes import parse_sizes
from .acceleration.devices import ModelTraits, configure, validate
from .acceleration.options import AccelerationError
from .adapters import Adapter
from .kontext import KontextEngine
from .loading import is_gguf, load_engine, pick_device

log = logging.getLogger(__name__)


def start_engine(model: str = "default", *, device: str = "auto", transformer_file: Path | None = None,
                 preset: str = "auto", overrides: str | None = None, quantize: str | None = None,
                 adapters: Sequence[Adapter] = (), preserve: float | None = None,
                 glyph_guidance: float | None = None, warmup: str = "none") -> KontextEngine:  # fmt: skip
    """Load ``model`` (see ``load_engine``) with its LoRA ``adapters`` on ``device`` with the ``preset``'s acceleration
    options, ``overrides`` ("compile=off,fp8=weights") and ``quantize`` (off, int8, fp8: torchao weight-only; None
    keeps the preset's), then warm up the ``warmup`` buckets (see ``warmup_buckets``)."""
    torch_device = pick_device(device)
    traits = ModelTraits(adapters=bool(adapters), gguf=is_gguf(transformer_file))
    acceleration = configure(torch_device, preset, overrides, model=traits, quantize=quantize)
    validate(acceleration, torch_device, traits)  # refuse now, with the reason, before minutes of loading
    engine = load_engine(model, device=str(torch_device), transformer_file=transformer_file,
                         acceleration=acceleration, preserve=preserve, glyph_guidance=glyph_guidance,
                         adapters=adapters)  # fmt: skip
    warm_up(engine, warmup_buckets(warmup, engine.info.buckets))  # a no-op unless the options compile something
    return engine


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


def warm_up(engine: KontextEngine, buckets: Iterable[tuple[int, int]] | None = None, *, steps: int = 3,
            references: int = 1, text_to_image: bool = False, prompt: str = "warm-up",
            force: bool = False) -> list[dict]:  # fmt: skip
    """Run a short edit at each bucket so compilation (one graph per shape) happens now, not on a user's request.

    Does nothing (returns []) when the engine's options compile nothing, unless ``force``. ``buckets`` defaults to
    the squarest of the engine's buckets. Each (bucket, reference count) is its own compiled graph: a request at a
    shape not warmed up compiles on arrival (minutes for a FLUX-sized transformer, more with max-autotune). Three
    steps: CUDA graphs are recorded on the second call of a shape and replayed from the third. Inductor's compiled
    code is process-wide, but CUDA graphs are recorded per thread: call this from the thread that serves edits, or
    each worker thread records its own on its first edit (a few steps, no recompilation, but its own graph memory
    pool). Returns one ``{"size", "references", "seconds"}`` per run.
    """
    if engine.runtime.options.compile == "off" and not force:
        return []
    sizes = list(buckets) if buckets is not None else warmup_buckets("native", engine.info.buckets)
    # A model whose sequence length follows the prompt (prompt-sized text, glyph strips of quoted words) gets a
    # second, longer prompt with a quoted word: the second length makes Inductor compile a graph with a dynamic
    # sequence length, which then serves every prompt instead of recompiling on the first real request.
    prompts = [prompt]
    if engine.info.prompt_sized_text or engine.info.glyph_context:
        prompts.append(f"{prompt}: write 'WARM UP' on the sign, keep everything else as it is")
    results = []
    for width, height in sizes:
        for count in ([0] if text_to_image else []) + ([references] if references else []):
            images = [Image.new("RGB", (width, height), (127 + 20 * i, 127, 127)) for i in range(count)]
            started = time.perf_counter()
            for text in prompts:
                engine.edit(images, text, seed=0, steps=steps, guidance=2.5, size=(width, height))
            if engine.device.type == "cuda":
                torch.cuda.synchronize(engine.device)
            seconds = time.perf_counter() - started
            results.append({"size": (width, height), "references": count, "seconds": seconds})
            log.info("warm-up %dx%d with %d reference(s): %.1f s", width, height, count, seconds)
    return results

