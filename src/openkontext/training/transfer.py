"""Moving trained weights between machines without the optimiser state: one fp16 safetensors file of the
transformer and the text encoders (what ``scripts/train_gpu.py`` hands back), and a run folder made from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .checkpoint import save_state

WEIGHTS_FILE = "weights.safetensors"


def save_weights(weights: dict[str, dict[str, torch.Tensor]], path: Path) -> None:
    """{module: state dict} -> one fp16 file with keys "module/tensor"."""
    flat = {f"{module}/{key}": value.detach().to(torch.float16).contiguous()
            for module, state in weights.items() for key, value in state.items() if value.dtype.is_floating_point}
    save_file(flat, str(path))


def load_weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    weights: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path)).items():
        module, name = key.split("/", 1)
        weights.setdefault(module, {})[name] = value.float()
    return weights


def import_run(source: Path, run_dir: Path) -> int:
    """A run folder from ``scripts/train_gpu.py``'s output: its recipe and log, and its weights as both the live
    and the EMA weights (no optimiser state: a resumed run starts a fresh optimiser). Returns the step."""
    source, run_dir = Path(source), Path(run_dir)
    summary = json.loads((source / "summary.json").read_text())
    weights = load_weights(source / WEIGHTS_FILE)
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "log.jsonl"):
        shutil.copy2(source / name, run_dir / name)
    save_state(run_dir / "flow.pt", {"models": weights, "ema": weights, "optimizer": None, "step": summary["steps"],
                                     "phase": "base"})  # fmt: skip
    return summary["steps"]
