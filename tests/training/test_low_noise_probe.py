"""scripts/low_noise_probe.py: the model's x0 error across sigma against the noisy latent's own. A transformer that
outputs zero velocity answers x0 = x_sigma, so its ratio must be exactly 1 at every sigma; one that answers x0 = 0
has error |x0|² against sigma² |noise - x0|², so its ratio grows as 1 / sigma²; the script prints one row per sigma
for a trained run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from openkontext.training.probe import probe_run


def test_a_model_that_leaves_the_noisy_latent_alone_scores_exactly_one(tiny_run, load_script):
    _, pipeline, _, _, probe = probe_run(tiny_run)
    with torch.no_grad():
        pipeline.transformer.proj_out.weight.zero_()
        pipeline.transformer.proj_out.bias.zero_()
    ratios = load_script("low_noise_probe").x0_ratios(probe)
    for category, by_sigma in ratios.items():
        for sigma, (changed, unchanged) in by_sigma.items():
            assert changed == pytest.approx(1.0, abs=1e-4), (category, sigma)
            assert unchanged is None or unchanged == pytest.approx(1.0, abs=1e-4)


def test_a_model_that_answers_zero_scores_one_over_sigma_squared(tiny_run, load_script):
    _, pipeline, _, _, probe = probe_run(tiny_run)

    def answer_zero(module, args, kwargs, output):  # velocity x_sigma / sigma: the Euler step lands on x0 = 0
        return (kwargs["hidden_states"] / kwargs["timestep"].view(-1, 1, 1),)

    pipeline.transformer.register_forward_hook(answer_zero, with_kwargs=True)
    ratios = load_script("low_noise_probe").x0_ratios(probe, sigmas=(0.05, 0.1))
    quotients = [by_sigma[0.05][0] / by_sigma[0.1][0] for by_sigma in ratios.values()]
    assert all(by_sigma[0.1][0] > 1 for by_sigma in ratios.values())  # |x0|² against 0.01 |noise - x0|²
    assert 3.0 < sum(quotients) / len(quotients) < 5.0  # 4 but for the noise draws of a few tokens per category


def test_the_prompt_gap_script_runs_on_the_same_kind_of_run_folder(tiny_run, load_script):
    script = load_script("prompt_gap").__file__
    done = subprocess.run([sys.executable, script, "--run", str(tiny_run)], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| category")]
    assert len(rows) == 7 and all(len(row.split(" | ")) == 7 for row in rows)  # a category and six ratios


def test_the_script_prints_one_row_per_sigma(tiny_run, load_script):
    script = load_script("low_noise_probe")
    done = subprocess.run([sys.executable, script.__file__, "--run", str(tiny_run)], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 0.")]
    assert [row.split(" | ")[0] for row in rows] == [f"| {s}" for s in script.SIGMAS]
    assert all(float(cell) > 0 for row in rows for cell in row.strip("| ").split(" | ")[1:])
