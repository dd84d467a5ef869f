"""LoRA adapters through a real server: configured at start (OPENKONTEXT_LORAS), listed by /health, chosen per request
with the ``loras`` extension field, validated against the configured names, and isolated between concurrent jobs."""

from __future__ import annotations

import io
import threading

import httpx
import numpy as np
import pytest
from engine.lora_formats import write_lora
from PIL import Image

from conftest import b64, image_bytes, wait_for

ROUTE = "/v1/flux-kontext-pro"


@pytest.fixture(scope="module")
def lora_files(tmp_path_factory):
    """Two adapters for the server's tiny model, in two of the published formats."""
    from openkontext.engine.configs import build_pipeline

    folder = tmp_path_factory.mktemp("loras")
    transformer = build_pipeline("tiny").transformer
    write_lora("kohya", transformer, folder / "relight.safetensors", seed=1)
    write_lora("xlabs", transformer, folder / "style.safetensors", seed=2)
    return folder


@pytest.fixture
def lora_server(start_server, lora_files):
    return start_server(workers=2, loras=f"relight={lora_files / 'relight.safetensors'}:0.8,"
                                         f"{lora_files / 'style.safetensors'}")  # fmt: skip


def body(**fields) -> dict:
    return {"prompt": "relight the scene", "input_image": b64(image_bytes((64, 64), seed=3)), "seed": 11,
            "steps": 12, "output_format": "png", **fields}  # fmt: skip


def result_pixels(client: httpx.Client, state: dict) -> np.ndarray:
    data = client.get(state["result"]["sample"]).content
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_health_lists_the_adapters_without_their_paths(lora_server, lora_files):
    health = httpx.get(f"{lora_server.url}/health").json()
    assert health["loras"] == [{"name": "relight", "scale": 0.8}, {"name": "style", "scale": 1.0}]
    assert str(lora_files) not in httpx.get(f"{lora_server.url}/health").text


@pytest.mark.parametrize(
    ("loras", "message"),
    [
        ([{"name": "nope"}], "unknown LoRA 'nope'; valid names: relight, style"),
        ([{"name": "style"}, {"name": "style", "scale": 0.5}], "LoRA 'style' is listed twice"),
        ([{"name": "style", "scale": 4.5}], "less than or equal to 4"),
        ([{"path": "https://example.com/lora.safetensors", "scale": 1}], "Field required"),
    ],
)
def test_invalid_choices_are_a_422_that_stores_nothing(lora_server, loras, message):
    with lora_server.client() as client:
        response = client.post(ROUTE, json=body(loras=loras))
        assert response.status_code == 422, response.text
        assert message in response.text
        assert client.get("/v1/tasks").json()["tasks"] == []


def test_a_server_without_adapters_refuses_any(start_server):
    server = start_server()
    assert httpx.get(f"{server.url}/health").json()["loras"] == []
    with server.client() as client:
        response = client.post(ROUTE, json=body(loras=[{"name": "relight"}]))
    assert response.status_code == 422
    assert "this server has no LoRA adapters configured" in response.text


def test_concurrent_requests_with_different_adapters_get_their_own(lora_server):
    """Two workers, jobs for the base model and each adapter submitted in a burst: every result is byte-identical to
    the same request run alone, although jobs with different adapters were in flight at the same time."""
    choices = {"base": None, "relight": [{"name": "relight"}], "style": [{"name": "style", "scale": 0.5}]}
    with lora_server.client() as client:
        alone = {}
        for name, loras in choices.items():  # one at a time: the references
            state = wait_for(client, client.post(ROUTE, json=body(loras=loras)).json()["id"])
            alone[name] = result_pixels(client, state)
        assert not np.array_equal(alone["base"], alone["relight"]) and not np.array_equal(alone["base"], alone["style"])

        burst = [name for _ in range(3) for name in choices]
        ids: list[tuple[str, str]] = []
        lock = threading.Lock()

        def submit(name: str) -> None:
            with lora_server.client() as own:
                task = own.post(ROUTE, json=body(loras=choices[name])).json()["id"]
            with lock:
                ids.append((name, task))

        threads = [threading.Thread(target=submit, args=(name,)) for name in burst]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        states = [(name, wait_for(client, task, timeout=120)) for name, task in ids]
        for name, state in states:
            assert np.array_equal(result_pixels(client, state), alone[name]), name
        expected = {"base": None, "relight": [{"name": "relight", "scale": 0.8}],
                    "style": [{"name": "style", "scale": 0.5}]}  # fmt: skip
        assert all(state["result"].get("loras") == expected[name] for name, state in states)

    def overlap(a: dict, b: dict) -> bool:
        return a["start_time"] < b["end_time"] and b["start_time"] < a["end_time"]

    mixed = [(first, second) for i, (name, first) in enumerate(states) for other, second in states[i + 1:]
             if name != other and overlap(first["result"], second["result"])]  # fmt: skip
    assert mixed, "no two jobs with different adapters were in flight at once: the test showed nothing"
