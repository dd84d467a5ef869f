"""The job store under test: every store test runs on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import pytest

from openkontext.jobs.store import JobStore
from postgres import postgres  # noqa: F401  (the session's PostgreSQL server, a fixture)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres").database()
    store = JobStore(url)
    yield store
    store.close()
