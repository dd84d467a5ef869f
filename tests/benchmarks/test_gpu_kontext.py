"""benchmarks/gpu_kontext.py in its CPU mode: the tiny model, run as a user runs it (a subprocess), table and JSON
checked for shape and content. No timing is asserted: the 2-core test machine's timings mean nothing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_kontext.py"
RUNS = ["baseline", "auto", "fuse", "fp8-weights", "auto+fbc", "offload-model", "int8", "gguf-q8_0"]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_kontext", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "result.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "--config",
        "tiny",
        "--device",
        "cpu",
        "--steps",
        "3",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--dtype",  # every run in fp32: the formats and options are compared with the float baseline alone
        "fp32",
        "--runs",
        ",".join(RUNS),
        "--profile",
        "auto",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def test_says_the_weights_are_random(finished):
    stdout, report = finished
    assert "RANDOM weights" in stdout and "--model PATH" in stdout
    assert report["random_weights"] is True and report["model"] == "tiny"


def test_table_has_every_run_at_every_size(finished):
    stdout, _ = finished
    assert "configuration" in stdout and "s/edit" in stdout and "speedup" in stdout and "TFLOP/s" in stdout
    for run in ("baseline", "auto", "fuse", "auto+fbc"):
        for size in ("64x64", "32x32", "80x48"):
            assert any(line.startswith(run + " ") and size in line for line in stdout.splitlines()), (run, size)
    # memory-only runs are measured at the first size; CUDA-only ones say why they were skipped
    assert any(line.startswith("fp8-weights ") and "64x64" in line for line in stdout.splitlines())
    assert "skipped: offload=model is not available on device cpu" in stdout


def test_json_results(finished):
    _, report = finished
    assert report["steps"] == 3 and report["repeats"] == 2 and report["baseline_dtype"] == "float32"
    assert "165.4 TFLOP per step" in report["flop_formula"]
    results = {(r["run"], tuple(r["size"])): r for r in report["results"]}
    for size in ((64, 64), (32, 32), (80, 48)):
        baseline = results[("baseline", size)]
        assert baseline["median_s"] > 0 and len(baseline["seconds"]) == 2
        assert baseline["ratio_to_baseline"] == pytest.approx(1.0)
        assert baseline["tflop_per_edit"] > 0 and baseline["tflops"] > 0
        assert baseline["peak_gib"] is None  # no GPU
        auto = results[("auto", size)]
        quality = auto["quality_vs_baseline"]  # compiled + fused q/k/v in fp32: numerically near-exact
        assert quality["identical"] or quality["psnr_db"] > 60
        assert results[("fuse", size)]["quality_vs_baseline"]["psnr_db"] in (None, pytest.approx(100, abs=70))
    fp8 = results[("fp8-weights", (64, 64))]
    assert fp8["quality_vs_baseline"]["identical"] is False and fp8["quality_vs_baseline"]["psnr_db"] > 20
    assert results[("offload-model", (64, 64))]["skipped"].startswith("offload=model is not available")
    for quantized in ("int8", "gguf-q8_0"):  # weight formats: smaller, close to the float output
        result = results[(quantized, (64, 64))]
        assert result["weights_gib"] < 0.6 * results[("baseline", (64, 64))]["weights_gib"]
        assert result["quality_vs_baseline"]["identical"] is False and result["quality_vs_baseline"]["psnr_db"] > 30
    assert {"compile=default", "fuse_qkv=on", "prompt_cache=32"} <= set(report["runs"]["auto"]["options"].split(","))


def test_profile_breaks_an_edit_down(finished):
    stdout, report = finished
    profile = report["profiles"]["auto"]
    assert set(profile["phases_s"]) == {"text_encoders", "vae_encode", "denoise", "vae_decode", "other"}
    assert all(seconds >= 0 for seconds in profile["phases_s"].values())
    assert profile["phases_s"]["denoise"] > 0 and profile["top"]
    assert "profile of auto" in stdout


def test_flop_count_matches_the_published_figure():
    from openkontext.engine.configs import CONFIGS

    flops = load_script().transformer_flops
    config = CONFIGS["flux-kontext-dev"].transformer
    assert flops(config, 1024, 1024, 512) / 1e12 == pytest.approx(165, rel=0.01)  # the "about 165 TFLOP"
    # attention grows with the square of the sequence: 512² is far less than a quarter of 1024²'s
    assert flops(config, 512, 512, 512) < flops(config, 1024, 1024, 512) / 4
