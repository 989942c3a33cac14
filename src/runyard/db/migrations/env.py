"""Alembic environment: always driven by runyard.db.schema with a live connection."""

from __future__ import annotations

from alembic import context

from runyard.db.schema import VERSION_TABLE
from runyard.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a bare `alembic` call
    raise RuntimeError("run migrations through `runyard db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
