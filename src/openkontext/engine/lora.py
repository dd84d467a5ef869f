"""LoRA adapters on a loaded pipeline: loaded once at start, switched per edit without reloading the base weights.

Loading goes through diffusers' ``load_lora_weights``, which reads the formats people publish for FLUX: diffusers /
PEFT keys (``transformer.….lora_A.weight``), kohya / sd-scripts (``lora_unet_double_blocks_0_img_attn_qkv.lora_down``
with ``alpha``) and XLabs (``double_blocks.0.processor.qkv_lora1.down``), converting them to PEFT layers on the
transformer (and the CLIP text encoder when the file has ``lora_te`` weights). Every adapter stays loaded; an edit
activates the ones it asks for with ``set_adapters`` (or none: ``disable_lora``, the base model's exact computation).

Which adapters are active is state of the shared modules, not of a call. Two edits running at once on different
worker threads must not see each other's: ``AdapterGate`` lets edits that ask for the same adapters and scales run
together, and makes an edit that asks for a different set wait until the running ones have finished, then switches.
Waiting edits are served in arrival order, so a stream of one kind cannot starve another.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterator, Sequence

from .adapters import Adapter, AdapterChoice, AdapterError

log = logging.getLogger(__name__)


def load_adapters(pipeline, adapters: Sequence[Adapter]) -> None:
    """Load each adapter into ``pipeline`` under its name (diffusers' loaders and key converters), then leave them
    all inactive: the pipeline computes the base model until an edit asks for one."""
    for adapter in adapters:
        if not adapter.path.is_file():
            raise AdapterError(f"LoRA {adapter.name!r}: file not found: {adapter.path}")
        try:
            pipeline.load_lora_weights(str(adapter.path), adapter_name=adapter.name, local_files_only=True)
        except (ValueError, KeyError, RuntimeError, AssertionError, OSError) as exc:
            raise AdapterError(f"LoRA {adapter.name!r} ({adapter.path}) could not be loaded: "
                               f"{type(exc).__name__}: {exc}") from None  # fmt: skip
        log.info("LoRA %s loaded from %s (default scale %g)", adapter.name, adapter.path, adapter.scale)
    if adapters:
        pipeline.disable_lora()


def adapts_text_encoder(pipeline) -> bool:
    """True when an adapter changed a text encoder too: prompt embeddings then depend on the active adapters."""
    encoders = (getattr(pipeline, name, None) for name in ("text_encoder", "text_encoder_2"))
    return any(getattr(encoder, "peft_config", None) for encoder in encoders)


class AdapterGate:
    """Activates an edit's adapters on the shared pipeline, and keeps edits with different ones from overlapping.

    ``with gate.active(choice):`` waits until no edit with another choice runs (and every edit that arrived earlier
    has had its turn), switches the pipeline's adapters if they differ from the current ones, and holds them until
    the block ends. Edits with the same choice (the same names and scales) run side by side.
    """

    def __init__(self, pipeline, names: Sequence[str]):
        self.pipeline = pipeline
        self.names = tuple(names)
        self.current: AdapterChoice | None = ()  # load_adapters leaves every adapter inactive; None: unknown
        self.switches = 0
        self._running = 0
        self._queue: deque[object] = deque()
        self._changed = threading.Condition()

    def check(self, choice: AdapterChoice) -> None:
        unknown = [name for name, _ in choice if name not in self.names]
        if unknown:
            valid = ", ".join(self.names) or "none are loaded"
            raise AdapterError(f"unknown LoRA {unknown[0]!r}; this engine has: {valid}")

    @contextlib.contextmanager
    def active(self, choice: AdapterChoice) -> Iterator[None]:
        self.check(choice)
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            try:
                while not (self._queue[0] is ticket and (self._running == 0 or self.current == choice)):
                    self._changed.wait()
            finally:
                self._queue.remove(ticket)
                self._changed.notify_all()  # whoever is first in line now may go
            if self.current != choice:  # nothing runs now: safe to change the shared modules
                self._switch(choice)
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def _switch(self, choice: AdapterChoice) -> None:
        self.current = None  # should diffusers fail half-way, the next edit switches again
        if choice:
            self.pipeline.enable_lora()
            self.pipeline.set_adapters([name for name, _ in choice], [scale for _, scale in choice])
        else:
            self.pipeline.disable_lora()
        self.current = choice
        self.switches += 1
