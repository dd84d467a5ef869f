"""The training package on the tiny preset, on CPU, in seconds: losses fall on a fixed batch, a resumed run repeats
an uninterrupted one exactly, and an exported folder is served by the engine unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from openkontext.engine.configs import build_pipeline
from openkontext.toyworld import generate
from openkontext.training.checkpoint import export, folder_size
from openkontext.training.cli import app
from openkontext.training.config import PRESETS, TrainConfig, preset
from openkontext.training.data import edit_batch, vae_batch
from openkontext.training.flow import encode_batch, flow_loss, pack, text_length_for, token_weights, weighted_mse
from openkontext.training.loop import lr_factor, train_flow, train_vae
from openkontext.training.vae import vae_loss


def test_config_round_trips_and_presets():
    cfg = preset("tiny", **{"flow.batch": 3, "size": 64})
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert PRESETS["tiny"].flow.batch == 2  # presets are not mutated
    assert PRESETS["default"].architecture.native_side == 256


def test_batches_are_a_pure_function_of_the_step():
    cfg = preset("tiny")
    assert torch.equal(vae_batch(cfg, 3), vae_batch(cfg, 3))
    a, b = edit_batch(cfg, 5), edit_batch(cfg, 5)
    assert a.prompts == b.prompts and torch.equal(a.target, b.target)
    assert a.target.shape[-2:] == (64, 64) and a.target.min() >= -1 and a.target.max() <= 1
    # both kinds of batch occur: with a context image and text-to-image (no context)
    kinds = {edit_batch(cfg, step, batch=1).context is None for step in range(30)}
    assert kinds == {True, False}


def test_vae_loss_falls_on_a_fixed_batch():
    cfg = preset("tiny")
    vae = build_pipeline(cfg.architecture, seed=0).vae.train().requires_grad_(True)
    x = vae_batch(cfg, 0)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, _ = vae_loss(vae, x, cfg.vae, torch.Generator().manual_seed(0))
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.6 * losses[0]


def test_flow_loss_falls_on_a_fixed_batch_and_trains_the_text_encoders():
    cfg = preset("tiny")
    pipeline = build_pipeline(cfg.architecture, seed=0)
    modules = [pipeline.transformer, pipeline.text_encoder, pipeline.text_encoder_2]
    for module in modules:
        module.train().requires_grad_(True)
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    batch = encode_batch(pipeline, edit_batch(cfg, 1), "", torch.device("cpu"))
    text_length = text_length_for(cfg.architecture, pipeline.tokenizer_2)
    losses = []
    for i in range(25):
        loss, _ = flow_loss(pipeline, batch, cfg.flow, text_length, torch.Generator().manual_seed(0),
                            torch.device("cpu"))  # fmt: skip
        loss.backward()
        if i == 0:
            assert pipeline.text_encoder_2.shared.weight.grad.abs().sum() > 0
            assert pipeline.text_encoder.get_input_embeddings().weight.grad.abs().sum() > 0
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.6 * losses[0]


def _losses(records, stage):
    return [(r["step"], r["loss"]) for r in records if r["stage"] == stage]


def test_resume_continues_identically(tmp_path):
    cfg = preset("tiny", **{"flow.ema": 0.9})
    straight = train_vae(cfg, tmp_path / "a", evaluate=False)
    straight += train_flow(cfg, tmp_path / "a")
    resumed = train_vae(cfg, tmp_path / "b", max_steps=2, evaluate=False)
    resumed += train_vae(cfg, tmp_path / "b", evaluate=False)
    resumed += train_flow(cfg, tmp_path / "b", max_steps=3)
    resumed += train_flow(cfg, tmp_path / "b")
    for stage in ("vae", "flow-base"):
        assert _losses(resumed, stage) == _losses(straight, stage)
        assert [s for s, _ in _losses(straight, stage)] == list(range(1, 7))
    a = torch.load(tmp_path / "a" / "flow.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "flow.pt", weights_only=False)
    for key, value in a["ema"]["transformer"].items():
        assert torch.equal(value, b["ema"]["transformer"][key])
    assert (tmp_path / "a" / "log.jsonl").read_text().count("\n") == 12


def test_export_is_served_by_the_engine(tmp_path):
    from openkontext.engine.loading import load_engine

    cfg = preset("tiny", **{"vae.steps": 2, "flow.steps": 2})
    train_vae(cfg, tmp_path / "run", evaluate=False)
    train_flow(cfg, tmp_path / "run")
    folder = export(tmp_path / "run", tmp_path / "model", name="tiny-test")
    card = json.loads((folder / "openkontext.json").read_text())
    assert card["native_side"] == 64 and card["max_sequence_length"] == 48
    assert all(f.suffix != ".bin" for f in folder.rglob("*"))
    assert folder_size(folder) < 5e6
    engine = load_engine(str(folder), device="cpu")
    assert engine.info.name == "tiny-test" and not engine.info.placeholder
    assert engine.pipeline.transformer.config.num_layers == 1
    sample = generate(3, split="heldout", size=64, categories=["local"])
    out = engine.edit([sample.input_image], sample.prompt, seed=0, steps=2, guidance=3.0)
    assert out.size == (64, 64)
    out = engine.edit([], "a red ball on a beach", seed=0, steps=1, guidance=1.0)
    assert out.size == (64, 64)


def test_cli_trains_and_exports(tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["vae", "--run", str(run), "--preset", "tiny", "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "psnr" in result.output
    result = runner.invoke(app, ["transformer", "--run", str(run), "--preset", "tiny", "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    (tmp_path / "table.md").write_text("| category | editor |\n|---|---|\n| local | model |\n")
    (tmp_path / "notes.md").write_text("## Known failure cases\n\n- colours drift\n")
    result = runner.invoke(app, ["export", "--run", str(run), "--out", str(tmp_path / "model"),
                                 "--bench-table", str(tmp_path / "table.md"), "--notes", str(tmp_path / "notes.md")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model" / "model_index.json").exists()
    card = (tmp_path / "model" / "README.md").read_text()
    assert "| local | model |" in card and "- colours drift" in card and "Not yet written" not in card
    # base training ignores the embedded guidance input, so the request's guidance acts as change guidance
    assert json.loads((tmp_path / "model" / "openkontext.json").read_text())["guidance"] == "change"
    missing = runner.invoke(app, ["export", "--run", str(run), "--out", str(tmp_path / "m2"), "--notes", "nope.md"])
    assert missing.exit_code == 2 and not (tmp_path / "m2").exists()


def test_guidance_distillation_phase_runs_from_the_base_model(tmp_path):
    import math

    cfg = preset("tiny", **{"vae.steps": 1, "flow.steps": 2})
    with pytest.raises(FileNotFoundError):
        train_flow(cfg, tmp_path / "empty", phase="distill")
    train_flow(cfg, tmp_path / "run")
    records = train_flow(cfg, tmp_path / "run", phase="distill")
    assert [r["stage"] for r in records] == ["flow-distill"] * 2
    assert all(math.isfinite(r["loss"]) for r in records)
    assert (tmp_path / "run" / "distill.pt").exists()
    folder = export(tmp_path / "run", tmp_path / "model")
    card = json.loads((folder / "openkontext.json").read_text())
    assert (card["guidance"], card["training"]["flow_phase"]) == ("embedded", "distill")


def test_edit_weights_follow_the_token_packing_order():
    # one changed 16x16 patch at token-grid row 1, column 3 of a 64x96 image
    masks = torch.zeros(1, 64, 96)
    masks[0, 16:32, 48:64] = 1.0
    weights = token_weights(masks, 16, edit_weight=5.0)
    latents = torch.zeros(1, 4, 8, 12)  # 8x downsampling: the same patch is latent rows 2-3, columns 6-7
    latents[0, :, 2:4, 6:8] = 1.0
    tokens, _ = pack(latents, 0, torch.device("cpu"))
    assert weights.shape == (1, tokens.shape[1]) == (1, 24)
    assert weights[0].argmax() == tokens[0].abs().sum(-1).argmax() == 1 * 6 + 3
    assert weights.max() == 6.0 and weights.min() == 1.0


def test_weighted_loss_reduces_to_the_mean_and_counts_the_changed_tokens_more():
    pred, target = torch.zeros(1, 4, 8), torch.zeros(1, 4, 8)
    target[0, 0] = 1.0  # only token 0 is wrong
    assert weighted_mse(pred, target, None) == torch.nn.functional.mse_loss(pred, target)
    assert weighted_mse(pred, target, torch.ones(1, 4)) == weighted_mse(pred, target, None)
    heavy = weighted_mse(pred, target, torch.tensor([[7.0, 1.0, 1.0, 1.0]]))
    assert heavy == pytest.approx(7.0 / 10.0)


def test_edit_batches_carry_the_change_mask_of_the_example_they_train_on():
    cfg = preset("tiny", categories=("local",))
    batch = edit_batch(cfg, 2)
    assert batch.masks.shape == (2, 64, 64)
    changed = (batch.target - batch.context).abs().amax(1) > 1e-6
    assert changed.any() and bool((batch.masks[changed] == 1).all())  # every changed pixel lies in the mask
    assert float(batch.masks.mean()) < 0.5


def test_learning_rate_warms_up_holds_then_decays_linearly():
    recipe = preset("tiny", **{"vae.steps": 1000, "vae.decay_from": 600, "vae.final_lr_ratio": 0.2}).vae
    assert lr_factor(0, recipe) == pytest.approx(0.01)
    assert lr_factor(99, recipe) == lr_factor(600, recipe) == 1.0
    assert lr_factor(800, recipe) == pytest.approx(0.6)
    assert lr_factor(1000, recipe) == pytest.approx(0.2) == lr_factor(5000, recipe)
    assert lr_factor(5000, preset("tiny").vae) == 1.0  # no decay unless the recipe asks


def test_a_resumed_run_uses_the_recipe_learning_rate_not_the_saved_one(tmp_path):
    cfg = preset("tiny", **{"vae.steps": 2})
    train_vae(cfg, tmp_path / "run", evaluate=False)
    before = torch.load(tmp_path / "run" / "vae.pt", weights_only=False)["model"]
    cfg.vae.steps, cfg.vae.lr = 4, 0.0  # e.g. a decay edited into config.json between two calls
    train_vae(cfg, tmp_path / "run", evaluate=False)
    after = torch.load(tmp_path / "run" / "vae.pt", weights_only=False)
    assert after["step"] == 4
    assert all(torch.equal(before[k], after["model"][k]) for k in before)


def test_compare_pairs_a_branch_with_its_source_step_by_step(tmp_path):
    import shutil

    cfg = preset("tiny", **{"flow.steps": 8})
    source, same, slower = tmp_path / "source", tmp_path / "same", tmp_path / "slower"
    train_vae(cfg, source, evaluate=False)
    train_flow(cfg, source, max_steps=4)
    for branch in (same, slower):
        shutil.copytree(source, branch)
    runner = CliRunner()
    unrun = runner.invoke(app, ["compare", "--run", str(source), "--branch", str(same)])
    assert unrun.exit_code == 2 and "no step logged by both runs" in " ".join(unrun.output.split())
    train_flow(cfg, source)
    train_flow(cfg, same)  # the same recipe: the same batches, noise and weights, so the same losses
    slow = preset("tiny", **{"flow.steps": 8, "flow.lr": 0.0, "flow.text_lr": 0.0})
    train_flow(slow, slower)
    rows = {}
    for branch in (same, slower):
        result = runner.invoke(app, ["compare", "--run", str(source), "--branch", str(branch), "--stretch", "2"])
        assert result.exit_code == 0, result.output
        rows[branch.name] = [line.strip("| ").split(" | ") for line in result.output.strip().splitlines()[2:]]
    # only the steps each branch trained itself (5-8), two per row
    assert [r[:2] for r in rows["same"]] == [["5–6", "2"], ["7–8", "2"]]
    assert all(r[3] == "+0.0000" and r[5] == "1.000" for r in rows["same"])
    assert any(r[3] != "+0.0000" for r in rows["slower"])
    missing = runner.invoke(app, ["compare", "--run", str(tmp_path / "nowhere"), "--branch", str(same)])
    assert missing.exit_code == 2 and "no training log" in " ".join(missing.output.split())
