"""Does the model read the prompt, on phrasings it was trained on and on held-out ones? The probe's changed-token
error (sigma 0.9, as a ratio to the copy baseline's) with each case's own prompt, another case's prompt of the same
category, and the empty prompt, on 64 held-out cases and on 64 training-split cases.

    python scripts/prompt_gap.py --run runs/r1

A model that uses the prompt has true < empty < rolled. docs/training.md ("The prompt gap") has the finding that
motivated the word tokenizer: on the training split the byte-level model's prompt helped, on held-out phrasings it
hurt (true above empty). One thread; about 2 minutes (encoding the training-split cases is most of it).
"""

from __future__ import annotations

from collections import defaultdict

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.toyworld import CATEGORIES
from openkontext.training.loop import TRAINABLE
from openkontext.training.probe import Probe, probe_run

PROMPTS = {
    "true": lambda prompts: prompts,
    "rolled": lambda prompts: prompts[1:] + prompts[:1],  # another case's prompt of the same category
    "empty": lambda prompts: [""] * len(prompts),
}


def ratios(probe, modules) -> dict[str, dict[str, float | None]]:
    """category -> prompt kind -> changed-token error / copy baseline's, at sigma 0.9 (None where the copy is exact
    or no token changes)."""
    originals = {category: list(batch.prompts) for category, batch in probe.batches.items()}
    out: dict[str, dict[str, float | None]] = defaultdict(dict)
    try:
        for kind, change in PROMPTS.items():
            for category, batch in probe.batches.items():
                batch.prompts = change(originals[category])
            for category, figures in probe.run(modules)["probe"].items():
                changed, copy = figures["0.9"]["changed"], figures["0.9"]["copy"]
                out[category][kind] = changed / copy if changed is not None and copy else None
    finally:
        for category, batch in probe.batches.items():
            batch.prompts = originals[category]
    return out


def main() -> None:
    run = probe_run(description=__doc__.splitlines()[0])
    modules = {name: getattr(run.pipeline, name) for name in TRAINABLE}
    training = Probe(run.cfg, None, run.pipeline, run.probe.device, split="train")  # seen phrasings and words
    print(f"{run.run} at step {run.steps['flow_steps']}: changed-token error / copy baseline's, sigma 0.9")
    print("| category | held-out: true | rolled | empty | training split: true | rolled | empty |")
    print("|---|---|---|---|---|---|---|")
    figures = ratios(run.probe, modules), ratios(training, modules)
    for category in CATEGORIES:
        cells = ["–" if split[category][kind] is None else f"{split[category][kind]:.2f}"
                 for split in figures for kind in PROMPTS]
        print(f"| {category} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
