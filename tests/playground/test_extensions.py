"""The playground's fields for OpenKontext's request extensions, `preserve` and `glyph_guidance`: each shows the
server's default (GET /health) while empty, is sent only when filled, is checked against its range in the page, is
shown with the result and comes back with "Reuse settings"; glyph guidance appears only on a model that uses it."""

from __future__ import annotations

import json

from openkontext.engine.model_info import MAX_GLYPH_GUIDANCE
from openkontext.training.checkpoint import export
from openkontext.training.config import preset
from openkontext.training.loop import train_flow

from playground.test_playground import EXAMPLES, STEPS


def record_submits(page) -> list:
    """The page's submit requests, as they are made."""
    submits = []
    page.on("request", lambda request: submits.append(request) if request.url.endswith("/v1/flux-kontext-pro") else 0)
    return submits


def test_preserve_shows_the_default_is_sent_when_filled_and_range_checked(playground_server, open_page):
    ui = open_page(playground_server)
    page = ui.open().page
    submits = record_submits(page)
    ui.set_steps(STEPS)
    assert page.get_attribute("#preserve", "placeholder") == "default 0 (off)"  # the tiny model's card has none
    assert page.is_hidden("#glyph-param")  # the tiny model draws no glyph canvas

    ui.upload(EXAMPLES / "scene.png")
    page.fill("#preserve", "1.5")
    ui.submit("Make the pink ball blue.")
    ui.message("Keep unchanged pixels must be a number from 0 to 1.")
    assert not submits  # refused in the page, nothing sent

    page.fill("#preserve", "0.25")
    ui.submit()
    ui.wait_for_step(1)
    assert json.loads(submits[-1].post_data)["preserve"] == 0.25
    assert "glyph_guidance" not in json.loads(submits[-1].post_data)
    assert '"preserve": 0.25' in page.text_content("#curl")
    meta = page.text_content("#result-meta")
    assert "Keep unchanged pixels" in meta and "0.25" in meta
    ui.shot("30-preserve")

    page.click("#reset-params")
    assert page.input_value("#preserve") == ""
    page.click("#reuse")
    assert page.input_value("#preserve") == "0.25"

    page.fill("#preserve", "")
    ui.set_steps(STEPS)
    ui.submit()
    ui.wait_for_step(2)
    assert "preserve" not in json.loads(submits[-1].post_data)  # empty: the server's default
    assert "Keep unchanged pixels" not in page.text_content("#result-meta")
    assert not ui.errors and not ui.foreign_requests()


def test_glyph_guidance_appears_on_a_model_with_an_aligned_canvas(start_server, open_page, tmp_path):
    train_flow(preset("tiny-glyph", model="tiny-aligned", **{"flow.steps": 2}), tmp_path / "run")
    model = export(tmp_path / "run", tmp_path / "model", glyph_guidance=6.0, preserve=0.15)
    server = start_server(model=str(model))
    ui = open_page(server)
    page = ui.open().page
    submits = record_submits(page)
    ui.set_steps(STEPS)
    assert page.is_visible("#glyph-param")
    assert page.get_attribute("#glyph-guidance", "placeholder") == "default 6"
    assert page.get_attribute("#preserve", "placeholder") == "default 0.15"

    ui.upload(EXAMPLES / "sign.png")
    page.fill("#glyph-guidance", f"{MAX_GLYPH_GUIDANCE + 1:g}")  # the page's range is the server's
    ui.submit("Change 'KELLAR' to 'SUMITH'")
    ui.message(f"Glyph guidance must be a number from 0 to {MAX_GLYPH_GUIDANCE:g}.")
    assert not submits

    page.fill("#glyph-guidance", "2.5")
    ui.submit()
    ui.wait_for_step(1)
    assert json.loads(submits[-1].post_data)["glyph_guidance"] == 2.5
    assert '"glyph_guidance": 2.5' in page.text_content("#curl")
    assert "Glyph guidance" in page.text_content("#result-meta")
    ui.shot("31-glyph-guidance")
    page.click("#reset-params")
    page.click("#reuse")
    assert page.input_value("#glyph-guidance") == "2.5"
    assert not ui.errors and not ui.foreign_requests()
