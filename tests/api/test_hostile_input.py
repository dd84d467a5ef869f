"""Hostile input: broken and malicious images, URLs, JSON and requests each get a clear 4xx (or a correct result),
never a 500, and leave nothing behind."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import b64, free_port, image_bytes, wait_for

ROUTE = "/v1/flux-bagel-alpha"


def post(server, body=None, **kwargs) -> httpx.Response:
    with server.client() as client:
        return client.post(ROUTE, json=body, **kwargs) if body is not None else client.post(ROUTE, **kwargs)


def edit_status(server, data: bytes) -> httpx.Response:
    return post(server, {"prompt": "make it blue", "input_image": b64(data), "steps": 1, "output_format": "png"})


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid 1×1 PNG whose header claims width×height (a decompression bomb's header, without the bomb)."""
    raw = image_bytes((1, 1))
    ihdr = bytearray(raw[8 + 8 : 8 + 8 + 13])
    ihdr[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return raw[:16] + bytes(ihdr) + crc + raw[16 + 13 + 4 :]


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# --- images ---------------------------------------------------------------------------------------------------------

rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8))
ACCEPTED_IMAGES = {
    "cmyk jpeg": encoded(rgb.convert("CMYK"), "JPEG"),
    "16-bit grey png": encoded(Image.fromarray(np.full((40, 60), 40000, dtype=np.uint16)), "PNG"),
    "palette with transparency": encoded(rgb.convert("P"), "PNG", transparency=0),
    "rgba png": encoded(rgb.convert("RGBA"), "PNG"),
    "animated gif": encoded(rgb.convert("P"), "GIF", save_all=True, append_images=[rgb.convert("P").rotate(90)]),
    "tiny 1x1": image_bytes((1, 1)),
    "webp": encoded(rgb, "WEBP"),
    "grey jpeg": encoded(rgb.convert("L"), "JPEG"),
}


@pytest.mark.parametrize("name", ACCEPTED_IMAGES)
def test_unusual_but_valid_images_give_a_correct_result(server, name):
    response = edit_status(server, ACCEPTED_IMAGES[name])
    assert response.status_code == 200, response.text
    with server.client() as client:
        result = wait_for(client, response.json()["id"])
    image = Image.open(io.BytesIO(httpx.get(result["result"]["sample"]).content))
    assert image.mode == "RGB" and image.format == "PNG"


REFUSED_IMAGES = {
    "decompression bomb header": (png_claiming_size(60000, 60000), "limit"),
    "huge dimensions": (png_claiming_size(100_000, 500), "limit"),
    "lying header": (png_claiming_size(3000, 3000), "corrupt or truncated"),
    "truncated png": (image_bytes((64, 64))[:200], "corrupt or truncated"),
    "truncated jpeg": (image_bytes((64, 64), fmt="JPEG")[:300], "corrupt or truncated"),
    "corrupt png body": (image_bytes((64, 64))[:60] + b"\x00" * 500, "corrupt or truncated"),
    "wrong magic bytes": (b"\x89PNX" + image_bytes()[4:], "not a decodable image"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>', "not a decodable image"),
    "html": (b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", "not a decodable image"),
    "pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "not a decodable image"),
    "empty": (b"", "at least 1 character"),
}


@pytest.mark.parametrize("name", REFUSED_IMAGES)
def test_broken_images_are_clear_422s(server, name):
    data, message = REFUSED_IMAGES[name]
    response = edit_status(server, data)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "input_image"] and message in error["msg"], error


# --- requests -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"prompt": "x", "input_image": "aGk=", "guidance": NaN}', "application/json"),
        (b'{"prompt": "x", "input_image": "aGk=", "guidance": Infinity}', "application/json"),
        (b'{"prompt": "x", "input_image": "aGk=", "steps": -Infinity}', "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json"),
        (b'{"prompt": ["x"], "input_image": {"a": 1}, "seed": [1], "steps": {"n": 2}}', "application/json"),
        (b'"just a string"', "application/json"),
        (b"null", "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"prompt=x&input_image=aGk=", "application/x-www-form-urlencoded"),
        (b'{"prompt": "x", "input_image": "aGk="}', "text/plain"),
        (b"", "application/json"),
    ],
)
def test_malformed_requests_are_4xx(server, raw, content_type):
    response = post(server, content=raw, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    assert "detail" in response.json()


def test_duplicate_keys_take_the_last_value_like_any_json_parser(server):
    raw = b'{"prompt": "x", "input_image": "%s", "steps": 999, "steps": 1}' % b64(image_bytes()).encode()
    assert post(server, content=raw, headers={"content-type": "application/json"}).status_code == 200


@pytest.mark.parametrize(
    "prompt",
    ["Ändere 'KELLAR' zu 'SÜMITH' 🎩", "把标志上的字改成‘你好’", "\u202eRTL override\u202c", "tab\tand\nnewline",
     "zero\u200bwidth", "emoji 👩‍👩‍👧‍👦 family", "\x00null\x01control\x7f", "\ud7ff edge of BMP"],
)  # fmt: skip
def test_any_unicode_prompt_is_accepted_and_returned_intact(server, prompt):
    response = post(server, {"prompt": prompt, "input_image": b64(image_bytes()), "steps": 1})
    assert response.status_code == 200, response.text
    with server.client() as client:
        assert wait_for(client, response.json()["id"])["result"]["prompt"] == prompt


def test_lone_surrogates_are_a_clear_error(server):
    raw = b'{"prompt": "\\ud800", "input_image": "%s"}' % b64(image_bytes()).encode()
    response = post(server, content=raw, headers={"content-type": "application/json"})
    assert response.status_code in (200, 422)  # accepted as text, or refused with a message: never a 500


def test_huge_prompt_is_422_not_processed(server):
    response = post(server, {"prompt": "word " * 200_000, "input_image": b64(image_bytes())})
    assert response.status_code == 422  # over the 4000-character limit (the 1 MB body is within the 2 MiB limit)


def test_ids_reveal_nothing(server):
    ids = [post(server, {"prompt": "x", "input_image": b64(image_bytes()), "steps": 1}).json()["id"] for _ in range(3)]
    import uuid

    assert all(uuid.UUID(task_id).version == 4 for task_id in ids)  # random, not sequential or time-based


def test_cors_is_off_by_default(server):
    with server.client() as client:
        preflight = client.options(ROUTE, headers={"Origin": "https://evil.example",
                                                   "Access-Control-Request-Method": "POST"})  # fmt: skip
        simple = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in simple.headers


def test_logs_hold_no_secrets_or_image_data(start_server):
    server = start_server(url_allowlist="127.0.0.1")
    image = b64(image_bytes((48, 48)))
    with server.client() as client:
        task_id = client.post(ROUTE, json={"prompt": "x", "input_image": image, "steps": 1,
                                           "webhook_url": "http://127.0.0.1:9/hook",
                                           "webhook_secret": "very-secret-value"}).json()["id"]  # fmt: skip
        sample = wait_for(client, task_id)["result"]["sample"]
        assert httpx.get(sample).status_code == 200  # a logged request for the signed URL
        client.post(ROUTE, json={"prompt": "x", "input_image": image[:-10] + "!!!!!!!!!!"})
    time.sleep(1)
    server.stop()
    log = server.log()
    signature = sample.split("sig=")[1]
    assert "/results/" in log  # the download was logged …
    for secret in ("test-key-alice", "very-secret-value", image[:40], signature):
        assert secret not in log  # … without its signature
    signing_secret = (server.data_dir / "signing-secret").read_text().strip()
    assert signing_secret not in log


# --- URLs -----------------------------------------------------------------------------------------------------------


class ImageHost:
    """A real HTTP server with hostile behaviours, one per path."""

    def __init__(self):
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                host.requests.append(self.path)
                routes = {
                    "/ok.png": (200, {"Content-Type": "image/png"}, image_bytes((80, 60))),
                    "/redirect": (302, {"Location": "/ok.png"}, b""),
                    "/loop": (302, {"Location": "/loop"}, b""),
                    "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
                    "/html": (200, {"Content-Type": "text/html"}, b"<html></html>"),
                    "/big": (200, {"Content-Type": "image/png"}, b"\x89PNG" + b"\x00" * (3 * 1024 * 1024)),
                    "/missing": (404, {}, b""),
                }
                if self.path == "/slow":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    for _ in range(100):
                        self.wfile.write(b"\x00")
                        self.wfile.flush()
                        time.sleep(0.2)
                    return
                status, headers, body = routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def image_host():
    host = ImageHost()
    yield host
    host.server.shutdown()


@pytest.fixture(scope="module")
def url_server(tmp_path_factory):
    from conftest import ServerProcess

    instance = ServerProcess(tmp_path_factory.mktemp("urls"), url_allowlist="127.0.0.1", fetch_timeout_s=3,
                             max_body_bytes=2 * 1024 * 1024).start()  # fmt: skip
    yield instance
    instance.stop()


def test_image_url_is_fetched(url_server, image_host):
    for path in ("/ok.png", "/redirect"):
        response = post(url_server, {"prompt": "x", "input_image": image_host.base + path, "steps": 1})
        assert response.status_code == 200, response.text
        with url_server.client() as client:
            assert wait_for(client, response.json()["id"])["status"] == "Ready"


@pytest.mark.parametrize(
    ("path", "message"),
    [("/html", "content-type is text/html"), ("/big", "larger than"), ("/missing", "HTTP 404"),
     ("/loop", "redirected more than"), ("/to-metadata", "non-public address"), ("/slow", "longer than")],
)  # fmt: skip
def test_hostile_image_urls_are_422(url_server, image_host, path, message):
    started = time.monotonic()
    response = post(url_server, {"prompt": "x", "input_image": image_host.base + path})
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"][0]["msg"]
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:1/x.png", "http://localhost/x.png", "http://10.0.0.1/x.png", "http://192.168.1.1/x.png",
     "http://169.254.169.254/latest/meta-data/", "http://[::1]/x.png", "http://0.0.0.0/x.png",
     "http://[::ffff:127.0.0.1]/x.png", "http://2130706433/x.png", "http://user:pw@example.com/x.png",
     "file:///etc/passwd"],
)  # fmt: skip
def test_private_and_odd_urls_are_refused_by_default(server, url):
    response = post(server, {"prompt": "x", "input_image": url})
    assert response.status_code == 422, response.text
