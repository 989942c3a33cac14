"""The registry: meta, scenarios, config versions, plan versions, runs.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(64)


def upgrade() -> None:
    op.create_table(
        "runyard_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_runyard_meta"),
    )
    op.create_table(
        "scenarios",
        sa.Column("scenario_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("locked_reason", sa.Text(), nullable=True),
        sa.Column("locked_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scenario_id", name="pk_scenarios"),
        sa.UniqueConstraint("name", name="uq_scenarios_name"),
    )
    op.create_table(
        "config_versions",
        sa.Column("config_version_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("config_version_id", name="pk_config_versions"),
    )
    op.create_index(
        "ix_config_versions_created", "config_versions", ["created_at", "config_version_id"]
    )
    op.create_table(
        "plan_versions",
        sa.Column("plan_version_id", ID, nullable=False),
        sa.Column("scenario_id", ID, nullable=False),
        sa.Column("config_version_id", ID, nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("runner", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("plan_version_id", name="pk_plan_versions"),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name="fk_plan_versions_scenario_id_scenarios",
        ),
        sa.ForeignKeyConstraint(
            ["config_version_id"],
            ["config_versions.config_version_id"],
            name="fk_plan_versions_config_version_id_config_versions",
        ),
    )
    op.create_index("ix_plan_versions_created", "plan_versions", ["created_at", "plan_version_id"])
    op.create_index(
        "ix_plan_versions_scenario",
        "plan_versions",
        ["scenario_id", "created_at", "plan_version_id"],
    )
    op.create_index(
        "ix_plan_versions_config",
        "plan_versions",
        ["config_version_id", "created_at", "plan_version_id"],
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("plan_version_id", ID, nullable=True),
        sa.Column("config_version_id", ID, nullable=True),
        sa.Column("scenario_id", ID, nullable=True),
        sa.Column("group_name", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("legacy", sa.Boolean(), nullable=False),
        sa.Column("location", sa.String(16), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["plan_version_id"],
            ["plan_versions.plan_version_id"],
            name="fk_runs_plan_version_id_plan_versions",
        ),
        sa.ForeignKeyConstraint(
            ["config_version_id"],
            ["config_versions.config_version_id"],
            name="fk_runs_config_version_id_config_versions",
        ),
        sa.ForeignKeyConstraint(
            ["scenario_id"],
            ["scenarios.scenario_id"],
            name="fk_runs_scenario_id_scenarios",
        ),
    )
    for name, column in [
        ("ix_runs_plan", "plan_version_id"),
        ("ix_runs_scenario", "scenario_id"),
        ("ix_runs_config", "config_version_id"),
        ("ix_runs_status", "status"),
        ("ix_runs_group", "group_name"),
        ("ix_runs_location", "location"),
        ("ix_runs_legacy", "legacy"),
    ]:
        op.create_index(name, "runs", [column, "started_at", "run_id"])
    op.create_index("ix_runs_started", "runs", ["started_at", "run_id"])


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("plan_versions")
    op.drop_table("config_versions")
    op.drop_table("scenarios")
    op.drop_table("runyard_meta")
