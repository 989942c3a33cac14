"""The one Alembic history of the registry, for SQLite and PostgreSQL alike."""
