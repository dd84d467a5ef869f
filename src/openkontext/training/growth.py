"""Deepening a trained FluxTransformer2DModel without changing what it computes.

Every FLUX block adds its attention and MLP outputs to the residual stream through gates that its AdaLN
modulation computes from the timestep and pooled-text embedding (``AdaLayerNormZero``: shift, scale, gate for the
attention, then for the MLP; ``AdaLayerNormZeroSingle``: shift, scale, gate). A block whose gate rows of the
modulation are zero is the identity, and still learns: the gate's gradient is the block's output, which is not zero.

So a model with ``k`` times as many blocks starts as the trained one: each trained block is followed by ``k - 1``
copies of itself with their gates closed (the copies start from the trained block's features instead of from noise;
training opens their gates). The other tensors (embedders, norm_out, proj_out) are shared by name.
"""

from __future__ import annotations

import re

import torch

# block list -> (modulation linears, chunks of their output, the gate chunks among them)
GATES = {
    "transformer_blocks": (("norm1.linear", "norm1_context.linear"), 6, (2, 5)),
    "single_transformer_blocks": (("norm.linear",), 3, (2,)),
}
COUNT_FIELD = {"transformer_blocks": "num_layers", "single_transformer_blocks": "num_single_layers"}


def deepen(state: dict[str, torch.Tensor], source: dict, target: dict) -> dict[str, torch.Tensor]:
    """The transformer state dict ``state`` of config ``source`` renumbered for the deeper config ``target``:
    source block ``i`` becomes target block ``i * k``, and blocks ``i * k + 1 … i * k + k - 1`` are its copies with
    closed gates (``k`` = target blocks ÷ source blocks, per block list)."""
    factors = {}
    for blocks, field in COUNT_FIELD.items():
        have, want = source[field], target[field]
        if want < have or want % have:
            raise ValueError(f"cannot deepen {field} from {have} to {want} blocks: the target must be a whole "
                             f"multiple of the source")
        factors[blocks] = want // have
    out: dict[str, torch.Tensor] = {}
    pattern = re.compile(rf"^({'|'.join(GATES)})\.(\d+)\.(.+)$")
    for key, value in state.items():
        match = pattern.match(key)
        if match is None:
            out[key] = value
            continue
        blocks, index, rest = match.group(1), int(match.group(2)), match.group(3)
        k = factors[blocks]
        for copy in range(k):
            tensor = value.clone()
            if copy:
                tensor = _close_gates(tensor, blocks, rest)
            out[f"{blocks}.{index * k + copy}.{rest}"] = tensor
    return out


def _close_gates(tensor: torch.Tensor, blocks: str, name: str) -> torch.Tensor:
    linears, chunks, gates = GATES[blocks]
    if not any(name in (f"{linear}.weight", f"{linear}.bias") for linear in linears):
        return tensor
    rows = tensor.shape[0] // chunks
    for gate in gates:
        tensor[gate * rows:(gate + 1) * rows] = 0
    return tensor
