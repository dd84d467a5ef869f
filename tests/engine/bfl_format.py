"""Test-only: a diffusers ``FluxTransformer2DModel`` state dict written back in BFL's original single-file layout.

This inverts diffusers' ``convert_flux_transformer_checkpoint_to_diffusers`` (diffusers/loaders/single_file_utils.py)
key by key, so a test can make a small "flux1-kontext-dev.safetensors"-style file from a random tiny transformer:

* renames (``x_embedder`` → ``img_in``, ``time_text_embed.timestep_embedder.linear_1`` → ``time_in.in_layer`` …);
* the separate q, k, v projections of each double block are concatenated into ``img_attn.qkv`` / ``txt_attn.qkv``;
* each single block's q, k, v and MLP input projections are concatenated into one ``linear1``;
* ``norm_out.linear`` holds (scale, shift) in diffusers but (shift, scale) in BFL's ``final_layer.adaLN_modulation.1``.
"""

from __future__ import annotations

import torch

# BFL name → diffusers name, for tensors that are only renamed (each has .weight and .bias unless it ends in .scale).
_TOP_LEVEL = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
_DOUBLE_BLOCK = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
}
_DOUBLE_BLOCK_NORMS = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
_SINGLE_BLOCK = {"modulation.lin": "norm.linear", "linear2": "proj_out"}
_SINGLE_BLOCK_NORMS = {"norm.query_norm.scale": "attn.norm_q.weight", "norm.key_norm.scale": "attn.norm_k.weight"}


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def diffusers_to_bfl(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BFL-layout copy of a diffusers Flux transformer state dict. Every input tensor is used exactly once."""
    source = {key: value.detach().clone() for key, value in state_dict.items()}
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        return source.pop(key)

    def rename(bfl: str, diffusers: str) -> None:
        for suffix in (".weight", ".bias"):
            out[bfl + suffix] = take(diffusers + suffix)

    def count(prefix: str) -> int:
        return len({key.split(".")[1] for key in state_dict if key.startswith(prefix)})

    for bfl, diffusers in _TOP_LEVEL.items():
        rename(bfl, diffusers)
    for suffix in (".weight", ".bias"):
        out["final_layer.adaLN_modulation.1" + suffix] = _swap_halves(take("norm_out.linear" + suffix))

    for i in range(count("transformer_blocks.")):
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for bfl, diffusers in _DOUBLE_BLOCK.items():
            rename(b + bfl, d + diffusers)
        for bfl, diffusers in _DOUBLE_BLOCK_NORMS.items():
            out[b + bfl] = take(d + diffusers)
        for suffix in (".weight", ".bias"):
            out[b + "img_attn.qkv" + suffix] = torch.cat([take(d + f"attn.to_{x}" + suffix) for x in "qkv"])
            out[b + "txt_attn.qkv" + suffix] = torch.cat([take(d + f"attn.add_{x}_proj" + suffix) for x in "qkv"])

    for i in range(count("single_transformer_blocks.")):
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for bfl, diffusers in _SINGLE_BLOCK.items():
            rename(b + bfl, d + diffusers)
        for bfl, diffusers in _SINGLE_BLOCK_NORMS.items():
            out[b + bfl] = take(d + diffusers)
        for suffix in (".weight", ".bias"):
            parts = [take(d + f"attn.to_{x}" + suffix) for x in "qkv"] + [take(d + "proj_mlp" + suffix)]
            out[b + "linear1" + suffix] = torch.cat(parts)

    if source:
        raise KeyError(f"diffusers tensors with no BFL counterpart: {sorted(source)}")
    return out
