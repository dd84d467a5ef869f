"""The task list pages by (created_at, id) per owner: an index that serves a page without a scan or a sort.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_owner_created", "jobs", ["owner", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_owner_created", table_name="jobs")
