"""Query: the index behind ``--where``/``--order-by`` (run KPIs and tags, plan params and
config values by dotted path), saved views, and each run's recorded size.

The backfill indexes every existing run, plan version and config version with the same
functions the writers use (``runyard.registry.search_index``).

Revision ID: 0005_query_index
Revises: 0004_skip_reasons
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_query_index"
down_revision = "0004_skip_reasons"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("size_bytes", sa.BigInteger(), nullable=True))
    op.create_table(
        "run_kpis",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("plan_version_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_run_kpis"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("value_key", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_tags"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "plan_params",
        sa.Column("plan_version_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("num", sa.Float(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("plan_version_id", "name", name="pk_plan_params"),
    )
    op.create_table(
        "config_values",
        sa.Column("config_version_id", sa.String(64), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("num", sa.Float(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("config_version_id", "path", name="pk_config_values"),
    )
    op.create_table(
        "saved_views",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("where_text", sa.Text(), nullable=False),
        sa.Column("order_by", sa.Text(), nullable=False),
        sa.Column("columns", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_saved_views"),
    )
    # Filled before the indexes are made: one sort per index instead of a btree insert
    # per row.
    from runyard.registry.search_index import reindex_all

    reindex_all(op.get_bind())
    op.create_index("ix_run_kpis_value", "run_kpis", ["name", "value", "started_at", "run_id"])
    op.create_index(
        "ix_run_kpis_plan",
        "run_kpis",
        ["name", "plan_version_id", "value", "started_at", "run_id"],
    )
    op.create_index("ix_run_tags_value", "run_tags", ["key", "value_key", "started_at", "run_id"])
    op.create_index("ix_plan_params_name", "plan_params", ["name", "num"])
    op.create_index("ix_runs_location_size", "runs", ["location", "size_bytes"])
    op.create_index("ix_config_values_path", "config_values", ["path", "num"])


def downgrade() -> None:
    for table in ("saved_views", "config_values", "plan_params", "run_tags", "run_kpis"):
        op.drop_table(table)
    op.drop_index("ix_runs_location_size", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("size_bytes")
