"""Export to disk, the multi-process stream, fonts and the CLI."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from openkontext.toyworld import export, generate, stream
from openkontext.toyworld.cli import app
from openkontext.toyworld.text import FontNotFoundError, check_fonts, font_path


def test_export_writes_images_and_manifest(tmp_path):
    manifest = export(tmp_path, 12, split="heldout", size=(256, 192), start_seed=5, workers=0)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["seed"] for r in records] == list(range(5, 17))
    for r in records:
        target = Image.open(tmp_path / r["target"])
        assert target.size == (256, 192)
        sample = generate(r["seed"], split="heldout", size=(256, 192))
        assert np.array_equal(np.asarray(target), np.asarray(sample.target))
        mask = np.asarray(Image.open(tmp_path / r["mask"])) > 0
        assert np.array_equal(mask, sample.mask)
        assert (r["input"] is None) == (sample.input_image is None)
        for t in r.get("turns", []):
            assert (tmp_path / t["target"]).is_file()


def test_stream_with_workers_matches_single_process():
    single = [s.target.tobytes() for s in stream("train", 128, start_seed=3, workers=0, count=6)]
    multi = [s.target.tobytes() for s in stream("train", 128, start_seed=3, workers=2, count=6, chunksize=2)]
    assert single == multi


def test_fonts_are_found_and_missing_ones_are_named(monkeypatch):
    assert all(p.endswith(".ttf") for p in check_fonts())
    from openkontext.toyworld import text
    monkeypatch.setitem(text.FONTS, "missing-font", ("NoSuchFont.ttf", "/nonexistent"))
    font_path.cache_clear()
    try:
        try:
            font_path("missing-font")
            raise AssertionError("expected FontNotFoundError")
        except FontNotFoundError as exc:
            assert "fonts-dejavu-core" in str(exc)
    finally:
        font_path.cache_clear()


def test_cli_export(tmp_path):
    result = CliRunner().invoke(app, ["export", "--out", str(tmp_path), "--n", "3", "--categories", "local,text",
                                      "--size", "128x96", "--workers", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 3 and {r["category"] for r in records} <= {"local", "text"}
