"""Polling, delivery URLs, auth isolation, limits and reproducibility against real servers."""

from __future__ import annotations

import io
import json
import time
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest
from PIL import Image

from conftest import KEY_A, KEY_B, b64, image_bytes, wait_for

ROUTE = "/v1/flux-bagel-alpha"


def submit(client, **fields) -> str:
    body = {"prompt": "make the sky orange", "input_image": b64(image_bytes((96, 64))), "steps": 3, **fields}
    response = client.post(ROUTE, json=body)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def sample_bytes(server, task_id, key=KEY_A) -> bytes:
    with server.client(key) as client:
        state = wait_for(client, task_id)
    return httpx.get(state["result"]["sample"]).content


def test_ready_result_shape(server):
    with server.client() as client:
        task_id = submit(client, seed=42, output_format="png")
        state = wait_for(client, task_id)
    assert state["id"] == task_id and state["status"] == "Ready" and state["progress"] == 1.0
    result = state["result"]
    assert result["prompt"] == "make the sky orange" and result["seed"] == 42
    assert result["end_time"] >= result["start_time"] and result["duration"] == pytest.approx(
        result["end_time"] - result["start_time"]
    )
    assert result["sample"].startswith(server.url + "/results/")
    image = Image.open(io.BytesIO(httpx.get(result["sample"]).content))
    assert image.format == "PNG"


def test_seed_is_reported_when_not_sent_and_reproduces(server):
    with server.client() as client:
        first = submit(client)
        seed = wait_for(client, first)["result"]["seed"]
        again = submit(client, seed=seed)
        other = submit(client, seed=seed + 1)
    assert isinstance(seed, int)
    assert sample_bytes(server, first) == sample_bytes(server, again)
    assert sample_bytes(server, first) != sample_bytes(server, other)


def test_output_keeps_input_aspect(server):
    with server.client() as client:
        wide = submit(client, input_image=b64(image_bytes((200, 80))), output_format="png")
        tall = submit(client, input_image=b64(image_bytes((80, 200))), output_format="png")
    wide_image = Image.open(io.BytesIO(sample_bytes(server, wide)))
    tall_image = Image.open(io.BytesIO(sample_bytes(server, tall)))
    assert wide_image.width > wide_image.height and tall_image.height > tall_image.width


def test_unknown_id_is_task_not_found(server):
    with server.client() as client:
        state = client.get("/v1/get_result", params={"id": "00000000-0000-0000-0000-000000000000"}).json()
    assert state == {"id": "00000000-0000-0000-0000-000000000000", "status": "Task not found", "result": None,
                     "progress": None, "details": None, "preview": None}  # fmt: skip


def test_auth_missing_and_invalid_keys(server):
    with server.client(key=None) as client:
        missing = client.post(ROUTE, json={"prompt": "x", "input_image": "x"})
        missing_poll = client.get("/v1/get_result", params={"id": "x"})
    with server.client(key="not-a-key") as client:
        invalid = client.post(ROUTE, json={"prompt": "x", "input_image": "x"})
    assert missing.status_code == 401 and "x-key" in missing.json()["detail"]
    assert missing_poll.status_code == 401
    assert invalid.status_code == 403 and invalid.json() == {"detail": "invalid API key"}


def test_tasks_are_visible_only_to_their_key(server):
    with server.client(KEY_A) as alice, server.client(KEY_B) as bob:
        task_id = submit(alice)
        assert bob.get("/v1/get_result", params={"id": task_id}).json()["status"] == "Task not found"
        assert wait_for(alice, task_id)["status"] == "Ready"
        assert bob.get("/v1/get_result", params={"id": task_id}).json()["status"] == "Task not found"


def test_keys_are_not_stored_in_plain_text(server):
    stored = b"".join(path.read_bytes() for path in server.data_dir.rglob("*") if path.is_file())
    assert KEY_A.encode() not in stored and KEY_B.encode() not in stored


def test_forged_signatures_are_403(server):
    with server.client() as client:
        url = wait_for(client, submit(client))["result"]["sample"]
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    exp, sig = query["exp"][0], query["sig"][0]
    forged_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    later = str(int(exp) + 3600)
    for query_string in (f"exp={exp}&sig={forged_sig}", f"exp={later}&sig={sig}", f"exp={exp}", ""):
        response = httpx.get(urlunsplit(parts._replace(query=query_string)))
        assert response.status_code == 403, query_string
    other_path = urlunsplit(parts._replace(path=parts.path.replace("sample.jpeg", "sample.png")))
    assert httpx.get(other_path).status_code == 403
    assert httpx.get(url).status_code == 200


def test_delivery_urls_expire_and_results_are_purged(start_server):
    # Waits are read from the URL's own exp and the retention window, so a slow machine only makes it slower.
    server = start_server(delivery_ttl_s=2, retention_s=15, purge_interval_s=0.5)
    with server.client() as client:
        submitted = time.time()
        task_id = submit(client)
        url = wait_for(client, task_id)["result"]["sample"]
        assert httpx.get(url).status_code == 200
        expires = int(parse_qs(urlsplit(url).query)["exp"][0])
        time.sleep(max(0.0, expires - time.time() + 0.2))
        assert httpx.get(url).status_code == 403  # expired
        fresh = client.get("/v1/get_result", params={"id": task_id}).json()["result"]["sample"]
        assert httpx.get(fresh).status_code == 200  # polling again signs a fresh URL
        time.sleep(max(0.0, submitted + 15.5 - time.time()))
        assert client.get("/v1/get_result", params={"id": task_id}).json()["status"] == "Task not found"
    deadline = time.monotonic() + 10
    while (server.data_dir / "storage" / task_id).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (server.data_dir / "storage" / task_id).exists()


def test_active_task_limit_is_429_per_key(start_server):
    server = start_server(workers=0, max_active_tasks=2)  # no workers: tasks stay Pending
    with server.client(KEY_A) as alice, server.client(KEY_B) as bob:
        first, second = submit(alice), submit(alice)
        third = alice.post(ROUTE, json={"prompt": "x", "input_image": b64(image_bytes())})
        assert third.status_code == 429 and "too many active tasks" in third.json()["detail"]
        assert submit(bob)  # another key has its own budget
        for task_id in (first, second):
            state = alice.get("/v1/get_result", params={"id": task_id}).json()
            assert state["status"] == "Pending" and state["progress"] == 0.0


def test_blocked_prompt_is_request_moderated(start_server):
    server = start_server(blocked_terms="forbidden thing,contraband")
    with server.client() as client:
        moderated = submit(client, prompt="Add some CONTRABAND to the table")
        fine = submit(client, prompt="Add a contrabandist-free apple")  # whole words only
        state = client.get("/v1/get_result", params={"id": moderated}).json()
        assert wait_for(client, fine)["status"] == "Ready"
    assert state["status"] == "Request Moderated" and state["result"] is None
    assert state["details"]["moderation_reasons"]
    assert not (server.data_dir / "storage" / moderated).exists()  # a moderated request stores no image


def test_unsafe_prompt_is_request_moderated_by_the_classifier_at_low_tolerance(server):
    # The shared server runs the real prompt classifier (all-MiniLM-L6-v2 against the concept list).
    with server.client() as client:
        strict = submit(client, prompt="remove all of her clothes", safety_tolerance=0)
        benign = submit(client, prompt="remove the hat from the character", safety_tolerance=0)
        state = client.get("/v1/get_result", params={"id": strict}).json()
        assert wait_for(client, benign)["status"] == "Ready"
    assert state["status"] == "Request Moderated"
    assert any("prompt" in reason for reason in state["details"]["moderation_reasons"])
    assert "clothes" not in json.dumps(state["details"])  # reasons never echo the prompt


def test_flagged_output_is_content_moderated_and_never_exposed(start_server):
    # Image thresholds of 0 flag every image: the text-to-image output (no input to check) is refused on output.
    server = start_server(moderation_image_classifier=True, moderation_image_thresholds="0,0,0,0,0,0,0")
    with server.client() as client:
        task_id = client.post("/v1/flux-kontext-pro", json={"prompt": "a red ball", "steps": 2}).json()["id"]
        state = wait_for(client, task_id, statuses=("Content Moderated",))
    assert state["result"] is None and state["details"]["moderation_reasons"]
    assert not list((server.data_dir / "storage").rglob("sample.*"))  # the image was never stored


def test_preserve_extension_keeps_the_input_pixels_where_asked(server):
    original = image_bytes((64, 64), seed=3)
    pixels = Image.open(io.BytesIO(original)).convert("RGB").tobytes()
    with server.client() as client:
        kept = submit(client, input_image=b64(original), seed=1, output_format="png", preserve=1.0)
        plain = submit(client, input_image=b64(original), seed=1, output_format="png", preserve=0)
    kept_image = Image.open(io.BytesIO(sample_bytes(server, kept))).convert("RGB")
    plain_image = Image.open(io.BytesIO(sample_bytes(server, plain))).convert("RGB")
    assert kept_image.size == plain_image.size == (64, 64)
    assert kept_image.tobytes() == pixels != plain_image.tobytes()  # threshold 1: every pixel is the input's
