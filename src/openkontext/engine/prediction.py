"""What the transformer's output means: the velocity itself, or a change to the context image.

- ``velocity`` (FLUX.1 Kontext [dev], the default): the transformer predicts the flow's velocity v = noise − x₀.
- ``context_residual``: the transformer predicts how the clean image differs from the context image,
  x̂₀ = context + output, and the velocity follows as v = (x_σ − x̂₀) / σ. An output of zero is then an exact copy
  of the context image: a small model no longer spends its capacity on reproducing every unchanged pixel through
  attention, and what it has not learned to change comes back unchanged instead of blurred. Without a context
  image (text-to-image) the base is zero and the output is x̂₀ itself.

Either way the pipeline samples the same rectified flow from the same velocity (diffusers' ``FluxKontextPipeline``
unchanged); a model folder declares ``"prediction"`` in ``openkontext.json`` and ``apply_prediction`` installs the
conversion as a forward hook on its transformer, so training, the engine, compiled and cached forwards all see the
velocity. The Euler step with this velocity, x ← x + (σ' − σ)·v, moves x a fraction (σ − σ')/σ of the way to x̂₀:
stable down to the last step, which lands on x̂₀.
"""

from __future__ import annotations

import torch

PREDICTIONS = ("velocity", "context_residual")
CONTEXT_INDEX = 1  # the RoPE index of the image being edited (the first context image)
MIN_SIGMA = 1e-3  # the velocity divides by sigma; training draws sigma down to ~1e-4


def check_prediction(prediction: str) -> str:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}: expected one of {', '.join(PREDICTIONS)}")
    return prediction


def apply_prediction(transformer: torch.nn.Module, prediction: str) -> None:
    """Make ``transformer``'s calls return velocities for a model trained with ``prediction``."""
    if check_prediction(prediction) == "context_residual" and not getattr(transformer, "_context_residual", False):
        transformer.register_forward_hook(_context_residual_hook, with_kwargs=True)
        transformer._context_residual = True


def context_base(hidden_states: torch.Tensor, img_ids: torch.Tensor) -> torch.Tensor:
    """For every token of the sequence, the context image's token at the same (row, column) if the token is a target
    token (RoPE index 0), else zero. A dense match rather than slicing, so compiled graphs need no data-dependent
    shapes; the sequence holds a few hundred tokens for the models that use it."""
    if img_ids.ndim == 3:  # the batched ids older diffusers callers pass; one set serves the batch
        img_ids = img_ids[0]
    index, position = img_ids[:, 0], img_ids[:, 1:]
    same_place = (position[:, None, :] == position[None, :, :]).all(-1)
    match = same_place & (index[:, None] == 0) & (index[None, :] == CONTEXT_INDEX)
    return torch.einsum("ij,bjc->bic", match.to(torch.float32), hidden_states.float())


def context_residual_velocity(output: torch.Tensor, hidden_states: torch.Tensor, img_ids: torch.Tensor,
                              sigma: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The velocity (x_σ − (base + output)) / σ for every token (only the target tokens' values are used)."""
    x0 = context_base(hidden_states, img_ids) + output.float()
    sigma = sigma.float().clamp_min(MIN_SIGMA).view(-1, 1, 1)
    return ((hidden_states.float() - x0) / sigma).to(output.dtype)


def _context_residual_hook(module, args, kwargs, output):
    if args:
        raise TypeError("a context-residual transformer is called with keyword arguments, as the pipeline does")
    sample = output[0] if isinstance(output, tuple) else output.sample
    velocity = context_residual_velocity(sample, kwargs["hidden_states"], kwargs["img_ids"], kwargs["timestep"])
    if isinstance(output, tuple):
        return (velocity, *output[1:])
    output.sample = velocity
    return output
