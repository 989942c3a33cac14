"""One Alembic history for both engines, and it builds exactly the tables in db/tables.py."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from runyard.db import schema
from runyard.db.tables import metadata


def test_known_revisions_match_the_alembic_history():
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(config)
    history = [rev.revision for rev in reversed(list(scripts.walk_revisions()))]
    assert tuple(history) == schema.REVISIONS
    assert scripts.get_current_head() == schema.HEAD_REVISION


def test_migrated_schema_matches_the_tables(yard):
    with yard.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": schema.VERSION_TABLE, "compare_type": True}
        )
        diffs = [
            d
            for d in compare_metadata(context, metadata)
            if not (
                isinstance(d, tuple)
                and d[0] == "remove_table"
                and d[1].name == schema.VERSION_TABLE
            )
        ]
    assert diffs == []
