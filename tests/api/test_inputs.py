"""Input images are stored as the client sent them and decoded by the worker exactly as the submit checked them."""

from __future__ import annotations

import io

from PIL import Image

from conftest import b64, wait_for

ROUTE = "/v1/flux-kontext-pro"


def rotated_jpeg() -> bytes:
    """A 160x80 JPEG whose EXIF says 'rotate 90° clockwise to view' (orientation 6): upright it is 80x160."""
    image = Image.new("RGB", (160, 80), (200, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_inputs_are_stored_as_sent_and_read_upright(start_server):
    server = start_server(workers=1)
    sent = rotated_jpeg()
    with server.client() as client:
        task_id = client.post(ROUTE, json={"prompt": "make it blue", "input_image": b64(sent), "steps": 2,
                                           "output_format": "png"}).json()["id"]  # fmt: skip
        state = wait_for(client, task_id)
        stored = server.data_dir / "storage" / task_id / "input-0.jpeg"
        assert stored.read_bytes() == sent  # byte for byte: no re-encoding on the request path
        result = Image.open(io.BytesIO(client.get(state["result"]["sample"]).content))
    assert result.height > result.width  # the worker applied the EXIF rotation, as the submit's decode did
