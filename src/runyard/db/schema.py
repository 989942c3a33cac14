"""Is this database a current runyard registry? And the one way to make it one.

Every command but ``init`` and ``db upgrade`` calls ``verify_registry`` first and
refuses a stale schema, a newer schema, a database of another yard, or a file
that is not a runyard registry at all, naming the command that fixes it.
The known revisions are listed here (a test checks them against the Alembic
history) so that this check does not have to import Alembic on every command.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from runyard.db.engine import is_sqlite, read_scope, redact, sqlite_path, write_scope
from runyard.db.tables import REGISTRY_TABLES, runyard_meta
from runyard.errors import ForeignRegistry, NotARegistry, RegistryStateError, SchemaOutdated

VERSION_TABLE = "runyard_alembic_version"
REVISIONS = (
    "0001_initial",
    "0002_lifecycle",
    "0003_jobs",
    "0004_skip_reasons",
    "0005_query_index",
    "0006_remote",
)
HEAD_REVISION = REVISIONS[-1]
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
UPGRADE_HINT = "run `runyard db upgrade` to bring it to the current schema"


@dataclass(frozen=True)
class RegistryState:
    """What a database holds: its revision (None when it has no runyard schema yet)."""

    url: str
    revision: str | None
    yard_id: str | None
    exists: bool = True

    @property
    def is_current(self) -> bool:
        return self.revision == HEAD_REVISION


def _describe(url: str) -> str:
    path = sqlite_path(url)
    return str(path) if path else redact(url)


def inspect_registry(engine: Engine) -> RegistryState:
    """Read the registry's revision and yard id; raise NotARegistry for anything else."""
    url = str(engine.url.render_as_string(hide_password=False))
    where = _describe(url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return RegistryState(url, None, None, exists=False)  # connecting would create it
    try:
        with read_scope(engine) as conn:
            tables = set(inspect(conn).get_table_names())
            if "runyard_meta" not in tables:
                ours = tables & set(REGISTRY_TABLES) | (tables & {VERSION_TABLE})
                if ours or (is_sqlite(url) and tables):
                    raise NotARegistry(
                        f"{where} is not a runyard registry (it has tables {sorted(tables)[:5]} "
                        "but no runyard_meta)",
                        hint="point RUNYARD_DB or db.url at the yard's registry",
                    )
                return RegistryState(url, None, None)
            revision = None
            if VERSION_TABLE in tables:
                revision = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
            yard_id = conn.execute(
                select(runyard_meta.c.value).where(runyard_meta.c.key == "yard_id")
            ).scalar()
            return RegistryState(url, revision, yard_id)
    except OperationalError as exc:
        raise RegistryStateError(f"cannot open the registry at {where}: {exc.orig}") from None
    except DBAPIError as exc:
        raise NotARegistry(
            f"{where} is not a runyard registry ({exc.orig})",
            hint="point RUNYARD_DB or db.url at the yard's registry",
        ) from None


def verify_registry(engine: Engine, yard_id: str) -> RegistryState:
    """Refuse unless the database is this yard's registry at the current schema."""
    url = engine.url.render_as_string(hide_password=False)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise SchemaOutdated(
            f"the registry database {path} does not exist",
            hint="run `runyard db upgrade` to create it",
        )
    state = inspect_registry(engine)
    where = _describe(url)
    if state.revision is None:
        raise SchemaOutdated(f"{where} holds no runyard registry yet", hint=UPGRADE_HINT)
    if state.revision not in REVISIONS:
        raise SchemaOutdated(
            f"{where} has schema revision {state.revision!r}, made by a newer runyard "
            f"(this one knows up to {HEAD_REVISION!r})",
            hint="upgrade the runyard package",
        )
    if state.revision != HEAD_REVISION:
        raise SchemaOutdated(
            f"{where} has schema revision {state.revision!r}; this runyard needs {HEAD_REVISION!r}",
            hint=UPGRADE_HINT,
        )
    if state.yard_id and state.yard_id != yard_id:
        raise ForeignRegistry(
            f"{where} is the registry of another yard ({state.yard_id}); this yard is {yard_id}",
            hint="point RUNYARD_DB or db.url at this yard's own registry",
        )
    return state


def upgrade_registry(engine: Engine, yard_id: str) -> tuple[str | None, str]:
    """Migrate to the current schema and stamp the yard id; return (before, after)."""
    from alembic import command
    from alembic.config import Config

    before = inspect_registry(engine)
    if before.revision is not None and before.revision not in REVISIONS:
        raise SchemaOutdated(
            f"the registry has schema revision {before.revision!r}, made by a newer runyard",
            hint="upgrade the runyard package",
        )
    if before.yard_id and before.yard_id != yard_id:
        raise ForeignRegistry(
            f"{_describe(before.url)} is the registry of another yard ({before.yard_id})"
        )
    if is_sqlite(before.url):
        # Persistent: set once here, so readers never block the writer. Outside any
        # transaction, hence on the raw DBAPI connection (SQLAlchemy would BEGIN first).
        raw = engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA journal_mode = WAL")
        finally:
            raw.close()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        conn.execution_options(runyard_begin="IMMEDIATE")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()
    with write_scope(engine) as conn:
        if before.yard_id is None:
            conn.execute(runyard_meta.insert().values(key="yard_id", value=yard_id))
            conn.execute(
                runyard_meta.insert().values(
                    key="created_at", value=datetime.now(UTC).isoformat(timespec="seconds")
                )
            )
    return before.revision, HEAD_REVISION
