"""``openkontext db``: the job store's schema — where it is, and bringing it to this version's (Alembic)."""

from __future__ import annotations

import contextlib

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from ..config import Settings
from . import schema
from .store import make_db_engine

app = typer.Typer(help="The job store's schema (Alembic migrations): status and upgrade.", no_args_is_help=True)


def _engine():
    settings = Settings()
    url = settings.resolved_database_url
    where = make_url(url).render_as_string(hide_password=True)
    with _reported(where):  # an unwritable data dir is a one-line error too
        if settings.database_url is None:  # the data dir's SQLite file, as `serve` would create it
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return make_db_engine(url), where


@contextlib.contextmanager
def _reported(where: str):
    """The database's refusal as one line and exit 2, not a traceback."""
    try:
        yield
    except (DBAPIError, OSError) as exc:
        typer.echo(f"cannot use the job database {where}: {getattr(exc, 'orig', None) or exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def status() -> None:
    """Print the database's schema revision and this version's; exit 1 when they differ."""
    engine, where = _engine()
    with _reported(where):
        problem = schema.problem(engine)
        typer.echo(f"{where}: revision {schema.current(engine) or 'none'}, this version's {schema.head()}")
    engine.dispose()
    if problem:
        typer.echo(problem, err=True)
        raise typer.Exit(1)


@app.command()
def upgrade() -> None:
    """Bring the schema to this version's (OPENKONTEXT_DATABASE_URL, or the data dir's SQLite file): once per
    upgrade, before the new version's servers start."""
    engine, where = _engine()
    with _reported(where):
        before = schema.current(engine)
        schema.upgrade(engine)
        typer.echo(f"{where}: revision {before or 'none'} -> {schema.current(engine)}")
    engine.dispose()
