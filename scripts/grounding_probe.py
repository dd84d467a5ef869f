"""Does the model know *where* an edit goes? A linear change-map head (training/change_map.py) is fitted on the
frozen image tokens after one block of a run's transformer (training-split edits, one family after another, σ
uniform in [0.5, 1]); then, on held-out edits of each family at σ = 0.9, the script reports the ROC AUC of the
head's scores on the context image's tokens against the change mask (the tokens the edit changes more than half of),
and how often the top-scoring token is a changed one; and, as the control, the same with each prompt replaced by ""
(what the image alone tells: where objects are, but not which one the prompt names).

    python scripts/grounding_probe.py --run runs/n3 [--block 1] [--fit-steps 600] [--cases 6]

AUC near 1 with the top token inside the mask: the blocks up to ``--block`` already find the prompt's object (a
linear head cannot find it by itself); 0.5: no sign of where. A failing edit family that scores high here fails in
what it draws, not in where (docs/training.md, "The model knows where"). One thread; about 6 minutes at the defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from openkontext.quiet import quiet_libraries

quiet_libraries()  # before the imports below load diffusers and transformers (import-time warnings)

from openkontext.toyworld import generate
from openkontext.training.change_map import ChangeMapHead, change_map_loss
from openkontext.training.checkpoint import build_trained_pipeline
from openkontext.training.data import EditBatch, edit_examples, to_tensor
from openkontext.training.flow import (encode_batch, encode_text, prepare, text_length_for, token_shares,
                                      token_weights, velocity)

FAMILIES = ("recolor_object", "add_object", "replace_object", "resize_object", "remove_object", "move_object",
            "add_accessory", "remove_accessory", "replace_text", "add_text", "change_weather")  # fmt: skip
FIT_SEED, HELDOUT_SEED = 5_000_000, 910_000


def block_tokens(pipeline, cfg, head: ChangeMapHead, seed: int, family: str, split: str, side: int, sigma: float,
                 empty_prompt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """One edit through the transformer at ``sigma`` (``empty_prompt``: with the prompt ""): (the hooked block's
    image tokens, the change mask)."""
    sample = generate(seed, split=split, size=side, categories=[family])
    context, prompt, target, mask = edit_examples(sample, np.random.default_rng(seed))
    prompt = "" if empty_prompt else prompt
    batch = EditBatch(to_tensor(context)[None], [prompt], to_tensor(target)[None], [sample.category],
                      torch.as_tensor(np.asarray(mask), dtype=torch.float32)[None])  # fmt: skip
    encoded = encode_batch(pipeline, batch, cfg.architecture.glyph_context, "cpu")
    p = prepare(pipeline, encoded, cfg.flow, torch.Generator().manual_seed(seed), "cpu")
    noisy = (1 - sigma) * p["x0"] + sigma * p["noise"]
    with torch.no_grad():
        text = encode_text(pipeline, [prompt], text_length_for(cfg.architecture, pipeline.tokenizer_2), "cpu")
        velocity(pipeline, noisy, p["context_tokens"], p["latent_ids"], p["context_ids"], torch.tensor([sigma]),
                 torch.tensor([3.0]), *text)  # fmt: skip
    return head.hidden.detach(), encoded.masks


def fit_head(pipeline, cfg, block: int, steps: int, side: int = 128, families=FAMILIES) -> ChangeMapHead:
    """A change-map head on block ``block``'s frozen image tokens, fitted on ``steps`` training-split edits."""
    head = ChangeMapHead(pipeline.transformer.inner_dim)
    head.attach(pipeline.transformer, block)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    patch = 2 * pipeline.vae_scale_factor
    sigmas = np.random.default_rng(0).uniform(0.5, 1.0, steps)
    for step in range(steps):
        hidden, masks = block_tokens(pipeline, cfg, head, FIT_SEED + step, families[step % len(families)], "train",
                                     side, float(sigmas[step]))  # fmt: skip
        head.hidden = hidden
        loss = change_map_loss(head, token_shares(masks, patch), token_weights(masks, patch, 1.0, True),
                               torch.tensor([True]))  # fmt: skip
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return head


def auc(scores: torch.Tensor, changed: torch.Tensor) -> float:
    """The probability that a changed token outscores an unchanged one (ties count half)."""
    pos, neg = scores[changed][:, None], scores[~changed][None, :]
    return float((pos > neg).float().mean() + 0.5 * (pos == neg).float().mean())


def grounding(pipeline, cfg, head: ChangeMapHead, cases: int, side: int = 256, families=FAMILIES,
              empty_prompt: bool = False) -> dict:  # fmt: skip
    """family -> (mean AUC, top token changed, cases scored) on held-out edits at σ = 0.9 (``empty_prompt``: the
    control, each edit's prompt replaced by "": what the image alone tells the head)."""
    patch = 2 * pipeline.vae_scale_factor
    result = {}
    for family in families:
        aucs, hits = [], 0
        for k in range(cases):
            hidden, masks = block_tokens(pipeline, cfg, head, HELDOUT_SEED + k, family, "heldout", side, 0.9,
                                         empty_prompt)  # fmt: skip
            changed = token_shares(masks, patch)[0] > 0.5
            if changed.all() or not changed.any():
                continue  # no ranking to score
            n = changed.shape[0]
            with torch.no_grad():
                scores = head(hidden[:, n : 2 * n])[0]  # the context image's tokens
            aucs.append(auc(scores, changed))
            hits += bool(changed[scores.argmax()])
        result[family] = (float(np.mean(aucs)) if aucs else None, hits, len(aucs))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--block", type=int, default=1, help="double blocks first, then single (default: 1)")
    parser.add_argument("--fit-steps", type=int, default=600)
    parser.add_argument("--cases", type=int, default=6, help="held-out edits per family")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipeline, cfg, steps = build_trained_pipeline(args.run)
    head = fit_head(pipeline, cfg, args.block, args.fit_steps)
    print(f"{args.run} at step {steps['flow_steps']}, block {args.block}, head fitted on {args.fit_steps} edits")
    print("| family | AUC, context tokens | top token changed | AUC, empty prompt | top token changed |")
    print("|---|---|---|---|---|")
    control = grounding(pipeline, cfg, head, args.cases, empty_prompt=True)
    for family, (mean, hits, n) in grounding(pipeline, cfg, head, args.cases).items():
        mean_0, hits_0, n_0 = control[family]
        cells = [f"{'–' if m is None else f'{m:.3f}'} | {h}/{c}"
                 for m, h, c in ((mean, hits, n), (mean_0, hits_0, n_0))]  # fmt: skip
        print(f"| {family} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
