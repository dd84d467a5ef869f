"""LoRA adapters as settings and requests name them (engine/adapters.py, no torch), and as a job stores them."""

from __future__ import annotations

from pathlib import Path

import pytest

from openkontext.config import Settings
from openkontext.engine.adapters import Adapter, AdapterError, choose, parse_adapters
from openkontext.jobs.spec import JobSpec


@pytest.mark.parametrize(
    ("text", "name", "path", "scale"),
    [
        ("relight=/loras/relight.safetensors:0.8", "relight", "/loras/relight.safetensors", 0.8),
        ("relight=/loras/relight.safetensors", "relight", "/loras/relight.safetensors", 1.0),
        ("/loras/Kontext-Style_v2.safetensors:1.5", "Kontext-Style_v2", "/loras/Kontext-Style_v2.safetensors", 1.5),
        ("/loras/v=2/style.safetensors", "style", "/loras/v=2/style.safetensors", 1.0),  # a path's "=" is no NAME=
        ("x=/mnt/c:/loras/x.safetensors:-0.5", "x", "/mnt/c:/loras/x.safetensors", -0.5),  # colons in the path
    ],
)
def test_name_path_scale(text, name, path, scale):
    assert Adapter.parse(text) == Adapter(name=name, path=Path(path), scale=scale)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x=/loras/x.ckpt", "not a .safetensors file"),
        ("x=/loras/x.safetensors:9", "scale must be between -4 and 4"),
        ("bad name=/loras/x.safetensors", "use 1-64 letters"),
        ("x=", "expected NAME=PATH"),
    ],
)
def test_bad_adapters_say_why(text, message):
    with pytest.raises(AdapterError, match=message):
        Adapter.parse(text)


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("OPENKONTEXT_LORAS", "relight=/l/relight.safetensors:0.8, /l/style.safetensors")
    assert [adapter.describe() for adapter in Settings().loras] == [{"name": "relight", "scale": 0.8},
                                                                    {"name": "style", "scale": 1.0}]  # fmt: skip
    monkeypatch.setenv("OPENKONTEXT_LORAS", "a=/l/a.safetensors,a=/l/b.safetensors")
    with pytest.raises(ValueError, match="'a' is configured twice"):
        Settings()


def test_a_request_choice_gets_the_configured_default_scale():
    adapters = parse_adapters(["relight=/l/r.safetensors:0.8", "style=/l/s.safetensors"])
    assert choose(adapters, [("style", 0.3), ("relight", None)]) == (("style", 0.3), ("relight", 0.8))
    assert choose(adapters, []) == ()
    with pytest.raises(AdapterError, match="unknown LoRA 'x'; valid names: relight, style"):
        choose(adapters, [("x", None)])


def test_the_job_keeps_the_adapters_only_when_there_are_some():
    spec = JobSpec(prompt="p", seed=1, steps=2, guidance=3.0, safety_tolerance=2, output_format="png",
                   loras=(("relight", 0.8),))  # fmt: skip
    assert spec.params()["loras"] == [["relight", 0.8]]
    assert JobSpec.stored("p", 1, spec.params()) == spec  # the JSON round trip gives the same spec
    plain = JobSpec(prompt="p", seed=1, steps=2, guidance=3.0, safety_tolerance=2, output_format="png")
    assert "loras" not in plain.params() and JobSpec.stored("p", 1, plain.params()).loras == ()
