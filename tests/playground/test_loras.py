"""The playground's LoRA picker: it lists the server's adapters (GET /health), starts at an adapter's default scale,
sends the choice as `loras`, shows it with the result, and stays hidden on a server without adapters."""

from __future__ import annotations

from engine.lora_formats import write_lora

from playground.test_playground import EXAMPLES, STEPS


def test_the_picker_sends_the_chosen_adapter(start_server, open_page, playground_server, tmp_path):
    from openkontext.engine.configs import build_pipeline

    write_lora("xlabs", build_pipeline("tiny").transformer, tmp_path / "relight.safetensors")
    server = start_server(loras=f"relight={tmp_path / 'relight.safetensors'}:0.8")
    ui = open_page(server)
    page = ui.open().page
    ui.set_steps(STEPS)
    assert page.is_visible("#lora-param")
    assert page.locator("#lora option").all_text_contents() == ["None", "relight"]
    assert page.is_disabled("#lora-scale")
    page.select_option("#lora", "relight")
    assert page.input_value("#lora-scale") == "0.8"  # the server's default for it
    page.fill("#lora-scale", "0.5")
    ui.upload(EXAMPLES / "scene.png")
    ui.submit("Relight the scene")
    ui.wait_for_step(1)
    assert '"loras": [{"name":"relight","scale":0.5}]' in page.text_content("#curl")
    assert "relight × 0.5" in page.text_content("#result-meta")
    ui.shot("20-lora-adapter")
    assert not ui.errors and not ui.foreign_requests()

    plain = open_page(playground_server).open().page
    assert plain.is_hidden("#lora-param")
