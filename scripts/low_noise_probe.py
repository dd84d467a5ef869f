"""Does the model improve on the noisy latent at the sampler's last steps? Its x0 error across sigma, as a ratio to
answering the noisy latent itself (x0 = x_sigma, whose error is sigma² times the noise's), on the 64 probe cases.

    python scripts/low_noise_probe.py --run runs/w2-coolC

The last Euler step of the sampler lands on the model's x0 prediction at the smallest sigma (0.033 at 50 steps for a
256² image), so that prediction *is* the output image. A ratio above 1 there means the last steps add error to an
image that was already closer to right: the finding behind the recipe option ``low_noise_share``, which halves it
but, on the benchmark, made no better edits (docs/training.md, "Low noise"). One thread; about a minute.
"""

from __future__ import annotations

import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.training.flow import velocity
from openkontext.training.probe import PROBE_SEED, Probe, probe_run

SIGMAS = (0.033, 0.05, 0.1, 0.2, 0.5, 0.9)


@torch.no_grad()
def x0_ratios(probe: Probe, sigmas=SIGMAS) -> dict[str, dict[float, tuple[float, float | None]]]:
    """category -> sigma -> (changed tokens, unchanged tokens): model x0 error / the noisy latent's x0 error."""
    generator = torch.Generator().manual_seed(PROBE_SEED)
    out: dict[str, dict[float, tuple[float, float | None]]] = {}
    for category, batch in probe.batches.items():
        x0, ids, context, context_ids, changed, text = probe.inputs(batch)
        out[category] = {}
        for sigma in sigmas:
            noise = torch.randn(x0.shape, generator=generator)
            s = torch.full((x0.shape[0],), sigma)
            noisy = (1 - sigma) * x0 + sigma * noise
            v = velocity(probe.pipeline, noisy, context, ids, context_ids, s, torch.full_like(s, 3.0), *text).float()
            model = (noisy - sigma * v - x0).pow(2).mean(-1)
            still = (noisy - x0).pow(2).mean(-1)
            ratio = [float(model[m].mean() / still[m].mean()) if m.any() else None for m in (changed, ~changed)]
            out[category][sigma] = (ratio[0], ratio[1])
    return out


def main() -> None:
    run = probe_run(description=__doc__.splitlines()[0])
    ratios = x0_ratios(run.probe)
    categories = list(ratios)
    print(f"{run.run} at step {run.steps['flow_steps']}: x0 error / the noisy latent's, changed tokens "
          "(unchanged tokens of local edits in the last column); below 1 the model improves on its input")
    print("| sigma | " + " | ".join(categories) + " | unchanged (local) |")
    print("|---" * (len(categories) + 2) + "|")
    for sigma in SIGMAS:
        cells = [ratios[c][sigma][0] for c in categories] + [ratios["local"][sigma][1]]
        print(f"| {sigma} | " + " | ".join("–" if x is None else f"{x:.2f}" for x in cells) + " |")


if __name__ == "__main__":
    main()
