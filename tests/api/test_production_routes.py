"""BFL's production dialect and what goes beyond it: kontext-pro/max, text-to-image, multi-reference, progress,
cancel, idempotency, task lists, server-sent events and metrics — each against a real server."""

from __future__ import annotations

import concurrent.futures
import io
import json
import re
import time

import httpx
import pytest
from PIL import Image

from conftest import KEY_A, KEY_B, b64, image_bytes, wait_for

PRO, MAX, DEV = "/v1/flux-kontext-pro", "/v1/flux-kontext-max", "/v1/flux-dev"


def result_image(client, task_id, **kwargs) -> Image.Image:
    state = wait_for(client, task_id, **kwargs)
    return Image.open(io.BytesIO(httpx.get(state["result"]["sample"]).content))


# --- BFL's production routes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", [PRO, MAX])
def test_kontext_routes_edit_with_png_default(server, route):
    with server.client() as client:
        response = client.post(route, json={"prompt": "make it blue", "input_image": b64(image_bytes((160, 80))),
                                            "steps": 2})  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json()["polling_url"].endswith(response.json()["id"])
        image = result_image(client, response.json()["id"])
    assert image.format == "PNG" and image.width > image.height


def test_kontext_without_image_is_text_to_image_and_follows_aspect_ratio(server):
    with server.client() as client:
        wide = client.post(PRO, json={"prompt": "a red ball on a beach", "aspect_ratio": "21:9", "steps": 2,
                                      "output_format": "webp"}).json()["id"]  # fmt: skip
        tall = client.post(PRO, json={"prompt": "a red ball on a beach", "aspect_ratio": "9:16", "steps": 2}).json()
        wide_image, tall_image = result_image(client, wide), result_image(client, tall["id"])
    assert wide_image.format == "WEBP" and wide_image.width / wide_image.height > 1.5
    assert tall_image.height > tall_image.width


def test_aspect_ratio_overrides_the_input_shape(server):
    with server.client() as client:
        task = client.post(PRO, json={"prompt": "x", "input_image": b64(image_bytes((200, 100))),
                                      "aspect_ratio": "1:2", "steps": 1}).json()["id"]  # fmt: skip
        image = result_image(client, task)
    assert image.height > image.width


@pytest.mark.parametrize(
    ("body", "field"),
    [({"aspect_ratio": "22:9"}, "aspect_ratio"), ({"aspect_ratio": "wide"}, "aspect_ratio"),
     ({"output_format": "gif"}, "output_format"), ({"input_image_2": b64(image_bytes())}, None),
     ({"prompt_upsampling": "maybe"}, "prompt_upsampling"), ({"input_image_5": "x", "prompt": ""}, "prompt")],
)  # fmt: skip
def test_kontext_validation(server, body, field):
    with server.client() as client:
        response = client.post(PRO, json={"prompt": "x", **body})
    assert response.status_code == 422, response.text
    if field:
        assert any(error["loc"][-1] == field for error in response.json()["detail"])
    else:
        assert "input_image_2..4 are extra references" in response.text


def test_prompt_upsampling_is_accepted_and_changes_nothing(server):
    with server.client() as client:
        plain = client.post(PRO, json={"prompt": "a cat", "seed": 3, "steps": 2}).json()["id"]
        upsampled = client.post(PRO, json={"prompt": "a cat", "seed": 3, "steps": 2, "prompt_upsampling": True})
        assert upsampled.status_code == 200
        first, second = (httpx.get(wait_for(client, t)["result"]["sample"]).content
                         for t in (plain, upsampled.json()["id"]))  # fmt: skip
    assert first == second


def test_flux_dev_text_to_image_at_the_requested_size(server):
    with server.client() as client:
        task = client.post(DEV, json={"prompt": "a house in the snow", "width": 512, "height": 256, "steps": 2})
        assert task.status_code == 200, task.text
        image = result_image(client, task.json()["id"])
        bad = client.post(DEV, json={"prompt": "x", "width": 500, "height": 2000})
    assert image.size == (512, 256) and image.format == "JPEG"
    assert bad.status_code == 422 and {e["loc"][-1] for e in bad.json()["detail"]} == {"width", "height"}


def test_multi_reference_input_images(server):
    with server.client() as client:
        task = client.post(PRO, json={
            "prompt": "put the character from the second image next to the first", "steps": 2, "seed": 1,
            "input_image": b64(image_bytes((96, 64), seed=1)), "input_image_2": b64(image_bytes((64, 64), seed=2)),
            "input_image_3": b64(image_bytes((64, 96), seed=3)),
        })  # fmt: skip
        single = client.post(PRO, json={"prompt": "put the character from the second image next to the first",
                                        "steps": 2, "seed": 1, "input_image": b64(image_bytes((96, 64), seed=1))})
        multi_image = result_image(client, task.json()["id"])
        single_image = result_image(client, single.json()["id"])
    assert multi_image.size == single_image.size  # the first image sets the shape
    assert multi_image.tobytes() != single_image.tobytes()  # the extra references take part


def test_official_bfl_python_client_works_unchanged(server, tmp_path):
    """BFL's own Python client (PyPI `blackforest`), pointed at OpenKontext by base_url only."""
    from blackforest import BFLClient
    from blackforest.types.general.client_config import ClientConfig

    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes((128, 96)))
    client = BFLClient(api_key=KEY_A, base_url=server.url)
    # The client gives up after max_retries polls whatever its timeout (60 by default: 12 s at this interval)
    config = ClientConfig(sync=True, timeout=60, polling_interval=0.2, max_retries=300)
    edited = client.generate("flux-kontext-pro", {"prompt": "make it night", "input_image": str(photo),
                                                   "seed": 1, "output_format": "jpeg"}, config)  # fmt: skip
    # In sync mode the client returns get_result's `result` once the status is Ready.
    assert edited.result["seed"] == 1 and edited.result["prompt"] == "make it night"
    assert Image.open(io.BytesIO(httpx.get(edited.result["sample"]).content)).format == "JPEG"
    generated = client.generate("flux-dev", {"prompt": "a red ball", "steps": 2, "width": 256, "height": 256},
                                config)  # fmt: skip
    assert Image.open(io.BytesIO(httpx.get(generated.result["sample"]).content)).size == (256, 256)
    pending = client.generate("flux-kontext-pro", {"prompt": "a tree", "aspect_ratio": "4:3"})  # asynchronous
    assert pending.polling_url.startswith(server.url)
    assert client.get_task_status(pending.id).status in ("Pending", "Ready")
    assert client.get_polling_result(pending.id, config)["sample"].startswith(server.url)


def test_client_request_shapes(server):
    """What BFL clients send: `X-Key` casing, explicit nulls, extra fields, polling by polling_url."""
    body = {"prompt": "make it snow", "input_image": b64(image_bytes()), "input_image_2": None, "seed": None,
            "aspect_ratio": None, "webhook_url": None, "webhook_secret": None, "prompt_upsampling": False,
            "safety_tolerance": 2, "output_format": "png", "unknown_future_field": 1, "steps": 2}  # fmt: skip
    response = httpx.post(server.url + PRO, json=body, headers={"X-Key": KEY_A, "accept": "application/json"})
    assert response.status_code == 200, response.text
    polling_url = response.json()["polling_url"]
    deadline = time.monotonic() + 60
    while (state := httpx.get(polling_url, headers={"X-KEY": KEY_A}).json())["status"] == "Pending":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert state["status"] == "Ready"


# --- progress, queue, preview, cancel -------------------------------------------------------------------------------


def test_queue_position_then_steps_then_preview(start_server):
    server = start_server(model="random", workers=1)  # 256-px model: slow enough to watch
    with server.client() as client:
        first = client.post(PRO, json={"prompt": "a", "steps": 40}).json()["id"]
        second = client.post(PRO, json={"prompt": "b", "steps": 40}).json()["id"]
        third = client.post(PRO, json={"prompt": "c", "steps": 40}).json()["id"]
        positions = {t: client.get("/v1/get_result", params={"id": t}).json().get("queue_position")
                     for t in (second, third)}  # fmt: skip
        assert positions[third] == positions[second] + 1
        seen_steps, preview = [], None
        while (state := client.get("/v1/get_result", params={"id": first}).json())["status"] == "Pending":
            if "step" in state:
                assert state["steps"] == 40 and "queue_position" not in state
                seen_steps.append(state["step"])
                preview = preview or state["preview"]
            time.sleep(0.05)
        assert state["status"] == "Ready" and "step" not in state
        for task in (first, second, third):
            client.post("/v1/cancel", params={"id": task})
    assert seen_steps == sorted(seen_steps) and seen_steps[-1] > seen_steps[0]
    assert preview and preview["image"].startswith("data:image/jpeg;base64,")
    data = preview["image"].split(",", 1)[1]
    import base64

    assert max(Image.open(io.BytesIO(base64.b64decode(data))).size) <= 64


def test_cancel_queued_and_running_tasks(start_server):
    server = start_server(model="random", workers=1)
    with server.client() as client:
        running = client.post(PRO, json={"prompt": "a", "steps": 150}).json()["id"]
        queued = client.post(PRO, json={"prompt": "b", "steps": 150}).json()["id"]
        cancelled = client.post("/v1/cancel", params={"id": queued}).json()
        assert cancelled["status"] == "Cancelled"
        while client.get("/v1/get_result", params={"id": running}).json().get("step", 0) < 2:
            time.sleep(0.05)
        asked = time.monotonic()
        client.post("/v1/cancel", params={"id": running})
        state = wait_for(client, running, statuses=("Cancelled",), timeout=30)
        stopped_after = time.monotonic() - asked
        assert state["details"]["error"] == "cancelled by the client" and state["result"] is None
        assert state.get("step", 0) < 150
        with server.client(KEY_B) as other:  # another key cannot cancel (or see) it
            assert other.post("/v1/cancel", params={"id": queued}).json()["status"] == "Task not found"
        done = client.post(PRO, json={"prompt": "c", "steps": 1}).json()["id"]
        wait_for(client, done)
        assert client.post("/v1/cancel", params={"id": done}).json()["status"] == "Ready"  # ended tasks stay
    assert stopped_after < 10  # within a step or so (a step of this model takes ~0.1 s; generous for loaded CI)


# --- idempotency ----------------------------------------------------------------------------------------------------


def test_idempotent_submit_under_concurrent_retries(start_server):
    server = start_server(workers=0)
    body = {"prompt": "make it red", "input_image": b64(image_bytes()), "seed": 5}

    def send(_):
        return httpx.post(server.url + PRO, json=body, headers={"x-key": KEY_A, "Idempotency-Key": "retry-1"},
                          timeout=30)  # fmt: skip

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(8)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    with server.client() as client:
        assert len(client.get("/v1/tasks").json()["tasks"]) == 1
        other = client.post(PRO, json={**body, "seed": 6}, headers={"Idempotency-Key": "retry-1"})
        assert other.status_code == 409
        fresh = client.post(PRO, json=body, headers={"Idempotency-Key": "retry-2"})
        assert fresh.json()["id"] != responses[0].json()["id"]
    with server.client(KEY_B) as bob:  # keys are per API key
        assert bob.post(PRO, json=body, headers={"Idempotency-Key": "retry-1"}).json()["id"] != fresh.json()["id"]
    stored = [p for p in (server.data_dir / "storage").iterdir() if p.is_dir()]
    assert len(stored) == 3  # the losing concurrent retries left no files behind


# --- lists, streams, operations -------------------------------------------------------------------------------------


def test_task_list_is_per_key_and_paginated(start_server):
    server = start_server(workers=0)
    with server.client() as client, server.client(KEY_B) as bob:
        ids = [client.post(PRO, json={"prompt": f"t{i}"}).json()["id"] for i in range(5)]
        bob.post(PRO, json={"prompt": "bob's"})
        first = client.get("/v1/tasks", params={"limit": 2}).json()
        second = client.get("/v1/tasks", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        third = client.get("/v1/tasks", params={"limit": 2, "cursor": second["next_cursor"]}).json()
        assert client.get("/v1/tasks", params={"cursor": "nonsense"}).status_code == 422
    listed = [t["id"] for page in (first, second, third) for t in page["tasks"]]
    assert listed == list(reversed(ids)) and third["next_cursor"] is None


def test_sse_stream_reports_in_order_until_the_end(start_server):
    server = start_server(model="random")
    with server.client() as client:
        task = client.post(PRO, json={"prompt": "a", "steps": 30}).json()["id"]
        events = []
        with client.stream("GET", "/v1/get_result/stream", params={"id": task}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: "):]))
    statuses = [event["status"] for event in events]
    progress = [event["progress"] for event in events]
    assert statuses[-1] == "Ready" and set(statuses[:-1]) == {"Pending"}
    assert progress == sorted(progress) and len(events) >= 3
    assert events[-1]["result"]["sample"].startswith(server.url)


def test_health_ready_and_metrics_move(start_server):
    server = start_server(preserve=0.3)
    with server.client() as client:
        health = client.get("/health").json()
        assert health["status"] == "ok"
        assert health["defaults"] == {"preserve": 0.3, "glyph_guidance": None}  # the tiny model draws no canvas
        assert client.get("/ready").json()["status"] == "ready"

        def metric(name, text):
            match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
            return float(match.group(1)) if match else 0.0

        before = client.get("/metrics").text
        for _ in range(2):
            wait_for(client, client.post(PRO, json={"prompt": "x", "steps": 3}).json()["id"])
        after = client.get("/metrics").text
    ready_jobs = 'openkontext_job_duration_seconds_count{status="ready"}'
    assert metric(re.escape(ready_jobs), after) == metric(re.escape(ready_jobs), before) + 2
    assert metric("openkontext_engine_step_seconds_count", after) >= 6
    assert metric("openkontext_queue_depth", after) == 0 and "openkontext_active_jobs" in after


def test_metrics_count_queued_jobs(start_server):
    server = start_server(workers=0)
    with server.client() as client:
        for _ in range(3):
            client.post(PRO, json={"prompt": "x"})
        text = client.get("/metrics").text
    assert re.search(r"^openkontext_queue_depth 3\.0$", text, re.MULTILINE)


def test_ready_reports_the_workers_of_an_api_only_node(start_server):
    server = start_server(workers=0)  # accepts and queues tasks; other nodes run them
    with server.client() as client:
        assert client.get("/ready").json() == {"status": "ready", "model": "random-tiny", "workers": 0}
