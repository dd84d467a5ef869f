"""`openkontext db status|upgrade` on a real PostgreSQL server, and a server that shares a database refusing to
start on a schema that is not its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from openkontext.jobs import schema

from conftest import ServerProcess


def db(command: str, url: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKONTEXT_")}
    env.update(OPENKONTEXT_DATABASE_URL=url, OPENKONTEXT_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run([sys.executable, "-m", "openkontext.cli", "db", command], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


def test_status_then_upgrade_then_status(postgres, tmp_path):
    url = postgres.database()
    behind = db("status", url, tmp_path)
    assert behind.returncode == 1 and "openkontext db upgrade" in behind.stderr
    upgraded = db("upgrade", url, tmp_path)
    assert upgraded.returncode == 0 and f"none -> {schema.head()}" in upgraded.stdout, upgraded.stderr
    assert db("status", url, tmp_path).returncode == 0


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path):
    done = db("status", "postgresql+psycopg://nobody@127.0.0.1:1/none", tmp_path)
    assert done.returncode == 2 and "cannot use the job database" in done.stderr and "Traceback" not in done.stderr


def test_a_server_that_may_not_migrate_refuses_a_behind_schema(postgres, tmp_path):
    url = postgres.database()
    server = ServerProcess(tmp_path / "data", database_url=url, migrate_on_start=False)
    with pytest.raises(RuntimeError) as refused:
        server.start()
    assert "openkontext db upgrade" in str(refused.value)
    assert db("upgrade", url, tmp_path).returncode == 0
    ServerProcess(tmp_path / "data", database_url=url, migrate_on_start=False).start().stop()  # now it starts
