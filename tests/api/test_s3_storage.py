"""A server whose inputs and results live in an S3-compatible store (moto's server): results still come through
the API's signed, expiring URLs, and nothing lands in the data dir's storage folder."""

from __future__ import annotations

import time

import boto3
import pytest

from conftest import b64, image_bytes, wait_for
from s3 import CREDENTIALS, s3_server  # noqa: F401  (a fixture)


def test_results_in_an_object_store_are_served_signed_and_expire(start_server, s3_server, monkeypatch, tmp_path):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)  # the server process inherits them, as from its environment
    bucket = s3_server.bucket()
    server = start_server(storage_url=f"s3://{bucket}/openkontext", s3_endpoint_url=s3_server.url, delivery_ttl_s=2)
    with server.client() as client:
        task_id = client.post("/v1/flux-kontext-pro", json={"prompt": "make it blue", "input_image": b64(image_bytes()),
                                                            "steps": 2, "output_format": "png"}).json()["id"]  # fmt: skip
        sample = wait_for(client, task_id)["result"]["sample"]
        downloaded = client.get(sample)
        assert downloaded.status_code == 200 and downloaded.content.startswith(b"\x89PNG")
        assert client.get(sample.replace("sig=", "sig=0")).status_code == 403
        time.sleep(3)  # past the 2 s lifetime of the URL
        assert client.get(sample).status_code == 403
    s3 = boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1")
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"openkontext/{task_id}/input-0.png", f"openkontext/{task_id}/sample.png"]
    assert not any((server.data_dir / "storage").glob("*/*"))


def test_a_storage_url_that_is_not_s3_is_refused_at_start(start_server):
    with pytest.raises(RuntimeError, match="storage_url must look like s3://BUCKET"):
        start_server(storage_url="ftp://bucket")
