"""The storage backends keep one contract: a local folder and an S3-compatible store (moto's server)."""

from __future__ import annotations

import pytest

from openkontext.storage import LocalStorage, S3Storage
from s3 import CREDENTIALS, s3_server  # noqa: F401  (a fixture)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path, monkeypatch):
    if request.param == "local":
        return LocalStorage(tmp_path / "storage")
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    server = request.getfixturevalue("s3_server")
    return S3Storage(server.bucket(), prefix="openkontext", endpoint_url=server.url)


def test_a_blob_comes_back_whole(storage):
    data = bytes(range(256)) * 4000  # 1 MB, every byte value
    storage.put("job-1/sample.png", data)
    assert storage.exists("job-1/sample.png") and storage.get("job-1/sample.png") == data
    storage.put("job-1/sample.png", b"replaced")
    assert storage.get("job-1/sample.png") == b"replaced"


def test_a_missing_blob_is_file_not_found(storage):
    assert not storage.exists("job-1/sample.png")
    with pytest.raises(FileNotFoundError):
        storage.get("job-1/sample.png")


def test_deleting_a_jobs_folder_leaves_the_others(storage):
    for key in ("job-1/input-0.png", "job-1/sample.jpeg", "job-10/input-0.png", "job-2/preview.jpg"):
        storage.put(key, key.encode())
    storage.delete_prefix("job-1")
    assert [storage.exists(key) for key in ("job-1/input-0.png", "job-1/sample.jpeg", "job-10/input-0.png",
                                            "job-2/preview.jpg")] == [False, False, True, True]  # fmt: skip
    storage.delete_prefix("job-3")  # nothing there: no error


@pytest.mark.parametrize("key", ["../etc/passwd", "job/../../x", "/abs", "job//x", ""])
def test_keys_cannot_leave_the_storage(storage, key):
    with pytest.raises(ValueError):
        storage.put(key, b"x")


def test_an_object_store_has_room(storage):
    assert storage.free_bytes() > 0
