"""scripts/twin_gap.py on a tiny model grown to twice its width: it rebuilds the warm start, and the spread it prints
for a run's weights rises only when twins have moved apart."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from openkontext.engine.configs import CONFIGS, build_pipeline
from openkontext.training.growth import widen

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "twin_gap.py"
FIGURES = re.compile(r"twin spread at the warm start (\S+), weights (\S+), EMA (\S+); update ÷ warm start (\S+), "
                     r"the update's twin spread (\S+)")


def test_the_script_tells_twins_that_moved_apart_from_twins_that_did_not(tmp_path):
    build_pipeline("tiny-glyph", seed=1).save_pretrained(tmp_path / "model")
    narrow = CONFIGS["tiny-glyph"].transformer  # 2 heads of 16: width 32
    trained = load_file(tmp_path / "model" / "transformer" / "diffusion_pytorch_model.safetensors")
    start = widen(trained, narrow, {**narrow, "num_attention_heads": 4})
    key = "transformer_blocks.0.attn.to_v.weight"
    apart = dict(start, **{key: start[key].clone()})
    apart[key][:32] += 0.5 * torch.randn(32, 64, generator=torch.Generator().manual_seed(0))  # one twin alone
    together = dict(start, **{key: start[key] + 0.5})  # an update both twins share
    for name, weights in (("apart", apart), ("together", together)):
        (tmp_path / name).mkdir()
        torch.save({"models": {"transformer": weights}, "ema": {"transformer": start}, "step": 7},
                   tmp_path / name / "flow.pt")

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--grown-from", str(tmp_path / "model"), "--run", str(tmp_path / "apart"),
         "--run", str(tmp_path / "together")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (start_a, weights_a, ema_a, moved_a, update_a), (start_t, weights_t, ema_t, moved_t, update_t) = [
        [float(x) for x in found] for found in FIGURES.findall(done.stdout)]
    assert "step 7, 2x the width of 32" in done.stdout
    assert start_a == start_t == ema_a == ema_t > 0  # the warm start rebuilt exactly as warm_start builds it
    assert weights_a > start_a and update_a > 0.5 and moved_a > 0
    assert moved_t > 0 and update_t == 0.0
