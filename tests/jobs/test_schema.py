"""The job store's schema under Alembic, on SQLite and PostgreSQL: migrations build exactly the models' schema, a
database from before migrations is adopted and upgraded with its rows, and a mismatch is refused with what to run."""

from __future__ import annotations

import json
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from openkontext.jobs import schema
from openkontext.jobs.spec import JobSpec
from openkontext.jobs.store import Base, JobStore, SchemaMismatch, make_db_engine

SPEC = JobSpec("x", seed=1, steps=2, guidance=2.5, safety_tolerance=2, output_format="jpeg")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("postgres").database()


def test_migrations_build_exactly_the_models_schema(empty_url):
    store = JobStore(empty_url)
    try:
        with store.db.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        assert schema.current(store.db) == schema.head() and schema.problem(store.db) is None
    finally:
        store.close()


def test_a_database_from_before_migrations_is_adopted_with_its_rows(empty_url):
    engine = make_db_engine(empty_url)
    schema.upgrade(engine, schema.BASELINE)  # what create_all made before migrations: revision 0001 …
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))  # … without Alembic's bookkeeping
        connection.execute(  # a task the old version stored
            text("INSERT INTO jobs (id, owner, route, status, prompt, params, seed, input_keys, progress, step, "
                 "cancel_requested, created_at, expires_at, attempts) VALUES ('old-job', 'key-a', 'r', 'queued', "
                 "'x', :params, '1', '[]', 0, 0, false, 1, 9999999999, 0)"),
            {"params": json.dumps(SPEC.params())},
        )
    engine.dispose()
    store = JobStore(empty_url)
    try:
        assert schema.current(store.db) == schema.head()
        indexes = {index["name"] for index in inspect(store.db).get_indexes("jobs")}
        assert "ix_jobs_owner_created" in indexes  # added by 0002
        assert store.get("old-job", "key-a").spec == SPEC
    finally:
        store.close()


def test_without_migrating_a_behind_or_unknown_schema_is_refused(empty_url):
    with pytest.raises(SchemaMismatch, match="openkontext db upgrade"):
        JobStore(empty_url, migrate=False)
    JobStore(empty_url).close()  # migrates
    JobStore(empty_url, migrate=False).close()  # at head: accepted
    with make_db_engine(empty_url).begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaMismatch, match="newer version"):
        JobStore(empty_url, migrate=False)


def test_replicas_starting_together_upgrade_once(postgres):
    url = postgres.database()
    errors: list[Exception] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            JobStore(url).close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    engine = make_db_engine(url)
    assert schema.current(engine) == schema.head()
    engine.dispose()
