"""A closed pooled text path (``FlowRecipe.close_pooled_text``): the projection of CLIP's pooled vector into the
blocks' modulation is zeroed and frozen, stays so through training, resuming and EMA, and the exported model's output
no longer depends on the pooled vector."""

from __future__ import annotations

import torch

from openkontext.engine.configs import build_pipeline
from openkontext.engine.loading import load_engine
from openkontext.training.checkpoint import export
from openkontext.training.config import preset
from openkontext.training.loop import POOLED_TEXT_WEIGHT, train_flow
from tiny_transformer import tiny_transformer_inputs


def test_a_closed_pooled_text_path_stays_closed_and_the_exported_model_ignores_the_pooled_vector(tmp_path):
    def pooled_effect(transformer) -> float:
        inputs = tiny_transformer_inputs(timesteps=[0.5], guidances=[3.0])
        pooled = inputs.pop("pooled_projections")
        with torch.no_grad():
            a = transformer(pooled_projections=torch.zeros_like(pooled), **inputs)[0]
            b = transformer(pooled_projections=torch.ones_like(pooled), **inputs)[0]
        return float((a - b).abs().max())

    cfg = preset("tiny-glyph", **{"flow.steps": 3, "flow.close_pooled_text": True, "flow.ema": 0.9})
    train_flow(cfg, tmp_path / "run", max_steps=2)
    train_flow(cfg, tmp_path / "run")  # resumed: closed again
    state = torch.load(tmp_path / "run" / "flow.pt", weights_only=False)
    assert state["step"] == 3
    assert not state["models"]["transformer"][POOLED_TEXT_WEIGHT].any()
    assert not state["ema"]["transformer"][POOLED_TEXT_WEIGHT].any()
    folder = export(tmp_path / "run", tmp_path / "model", name="tiny-closed")
    assert pooled_effect(load_engine(str(folder), device="cpu").pipeline.transformer) == 0.0
    assert pooled_effect(build_pipeline("tiny-glyph", seed=0).transformer) > 0  # the control: an open path acts
