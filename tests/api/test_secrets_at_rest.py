"""What the server writes to disk is private whatever the umask: the database holds prompts and webhook secrets."""

from __future__ import annotations

import os
import stat

from conftest import b64, image_bytes, wait_for

ROUTE = "/v1/flux-bagel-alpha"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_results_and_folders_are_private_under_a_permissive_umask(start_server, tmp_path):
    data_dir = tmp_path / "data"
    previous = os.umask(0o000)  # the server inherits the loosest umask there is
    try:
        server = start_server(data_dir, url_allowlist="127.0.0.1")
    finally:
        os.umask(previous)
    with server.client() as client:
        body = {"prompt": "x", "input_image": b64(image_bytes((48, 48))), "steps": 1,
                "webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": "whsec_c2VjcmV0"}  # fmt: skip
        task_id = client.post(ROUTE, json=body).json()["id"]
        assert wait_for(client, task_id)["status"] == "Ready"
        database = [data_dir / name for name in ("openkontext.db", "openkontext.db-wal", "openkontext.db-shm")]
        assert {path.name: oct(mode(path)) for path in database if path.exists()} == {
            path.name: "0o600" for path in database if path.exists()
        }
        assert (data_dir / "openkontext.db").exists()
        storage = data_dir / "storage"
        folders = [storage, *(path for path in storage.rglob("*") if path.is_dir())]
        files = [path for path in storage.rglob("*") if path.is_file()]
        assert len(files) >= 2  # the input and the result
        assert {str(path): oct(mode(path)) for path in folders} == {str(path): "0o700" for path in folders}
        assert {str(path): oct(mode(path)) for path in files} == {str(path): "0o600" for path in files}
        assert mode(data_dir / "signing-secret") == 0o600
