"""scripts/grounding_probe.py: a change-map head fitted on a run's frozen block tokens, scored on held-out edits."""

from __future__ import annotations

import pytest
import torch

from openkontext.training.checkpoint import build_trained_pipeline


def test_auc_ranks_changed_tokens_above_the_rest(load_script):
    auc = load_script("grounding_probe").auc
    changed = torch.tensor([True, True, False, False, False])
    assert auc(torch.tensor([5.0, 4.0, 1.0, 2.0, 3.0]), changed) == 1.0
    assert auc(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), changed) == 0.0
    assert auc(torch.tensor([4.0, 1.0, 3.0, 2.0, 0.0]), changed) == pytest.approx(4 / 6)
    assert auc(torch.zeros(5), changed) == 0.5


def test_a_head_is_fitted_on_frozen_weights_and_scored_per_family(tiny_run, load_script):
    script = load_script("grounding_probe")
    pipeline, cfg, _ = build_trained_pipeline(tiny_run)
    before = {k: v.clone() for k, v in pipeline.transformer.state_dict().items()}
    families = ("recolor_object", "remove_object")
    head = script.fit_head(pipeline, cfg, block=0, steps=3, side=64, families=families)
    untrained = script.ChangeMapHead(pipeline.transformer.inner_dim)  # the same seeded start
    assert not torch.equal(head.proj.weight, untrained.proj.weight)
    assert all(torch.equal(before[k], v) for k, v in pipeline.transformer.state_dict().items())  # frozen
    result = script.grounding(pipeline, cfg, head, cases=2, side=64, families=families)
    assert set(result) == set(families)
    control = script.grounding(pipeline, cfg, head, cases=2, side=64, families=families, empty_prompt=True)
    for mean, hits, scored in [*result.values(), *control.values()]:
        assert 0 < scored <= 2 and 0 <= hits <= scored and 0.0 <= mean <= 1.0
    assert result != control  # the prompt reaches the block's tokens
