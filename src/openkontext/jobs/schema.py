"""The job store's schema, managed by Alembic (``jobs/migrations/``): bring a database to the latest revision, or say
how far behind it is.

A database made before migrations existed (tables, no ``alembic_version``) is taken as revision 0001, the schema
those versions created, and upgraded from there. On PostgreSQL an advisory lock makes concurrent upgrades (replicas
starting together) wait for each other instead of racing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"  # the schema of the versions before migrations
_UPGRADE_LOCK = 0x6F6B6A6F62  # pg_advisory_lock key: "okjob"


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def current(engine: Engine) -> str | None:
    """The database's revision; None for an empty database (or one made before migrations)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})")
        config = _config(connection)
        tables = set(inspect(connection).get_table_names())
        if "jobs" in tables and "alembic_version" not in tables:
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)


def problem(engine: Engine) -> str | None:
    """Why this code cannot run on the database's schema (it is behind, or ahead: a newer version migrated it), or
    None when it is at the head revision."""
    at, latest = current(engine), head()
    if at == latest:
        return None
    known = {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if at is not None and at not in known:
        return (f"the job store's schema is at revision {at}, which this version does not know (a newer version "
                f"migrated it); run that version, or this one against another database")  # fmt: skip
    return (f"the job store's schema is at revision {at or 'none (empty or pre-migration)'}, this version needs "
            f"{latest}: run 'openkontext db upgrade' (with the same OPENKONTEXT_DATABASE_URL)")  # fmt: skip
