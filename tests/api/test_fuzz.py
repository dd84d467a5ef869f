"""Property-based fuzzing of every route, driven by the server's own OpenAPI schema: zero 5xx, still healthy after."""

from __future__ import annotations

import collections
import json
import urllib.parse

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import KEY_A, ServerProcess, b64, image_bytes

VALID_IMAGE = b64(image_bytes((32, 32)))
JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**70), st.floats(),
    st.text(max_size=50), st.sampled_from(["", " ", "NaN", "png", "jpeg", "http://127.0.0.1/x", VALID_IMAGE]),
)  # fmt: skip
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)  # fmt: skip

counts: collections.Counter = collections.Counter()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    instance = ServerProcess(tmp_path_factory.mktemp("fuzz"), workers=0, max_active_tasks=10**6,
                             max_body_bytes=512 * 1024).start()  # fmt: skip
    yield instance
    instance.stop()
    print(f"\nfuzz responses by status: {dict(sorted(counts.items()))}")


def body_strategy(schema: dict) -> st.SearchStrategy[dict]:
    """Bodies built from the schema's field names: each field absent, plausible, or any JSON value at all."""
    fields = schema["properties"]
    plausible = {
        "prompt": st.text(max_size=30),
        "input_image": st.sampled_from([VALID_IMAGE, "aGVsbG8=", "data:image/png;base64," + VALID_IMAGE, "%%%"]),
        "seed": st.integers(min_value=-(2**65), max_value=2**65),
        "guidance": st.floats(allow_nan=True, allow_infinity=True),
        "steps": st.integers(min_value=-5, max_value=200),
        "safety_tolerance": st.integers(min_value=-2, max_value=8),
        "output_format": st.sampled_from(["jpeg", "png", "webp", "gif", ""]),
        "webhook_url": st.sampled_from(["https://example.com/h", "ftp://x", "http://10.0.0.1/", "x" * 3000]),
        "webhook_secret": st.text(max_size=20),
    }
    return st.fixed_dictionaries(
        {},
        optional={name: st.one_of(plausible.get(name, JSON_VALUES), JSON_VALUES) for name in fields}
        | {"extra_field": JSON_VALUES},
    )


def check(response: httpx.Response) -> None:
    counts[response.status_code] += 1
    assert response.status_code < 500, (response.status_code, response.text[:300])


@pytest.fixture(scope="module")
def openapi(fuzz_server):
    return httpx.get(f"{fuzz_server.url}/openapi.json").json()


def test_fuzz_submit(fuzz_server, openapi):
    schema = openapi["components"]["schemas"]["AlphaEditRequest"]
    post_routes = [path for path, item in openapi["paths"].items() if "post" in item]

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(route=st.sampled_from(post_routes), body=body_strategy(schema) | JSON_VALUES,
           key=st.sampled_from([KEY_A, KEY_A, "", "wrong"]))  # fmt: skip
    def run(route, body, key):
        response = httpx.post(f"{fuzz_server.url}{route}", content=json.dumps(body, allow_nan=True),
                              headers={"x-key": key, "content-type": "application/json"}, timeout=30)  # fmt: skip
        check(response)

    run()


def test_fuzz_raw_bodies_and_queries(fuzz_server, openapi):
    get_routes = [path for path, item in openapi["paths"].items() if "get" in item]

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(raw=st.binary(max_size=300), route=st.sampled_from(get_routes), text=st.text(max_size=40),
           content_type=st.sampled_from(["application/json", "text/plain", "multipart/form-data", ""]))  # fmt: skip
    def run(raw, route, text, content_type):
        headers = {"x-key": KEY_A, "content-type": content_type}
        check(httpx.post(f"{fuzz_server.url}/v1/flux-bagel-alpha", content=raw, headers=headers, timeout=30))
        segment = urllib.parse.quote(text, safe="") or "x"
        path = route.replace("{job_id}", segment).replace("{filename}", "sample.png")
        check(httpx.get(f"{fuzz_server.url}{path}", params={"id": text, "exp": text, "sig": text},
                        headers={"x-key": KEY_A}, timeout=30))  # fmt: skip

    run()
    assert httpx.get(f"{fuzz_server.url}/health").json()["status"] == "ok"
    assert sum(counts.values()) >= 500
