"""Plan & Run: jobs, content-addressed scenario data, aggregates.

Revision ID: 0003_jobs
Revises: 0002_lifecycle
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_jobs"
down_revision = "0002_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scenario_data",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_scenario_data"),
    )
    with op.batch_alter_table("scenarios") as batch:
        batch.add_column(sa.Column("data_digest", sa.String(64), nullable=True))
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("plan_version_id", sa.String(64), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("run_id", sa.String(128), nullable=True),
        sa.Column("worker_id", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["plan_version_id"],
            ["plan_versions.plan_version_id"],
            name="fk_jobs_plan_version_id_plan_versions",
        ),
        sa.PrimaryKeyConstraint("job_id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_queue", "jobs", ["status", "created_at", "job_id"])
    op.create_index("ix_jobs_created", "jobs", ["created_at", "job_id"])
    op.create_index("ix_jobs_plan", "jobs", ["plan_version_id", "created_at", "job_id"])
    op.create_index("ix_jobs_type", "jobs", ["type", "created_at", "job_id"])
    op.create_table(
        "aggregates",
        sa.Column("aggregate_id", sa.String(64), nullable=False),
        sa.Column("plan_version_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_version_id"],
            ["plan_versions.plan_version_id"],
            name="fk_aggregates_plan_version_id_plan_versions",
        ),
        sa.PrimaryKeyConstraint("aggregate_id", name="pk_aggregates"),
    )
    op.create_index(
        "ix_aggregates_plan", "aggregates", ["plan_version_id", "created_at", "aggregate_id"]
    )


def downgrade() -> None:
    op.drop_table("aggregates")
    op.drop_table("jobs")
    with op.batch_alter_table("scenarios") as batch:
        batch.drop_column("data_digest")
    op.drop_table("scenario_data")
