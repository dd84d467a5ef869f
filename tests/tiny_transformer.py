"""Inputs for one direct call of the tiny-glyph configuration's FluxTransformer2DModel (tests that compare its outputs
under changed weights or inputs)."""

from __future__ import annotations

import torch


def tiny_transformer_inputs(timesteps: list[float], guidances: list[float]) -> dict:
    """The keyword arguments of one call of a tiny-glyph transformer: a 4x4 latent, 5 text tokens, one example per
    timestep (fixed random values)."""
    generator = torch.Generator().manual_seed(0)
    batch = len(timesteps)
    return dict(hidden_states=torch.randn(batch, 16, 16, generator=generator),
                encoder_hidden_states=torch.randn(batch, 5, 32, generator=generator),
                pooled_projections=torch.randn(batch, 32, generator=generator), timestep=torch.tensor(timesteps),
                img_ids=torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(4.0),
                                                   indexing="ij"), -1).reshape(16, 3),
                txt_ids=torch.zeros(5, 3), guidance=torch.tensor(guidances), return_dict=False)  # fmt: skip
