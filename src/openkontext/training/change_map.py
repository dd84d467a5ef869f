"""An auxiliary training signal: which image tokens does the prompt change? (training only; nothing is exported)

The flow loss says *what* a changed token should become, through a noisy regression target; at high noise, where a
near-deterministic edit is decided, that gradient says little about *where* the edit goes, and the asked colour
lands on the wrong objects (docs/training.md, "Examples per family"). The toy world knows where: each example's
change mask. A linear head reads the image tokens after one transformer block
and predicts, per token, the share of its patch the edit changes, for the target tokens and for the context image's
tokens (the same grid, RoPE index 1). Its binary cross-entropy, scaled by ``recipe.change_map_weight``, trains the
blocks up to that one to find the prompt's object in the context image: a dense, noise-free grounding signal, the way
an auxiliary loss on an intermediate representation speeds up diffusion training (REPA). The head is thrown away:
the exported transformer is the stock FluxTransformer2DModel.

Measured against the line on the same batches (docs/training.md, "The model knows where"): it did not help (the flow
loss 1.5–2.9 % worse); a linear head on the frozen blocks of a model trained without it already finds the named
object (scripts/grounding_probe.py, which fits this head), and the colour went wrong through the pooled text path.

Samples whose prompt was dropped (the unconditional velocity) and text-to-image samples (no context) carry no
grounding question and are left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChangeMapHead(nn.Module):
    """A change-map logit per image token from one block's output (the block's second return: image tokens)."""

    def __init__(self, dim: int, seed: int = 0):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.proj = nn.Linear(dim, 1)
        with torch.random.fork_rng(devices=[]):  # its own stream: the training batches stay the run's
            torch.manual_seed(seed)
            nn.init.normal_(self.proj.weight, std=dim**-0.5)
            nn.init.zeros_(self.proj.bias)
        self.hidden: torch.Tensor | None = None

    def attach(self, transformer, block: int):
        """Keep block ``block``'s image tokens (double blocks first, then single) at every forward pass."""
        blocks = [*transformer.transformer_blocks, *transformer.single_transformer_blocks]
        if not 0 <= block < len(blocks):
            raise ValueError(f"change_map_block {block} is not a block of this transformer (0..{len(blocks) - 1})")

        def keep(_module, _inputs, output):
            self.hidden = output[1]

        return blocks[block].register_forward_hook(keep)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(hidden.float())).squeeze(-1)


def change_map_loss(head: ChangeMapHead, shares: torch.Tensor, weights: torch.Tensor,
                    keep: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """BCE between the head's logits on the last forward's target tokens and the context image's (which follow them
    on the same grid) and each token's changed share of its patch (``shares``, (B, tokens)), weighted per token by
    ``weights`` (per-sample change weights, so that a small edit is not drowned by the unchanged rest), over the
    samples in ``keep``. Zero, with a gradient path, when no sample is kept."""
    hidden = head.hidden
    if hidden is None:
        raise RuntimeError("the change-map head saw no forward pass (attach it before the transformer runs)")
    logits = head(hidden[:, : 2 * shares.shape[1]])
    shares, weights = shares.to(logits.device).repeat(1, 2), weights.to(logits.device).repeat(1, 2)
    keep = keep.to(logits.device)
    if not keep.any():
        return logits.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(logits[keep], shares[keep], reduction="none")
    return ((bce * weights[keep]).sum(1) / weights[keep].sum(1)).mean()
