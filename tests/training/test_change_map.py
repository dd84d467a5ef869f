"""The change-map auxiliary loss (training/change_map.py) on the tiny-glyph recipe: what it computes, where its
gradient goes, and that a run with it pairs step for step with one without, resumes, and exports the stock model."""

from __future__ import annotations

import json

import pytest
import torch

from openkontext.engine.configs import build_pipeline
from openkontext.training.change_map import ChangeMapHead, change_map_loss
from openkontext.training.config import preset
from openkontext.training.data import edit_batch, glyph_rng
from openkontext.training.checkpoint import export
from openkontext.training.flow import encode_batch, flow_loss, text_length_for, token_shares, token_weights
from openkontext.training.loop import train_flow


def test_the_loss_weighs_changed_tokens_like_the_rest_and_reads_the_context_grid_too():
    head = ChangeMapHead(2)
    with torch.no_grad():
        head.proj.weight.copy_(torch.tensor([[1.0, 0.0]]))
    # one sample, 4 target tokens then 4 context tokens; after the LayerNorm a token is +-1 on the first channel
    up, down = [1.0, -1.0], [-1.0, 1.0]
    head.hidden = torch.tensor([[up, down, down, down, down, down, up, down]])
    shares = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    weights = torch.tensor([[1.0 + 4.0, 1.0, 1.0, 1.0]])  # token_weights per sample: the change weighs 4 of 8
    bce = torch.nn.functional.softplus
    # logits +-1: every target token is right; on the context grid token 0 (the change) and token 2 are wrong
    right, wrong = bce(torch.tensor(-1.0)), bce(torch.tensor(1.0))
    expected = ((5 + 1 + 1 + 1) * right + 5 * wrong + right + wrong + right) / 16
    got = change_map_loss(head, shares, weights, torch.tensor([True]))
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    nothing = change_map_loss(head, shares, weights, torch.tensor([False]))
    assert nothing.item() == 0.0 and nothing.requires_grad


def _loss_parts(change_map_weight: float, block: int = 0):
    cfg = preset("tiny-glyph", **{"flow.change_map_weight": change_map_weight, "flow.change_map_block": block,
                                  "flow.prompt_dropout": 0.0})  # fmt: skip
    pipeline = build_pipeline(cfg.architecture, seed=0)
    for name in ("transformer", "text_encoder", "text_encoder_2"):
        getattr(pipeline, name).requires_grad_(True)
    step = 1  # a local and an iterative edit (step 0 draws text-to-image, which has no context to ground in)
    batch = encode_batch(pipeline, edit_batch(cfg, step), cfg.architecture.glyph_context, "cpu",
                         rng=glyph_rng(cfg, step))  # fmt: skip
    head = None
    if change_map_weight:
        head = ChangeMapHead(pipeline.transformer.inner_dim)
        head.attach(pipeline.transformer, block)
    text_length = text_length_for(cfg.architecture, pipeline.tokenizer_2)
    loss, parts = flow_loss(pipeline, batch, cfg.flow, text_length, torch.Generator().manual_seed(0), "cpu", head)
    return pipeline, batch, head, loss, parts


def test_the_head_changes_the_total_loss_but_not_the_flow_loss_it_is_compared_by():
    _, _, _, plain, plain_parts = _loss_parts(0.0)
    _, _, _, total, parts = _loss_parts(0.5)
    assert parts["loss"] == pytest.approx(plain_parts["loss"], rel=1e-6)
    assert "change_map" not in plain_parts and parts["change_map"] > 0
    assert total.item() == pytest.approx(parts["loss"] + 0.5 * parts["change_map"], rel=1e-5)


def test_its_gradient_trains_the_blocks_up_to_the_read_one_and_none_after():
    pipeline, batch, head, _, _ = _loss_parts(1.0, block=0)
    transformer = pipeline.transformer
    patch = 2 * pipeline.vae_scale_factor
    asked = torch.ones(len(batch.prompts), dtype=torch.bool)
    change_map_loss(head, token_shares(batch.masks, patch), token_weights(batch.masks, patch, 1.0, True),
                    asked).backward()

    def moved(prefix: str) -> bool:
        grads = [p.grad for n, p in transformer.named_parameters() if n.startswith(prefix)]
        return any(g is not None and g.abs().sum() > 0 for g in grads)

    assert moved("transformer_blocks.0.") and moved("x_embedder.") and moved("context_embedder.")
    assert not moved("single_transformer_blocks.") and not moved("proj_out.")
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pipeline.text_encoder_2.parameters())
    with pytest.raises(ValueError, match="change_map_block 9"):
        head.attach(transformer, 9)


def test_a_run_with_the_head_pairs_with_one_without_resumes_and_exports_the_stock_model(tmp_path):
    from openkontext.engine.loading import load_engine

    plain = train_flow(preset("tiny-glyph", **{"flow.steps": 2}), tmp_path / "plain")
    cfg = preset("tiny-glyph", **{"flow.steps": 4, "flow.change_map_weight": 0.5})
    first = train_flow(cfg, tmp_path / "run", max_steps=2)
    # the same batches and noise: equal flow losses until the first update (the step-2 loss reads updated weights)
    assert first[0]["loss"] == pytest.approx(plain[0]["loss"], rel=1e-6)
    # text-to-image batches have no context to ground in
    assert all(("change_map" in r) == (not r["t2i"]) for r in first)
    assert any(r.get("change_map", 0) > 0 for r in first)
    saved = torch.load(tmp_path / "run" / "flow.pt", weights_only=False)["change_map"]
    assert saved["optimizer"]["state"]  # the head trained, and its moments are kept
    resumed = train_flow(cfg, tmp_path / "run")
    assert [r["step"] for r in resumed] == [3, 4]
    uninterrupted = train_flow(cfg, tmp_path / "again")
    assert [r["loss"] for r in uninterrupted][2:] == pytest.approx([r["loss"] for r in resumed], rel=1e-5)
    assert [r.get("change_map") for r in uninterrupted][2:] == pytest.approx([r.get("change_map") for r in resumed],
                                                                               rel=1e-5)  # fmt: skip

    folder = export(tmp_path / "run", tmp_path / "model", name="tiny-change-map")
    names = json.loads((folder / "transformer" / "config.json").read_text())
    assert names["_class_name"] == "FluxTransformer2DModel"
    engine = load_engine(str(folder), device="cpu")
    assert not any("change" in n for n in engine.pipeline.transformer.state_dict())

