"""``GET /v1/tasks`` pages by the keyset (created_at, id): tasks created at the same instant are neither skipped nor
repeated, a cursor that is not a ``next_cursor`` is a 422, and one owner's page is read from an index."""

from __future__ import annotations

import base64
import sqlite3

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from conftest import KEY_A, KEY_B

from openkontext.jobs.store import JobStore

PRO = "/v1/flux-kontext-pro"


def pages(client, limit: int) -> list[list[str]]:
    listed, cursor = [], None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor is not None else {})}
        response = client.get("/v1/tasks", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        listed.append([task["id"] for task in body["tasks"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return listed
        assert len(listed) < 50, "the cursor does not advance"


def test_tasks_created_at_the_same_instant_page_without_skip_or_repeat(start_server):
    server = start_server(workers=0)
    with server.client() as client, server.client(KEY_B) as bob:
        mine = [client.post(PRO, json={"prompt": f"t{i}"}).json()["id"] for i in range(13)]
        theirs = [bob.post(PRO, json={"prompt": f"b{i}"}).json()["id"] for i in range(3)]
        # The same created_at for runs of five of mine (pages of four end inside a run) and for all of Bob's.
        instants = {job_id: 1_700_000_000.25 + i // 5 for i, job_id in enumerate(mine)}
        instants.update({job_id: 1_700_000_001.25 for job_id in theirs})
        with sqlite3.connect(server.data_dir / "openkontext.db") as db:
            db.executemany("UPDATE jobs SET created_at = ? WHERE id = ?", [(t, i) for i, t in instants.items()])
        listed = pages(client, limit=4)
        bobs = pages(bob, limit=2)
    assert [len(page) for page in listed] == [4, 4, 4, 1]
    flat = [job_id for page in listed for job_id in page]
    assert sorted(flat) == sorted(mine)  # every task once: none skipped, none repeated, none of Bob's
    assert flat == sorted(mine, key=lambda job_id: (instants[job_id], job_id), reverse=True)  # newest first, then id
    assert sorted(job_id for page in bobs for job_id in page) == sorted(theirs)


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "nonsense",  # base64 alphabet, not a cursor
        "",
        "!!!!",
        "1700000000.25",  # the old bare created_at cursor
        cursor_of("1700000000.25"),  # no id
        cursor_of("1700000000.25 "),
        cursor_of("nan 0b7e2d5e-0c63-4c9b-9a3a-1a2b3c4d5e6f"),
        cursor_of("inf 0b7e2d5e-0c63-4c9b-9a3a-1a2b3c4d5e6f"),
        cursor_of("soon 0b7e2d5e-0c63-4c9b-9a3a-1a2b3c4d5e6f"),
        cursor_of("1700000000.25 ' OR 1=1 --"),
        cursor_of("1700000000.25 " + "a" * 37),
        cursor_of("1700000000.25 0b7e2d5e-0c63-4c9b-9a3a-1a2b3c4d5e6f") + "*",
        "x" * 129,  # over the length limit
    ],
)
def test_a_cursor_that_is_not_a_next_cursor_is_422(server, cursor):
    with server.client(KEY_A) as client:
        response = client.get("/v1/tasks", params={"cursor": cursor})
    assert response.status_code == 422, response.text


def test_a_well_formed_cursor_past_every_task_is_an_empty_last_page(server):
    with server.client(KEY_A) as client:
        body = client.get("/v1/tasks", params={"cursor": cursor_of("0.5 00000000-0000-0000-0000-000000000000")}).json()
    assert body == {"tasks": [], "next_cursor": None}


def test_one_owners_page_is_read_from_the_owner_created_index(tmp_path):
    """Both the first page and a later one: an index search in page order (no table scan, no sort)."""
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT") and "ORDER BY" in statement:
            statements.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        store.list_for("owner-a", limit=5)
        store.list_for("owner-a", limit=5, before=(1_700_000_000.25, "0b7e2d5e-0c63-4c9b-9a3a-1a2b3c4d5e6f"))
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert len(statements) == 2
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        for statement, parameters in statements:
            plan = " | ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + statement, parameters))
            assert "USING INDEX ix_jobs_owner_created (owner=?" in plan, plan
            assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan
