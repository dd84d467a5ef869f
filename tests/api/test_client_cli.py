"""The Python client and the CLI, used as a person would, against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import KEY_A, image_bytes
from openkontext.client import APIError, Client, ModerationError, TaskFailed


def run_cli(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "openkontext.cli", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_client_edit_returns_the_image(server, tmp_path):
    photo = tmp_path / "in.png"
    photo.write_bytes(image_bytes((160, 80)))
    with Client(server.url, api_key=KEY_A) as client:
        result = client.edit(photo, "make it night", seed=5, steps=3, output_format="png")
    assert result.seed == 5 and result.image.format == "PNG"
    assert result.image.width > result.image.height  # 2:1 in, landscape out


def test_client_raises_clear_errors(start_server):
    server = start_server(blocked_terms="contraband")
    with Client(server.url, api_key=KEY_A) as client:
        with pytest.raises(ModerationError) as moderated:
            client.edit(image_bytes(), "add contraband", steps=2)
        assert moderated.value.status == "Request Moderated"
        with pytest.raises(APIError) as invalid:
            client.submit("x", image_bytes(), steps=999)
        assert invalid.value.status_code == 422
    with Client(server.url, api_key="wrong") as client, pytest.raises(APIError) as forbidden:
        client.submit("x", image_bytes())
    assert forbidden.value.status_code == 403


def test_waiting_on_a_cancelled_task_ends_at_once(start_server, tmp_path):
    server = start_server(workers=0)  # nothing runs: the task stays queued until it is cancelled
    common = ["--server", server.url, "--key", KEY_A]
    with Client(server.url, api_key=KEY_A) as client:
        task_id = client.submit("make it blue", image_bytes(), steps=2)["id"]
        with server.client() as http:
            assert http.post("/v1/cancel", params={"id": task_id}).json()["status"] == "Cancelled"
        with pytest.raises(TaskFailed) as failed:
            client.wait(task_id, poll_interval=0.05, timeout=20)
    assert failed.value.status == "Cancelled"
    polled = run_cli("poll", task_id, "--wait", *common, timeout=60)
    assert polled.returncode == 0 and json.loads(polled.stdout)["status"] == "Cancelled"
    downloaded = run_cli("download", task_id, "-o", str(tmp_path / "out"), *common, timeout=60)
    assert downloaded.returncode != 0 and "Cancelled" in downloaded.stderr


def test_cli_submit_poll_download(server, tmp_path):
    photo = tmp_path / "in.jpg"
    photo.write_bytes(image_bytes((100, 100), fmt="JPEG"))
    common = ["--server", server.url, "--key", KEY_A]
    submitted = run_cli("submit", str(photo), "make it blue", "--steps", "2", "--format", "png", *common)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    polled = run_cli("poll", task_id, "--wait", *common)
    assert json.loads(polled.stdout)["status"] == "Ready"
    downloaded = run_cli("download", task_id, "-o", str(tmp_path / "out"), *common)
    assert downloaded.returncode == 0, downloaded.stderr
    assert Image.open(downloaded.stdout.strip()).format == "PNG"


def test_cli_uses_bfl_api_key_variable(server, tmp_path):
    photo = tmp_path / "in.png"
    photo.write_bytes(image_bytes())
    ok = run_cli("submit", str(photo), "x", "--steps", "1", "--server", server.url, env={"BFL_API_KEY": KEY_A})
    bad = run_cli("submit", str(photo), "x", "--server", server.url, env={"BFL_API_KEY": "nope"})
    assert ok.returncode == 0 and len(ok.stdout.strip()) == 36
    assert bad.returncode != 0 and "invalid API key" in bad.stderr


def test_cli_local_edit_writes_the_image(tmp_path):
    photo = tmp_path / "in.png"
    photo.write_bytes(image_bytes((160, 90)))
    out = tmp_path / "out.webp"
    done = run_cli("edit", str(photo), "make it red", "-o", str(out), "--model", "tiny", "--steps", "4", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert "randomly initialised" in done.stderr  # never pretends the placeholder is a trained model
    image = Image.open(out)
    assert image.format == "WEBP" and image.width > image.height
    again = tmp_path / "again.webp"
    run_cli("edit", str(photo), "make it red", "-o", str(again), "--model", "tiny", "--steps", "4", "--seed", "3")
    assert out.read_bytes() == again.read_bytes()


def test_server_generates_and_uses_a_local_key(start_server):
    server = start_server(api_keys="")
    key_file = server.data_dir / "api-key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = key_file.read_text().strip()
    with Client(server.url, api_key=key) as client:
        assert client.edit(image_bytes(), "x", steps=1).data
    assert "generated one and saved it" in server.log()


def test_cli_generate_draws_from_the_prompt_alone_at_the_asked_aspect_ratio(tmp_path):
    out = tmp_path / "drawn.png"
    done = run_cli("generate", "A red creature on a beach", "-o", str(out), "--aspect-ratio", "16:9",
                   "--model", "tiny", "--steps", "3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    image = Image.open(out)
    assert image.format == "PNG" and 1.5 < image.width / image.height < 2.0
    bad = run_cli("generate", "x", "-o", str(tmp_path / "no.png"), "--aspect-ratio", "5:1", "--model", "tiny")
    assert bad.returncode == 2 and "21:9" in bad.stderr and not (tmp_path / "no.png").exists()


def test_cli_edit_takes_extra_references_and_refuses_a_missing_image(tmp_path):
    photo, other = tmp_path / "in.png", tmp_path / "ref.png"
    photo.write_bytes(image_bytes((64, 64)))
    other.write_bytes(image_bytes((64, 64), seed=1))
    out = tmp_path / "out.png"
    done = run_cli("edit", str(photo), "put them together", "-r", str(other), "-o", str(out), "--model", "tiny",
                   "--steps", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (64, 64)
    missing = run_cli("edit", str(tmp_path / "nope.png"), "x", "--model", "tiny")
    # Rich draws the error in a box wrapped to the terminal's width: read it as plain words
    words = " ".join(re.sub(r"[\u2500-\u257f]", " ", missing.stderr).split())
    assert missing.returncode == 2 and "does not exist" in words


def test_cli_edit_on_the_shipped_model_shows_one_progress_bar(tmp_path):
    out = tmp_path / "out.png"
    sign = Path(__file__).resolve().parents[2] / "examples" / "sign.png"
    done = run_cli("edit", str(sign), "Change 'KELLAR' to 'SUMITH'", "-o", str(out), "--steps", "2", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr and "editing on cpu" in done.stderr
    assert "Loading" not in done.stderr and "randomly initialised" not in done.stderr
    assert Image.open(out).size == (256, 256)
