"""The per-call side of the acceleration options, used by ``KontextEngine.edit``: the prompt-embedding cache, the
step caches' context, and turn-taking for options whose state lives on the shared modules.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from .options import AccelerationOptions


@dataclass
class PromptCache:
    """LRU of text-encoder outputs, keyed by (prompt, max_sequence_length, variant); thread-safe.

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


class AccelerationRuntime:
    """The per-call side of the options, used by ``KontextEngine.edit``: prompt cache, cache context, turn-taking."""

    def __init__(self, options: AccelerationOptions | None = None):
        self.options = options or AccelerationOptions()
        self.prompt_cache = PromptCache(self.options.prompt_cache) if self.options.prompt_cache else None
        self._turn = threading.Lock() if self.options.exclusive else None

    def prompt_arguments(self, pipeline, prompt: str, max_sequence_length: int, negative: bool = False,
                         variant: tuple = ()) -> dict:  # fmt: skip
        """The pipeline's prompt arguments: the prompt itself, or its cached embeddings (``negative``: as the
        negative prompt of true classifier-free guidance). ``variant`` is whatever else the embeddings depend on
        (the active LoRA adapters, when they change a text encoder): part of the cache key."""
        if negative:
            arguments = self.prompt_arguments(pipeline, prompt, max_sequence_length, variant=variant)
            return {f"negative_{name}": value for name, value in arguments.items() if value is not None}
        if self.prompt_cache is None:
            return {"prompt": prompt}

        def encode():
            with torch.no_grad():
                embeds, pooled, _ = pipeline.encode_prompt(prompt=prompt, prompt_2=None,
                                                           device=pipeline._execution_device, num_images_per_prompt=1,
                                                           max_sequence_length=max_sequence_length)  # fmt: skip
            return embeds, pooled

        embeds, pooled = self.prompt_cache.get((prompt, max_sequence_length, variant), encode)
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

