"""What a run's examples are drawn from: the mixture (`categories`) and a rotating focus, each stretch of steps
drawing half its examples from one kind in turn; checked on really rendered chunks and through the CLI that sets
both on a run."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from typer.testing import CliRunner

from openkontext.training.cli import app
from openkontext.training.config import TrainConfig, preset
from openkontext.training.latents import chunk_example, chunk_jobs, steps_per_chunk


def _categories(cfg: TrainConfig, chunk: int) -> Counter:
    """The categories of a chunk's examples, rendered as the training loop renders them."""
    jobs, _ = chunk_jobs(cfg, chunk, glyphs="")
    return Counter(chunk_example(*job)[3] for job in jobs)


def test_each_stretch_draws_half_its_examples_from_its_focus_in_turn():
    cfg = preset("tiny-glyph", categories=("style",), focus=("local", "text"),
                 **{"flow.chunk_examples": 32, "flow.reuse": 1, "flow.batch": 8})  # fmt: skip
    cfg.focus_steps = steps_per_chunk(cfg)  # one chunk per stretch
    first, second, third = (_categories(cfg, chunk) for chunk in range(3))
    assert set(first) == {"style", "local"} and 8 <= first["local"] <= 24, first
    assert set(second) == {"style", "text"} and 8 <= second["text"] <= 24, second
    assert set(third) == {"style", "local"}, third  # the rotation starts over

    cfg.focus = ()
    assert set(_categories(cfg, 0)) == {"style"}  # without a focus, only the mixture


def test_a_focus_share_outside_0_to_1_or_an_unknown_family_is_refused():
    recipe = preset("tiny-glyph").to_dict()
    with pytest.raises(ValueError, match="focus_share"):
        TrainConfig.from_dict({**recipe, "focus": ["style"], "focus_share": 1.0})
    with pytest.raises(ValueError, match="recolour"):
        preset("tiny-glyph", focus=("recolour",))


@pytest.mark.parametrize("option, refused, switch, saved", [
    ("--categories", "local,recolour", "recolor_object,style,style", ["recolor_object", "style", "style"]),
    ("--focus", "recolour", "recolor_object,style", ["recolor_object", "style"]),
])
def test_a_run_switched_to_a_mixture_keeps_it_and_unknown_names_change_nothing(tmp_path, option, refused, switch,
                                                                                 saved):  # fmt: skip
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["transformer", "--run", str(run), "--preset", "tiny-glyph", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    before = (run / "config.json").read_text()
    result = runner.invoke(app, ["transformer", "--run", str(run), option, refused, "--max-steps", "1"])
    assert result.exit_code == 2 and option in result.output and "recolor_object" in result.output
    assert (run / "config.json").read_text() == before  # nothing trained, nothing saved

    result = runner.invoke(app, ["transformer", "--run", str(run), option, switch, "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["transformer", "--run", str(run), "--max-steps", "1"])  # a resume keeps it
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())[option.strip("-")] == saved
    assert torch.load(run / "flow.pt", weights_only=False)["step"] == 3


def test_a_focus_takes_its_stretch_length_and_an_empty_focus_ends_it(tmp_path):
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["transformer", "--run", str(run), "--preset", "tiny-glyph", "--focus", "style",
                                 "--focus-steps", "2", "--max-steps", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["focus"] == ["style"] and saved["focus_steps"] == 2
    result = runner.invoke(app, ["transformer", "--run", str(run), "--focus", "", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["focus"] == []
