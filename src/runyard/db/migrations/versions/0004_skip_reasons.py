"""Web: the execution log keeps how many runs each guard kept (``skip_reasons``), which
``/metrics`` reports as runs skipped by guard reason, and who ran it (``who``), which
CLEANUP_LOG.md had and the table did not.

Revision ID: 0004_skip_reasons
Revises: 0003_jobs
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_skip_reasons"
down_revision = "0003_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("skip_reasons", sa.Text(), nullable=True))
        batch.add_column(sa.Column("who", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("who")
        batch.drop_column("skip_reasons")
