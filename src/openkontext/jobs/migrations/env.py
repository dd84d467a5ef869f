"""Alembic's entry point for the job store's migrations: run on the connection ``jobs/schema.py`` hands over."""

from alembic import context

from openkontext.jobs.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
