"""Deepening or widening a trained FluxTransformer2DModel without changing what it computes.

Deepening. Every FLUX block adds its attention and MLP outputs to the residual stream through gates that its AdaLN
modulation computes from the timestep and pooled-text embedding (``AdaLayerNormZero``: shift, scale, gate for the
attention, then for the MLP; ``AdaLayerNormZeroSingle``: shift, scale, gate). A block whose gate rows of the
modulation are zero is the identity, and still learns: the gate's gradient is the block's output, which is not zero.

So a model with ``k`` times as many blocks starts as the trained one: each trained block is followed by ``k - 1``
copies of itself with their gates closed (the copies start from the trained block's features instead of from noise;
training opens their gates). The other tensors (embedders, norm_out, proj_out) are shared by name.

Widening (Net2WiderNet). A model ``k`` times as wide (``k`` times the heads of the same size) starts as the trained
one computing ``k`` copies of every channel: each width-sized chunk of a tensor's output rows is repeated ``k``
times, so the residual stream is ``[h, h, …]``, every head has ``k - 1`` twins and every MLP unit too; each input
column block is repeated as well and its ``k`` copies sum to the trained weight, so every projection adds up what it
did. The LayerNorms see the same mean and variance over the repeated stream, attention and RoPE act per head, the
activations per element: the output is the trained model's. The copies of an input block are the trained weight ÷ k
plus noise that sums to zero over them, so twins get different gradients and grow apart.
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


# tensors whose output rows (or, 1-D, entries) are not the model's width: the image projection and the per-head norms
OUTSIDE_ROWS = re.compile(r"^proj_out\.|\.norm_(added_)?[qk]\.weight$")
# matrices whose input columns are not the model's width: the embedders of timestep, guidance, pooled text, text
# tokens and image tokens
OUTSIDE_COLUMNS = re.compile(r"^(time_text_embed\.\w+\.linear_1|context_embedder|x_embedder)\.weight$")


def widen(state: dict[str, torch.Tensor], source: dict, target: dict, *, noise: float = 0.05,
          seed: int = 0) -> dict[str, torch.Tensor]:
    """The transformer state dict ``state`` of config ``source`` for the config ``target`` with ``k`` times its
    attention heads (same head size): every chunk of the old width repeated ``k`` times on the axes that have the
    model's width, input copies scaled by 1/k plus zero-sum noise of ``noise`` × the tensor's standard deviation."""
    have, want = source["num_attention_heads"], target["num_attention_heads"]
    if source["attention_head_dim"] != target["attention_head_dim"] or want < have or want % have:
        raise ValueError(f"cannot widen {have} heads of {source['attention_head_dim']} to {want} heads of "
                         f"{target['attention_head_dim']}: the target must have a whole multiple of the heads, "
                         f"of the same size")
    k, width = want // have, have * source["attention_head_dim"]
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        tensor = trained = value.float()
        if not OUTSIDE_ROWS.search(key):
            tensor = _repeat_chunks(tensor, 0, width, k)
        if tensor.dim() == 2 and not OUTSIDE_COLUMNS.search(key):
            tensor = _split_columns(tensor, width, k, noise * trained.std().item(), generator)
        out[key] = tensor.to(value.dtype)
    return out


def _repeat_chunks(tensor: torch.Tensor, axis: int, width: int, k: int) -> torch.Tensor:
    """Each ``width``-long chunk along ``axis`` followed by its k - 1 copies: [a, b] -> [a, a, b, b] for k = 2."""
    if tensor.shape[axis] % width:
        raise ValueError(f"axis of {tensor.shape[axis]} is not a whole number of chunks of the width {width}")
    chunks = tensor.split(width, dim=axis)
    return torch.cat([chunk for chunk in chunks for _ in range(k)], dim=axis)


def _split_columns(tensor: torch.Tensor, width: int, k: int, scale: float,
                   generator: torch.Generator) -> torch.Tensor:
    """The input columns repeated like the stream they read, each group of k copies summing to the trained one."""
    rows, columns = tensor.shape
    repeated = _repeat_chunks(tensor, 1, width, k) / k
    noise = torch.randn(rows, columns // width, k, width, generator=generator) * scale
    noise -= noise.mean(dim=2, keepdim=True)  # zero sum over the k copies of each column
    return repeated + noise.reshape(rows, columns * k)


def stream_matrices(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of the matrices whose output rows are the model's width (the ones ``widen`` repeats by rows)."""
    return [key for key, tensor in state.items() if tensor.dim() == 2 and not OUTSIDE_ROWS.search(key)]


def twin_spread(state: dict[str, torch.Tensor], width: int, k: int) -> float:
    """How far the twins of a model grown by ``widen`` (``k`` times the trained ``width``) have grown apart: over
    the matrices whose output rows are the model's width, the RMS of every width-sized row chunk's deviation from
    the mean of its ``k`` twins, divided by the RMS of those means. 0 for exact copies; ``widen``'s noise starts a
    model a little above 0, and a model whose twins learn different things moves away from it. Applied to the
    difference of two states it says how much of that update the twins do not share."""
    matrices = [state[key] for key in stream_matrices(state) if state[key].shape[0] % (width * k) == 0]
    if not matrices:
        raise ValueError(f"no matrix of the state has whole groups of {k} twins of width {width}")
    deviation = mean = 0.0
    for tensor in matrices:
        twins = tensor.float().reshape(-1, k, width, tensor.shape[1])  # (groups, k twins, width rows, columns)
        centre = twins.mean(dim=1, keepdim=True)
        deviation += (twins - centre).square().sum().item()
        mean += centre.square().sum().item() * k
    return (deviation / mean) ** 0.5 if mean else 0.0
