"""Guidance on an aligned glyph canvas: how strongly the word drawn on the canvas shapes the letters.

The second pass of an edit that writes a word (engine/kontext.py) predicts twice per step: with the word drawn on the
canvas and with the blank canvas, and moves the prediction ``scale`` times their difference away from the blank
one, ``blank + scale * (word - blank)`` — classifier-free guidance whose condition is the canvas, as InstructPix2Pix
guides by its input image. A model trained with a share of blank canvases (training/glyphs.py) has learned both
predictions; their difference is what the drawn letters add, which a small model under-weights (docs/training.md,
"Glyph guidance"). Scale 1 is plain sampling (one prediction per step); the model card's ``glyph_guidance`` is the
model's default, chosen by measurement.
"""

from __future__ import annotations

import torch

from .conditioning import GLYPH_INDEX
from .stand_in import TransformerStandIn, standing_in

# The transformer's per-example arguments, repeated for the blank half of the batch; the rest (token ids, attention
# options) are shared by the whole batch.
PER_EXAMPLE = ("timestep", "guidance", "pooled_projections", "encoder_hidden_states")


class GlyphGuidedTransformer(TransformerStandIn):
    """Stands in for a pipeline's transformer: each call runs the word's canvas and the blank canvas as one batch
    of two and returns the guided prediction."""

    def __init__(self, transformer, blank_canvas: torch.Tensor, scale: float):
        """``blank_canvas``: the packed latent tokens of the blank canvas, as the pipeline appends them."""
        super().__init__(transformer)
        self.blank_canvas = blank_canvas
        self.scale = scale

    def __call__(self, *, hidden_states: torch.Tensor, img_ids: torch.Tensor, return_dict: bool = False, **kwargs):
        ids = img_ids[0] if img_ids.ndim == 3 else img_ids
        canvas = ids[:, 0] == GLYPH_INDEX
        blank = hidden_states.clone()
        blank[:, canvas] = self.blank_canvas.to(blank.dtype)
        batched = {key: torch.cat([value, value]) if key in PER_EXAMPLE and value is not None else value
                   for key, value in kwargs.items()}  # fmt: skip
        output = self.transformer(hidden_states=torch.cat([hidden_states, blank]), img_ids=img_ids,
                                  return_dict=False, **batched)[0]  # fmt: skip
        with_word, without = output.chunk(2)
        return (without + self.scale * (with_word - without),)


def glyph_guided(pipeline, blank_canvas: torch.Tensor, scale: float):
    """Within the block, ``pipeline`` (a per-call pipeline) samples with glyph guidance at ``scale``; 1: unchanged."""
    guide = None if scale == 1.0 else lambda transformer: GlyphGuidedTransformer(transformer, blank_canvas, scale)
    return standing_in(pipeline, guide)
