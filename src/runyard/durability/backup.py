"""Backups of the registry: a verified copy in ``<yard>/backups``, with a JSON record beside it.

SQLite: the online backup API copies the live database in one step, inside one
read transaction, so writers (WAL mode) keep writing and the copy is one
consistent snapshot. PostgreSQL: ``pg_dump --format=custom`` of the schema that
holds the registry. Either way the copy is verified before it counts as a good
backup, and the outcome goes to a sidecar ``<backup>.json`` rather than into the
registry, so that the list of backups survives ``runyard restore-db``.

A backup that fails verification is kept for inspection and never pruned.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from runyard.config import Settings
from runyard.db.engine import SQLITE_BUSY_TIMEOUT_MS, is_sqlite, redact, sqlite_path
from runyard.db.schema import REVISIONS, VERSION_TABLE, inspect_registry
from runyard.db.tables import REGISTRY_TABLES
from runyard.errors import ForeignRegistry, Invalid, Refused, RegistryStateError, SchemaOutdated
from runyard.fsutil import write_atomic
from runyard.yard import Yard

BACKUPS_DIR = "backups"
SIDECAR_SCHEMA_VERSION = 1
SQLITE_HEADER = b"SQLite format 3\x00"
_NAME_RE = re.compile(r"^registry-(\d{8}T\d{6}Z)(?:-(\d+))?\.(db|dump)$")
_STAMP = "%Y%m%dT%H%M%SZ"


class Check(BaseModel):
    """One thing verified about a copy: what, whether it held, and what was seen."""

    name: str
    ok: bool
    detail: str


class BackupRecord(BaseModel):
    """A backup's sidecar ``<backup>.json``: what was copied, how, and what was verified."""

    schema_version: int = SIDECAR_SCHEMA_VERSION
    created_at: datetime
    finished_at: datetime
    seconds: float
    engine: Literal["sqlite", "postgresql"]
    source: str
    path: str
    bytes: int
    sha256: str
    verified: bool
    checks: list[Check]
    counts: dict[str, int] = {}
    runs_before: int | None = None
    runs_after: int | None = None
    revision: str | None = None
    yard_id: str | None = None
    sql_dump: str | None = None
    sql_dump_sha256: str | None = None
    tool: str | None = None

    @property
    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]


class BackupEntry(BaseModel):
    """A backup in the folder, as ``--list`` shows it."""

    path: str
    created_at: datetime
    bytes: int
    verified: bool
    engine: str | None
    sidecar: str | None
    sql_dump: str | None = None
    problem: str | None = None


class PruneResult(BaseModel):
    keep: int
    deleted: list[str]
    kept_failed: list[str]


class BackupReport(BaseModel):
    backup: BackupRecord
    sidecar: str
    prune: PruneResult | None = None


class Examination(BaseModel):
    """What an SQLite file turned out to be; ``checks`` stop at the first that fails."""

    path: str
    checks: list[Check]
    revision: str | None = None
    yard_id: str | None = None
    counts: dict[str, int] = {}

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name=name, ok=ok, detail=detail))
        return ok


def backups_dir(settings: Settings) -> Path:
    return settings.yard_path / BACKUPS_DIR


def run_backup(yard: Yard, *, sql: bool = False, keep: int | None = None) -> BackupReport:
    """Back up the yard's registry, verify the copy, record it; then prune to ``keep``.

    Args:
        sql: SQLite only: also write a gzip SQL dump of the copy (``.sql.gz``).
        keep: after a verified backup, delete the oldest verified backups beyond this many.

    A copy that fails verification is kept and reported (``backup.verified`` false);
    nothing is pruned then. Raises Refused, Invalid or RegistryStateError before
    copying anything when the registry cannot be backed up.
    """
    if keep is not None and keep < 1:
        raise Invalid(f"--keep must be at least 1, not {keep}")
    settings = yard.settings
    if sql and not is_sqlite(settings.db_url):
        raise Invalid("--sql is for SQLite registries; pg_dump's archive is already restorable")
    folder = backups_dir(settings)
    if is_sqlite(settings.db_url):
        live = _live_sqlite(yard)
        folder.mkdir(exist_ok=True)
        record = _backup_sqlite(settings, live, folder, sql)
    else:
        record = _backup_postgresql(yard, folder)
    sidecar = Path(record.path + ".json")
    write_atomic(sidecar, (record.model_dump_json(indent=2) + "\n").encode())
    fsync_dir(folder)
    prune = None
    if keep is not None and record.verified:
        prune = prune_backups(settings, keep, protect=Path(record.path))
    return BackupReport(backup=record, sidecar=str(sidecar), prune=prune)


# --- SQLite -------------------------------------------------------------------------------


def _live_sqlite(yard: Yard) -> Path:
    """The live registry file, after refusing one that is missing, foreign or too new."""
    path = sqlite_path(yard.settings.db_url)
    if path is None:
        raise Invalid("an in-memory registry cannot be backed up")
    if not path.is_file():
        raise RegistryStateError(
            f"the registry database {path} does not exist: nothing to back up",
            hint="run `runyard db upgrade` to create it",
        )
    _refuse_unusual_registry(yard)
    return path


def _refuse_unusual_registry(yard: Yard) -> None:
    state = inspect_registry(yard.engine)
    if state.revision is None:
        raise SchemaOutdated(f"{redact(yard.settings.db_url)} holds no runyard registry yet")
    if state.revision not in REVISIONS:
        raise SchemaOutdated(
            f"the registry has schema revision {state.revision!r}, made by a newer runyard",
            hint="back it up with that runyard, or upgrade the runyard package",
        )
    if state.yard_id and state.yard_id != yard.settings.yard_id:
        raise ForeignRegistry(
            f"the registry is another yard's ({state.yard_id}); this yard is "
            f"{yard.settings.yard_id}",
            hint="point RUNYARD_DB or db.url at this yard's own registry",
        )


def _backup_sqlite(settings: Settings, live: Path, folder: Path, sql: bool) -> BackupRecord:
    started = datetime.now(UTC)
    clock = time.monotonic()
    partial = _partial_name(folder, "db")
    try:
        with closing(_connect_rw(live)) as source:
            runs_before = _count_runs(source)
            with closing(sqlite3.connect(partial, isolation_level=None)) as copy:
                # One step (pages=-1): the whole copy is read in one read transaction,
                # so it is one snapshot and never restarts when writers commit.
                source.backup(copy, pages=-1)
                # A self-contained single file: no -wal/-shm beside the backup.
                copy.execute("PRAGMA journal_mode = DELETE")
            runs_after = _count_runs(source)
        fsync_file(partial)
        final = _publish(partial, folder, started, "db")
    finally:
        partial.unlink(missing_ok=True)
    exam = examine_sqlite(final, settings.yard_id)
    checks = list(exam.checks)
    copied = exam.counts.get("runs")
    if exam.ok:
        checks.append(
            Check(
                name="runs_count",
                ok=copied is not None and runs_before <= copied <= runs_after,
                detail=f"{runs_before} before <= {copied} in the copy <= {runs_after} after",
            )
        )
    verified = all(c.ok for c in checks)
    dump_path = dump_sha = None
    if sql and verified:
        dump = final.with_name(final.name.removesuffix(".db") + ".sql.gz")
        _write_sql_dump(final, dump)
        dump_path, dump_sha = str(dump), sha256_file(dump)
    return BackupRecord(
        created_at=started,
        finished_at=datetime.now(UTC),
        seconds=round(time.monotonic() - clock, 3),
        engine="sqlite",
        source=str(live),
        path=str(final),
        bytes=final.stat().st_size,
        sha256=sha256_file(final),
        verified=verified,
        checks=checks,
        counts=exam.counts,
        runs_before=runs_before,
        runs_after=runs_after,
        revision=exam.revision,
        yard_id=exam.yard_id,
        sql_dump=dump_path,
        sql_dump_sha256=dump_sha,
        tool=f"sqlite {sqlite3.sqlite_version}",
    )


def _connect_rw(path: Path) -> sqlite3.Connection:
    """A connection to an existing database (never creating one), waiting on writers."""
    conn = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=rw",
        uri=True,
        isolation_level=None,
        timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
    )
    return conn


def _connect_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None)


def _count_runs(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


def examine_sqlite(path: Path, yard_id: str) -> Examination:
    """Check that ``path`` is a sound SQLite runyard registry of the yard ``yard_id``.

    In order: an SQLite file; ``PRAGMA integrity_check`` is ok; a runyard registry
    (runyard_meta and a schema revision); this yard's; a revision this runyard knows;
    then the rows of each registry table are counted. Opens the file read-only.
    """
    exam = Examination(path=str(path), checks=[])
    try:
        with path.open("rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except (FileNotFoundError, IsADirectoryError) as exc:
        exam.add("sqlite_file", False, f"{exc.strerror}: {path}")
        return exam
    if not exam.add("sqlite_file", header == SQLITE_HEADER, "an SQLite database file"):
        exam.checks[-1].detail = "not an SQLite database file"
        return exam
    try:
        with closing(_connect_ro(path)) as conn:
            _examine_open(conn, yard_id, exam)
    except sqlite3.DatabaseError as exc:
        exam.add("integrity" if len(exam.checks) == 1 else "registry", False, f"unreadable: {exc}")
    return exam


def _examine_open(conn: sqlite3.Connection, yard_id: str, exam: Examination) -> None:
    rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    more = f" (and {len(rows) - 5} more)" if len(rows) > 5 else ""
    if not exam.add("integrity", rows == ["ok"], "PRAGMA integrity_check: " + "; ".join(rows[:5])):
        exam.checks[-1].detail += more
        return
    tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"runyard_meta", VERSION_TABLE} <= tables:
        detail = (
            f"not a runyard registry (no runyard_meta or schema revision): {sorted(tables)[:5]}"
        )
        exam.add("registry", False, detail)
        return
    revision = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
    found = conn.execute("SELECT value FROM runyard_meta WHERE key = 'yard_id'").fetchone()
    exam.revision = str(revision[0]) if revision else None
    exam.yard_id = str(found[0]) if found else None
    exam.add("registry", True, f"runyard registry of {exam.yard_id}")
    if not exam.add("yard", exam.yard_id == yard_id, f"this yard ({yard_id})"):
        exam.checks[
            -1
        ].detail = (
            f"the registry of another yard ({exam.yard_id or 'no yard id'}); this yard is {yard_id}"
        )
        return
    if not exam.add("revision", exam.revision in REVISIONS, f"schema revision {exam.revision}"):
        exam.checks[-1].detail = (
            f"schema revision {exam.revision!r} is unknown to this runyard, made by a newer "
            f"one (this one knows {', '.join(REVISIONS)})"
        )
        return
    exam.counts = {
        name: int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
        for name in REGISTRY_TABLES
        if name in tables
    }
    exam.add("counts", True, ", ".join(f"{name} {n}" for name, n in exam.counts.items()))


def _write_sql_dump(db: Path, target: Path) -> None:
    """``iterdump`` of ``db`` as gzip text, via a partial file, fsynced, renamed."""
    partial = _partial_name(target.parent, "sql.gz")
    try:
        with closing(_connect_ro(db)) as conn, partial.open("wb") as raw:
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb") as gz:
                for line in conn.iterdump():
                    gz.write(line.encode("utf-8") + b"\n")
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


# --- PostgreSQL ---------------------------------------------------------------------------


def _backup_postgresql(yard: Yard, folder: Path) -> BackupRecord:
    settings = yard.settings
    url = make_url(settings.db_url)
    _refuse_unusual_registry(yard)
    with yard.read() as conn:
        server_num = int(conn.execute(text("SHOW server_version_num")).scalar_one())
        schema = conn.execute(
            text(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.oid = to_regclass('runyard_meta')"
            )
        ).scalar_one()
    server_major = server_num // 10000
    pg_dump, version = _pg_tool("pg_dump", server_major)
    pg_restore, _ = _pg_tool("pg_restore", server_major)
    env = pg_environment(url)
    folder.mkdir(exist_ok=True)
    started = datetime.now(UTC)
    clock = time.monotonic()
    partial = _partial_name(folder, "dump")
    try:
        done = subprocess.run(
            [pg_dump, "--format=custom", "--no-password", f"--schema={schema}", "--file", partial],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RegistryStateError(
                f"pg_dump of {redact(settings.db_url)} failed (exit {done.returncode}): "
                f"{done.stderr.strip()}"
            )
        fsync_file(partial)
        final = _publish(partial, folder, started, "dump")
    finally:
        partial.unlink(missing_ok=True)
    checks = _verify_pg_dump(pg_restore, final, schema)
    return BackupRecord(
        created_at=started,
        finished_at=datetime.now(UTC),
        seconds=round(time.monotonic() - clock, 3),
        engine="postgresql",
        source=redact(settings.db_url),
        path=str(final),
        bytes=final.stat().st_size,
        sha256=sha256_file(final),
        verified=all(c.ok for c in checks),
        checks=checks,
        yard_id=settings.yard_id,
        tool=version,
    )


def _pg_tool(name: str, server_major: int) -> tuple[str, str]:
    """The path and version of a PostgreSQL client tool at least as new as the server."""
    hint = (
        f"install the PostgreSQL client tools of the server's major version "
        f"(e.g. `apt install postgresql-client-{server_major}`) and put {name} on PATH"
    )
    found = shutil.which(name)
    if found is None:
        raise Refused(f"{name} is not installed (or not on PATH): it is needed", hint=hint)
    done = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    version = done.stdout.strip()
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", version)
    if done.returncode != 0 or match is None:
        raise Refused(f"cannot tell the version of {found}: {version or done.stderr.strip()}")
    if int(match.group(1)) < server_major:
        raise Refused(
            f"{found} is version {match.group(1)}, older than the server ({server_major}): "
            "it cannot dump it",
            hint=hint,
        )
    return found, version


_PG_QUERY_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "options": "PGOPTIONS",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "service": "PGSERVICE",
    "passfile": "PGPASSFILE",
    "application_name": "PGAPPNAME",
}


def pg_environment(url: URL) -> dict[str, str]:
    """The environment for libpq tools: the URL's parts as PG* variables.

    The password goes to PGPASSWORD only when the URL has one; otherwise the
    caller's own PGPASSWORD or ~/.pgpass applies. It never reaches a command line.
    """
    env = dict(os.environ)
    parts = {
        "PGHOST": url.host,
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGDATABASE": url.database,
    }
    for key, value in url.query.items():
        if key in _PG_QUERY_ENV:
            parts[_PG_QUERY_ENV[key]] = value if isinstance(value, str) else value[-1]
    env.update({k: v for k, v in parts.items() if v})
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return env


def _verify_pg_dump(pg_restore: str, path: Path, schema: str) -> list[Check]:
    done = subprocess.run(
        [pg_restore, "--list", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        detail = f"exit {done.returncode}: {done.stderr.strip()}"
        return [Check(name="pg_restore_list", ok=False, detail=detail)]
    checks = [Check(name="pg_restore_list", ok=True, detail="pg_restore --list: exit 0")]
    listed = {
        m.group(1)
        for m in re.finditer(rf"^\d+; \d+ \d+ TABLE {re.escape(schema)} (\S+) ", done.stdout, re.M)
    }
    missing = [t for t in REGISTRY_TABLES if t not in listed]
    checks.append(
        Check(
            name="tables",
            ok=not missing,
            detail=f"missing tables: {missing}"
            if missing
            else f"all {len(REGISTRY_TABLES)} registry tables in schema {schema}",
        )
    )
    return checks


# --- The folder: list, prune, last good ----------------------------------------------------


def list_backups(settings: Settings) -> list[BackupEntry]:
    """Every backup in the yard's backups folder, newest first."""
    folder = backups_dir(settings)
    if not folder.is_dir():
        return []
    entries = []
    for path in folder.iterdir():
        match = _NAME_RE.match(path.name)
        if match is None or not path.is_file():
            continue
        entries.append((_entry(path, match), int(match.group(2) or 1)))
    entries.sort(key=lambda e: (e[0].created_at, e[1]), reverse=True)
    return [entry for entry, _ in entries]


def _entry(path: Path, match: re.Match[str]) -> BackupEntry:
    size = path.stat().st_size
    sidecar = Path(str(path) + ".json")
    entry = BackupEntry(
        path=str(path),
        created_at=datetime.strptime(match.group(1), _STAMP).replace(tzinfo=UTC),
        bytes=size,
        verified=False,
        engine=None,
        sidecar=str(sidecar) if sidecar.is_file() else None,
        problem="no record (.json): the backup did not finish",
    )
    if entry.sidecar is None:
        return entry
    try:
        record = BackupRecord.model_validate_json(sidecar.read_bytes())
    except (ValidationError, OSError) as exc:
        entry.problem = f"unreadable record {sidecar.name}: {str(exc).splitlines()[0]}"
        return entry
    entry.created_at, entry.engine, entry.sql_dump = (
        record.created_at,
        record.engine,
        record.sql_dump,
    )
    entry.verified, entry.problem = record.verified, "; ".join(record.problems) or None
    if record.bytes != size:
        entry.verified, entry.problem = (
            False,
            f"size {size} differs from the recorded {record.bytes}",
        )
    return entry


def prune_backups(settings: Settings, keep: int, protect: Path | None = None) -> PruneResult:
    """Delete the oldest verified backups beyond the newest ``keep`` (never ``protect``).

    Backups that are not verified are never deleted; they are listed in ``kept_failed``.
    """
    if keep < 1:
        raise Invalid(f"keep must be at least 1, not {keep}")
    entries = list_backups(settings)
    verified = [e for e in entries if e.verified]
    deleted = []
    for entry in verified[keep:]:
        path = Path(entry.path)
        if protect is not None and path == protect:
            continue
        # The data file first: a crash leaves at most a record without its file,
        # never an unrecorded file that would look like a failed backup.
        path.unlink(missing_ok=True)
        # Only the name a backup gives its dump: never a path read from a record.
        path.with_name(path.name.rsplit(".", 1)[0] + ".sql.gz").unlink(missing_ok=True)
        if entry.sidecar:
            Path(entry.sidecar).unlink(missing_ok=True)
        deleted.append(entry.path)
    if deleted:
        fsync_dir(backups_dir(settings))
    return PruneResult(
        keep=keep, deleted=deleted, kept_failed=[e.path for e in entries if not e.verified]
    )


def last_good_backup(settings: Settings) -> datetime | None:
    """When the newest verified backup was taken (UTC), or None when there is none."""
    return next((e.created_at for e in list_backups(settings) if e.verified), None)


# --- Files --------------------------------------------------------------------------------


def _partial_name(folder: Path, suffix: str) -> Path:
    return folder / f".registry-{os.getpid()}-{secrets.token_hex(4)}.{suffix}.partial"


def _publish(partial: Path, folder: Path, started: datetime, suffix: str) -> Path:
    """Give ``partial`` its final, unique name (never replacing a file); fsync the folder."""
    stem = f"registry-{started.strftime(_STAMP)}"
    n = 1
    while True:
        target = folder / f"{stem}{'' if n == 1 else f'-{n}'}.{suffix}"
        n += 1
        if Path(str(target) + ".json").exists():
            continue
        try:
            os.link(partial, target)  # fails if the name is taken: no clobbering
        except FileExistsError:
            continue
        partial.unlink()
        fsync_dir(folder)
        return target


def fsync_file(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fsync_file(path, os.O_RDONLY | os.O_DIRECTORY)


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
