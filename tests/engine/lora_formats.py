"""Test-only: LoRA files for a Flux transformer in the key formats people publish, with the weight change each means.

Each writer draws random low-rank factors for some of the transformer's Linear layers, saves them as a .safetensors
file in its format, and returns ``{diffusers parameter name: ΔW}``: what the adapter adds to that weight at scale 1,
worked out here from the format's definition, independently of diffusers' converters.

* ``peft``: diffusers / PEFT keys, ``transformer.<module>.lora_A.weight`` (rank × in) and ``lora_B`` (out × rank);
  ΔW = B·A.
* ``kohya``: sd-scripts keys on BFL's module names, ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight``,
  ``lora_up``, and ``.alpha``; ΔW = (alpha / rank)·up·down, a fused q/k/v (BFL's layout) split row-wise into
  diffusers' to_q, to_k, to_v. (Not the single blocks' fused ``linear1``: diffusers' converter splits it at
  FLUX.1's fixed widths, 3072 × 3 + 12288, which a tiny model does not have.)
* ``xlabs``: XLabs' keys, ``double_blocks.0.processor.qkv_lora1.down.weight`` / ``up``; ΔW = up·down, qkv split as
  above (``qkv_lora1``: the image stream, ``qkv_lora2``: the text stream; ``proj_lora1/2``: the output projections).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

RANK = 4
FORMATS = ("peft", "kohya", "xlabs")


def _factors(generator: torch.Generator, out_features: int, in_features: int, strength: float):
    down = torch.randn(RANK, in_features, generator=generator) * strength
    up = torch.randn(out_features, RANK, generator=generator) * strength
    return down, up


def _split_qkv(delta: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": part for name, part in zip(names, delta.chunk(3, dim=0))}


def write_lora(kind: str, transformer: torch.nn.Module, path: Path, seed: int = 0,
               strength: float = 0.3) -> dict[str, torch.Tensor]:  # fmt: skip
    """Write a ``kind`` LoRA for ``transformer`` to ``path``; returns the weight changes it means at scale 1."""
    generator = torch.Generator().manual_seed(seed)
    modules = dict(transformer.named_modules())
    inner = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    tensors: dict[str, torch.Tensor] = {}
    deltas: dict[str, torch.Tensor] = {}
    if kind == "peft":
        for name in ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.add_v_proj",
                     "transformer_blocks.0.ff.net.2", "single_transformer_blocks.0.proj_out",
                     "single_transformer_blocks.0.attn.to_k"):  # fmt: skip
            linear = modules[name]
            down, up = _factors(generator, linear.out_features, linear.in_features, strength)
            tensors[f"transformer.{name}.lora_A.weight"] = down
            tensors[f"transformer.{name}.lora_B.weight"] = up
            deltas[f"{name}.weight"] = up @ down
    elif kind == "kohya":
        alpha = RANK / 2
        block = "transformer_blocks.0."
        for key, targets in {
            "double_blocks_0_img_attn_qkv": [block + "attn.to_q", block + "attn.to_k", block + "attn.to_v"],
            "double_blocks_0_txt_attn_proj": [block + "attn.to_add_out"],
            "double_blocks_0_img_mlp_0": [block + "ff.net.0.proj"],
            "single_blocks_0_linear2": ["single_transformer_blocks.0.proj_out"],
        }.items():  # fmt: skip
            first = modules[targets[0]]
            down, up = _factors(generator, first.out_features * len(targets), first.in_features, strength)
            tensors[f"lora_unet_{key}.lora_down.weight"] = down
            tensors[f"lora_unet_{key}.lora_up.weight"] = up
            tensors[f"lora_unet_{key}.alpha"] = torch.tensor(alpha)
            delta = alpha / RANK * up @ down
            deltas.update(_split_qkv(delta, targets) if len(targets) == 3 else {f"{targets[0]}.weight": delta})
    elif kind == "xlabs":
        block = "transformer_blocks.0.attn."
        for key, targets in {
            "qkv_lora1": [block + "to_q", block + "to_k", block + "to_v"],
            "qkv_lora2": [block + "add_q_proj", block + "add_k_proj", block + "add_v_proj"],
            "proj_lora1": [block + "to_out.0"],
            "proj_lora2": [block + "to_add_out"],
        }.items():  # fmt: skip
            down, up = _factors(generator, inner * len(targets), inner, strength)
            tensors[f"double_blocks.0.processor.{key}.down.weight"] = down
            tensors[f"double_blocks.0.processor.{key}.up.weight"] = up
            delta = up @ down
            deltas.update(_split_qkv(delta, targets) if len(targets) == 3 else {f"{targets[0]}.weight": delta})
    else:
        raise ValueError(f"unknown LoRA format {kind!r}; one of {FORMATS}")
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))
    return deltas


def merge(transformer: torch.nn.Module, deltas: dict[str, torch.Tensor], scale: float) -> None:
    """Add ``scale``·ΔW to ``transformer``'s weights in place: the adapter's effect, computed by hand."""
    parameters = dict(transformer.named_parameters())
    with torch.no_grad():
        for name, delta in deltas.items():
            parameters[name].add_(scale * delta.to(parameters[name].dtype))
