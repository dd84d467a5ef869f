"""scripts/train_gpu.py, run as it will be on a lent GPU machine but on the CPU with the tiny-glyph preset: it
stops by itself, hands back at most 8 files of at most 16 MiB, and what it hands back becomes a run folder that
resumes training and exports a model the engine serves. The run closes the pooled text path and trains at full size
only (options of a GPU stretch); the first must hold through the hand-back, the resumed run and the export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file
from typer.testing import CliRunner

from openkontext.training.cli import app
from openkontext.training.config import preset
from openkontext.training.loop import POOLED_TEXT_WEIGHT
from openkontext.training.transfer import WEIGHTS_FILE, load_weights

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_gpu.py"


def test_gpu_script_hands_back_few_small_files_that_resume_and_export(tmp_path):
    out = tmp_path / "out"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--preset", "tiny-glyph", "--init", "",
         "--workers", "2", "--chunk", "8", "--batch", "2", "--max-steps", "4", "--minutes", "3", "--decay-share", "1",
         "--probe-every", "0.001", "--optimizer", "muon", "--close-pooled-text", "--low-res-prob", "0"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not list(scratch.glob("openkontext-gpu-run-*"))  # the run folder with its optimiser state is gone
    files = list(out.iterdir())
    assert 0 < len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["examples"] == 8
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["stage"] == "flow-base"] == [1, 2, 3, 4]
    config = json.loads((out / "config.json").read_text())
    assert preset("tiny-glyph").low_res_prob > 0 and config["low_res_prob"] == 0.0
    assert all(r["side"] != config["low_res"] for r in log if r["stage"] == "flow-base")
    assert [r["step"] for r in log if r["stage"] == "probe"] == [1, 2, 3, 4]  # the learning curve comes back too
    assert summary["last_loss"] == [r["loss"] for r in log if r["stage"] == "flow-base"][-1]
    # the whole budget is the decay: it starts after the first step and its end is recorded in the config
    decay = [r for r in log if r["stage"] == "decay"]
    assert len(decay) == 1 and decay[0]["step"] == 1 and decay[0]["until"] > 1
    flow = config["flow"]
    assert (flow["decay_from"], flow["steps"], flow["final_lr_ratio"]) == (1, decay[0]["until"], 0.0)
    assert flow["optimizer"] == "muon" and flow["close_pooled_text"] is True
    handed_back = load_weights(out / WEIGHTS_FILE)["transformer"][POOLED_TEXT_WEIGHT]
    assert handed_back.abs().max() == 0  # a fresh model's projection is random: zero only if the flag took effect

    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["import", "--run", str(run), "--from", str(out)])
    assert result.exit_code == 0 and "step 4" in result.output, result.output
    result = runner.invoke(app, ["transformer", "--run", str(run), "--max-steps", "2"])  # a fresh optimiser
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["step"] == 6
    result = runner.invoke(app, ["export", "--run", str(run), "--out", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    exported = load_file(str(tmp_path / "model" / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert exported[POOLED_TEXT_WEIGHT].abs().max() == 0  # still closed after two steps of the resumed run

    from PIL import Image

    from openkontext.engine.loading import load_engine

    engine = load_engine(str(tmp_path / "model"), device="cpu")
    edited = engine.edit([Image.new("RGB", (64, 64), "red")], "Write 'OK'", seed=0, steps=2, guidance=3.0)
    assert edited.size == (64, 64)
