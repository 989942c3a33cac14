"""Engines and transactions for SQLite and PostgreSQL.

SQLite: WAL (set once, by the migration step, because it is persistent), a busy
timeout and foreign keys on every connection, and writes in ``BEGIN IMMEDIATE``
transactions. A deferred transaction that later wants to write cannot wait on
the busy handler in WAL mode and fails at once with "database is locked"; taking
the write lock at BEGIN makes concurrent writers queue instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from runyard.errors import Invalid

SQLITE_BUSY_TIMEOUT_MS = 60_000
_BEGIN_OPTION = "runyard_begin"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for in-memory or non-SQLite URLs)."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def redact(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with runyard's connection settings applied."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise Invalid(f"not a valid database URL: {url!r} ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True)
    raise Invalid(
        f"unsupported database {parsed.get_backend_name()!r} in {redact(url)}: "
        "use a SQLite file path or a postgresql:// URL"
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (the pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        # LIKE is case-sensitive, as on PostgreSQL (runyard.registry.run_query).
        cursor.execute("PRAGMA case_sensitive_like = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def read_scope(engine: Engine) -> Iterator[Connection]:
    """A read transaction (a consistent snapshot on both engines)."""
    with engine.connect() as conn, conn.begin():
        yield conn


@contextmanager
def write_scope(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed on normal exit, rolled back on an exception."""
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn
