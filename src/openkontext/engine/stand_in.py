"""A transformer stand-in for one sampling pass: a guidance scheme (glyph_guidance.py, change_guidance.py) wraps the
pipeline's transformer, changes what each call returns, and hands everything else (config, dtype, cache contexts)
to the transformer it stands in for."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class TransformerStandIn:
    """Base of a stand-in: subclasses define ``__call__`` and reach the real transformer as ``self.transformer``."""

    def __init__(self, transformer):
        self.transformer = transformer

    def __getattr__(self, name):
        return getattr(self.transformer, name)


@contextlib.contextmanager
def standing_in(pipeline, make_stand_in) -> Iterator[None]:
    """Within the block, ``pipeline`` (a per-call pipeline) calls ``make_stand_in(transformer)`` in place of its
    transformer; ``make_stand_in`` None: unchanged."""
    if make_stand_in is None:
        yield
        return
    transformer = pipeline.transformer
    # object.__setattr__: DiffusionPipeline's own __setattr__ would record the stand-in in the pipeline's config.
    object.__setattr__(pipeline, "transformer", make_stand_in(transformer))
    try:
        yield
    finally:
        object.__setattr__(pipeline, "transformer", transformer)
