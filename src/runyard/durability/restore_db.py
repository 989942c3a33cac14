"""Put a backup back as the yard's SQLite registry: verify, keep the current one, swap.

``plan_restore`` verifies the file and changes nothing. ``apply_restore``, under the
yard lock, copies the file beside ``registry.db``, verifies that copy, keeps the
current database as ``registry.db.pre-restore-<ts>``, and swaps the copy in with one
``os.replace``; an older schema is then migrated. Run folders made after the backup
are not in the restored registry: the check that follows lists them.

The current database is switched out of WAL mode before the swap: that needs every
other connection to be closed, so a web server or worker still holding the registry
open makes restore-db refuse instead of leaving it writing to a replaced file.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import make_url

from runyard.config import Settings
from runyard.db.engine import make_engine, redact, sqlite_path
from runyard.db.schema import HEAD_REVISION, upgrade_registry
from runyard.durability.backup import (
    Check,
    Examination,
    examine_sqlite,
    fsync_dir,
    fsync_file,
    sha256_file,
)
from runyard.errors import Invalid, Refused, RunyardError
from runyard.lifecycle.lock import yard_lock
from runyard.yard import Yard

REPORT_SCHEMA_VERSION = 1
REBUILD_HINT = "run `runyard rebuild` to register the runs made since the backup"
_OTHERS_WAIT_SECONDS = 5.0
_MAX_LISTED_MISMATCHES = 100


class RestorePlan(BaseModel):
    """A verified file, ready to become the registry."""

    file: str
    registry: str
    sha256: str
    revision: str
    head_revision: str
    migrate: bool
    checks: list[Check]
    counts: dict[str, int]


class CheckSummary(BaseModel):
    """What the registry/disk check found after the swap (``available`` false without it)."""

    available: bool
    ok: bool | None = None
    counts: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    mismatches: list[dict[str, Any]] = []
    error: str | None = None
    hint: str | None = None


class RestoreReport(BaseModel):
    schema_version: int = REPORT_SCHEMA_VERSION
    file: str
    registry: str
    sha256: str
    verified: bool
    checks: list[Check]
    counts: dict[str, int]
    pre_restore: str | None
    pre_restore_note: str | None = None
    migrated: bool
    from_revision: str
    to_revision: str
    check: CheckSummary


def registry_file(settings: Settings) -> Path:
    """The yard's SQLite registry file; Refused (with the pg_restore command) otherwise."""
    path = sqlite_path(settings.db_url)
    if path is not None:
        return path
    if settings.db_url.startswith("sqlite"):
        raise Invalid("an in-memory registry cannot be restored")
    url = make_url(settings.db_url).set(drivername="postgresql")
    shown = redact(url.set(query={}).render_as_string(hide_password=True))
    raise Refused(
        "restore-db restores SQLite registries; this yard's registry is on PostgreSQL",
        hint=f"restore a `runyard backup` dump with pg_restore, then run `runyard db upgrade`: "
        f"pg_restore --clean --if-exists --no-owner --dbname '{shown}' "
        "backups/registry-<ts>.dump",
    )


def plan_restore(settings: Settings, file: Path) -> RestorePlan:
    """Verify ``file`` as a registry backup of this yard; change nothing.

    Raises Invalid (not a file, not SQLite, corrupt, not a runyard registry) or
    Refused (another yard's registry, a newer schema, a PostgreSQL yard).
    """
    live = registry_file(settings)
    if not file.exists():
        raise Invalid(f"no such file: {file}")
    if not file.is_file():
        raise Invalid(f"{file} is not a file")
    if live.exists() and file.resolve() == live.resolve():
        raise Invalid(f"{file} is the yard's registry itself", hint="name a backup file")
    exam = examine_sqlite(file, settings.yard_id)
    _refuse_failed(file, exam)
    assert exam.revision is not None  # a passed "revision" check
    return RestorePlan(
        file=str(file.absolute()),
        registry=str(live),
        sha256=sha256_file(file),
        revision=exam.revision,
        head_revision=HEAD_REVISION,
        migrate=exam.revision != HEAD_REVISION,
        checks=exam.checks,
        counts=exam.counts,
    )


def _refuse_failed(file: Path, exam: Examination) -> None:
    failed = exam.failed
    if failed is None:
        return
    message = f"{file} cannot be restored: {failed.detail}"
    if failed.name == "yard":
        raise Refused(message, hint="restore a backup of this yard (see `runyard backup --list`)")
    if failed.name == "revision":
        raise Refused(message, hint="restore it with the newer runyard that made it")
    raise Invalid(message, hint="name a backup made by `runyard backup`")


def apply_restore(settings: Settings, plan: RestorePlan) -> RestoreReport:
    """Swap the planned file in as the registry, under the yard lock; then migrate and check.

    Raises Refused while another process holds the yard lock or keeps the registry
    open, and Invalid when the file no longer passes verification; nothing changes then.
    """
    file, live = Path(plan.file), Path(plan.registry)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with yard_lock(settings.yard_path, "restore-db"):
        temp = live.with_name(f".{live.name}.restore-{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            try:
                _copy_database(file, temp)
            except sqlite3.DatabaseError as exc:
                raise Invalid(f"{file} cannot be restored: cannot be copied: {exc}") from None
            exam = examine_sqlite(temp, settings.yard_id)
            _refuse_failed(file, exam)  # the file changed since it was planned
            assert exam.revision is not None
            with closing(sqlite3.connect(temp, isolation_level=None)) as conn:
                conn.execute("PRAGMA journal_mode = WAL")  # as `db upgrade` sets it
            fsync_file(temp)
            pre_restore, note = _swap(live, temp, stamp)
        finally:
            for leftover in (temp, *_side_files(temp)):
                leftover.unlink(missing_ok=True)
        migrated = False
        if exam.revision != HEAD_REVISION:
            engine = make_engine(settings.db_url)
            try:
                upgrade_registry(engine, settings.yard_id)
            finally:
                engine.dispose()
            migrated = True
    return RestoreReport(
        file=plan.file,
        registry=plan.registry,
        sha256=plan.sha256,
        verified=True,
        checks=exam.checks,
        counts=exam.counts,
        pre_restore=str(pre_restore) if pre_restore else None,
        pre_restore_note=note,
        migrated=migrated,
        from_revision=exam.revision,
        to_revision=HEAD_REVISION,
        check=check_after_restore(settings),
    )


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of ``source`` (with the backup API), as a single-file database."""
    with (
        closing(sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)) as src,
        closing(sqlite3.connect(target, isolation_level=None)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")


def _side_files(db: Path) -> list[Path]:
    return [db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


def _free_name(path: Path) -> Path:
    n = 1
    candidate = path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _swap(live: Path, temp: Path, stamp: str) -> tuple[Path | None, str | None]:
    """Keep the current database, then ``os.replace`` the copy onto it.

    Returns the kept copy's path (None when there was no database) and a note when it
    had to be copied as raw bytes because SQLite could not read it.
    """
    if not live.exists():
        os.replace(temp, live)
        fsync_dir(live.parent)
        return None, "there was no registry file to keep"
    pre = _free_name(live.with_name(f"{live.name}.pre-restore-{stamp}"))
    conn = sqlite3.connect(
        f"{live.absolute().as_uri()}?mode=rw",
        uri=True,
        isolation_level=None,
        timeout=_OTHERS_WAIT_SECONDS,
    )
    try:
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            # Leaving WAL mode needs every other connection closed: the test that
            # nobody keeps writing to the file about to be replaced.
            mode = str(conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                raise _in_use(live) from None
            conn.close()
            return _swap_unreadable(live, temp, pre), (
                f"the registry could not be read ({exc}): its files were copied as they were"
            )
        if mode.lower() != "delete":
            raise _in_use(live)
        replaced = False
        try:
            # A read transaction: no other writer commits while it is copied and replaced.
            # (The backup API cannot read through a connection holding a write lock.)
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            with closing(sqlite3.connect(pre, isolation_level=None)) as copy:
                conn.backup(copy)
            fsync_file(pre)
            for stale in _side_files(live):
                stale.unlink(missing_ok=True)
            os.replace(temp, live)
            replaced = True
            fsync_dir(live.parent)
        finally:
            if not replaced:
                _back_to_wal(conn)
                pre.unlink(missing_ok=True)
        return pre, None
    finally:
        conn.close()


def _swap_unreadable(live: Path, temp: Path, pre: Path) -> Path:
    """Keep a database SQLite cannot read (with its WAL) byte for byte; then replace it."""
    for source in (live, *_side_files(live)[:2]):
        if source.exists():
            target = pre.with_name(pre.name + source.name.removeprefix(live.name))
            data = source.read_bytes()
            with target.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    for stale in _side_files(live):
        stale.unlink(missing_ok=True)
    os.replace(temp, live)
    fsync_dir(live.parent)
    return pre


def _back_to_wal(conn: sqlite3.Connection) -> None:
    """Undo the switch out of WAL mode after a failed swap (best effort: it is only speed)."""
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error:
        pass


def _is_busy(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def _in_use(live: Path) -> Refused:
    return Refused(
        f"the registry {live} is open in another process (a web server, a worker, a pipeline?)",
        hint="stop whatever uses the yard, then run restore-db again",
    )


def check_after_restore(settings: Settings) -> CheckSummary:
    """Compare the restored registry with the run folders on disk (``durability.check``)."""
    try:
        from runyard.durability.check import check_yard
    except ImportError as exc:  # pragma: no cover - only while check is being written
        return CheckSummary(available=False, error=f"the registry/disk check is unavailable: {exc}")
    try:
        with Yard(settings, make_engine(settings.db_url)) as yard:
            report = check_yard(yard)
    except RunyardError as exc:
        return CheckSummary(available=True, error=exc.message)
    except OSError as exc:  # the restore is done; a check that cannot read says so
        return CheckSummary(available=True, error=f"{exc.strerror or exc}: {exc.filename or ''}")
    return CheckSummary(
        available=True,
        ok=report.ok,
        counts=dict(report.counts),
        by_kind={kind: n for kind, n in report.counts.items() if n},
        mismatches=[m.to_dict() for m in report.mismatches[:_MAX_LISTED_MISMATCHES]],
        hint=REBUILD_HINT if report.counts.get("unknown_folder") else None,
    )
