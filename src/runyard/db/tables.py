"""The registry's tables (SQLAlchemy Core), and nothing else.

Times are naive UTC. Every run carries its plan version, config version and
scenario as indexed columns; each list filter has an index that ends in
(started_at, run_id), the keyset of "newest first", so any page of a filtered
list is one index seek.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(64)

runyard_meta = Table(
    "runyard_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

scenarios = Table(
    "scenarios",
    metadata,
    Column("scenario_id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("locked", Boolean, nullable=False, default=False),
    Column("locked_reason", Text, nullable=True),
    Column("locked_at", DateTime, nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("data_digest", String(64), nullable=True),  # scenario_data.digest
)

# Scenario data, content-addressed: the canonical JSON and its sha256. A scenario points
# at one snapshot, so the data a plan ran on can always be found again.
scenario_data = Table(
    "scenario_data",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("content", Text, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

config_versions = Table(
    "config_versions",
    metadata,
    Column("config_version_id", ID, primary_key=True),
    Column("name", String(200), nullable=True),
    Column("content", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_config_versions_created", "created_at", "config_version_id"),
)

plan_versions = Table(
    "plan_versions",
    metadata,
    Column("plan_version_id", ID, primary_key=True),
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), nullable=False),
    Column(
        "config_version_id", ID, ForeignKey("config_versions.config_version_id"), nullable=False
    ),
    Column("params", Text, nullable=False),
    Column("label", String(200), nullable=True),
    Column("runner", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_plan_versions_created", "created_at", "plan_version_id"),
    Index("ix_plan_versions_scenario", "scenario_id", "created_at", "plan_version_id"),
    Index("ix_plan_versions_config", "config_version_id", "created_at", "plan_version_id"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("plan_version_id", ID, ForeignKey("plan_versions.plan_version_id"), nullable=True),
    Column("config_version_id", ID, ForeignKey("config_versions.config_version_id"), nullable=True),
    Column("scenario_id", ID, ForeignKey("scenarios.scenario_id"), nullable=True),
    Column("group_name", String(200), nullable=True),
    Column("status", String(16), nullable=False),
    Column("legacy", Boolean, nullable=False, default=False),
    Column("location", String(16), nullable=False, default="active"),
    Column("pinned", Boolean, nullable=False, default=False),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime, nullable=True),
    Column("summary", Text, nullable=False, default="{}"),
    Column("tags", Text, nullable=False, default="{}"),
    Column("error", Text, nullable=True),
    Column("archive_batch_id", ID, nullable=True),
    # The bytes of the run's folder, as last measured (finish, import, archive, restore):
    # the overview adds these up instead of walking the disk per page view.
    Column("size_bytes", BigInteger, nullable=True),
    # The token name that recorded the run over the API (None: recorded on the yard's host).
    Column("created_by", String(200), nullable=True),
    Index("ix_runs_started", "started_at", "run_id"),
    Index("ix_runs_plan", "plan_version_id", "started_at", "run_id"),
    Index("ix_runs_scenario", "scenario_id", "started_at", "run_id"),
    Index("ix_runs_config", "config_version_id", "started_at", "run_id"),
    Index("ix_runs_status", "status", "started_at", "run_id"),
    Index("ix_runs_group", "group_name", "started_at", "run_id"),
    Index("ix_runs_location", "location", "started_at", "run_id"),
    Index("ix_runs_legacy", "legacy", "started_at", "run_id"),
    Index("ix_runs_archive_batch", "archive_batch_id"),
    # The overview adds up recorded sizes by location from this index alone.
    Index("ix_runs_location_size", "location", "size_bytes"),
)

# The execution log: one row per executed archive, restore, recover, retention or purge.
executions = Table(
    "executions",
    metadata,
    Column("execution_id", ID, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("batch_id", ID, nullable=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("command", Text, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime, nullable=True),
    Column("moved", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("report_path", Text, nullable=True),
    # {"<guard reason code>": runs it kept} for archive and retention passes (JSON).
    Column("skip_reasons", Text, nullable=True),
    Column("who", String(200), nullable=True),  # user@host, as in CLEANUP_LOG.md
    Index("ix_executions_started", "started_at", "execution_id"),
    Index("ix_executions_batch", "batch_id"),
)

# Jobs: planning and aggregate work, claimed by workers (``runyard.jobs``).
jobs = Table(
    "jobs",
    metadata,
    Column("job_id", ID, primary_key=True),
    Column("type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("plan_version_id", ID, ForeignKey("plan_versions.plan_version_id"), nullable=True),
    Column("params", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime, nullable=True),
    Column("finished_at", DateTime, nullable=True),
    Column("duration_seconds", Float, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("run_id", String(128), nullable=True),
    Column("worker_id", String(128), nullable=True),
    Column("heartbeat_at", DateTime, nullable=True),
    Column("cancel_requested", Boolean, nullable=False),
    Column("result", Text, nullable=True),
    Column("created_by", String(200), nullable=True),  # the token name that queued it
    Index("ix_jobs_queue", "status", "created_at", "job_id"),
    Index("ix_jobs_created", "created_at", "job_id"),
    Index("ix_jobs_plan", "plan_version_id", "created_at", "job_id"),
    Index("ix_jobs_type", "type", "created_at", "job_id"),
)

# Aggregates: the files an aggregate job wrote for a plan version.
aggregates = Table(
    "aggregates",
    metadata,
    Column("aggregate_id", ID, primary_key=True),
    Column("plan_version_id", ID, ForeignKey("plan_versions.plan_version_id"), nullable=False),
    Column("job_id", ID, nullable=False),
    Column("path", Text, nullable=False),
    Column("run_count", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_aggregates_plan", "plan_version_id", "created_at", "aggregate_id"),
)

# --- The query index (``runyard.registry.search_index``) -------------------------------------
# Derived from runs.summary/tags, plan_versions.params and config_versions.content in the
# same transaction that writes those, so every summary is queryable at once. No foreign
# keys: the rows are rebuilt from their owners, never the other way round.

# One row per numeric value of a run's summary (nested keys dotted): "KPIs indexed as
# numbers". started_at and the plan are copied in so that "by a KPI, then newest first",
# over all runs or over one plan's, is one index scan. Keyed by (run_id, name) without a
# rowid on SQLite, so checking one run's KPI is one b-tree seek.
run_kpis = Table(
    "run_kpis",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("value", Float, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("plan_version_id", ID, nullable=True),
    Index("ix_run_kpis_value", "name", "value", "started_at", "run_id"),
    Index("ix_run_kpis_plan", "name", "plan_version_id", "value", "started_at", "run_id"),
    sqlite_with_rowid=False,
)

# One row per tag. value_key is the value's first 200 characters: what the index holds
# (a btree entry has a size limit; a tag value may be 1000 characters of 4 bytes).
run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
    Column("value_key", String(200), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Index("ix_run_tags_value", "key", "value_key", "started_at", "run_id"),
    sqlite_with_rowid=False,
)

# The scalar leaves of a plan version's params and of a config version's content, by
# dotted path: a number (bools as 1/0) in num, a string (or a list, as JSON) in text.
plan_params = Table(
    "plan_params",
    metadata,
    Column("plan_version_id", ID, primary_key=True),
    Column("name", String(500), primary_key=True),
    Column("num", Float, nullable=True),
    Column("text", Text, nullable=True),
    Index("ix_plan_params_name", "name", "num"),
)
config_values = Table(
    "config_values",
    metadata,
    Column("config_version_id", ID, primary_key=True),
    Column("path", String(500), primary_key=True),
    Column("num", Float, nullable=True),
    Column("text", Text, nullable=True),
    Index("ix_config_values_path", "path", "num"),
)

# Saved views of the runs list: a query, an order and the KPI columns, by name.
saved_views = Table(
    "saved_views",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("where_text", Text, nullable=False),
    Column("order_by", Text, nullable=False),  # JSON list of "field [asc|desc]"
    Column("columns", Text, nullable=False),  # JSON list of KPI names
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# Named API tokens: only a slow hash of each secret is kept (``runyard.registry.tokens``).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("secret_hash", String(300), nullable=False),  # scrypt: "scrypt$n$r$p$salt$hash"
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=True),
    Column("revoked_at", DateTime, nullable=True),
    Column("created_by", String(200), nullable=True),
    Column("last_used_at", DateTime, nullable=True),
)

# Idempotency keys of API creates: the first answer, replayed for a retried request
# (``runyard.registry.idempotency``). Stored in the create's own transaction.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(200), primary_key=True),  # token name ("" without tokens)
    Column("key", String(200), primary_key=True),
    Column("route", String(200), nullable=False),  # "POST /api/v1/runs"
    Column("request_digest", String(64), nullable=False),  # sha256 of the body
    Column("status_code", Integer, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_idempotency_created", "created_at"),
)

REGISTRY_TABLES = (
    "runyard_meta",
    "scenarios",
    "config_versions",
    "plan_versions",
    "runs",
    "executions",
    "scenario_data",
    "jobs",
    "aggregates",
    "run_kpis",
    "run_tags",
    "plan_params",
    "config_values",
    "saved_views",
    "api_tokens",
    "idempotency_keys",
)
