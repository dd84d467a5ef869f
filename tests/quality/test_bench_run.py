"""Floor < ceiling on every category, a wrong editor scores low, reports are written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from openkontext.quality import ocr
from openkontext.quality.cli import app, make_app
from openkontext.quality.editors import copy_input, engine_editor, unrelated_scene, wrong_edit
from openkontext.quality.metrics import psnr
from openkontext.quality.runner import bench_cases, run_bench, sweep
from openkontext.toyworld import CATEGORIES

needs_ocr = pytest.mark.skipif(not ocr.available(), reason="rapidocr + onnxruntime not installed")


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return run_bench(wrong_edit, n=3, out_dir=out, name="wrong_edit", grid_rows=2)


@needs_ocr
def test_floor_below_ceiling_on_every_category(result):
    floor, ceil = result.summaries["copy_input"], result.summaries["ground_truth"]
    assert set(floor) == set(ceil) == set(CATEGORIES)
    for cat in CATEGORIES:
        assert ceil[cat]["success_rate"] == 1.0, cat
        assert floor[cat]["success_rate"] == 0.0, cat
    for cat, key in (("local", "psnr_mask_target"), ("global", "psnr_mask_target"), ("style", "psnr_target"),
                     ("text", "psnr_mask_target"), ("character_reference", "identity_psnr"),
                     ("text_to_image", "content_score"), ("iterative", "turn_success")):
        assert floor[cat][key] < ceil[cat][key], cat
    # copying the input does not look like the character in its new place
    assert floor["character_reference"]["identity_hist"] < 0.5
    assert floor["character_reference"]["identity_psnr"] < 16


@needs_ocr
def test_wrong_editor_scores_low(result):
    wrong, ceil = result.summaries["wrong_edit"], result.summaries["ground_truth"]
    for cat in CATEGORIES:
        assert wrong[cat]["success_rate"] <= 1 / 3, cat
    # and its damage outside the asked change shows as lost preservation
    for cat in ("local", "text"):
        assert wrong[cat]["preservation"] < ceil[cat]["preservation"] - 10


@needs_ocr
def test_report_files(result):
    out = result.out_dir
    data = json.loads((out / "results.json").read_text())
    assert set(data["summary"]) == {"wrong_edit", "copy_input", "ground_truth"}
    html = (out / "report.html").read_text()
    assert "<h2 id='text'>" in html and "http" not in html.split("<body>")[1]
    pngs = list((out / "images").glob("*.png"))
    assert len(pngs) >= 3 * len(CATEGORIES)
    for p in pngs[:5]:
        assert f"images/{p.name}" in html


@needs_ocr
def test_families_count_every_case_and_turn_under_its_edit_family(result, tmp_path):
    data = json.loads((result.out_dir / "results.json").read_text())
    runner = CliRunner()
    out = runner.invoke(app, ["families", str(result.out_dir), "--editor", "ground_truth", "--markdown"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert lines[0] == "| category | family | ground_truth | all | success |"
    rows = [line.strip("| ").split(" | ") for line in lines[2:]]
    cases = data["cases"]["ground_truth"]
    expected = {}
    for case in cases:
        for scored in case.get("turns") or [case]:
            expected[(case["category"], scored["family"])] = expected.get((case["category"], scored["family"]), 0) + 1
    assert {(r[0], r[1]): r[2] for r in rows} == {key: f"{n}/{n}" for key, n in expected.items()}
    assert all(r[4] == "100%" for r in rows)
    assert sum(n for (cat, _), n in expected.items() if cat == "text") == 3
    # the file's one editor under test is the default; two files give a column each and their sum
    out = runner.invoke(app, ["families", str(result.out_dir), str(result.out_dir / "results.json"), "--markdown"])
    assert out.exit_code == 0, out.output
    wrong = [r.strip("| ").split(" | ") for r in out.output.strip().splitlines()[2:]]
    tally = {(r[0], r[1]): r[2] for r in wrong}
    for (cat, family), n in expected.items():
        k = sum(bool(s["success"]) for c in data["cases"]["wrong_edit"] if c["category"] == cat
                for s in (c.get("turns") or [c]) if s["family"] == family)
        assert tally[(cat, family)] == f"{k}/{n}"
    assert all(r[4] == f"{2 * int(r[2].split('/')[0])}/{2 * int(r[2].split('/')[1])}" for r in wrong)


def test_families_refuses_what_it_cannot_read(tmp_path):
    runner = CliRunner()
    (tmp_path / "bad.json").write_text("{}")
    out = runner.invoke(app, ["families", str(tmp_path / "bad.json")])
    assert out.exit_code == 2 and "not a bench results file" in " ".join(out.output.split())
    (tmp_path / "two.json").write_text(json.dumps({"cases": {"a": [], "b": [], "copy_input": []}}))
    out = runner.invoke(app, ["families", str(tmp_path / "two.json")])
    assert out.exit_code == 2 and "choose one with --editor" in " ".join(out.output.split())
    out = runner.invoke(app, ["families", str(tmp_path / "two.json"), "--editor", "c"])
    assert out.exit_code == 2 and "no editor 'c'" in " ".join(out.output.split())


def test_unrelated_scene_fails_everything_psnr_based():
    res = run_bench(unrelated_scene, n=2, categories=["local", "global", "style", "character_reference"],
                    references=False)
    for cat, s in res.summaries["model"].items():
        assert s["success_rate"] == 0.0, cat


def test_psnr_basics():
    a = np.zeros((4, 4, 3), np.float32)
    assert psnr(a, a) == 60.0
    assert abs(psnr(a, a + 255) - 0.0) < 1e-6
    assert psnr(a, a, np.zeros((4, 4), bool)) is None


def test_cases_are_heldout_and_deterministic():
    a = bench_cases(2, ["local", "text"])
    b = bench_cases(2, ["local", "text"])
    assert [s.meta["split"] for s in a] == ["heldout"] * 4
    assert [s.target.tobytes() for s in a] == [s.target.tobytes() for s in b]


def test_sweep_passes_parameters():
    seen = []

    def editor(images, prompt, *, seed, steps, guidance, width, height):
        seen.append((steps, guidance))
        return images[0] if images else Image.new("RGB", (width, height))

    res = sweep(lambda _value: editor, "steps", [2, 4], n=1, categories=["local", "style"])
    assert [r["steps"] for r in res["rows"]] == [2, 4]
    assert {s for s, _ in seen} == {2, 4}
    # the copy editor: the local mask keeps the input's pixels (not the target's), the rest is untouched
    local, style = res["quality"][0]["local"], res["quality"][0]["style"]
    assert local["metric"] == "psnr_mask_target" and local["value"] < 30 and local["preservation"] == 60.0
    assert style["metric"] == "psnr_target" and style["value"] < 30


def test_sweep_over_preserve_runs_the_editor_built_for_each_value():
    # the threshold lives in the engine, so the sweep asks for an editor per value; here 0 copies, 1 paints a blob
    res = sweep(lambda threshold: wrong_edit if threshold else copy_input, "preserve", [0.0, 1.0], n=2,
                categories=["local"])  # fmt: skip
    copied, painted = (row["local"]["preservation"] for row in res["quality"])
    assert copied == 60.0 and painted < 60.0
    assert [row["preserve"] for row in res["rows"]] == [0.0, 1.0]


def test_cli_sweep_over_preserve_builds_an_editor_per_threshold(tmp_path):
    built = []

    def factory(name, preserve=None):
        built.append((name, preserve))
        return copy_input

    result = CliRunner().invoke(make_app(factory), ["sweep", "--model", "m", "--param", "preserve", "--values",
                                                    "0,0.3", "--n", "1", "--categories", "local", "--seed-start",
                                                    "5000", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert built == [("m", 0.0), ("m", 0.3)]
    assert json.loads((tmp_path / "sweep_preserve.json").read_text())["seed_start"] == 5000


def test_cli_sweep_over_glyph_guidance_builds_an_editor_per_scale_with_the_other_settings(tmp_path):
    built = []

    def factory(name, **settings):
        built.append((name, settings))
        return copy_input

    result = CliRunner().invoke(make_app(factory), ["sweep", "--model", "m", "--param", "glyph_guidance", "--values",
                                                    "1,6", "--preserve", "0.15", "--n", "1", "--categories", "text",
                                                    "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert built == [("m", {"preserve": 0.15, "glyph_guidance": 1.0}), ("m", {"preserve": 0.15, "glyph_guidance": 6.0})]
    assert [row["glyph_guidance"] for row in json.loads((tmp_path / "sweep_glyph_guidance.json").read_text())["rows"]
            ] == [1.0, 6.0]  # fmt: skip


@pytest.mark.parametrize("args, message", [
    (["--param", "preserve", "--values", "0.1,1.5"], "paste-back thresholds lie in 0-1"),
    (["--param", "glyph_guidance", "--values", "2,-1"], "glyph guidance scales are 0 or more"),
    (["--param", "steps", "--values", "10,many"], "comma-separated int values"),
    (["--param", "seed"], "one of guidance, steps, preserve, glyph_guidance"),
])  # fmt: skip
def test_cli_sweep_rejects_bad_values(args, message):
    result = CliRunner().invoke(make_app(lambda name, preserve=None: copy_input), ["sweep", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_builtin_editors_have_no_paste_back_threshold():
    result = CliRunner().invoke(app, ["run", "--model", "copy_input", "--preserve", "0.2", "--n", "1"])
    assert result.exit_code == 2
    assert "applies to models" in " ".join(result.output.split())
    # the same through ``openkontext bench``, whose factory also loads models
    from openkontext.cli import bench_editor

    assert bench_editor("copy_input") is copy_input
    with pytest.raises(typer.BadParameter, match="applies to models"):
        bench_editor("copy_input", preserve=0.2)
    with pytest.raises(typer.BadParameter, match="--glyph-guidance applies to models"):
        bench_editor("copy_input", glyph_guidance=4.0)


def test_cli_sweep_prints_success_and_quality(tmp_path):
    result = CliRunner().invoke(make_app(lambda name: copy_input),
                                ["sweep", "--param", "steps", "--values", "1,2", "--n", "1", "--categories", "local",
                                 "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps titles to the terminal's width
    assert "success rate vs steps" in text and "quality vs steps" in text
    assert "8.88 / 60.00" in text  # copy-input: the input's pixels in the mask, the rest untouched
    assert json.loads((tmp_path / "sweep_steps.json").read_text())["quality"][1]["steps"] == 2


def test_cli_run_uses_the_factory(tmp_path):
    made = []

    def factory(name, **options):
        made.append((name, options))
        return copy_input

    result = CliRunner().invoke(make_app(factory), ["run", "--model", "my-model", "--n", "1", "--categories",
                                                    "local,style", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert made == [("my-model", {})]
    result = CliRunner().invoke(make_app(factory), ["run", "--model", "m2", "--n", "1", "--categories", "local",
                                                    "--out", str(tmp_path / "p"), "--preserve", "0.05"])
    assert result.exit_code == 0, result.output
    assert made[-1] == ("m2", {"preserve": 0.05})
    result = CliRunner().invoke(make_app(factory), ["run", "--model", "m3", "--n", "1", "--categories", "text",
                                                    "--out", str(tmp_path / "g"), "--glyph-guidance", "6"])
    assert result.exit_code == 0, result.output
    assert made[-1] == ("m3", {"glyph_guidance": 6.0})
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["summary"]["my-model"]["local"]["success_rate"] == 0.0


def test_an_engine_is_an_editor_at_the_benchmarks_size():
    from openkontext.engine.loading import load_engine

    editor = engine_editor(load_engine("tiny", device="cpu"))
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    assert editor((image,), "make it blue", seed=0, steps=2, guidance=3.0, width=80, height=48).size == (80, 48)


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_cli_refuses_a_category_the_benchmark_has_not_before_building_an_editor(command, tmp_path):
    built = []
    result = CliRunner().invoke(make_app(lambda name, **settings: built.append(name) or copy_input),
                                [command, "--model", "m", "--n", "1", "--categories", "local,recolour",
                                 "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2 and not built and not list(tmp_path.iterdir())
    message = " ".join(result.output.replace("│", " ").split())  # the error box's borders, wherever it wraps
    assert "unknown category or edit family 'recolour'" in message and "recolor_object" in message


def test_an_edit_family_in_categories_draws_its_cases_alone_and_counts_them_in_its_category(tmp_path):
    result = CliRunner().invoke(make_app(lambda name, **settings: copy_input),
                                ["run", "--model", "m", "--n", "3", "--categories", "recolor_object,style_pencil,local",
                                 "--steps", "1", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["categories"] == ["local", "style"]
    assert saved["config"]["families"] == ["recolor_object", "style_pencil"]
    families = [case["family"] for case in saved["cases"]["m"]]
    assert families[:6] == ["recolor_object"] * 3 + ["style_pencil"] * 3
    assert saved["summary"]["m"]["local"]["n"] == 6 and saved["summary"]["m"]["style"]["n"] == 3
