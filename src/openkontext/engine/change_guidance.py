"""Guidance against the unchanged image (``"guidance": "change"`` in a model card): the request's ``guidance``
scales how far the edit moves away from the input image.

At every step the prediction becomes ``copy + scale * (prediction - copy)``. ``copy`` is the velocity that leads
straight back to the image being edited (x̂₀ = its latent: the context tokens at the target's places); ``scale`` is
``1 + CHANGE_GUIDANCE_SLOPE * (guidance - CHANGE_GUIDANCE_REFERENCE)``. At the API's default guidance the model
samples as trained; lower keeps more of the input, higher pushes the edit further and, soon, over-processes it. It
is classifier-free guidance whose reference is the identity edit instead of the empty prompt, and the identity edit
needs no second pass: for a model whose prompted prediction carries more error than edit against the empty prompt's
(docs/training.md, "Guidance on v8"), this is the direction the prompt actually moves it. Text-to-image has no input
to move away from: it samples unguided.
"""

from __future__ import annotations

import torch

from .prediction import MIN_SIGMA, context_base
from .stand_in import TransformerStandIn, standing_in

CHANGE_GUIDANCE_REFERENCE = 3.0  # the API's default guidance: scale 1, the model as trained
# Scale per unit of guidance. The toy models are steep: on candidate a5 (docs/training.md, "Change guidance") scales
# 0.875 and 1.125 already halve the edits that succeed at 1, and 1.5 wrecks the image (global preservation 6 dB); at
# 0.1 per unit, BFL's usual range (2-5) spans scales 0.9-1.2.
CHANGE_GUIDANCE_SLOPE = 0.1


def change_scale(guidance: float) -> float:
    """The scale of the predicted change at a request's ``guidance``: 1 at the reference, never below 0."""
    return max(0.0, 1.0 + CHANGE_GUIDANCE_SLOPE * (guidance - CHANGE_GUIDANCE_REFERENCE))


class ChangeGuidedTransformer(TransformerStandIn):
    """Stands in for a pipeline's transformer: returns the velocity ``scale`` times as far from the copy velocity."""

    def __init__(self, transformer, scale: float):
        super().__init__(transformer)
        self.scale = scale

    def __call__(self, *, hidden_states: torch.Tensor, img_ids: torch.Tensor, timestep: torch.Tensor,
                 return_dict: bool = False, **kwargs):  # fmt: skip
        velocity = self.transformer(hidden_states=hidden_states, img_ids=img_ids, timestep=timestep,
                                    return_dict=False, **kwargs)[0]  # fmt: skip
        sigma = timestep.float().clamp_min(MIN_SIGMA).view(-1, 1, 1)
        copy = (hidden_states.float() - context_base(hidden_states, img_ids)) / sigma
        return ((copy + self.scale * (velocity.float() - copy)).to(velocity.dtype),)


def change_guided(pipeline, scale: float):
    """Within the block, ``pipeline`` (a per-call pipeline) samples with change guidance at ``scale``; 1: unchanged."""
    guide = None if scale == 1.0 else lambda transformer: ChangeGuidedTransformer(transformer, scale)
    return standing_in(pipeline, guide)
