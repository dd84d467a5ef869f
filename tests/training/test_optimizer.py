"""The transformer stage's optimiser choice (training/optimizer.py) on the tiny preset: which parameters Muon takes,
that both optimisers train, and that a run switched from AdamW to Muon keeps its weights and the switch."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from openkontext.engine.configs import build_pipeline
from openkontext.training.cli import app
from openkontext.training.config import preset
from openkontext.training.loop import train_flow, train_vae
from openkontext.training.optimizer import build_optimizer


def _modules(cfg):
    pipeline = build_pipeline(cfg.architecture, seed=0)
    text = [p for name in ("text_encoder", "text_encoder_2") for p in getattr(pipeline, name).parameters()]
    return pipeline.transformer, text


def test_muon_takes_the_block_matrices_and_adamw_everything_else():
    cfg = preset("tiny", **{"flow.optimizer": "muon", "flow.lr": 1e-3, "flow.text_lr": 2e-3})
    transformer, text = _modules(cfg)
    optimizer, rates = build_optimizer(transformer, text, cfg.flow)
    muon, adamw = optimizer.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert rates == ["lr", "lr", "text_lr"] and [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-3, 2e-3]
    in_muon = {id(p) for group in muon.param_groups for p in group["params"]}
    names = {id(p): name for name, p in transformer.named_parameters()}
    assert {names[i] for i in in_muon} == {
        name for name, p in transformer.named_parameters()
        if p.ndim == 2 and name.startswith(("transformer_blocks.", "single_transformer_blocks."))
    }  # fmt: skip
    assert any(".attn.to_q.weight" in names[i] for i in in_muon)
    assert not any(name.startswith(("x_embedder", "proj_out")) for name in (names[i] for i in in_muon))
    every = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(every) == sorted([id(p) for p in transformer.parameters()] + [id(p) for p in text])


@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_each_optimizer_moves_every_parameter_group(kind):
    cfg = preset("tiny", **{"flow.optimizer": kind})
    transformer, text = _modules(cfg)
    optimizer, _ = build_optimizer(transformer, text, cfg.flow)
    before = [p.detach().clone() for group in optimizer.param_groups for p in group["params"]]
    params = [p.requires_grad_(True) for group in optimizer.param_groups for p in group["params"]]
    torch.manual_seed(0)
    sum((p * torch.randn_like(p)).sum() for p in params).backward()
    optimizer.step()
    optimizer.zero_grad()
    after = [p for group in optimizer.param_groups for p in group["params"]]
    moved = [not torch.equal(a, b) for a, b in zip(after, before)]
    assert all(moved)
    state = optimizer.state_dict()
    again, _ = build_optimizer(transformer, text, cfg.flow)
    again.load_state_dict(state)
    assert json.dumps(again.state_dict(), default=str) == json.dumps(state, default=str)


def test_unknown_optimizer_is_refused():
    cfg = preset("tiny", **{"flow.optimizer": "sgd"})
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        build_optimizer(*_modules(cfg), cfg.flow)
    result = CliRunner().invoke(app, ["transformer", "--run", "unused", "--preset", "tiny", "--optimizer", "sgd"])
    assert result.exit_code == 2 and "adamw, muon" in result.output


def test_a_run_switched_to_muon_keeps_its_weights_and_the_switch(tmp_path):
    run = tmp_path / "run"
    cfg = preset("tiny", **{"flow.steps": 4})
    train_vae(cfg, run, evaluate=False)
    train_flow(cfg, run, max_steps=2)
    adamw_state = torch.load(run / "flow.pt", weights_only=False)
    assert adamw_state["optimizer_kind"] == "adamw" and "optimizers" not in adamw_state["optimizer"]

    saved = json.loads((run / "config.json").read_text())
    saved["flow"]["lr"] = saved["flow"]["text_lr"] = 0.0  # so the switched step leaves the weights as loaded
    (run / "config.json").write_text(json.dumps(saved))
    runner = CliRunner()
    result = runner.invoke(app, ["transformer", "--run", str(run), "--optimizer", "muon", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    switched = torch.load(run / "flow.pt", weights_only=False)
    assert switched["step"] == 3 and switched["optimizer_kind"] == "muon"
    assert len(switched["optimizer"]["optimizers"]) == 2
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"stage": "optimizer", "step": 2, "fresh": "muon", "was": "adamw"}.items() <= log[-2].items()
    for name, weights in adamw_state["models"].items():  # carried over, not started afresh
        assert all(torch.equal(value, switched["models"][name][key]) for key, value in weights.items()), name

    # a later resume without the flag stays on Muon and loads its moments (no second "fresh" record)
    result = runner.invoke(app, ["transformer", "--run", str(run), "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["flow"]["optimizer"] == "muon"
    assert (run / "log.jsonl").read_text().count('"stage": "optimizer"') == 1
    assert torch.load(run / "flow.pt", weights_only=False)["step"] == 4
