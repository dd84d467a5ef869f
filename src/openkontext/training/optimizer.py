"""The transformer stage's optimiser: AdamW for every parameter, or Muon for the transformer blocks' matrices.

Muon (torch.optim.Muon) orthogonalises each matrix's momentum before the update, which in language-model training
reaches a given loss with fewer examples than AdamW; examples per hour are what the CPU recipe is short of. It
only takes 2-D parameters, and the usual practice keeps the input and output layers, biases and norms on AdamW,
so the recipe's "muon" is a pair: Muon for the weight matrices inside the double and single blocks, AdamW for the
rest. ``adjust_lr_fn="match_rms_adamw"`` scales Muon's step to AdamW's update size, so one learning-rate schedule
(recipe.lr with warmup-stable-decay) drives both.
"""

from __future__ import annotations

import torch

OPTIMIZERS = ("adamw", "muon")
BLOCKS = ("transformer_blocks.", "single_transformer_blocks.")


class OptimizerPair:
    """Muon and AdamW stepped together, with one list of param groups; saves and loads as one state dict."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        for optimizer, part in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(part)


def build_optimizer(transformer: torch.nn.Module, text_params: list[torch.nn.Parameter], recipe):
    """The optimiser ``recipe.optimizer`` names, over the transformer and the text encoders' parameters, and the
    recipe rate ("lr" or "text_lr") each of its param groups follows, in order. (The rates are not kept in the
    groups: loading a saved state replaces a group's entries with the saved ones.)"""
    if recipe.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(
            [{"params": list(transformer.parameters()), "lr": recipe.lr},
             {"params": text_params, "lr": recipe.text_lr}],
            weight_decay=0.0,
        ), ["lr", "text_lr"]  # fmt: skip
    matrices, others = [], []
    for name, param in transformer.named_parameters():
        (matrices if param.ndim == 2 and name.startswith(BLOCKS) else others).append(param)
    muon = torch.optim.Muon([{"params": matrices, "lr": recipe.lr}], lr=recipe.lr,
                            weight_decay=0.0, adjust_lr_fn="match_rms_adamw")  # fmt: skip
    adamw = torch.optim.AdamW(
        [{"params": others, "lr": recipe.lr},
         {"params": text_params, "lr": recipe.text_lr}],
        weight_decay=0.0,
    )  # fmt: skip
    return OptimizerPair([muon, adamw]), ["lr", "lr", "text_lr"]
