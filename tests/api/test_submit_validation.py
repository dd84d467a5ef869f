"""Every parameter's boundary on the alpha route: inside → accepted, outside → 422 that names the field; bad input
never leaves a job or a file behind."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import b64, image_bytes

ROUTE = "/v1/flux-bagel-alpha"
IMAGE = b64(image_bytes((64, 48)))

ACCEPTED = [
    ("steps", 1), ("steps", 150), ("guidance", 0.1), ("guidance", 99.0), ("safety_tolerance", 0),
    ("safety_tolerance", 6), ("output_format", "png"), ("output_format", "jpeg"), ("seed", 0), ("seed", -1),
    ("seed", 2**64 - 1), ("seed", None), ("webhook_url", None), ("webhook_secret", "s3cret"), ("preserve", 0),
    ("preserve", 1.0), ("preserve", None), ("glyph_guidance", 0), ("glyph_guidance", 8), ("glyph_guidance", 30),
    ("glyph_guidance", None),
]  # fmt: skip

REJECTED = [
    ("steps", 0), ("steps", 151), ("steps", 2.5), ("steps", "many"), ("guidance", 0.09), ("guidance", 99.01),
    ("guidance", "high"), ("safety_tolerance", -1), ("safety_tolerance", 7), ("output_format", "gif"),
    ("output_format", "JPEG2000"), ("seed", 2**64), ("seed", -(2**63) - 1), ("seed", "lucky"),
    ("webhook_url", "not a url"), ("webhook_url", "ftp://example.com/hook"), ("prompt", ""), ("prompt", "   "),
    ("prompt", None), ("input_image", ""), ("input_image", None), ("preserve", -0.1), ("preserve", 1.5),
    ("preserve", "all"), ("glyph_guidance", -0.5), ("glyph_guidance", 30.5), ("glyph_guidance", "strong"),
]  # fmt: skip


def count_jobs(server) -> int:
    with sqlite3.connect(server.data_dir / "openkontext.db") as db:
        return db.execute("select count(*) from jobs").fetchone()[0]


def stored_files(server) -> int:
    root = server.data_dir / "storage"
    return sum(1 for path in root.rglob("input-*") if path.is_file())  # results of earlier jobs may still land


@pytest.mark.parametrize(("field", "value"), ACCEPTED)
def test_accepted_values(server, field, value):
    with server.client() as client:
        response = client.post(ROUTE, json={"prompt": "recolour the ball", "input_image": IMAGE, "steps": 2,
                                            field: value})  # fmt: skip
    assert response.status_code == 200, response.text
    assert set(response.json()) >= {"id", "polling_url"}


@pytest.mark.parametrize(("field", "value"), REJECTED)
def test_rejected_values(server, field, value):
    jobs, files = count_jobs(server), stored_files(server)
    with server.client() as client:
        response = client.post(ROUTE, json={"prompt": "recolour the ball", "input_image": IMAGE, field: value})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert any(error["loc"][-1] == field for error in detail), detail
    assert all(set(error) == {"loc", "msg", "type"} for error in detail)
    assert count_jobs(server) == jobs and stored_files(server) == files


def test_the_extensions_are_stored_with_the_job(server):
    with server.client() as client:
        response = client.post(ROUTE, json={"prompt": "Write 'HI' on the sign", "input_image": IMAGE, "steps": 2,
                                            "preserve": 0.1, "glyph_guidance": 8})  # fmt: skip
    assert response.status_code == 200, response.text
    with sqlite3.connect(server.data_dir / "openkontext.db") as db:
        (params,) = db.execute("select params from jobs where id = ?", (response.json()["id"],)).fetchone()
    assert {key: value for key, value in json.loads(params).items() if key in ("preserve", "glyph_guidance")} == {
        "preserve": 0.1, "glyph_guidance": 8.0}


def test_missing_fields(server):
    with server.client() as client:
        response = client.post(ROUTE, json={})
    assert response.status_code == 422
    missing = {error["loc"][-1] for error in response.json()["detail"]}
    assert missing == {"prompt", "input_image"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("@@@not base64@@@", "base64"),
        (b64(b"hello, this is text, not an image"), "not a decodable image"),
        (b64(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>"), "not a decodable image"),
        (b64(image_bytes((64, 48))[:100]), "corrupt or truncated"),
    ],
)
def test_undecodable_images_are_422(server, data, message):
    jobs = count_jobs(server)
    with server.client() as client:
        response = client.post(ROUTE, json={"prompt": "make it red", "input_image": data})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "input_image"] and message in error["msg"]
    assert count_jobs(server) == jobs


def test_data_url_input_is_accepted(server):
    with server.client() as client:
        response = client.post(
            ROUTE, json={"prompt": "make it red", "input_image": "data:image/png;base64," + IMAGE, "steps": 1}
        )
    assert response.status_code == 200


def test_malformed_json_is_422(server):
    with server.client() as client:
        response = client.post(ROUTE, content=b'{"prompt": "x", ', headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_oversized_body_is_413_and_stores_nothing(server):
    jobs = count_jobs(server)
    huge = "A" * (3 * 1024 * 1024)  # the shared server's limit is 2 MiB
    with server.client() as client:
        response = client.post(ROUTE, json={"prompt": "x", "input_image": huge})
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    assert count_jobs(server) == jobs


def test_oversized_body_without_content_length_is_413(server):
    def chunks():
        for _ in range(40):
            yield b"A" * 100_000

    with server.client() as client:
        response = client.post(ROUTE, content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_prompt_longer_than_limit_is_422(server):
    with server.client() as client:
        response = client.post(ROUTE, json={"prompt": "x" * 4001, "input_image": IMAGE})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "prompt"]


def test_openapi_documents_the_routes(server):
    with server.client() as client:
        schema = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert {"/v1/flux-bagel-alpha", "/v1/get_result"} <= set(schema["paths"])
    body = schema["components"]["schemas"]["AlphaEditRequest"]["properties"]
    assert body["steps"]["default"] == 50 and body["steps"]["maximum"] == 150
    assert body["guidance"]["default"] == 3.0 and body["safety_tolerance"]["maximum"] == 6
