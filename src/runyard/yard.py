"""A yard: a folder with ``runyard.toml``, its roots, and its registry database.

``init_yard`` makes one; ``open_yard`` opens one (checking the registry's schema
first). A ``Yard`` holds the settings and the engine and hands out read and write
transactions; it is the object the CLI, the Python API and (later) the web app
pass to the registry.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from runyard.config import (
    CONFIG_FILENAME,
    Settings,
    check_yard_path,
    find_yard,
    load_settings,
    normalize_db_url,
)
from runyard.db.engine import make_engine, read_scope, redact, sqlite_path, write_scope
from runyard.db.schema import upgrade_registry, verify_registry
from runyard.errors import Conflict, Invalid, RunyardError
from runyard.fsutil import write_atomic
from runyard.ids import new_id
from runyard.presets import PRESETS, render_config

if TYPE_CHECKING:
    from runyard.models import Page, Run
    from runyard.registry.bulk import RunRecord
    from runyard.tracking import RunContext


class Yard:
    """An open yard. Close it (or use it as a context manager) to release the engine."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        # SQLite has one writer at a time; threads of this process queue on this lock
        # rather than in SQLite's busy handler, which sleeps in coarse steps.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        # Plan versions are immutable: their lineage can be remembered (runs/_plan_for_run).
        self.plan_cache: dict[str, Any] = {}

    @property
    def path(self) -> Path:
        return self.settings.yard_path

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with read_scope(self.engine) as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self._write_lock is None:
            with write_scope(self.engine) as conn:
                yield conn
            return
        with self._write_lock, write_scope(self.engine) as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Yard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start_run(
        self,
        plan_version_id: str,
        group: str | None = None,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> RunContext:
        """Record a run of a plan version: ``with yard.start_run(plan_version_id=...) as run:``.

        The run is registered (and its folder made) on entering; a normal exit finishes it
        as succeeded, an exception as failed with the error recorded, and re-raises.
        """
        from runyard.tracking import RunContext

        return RunContext(self, plan_version_id, group=group, run_id=run_id, tags=tags)

    def record_runs(self, records: Iterable[RunRecord | Mapping[str, Any]]) -> list[Run]:
        """Register runs that have already executed, many at once, all or none.

        Each record names its plan version and may give run_id, group, status (succeeded,
        failed or cancelled), summary, tags, error, started_at and finished_at. Folders
        and manifests are written as ``start_run`` writes them, far faster per run.
        """
        from runyard.registry.bulk import record_runs

        return record_runs(self, records)

    def list_runs(
        self,
        where: str | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Page[Run]:
        """A page of runs matching ``where``, in the order of ``order_by`` (docs/query.md):
        ``yard.list_runs(where="kpi.fill_rate >= 0.95", order_by="kpi.total_cost asc")``.
        Pass the page's ``next_cursor`` as ``after`` for the next one."""
        from runyard.query import parse_query
        from runyard.registry.runs import list_runs

        return list_runs(self, limit=limit, after=after, query=parse_query(where, order_by))

    def __repr__(self) -> str:
        return f"Yard({str(self.path)!r}, db={redact(self.settings.db_url)!r})"


def open_yard(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    check_schema: bool = True,
) -> Yard:
    """Open the yard at ``path`` (else ``RUNYARD_YARD``, else the nearest one upward).

    Raises YardNotFound, ConfigFileError, or a RegistryStateError naming the fix.
    """
    yard_path = find_yard(explicit=str(path) if path is not None else None, environ=environ)
    settings = load_settings(yard_path, environ)
    engine = make_engine(settings.db_url)
    if check_schema:
        try:
            verify_registry(engine, settings.yard_id)
        except BaseException:
            engine.dispose()
            raise
    return Yard(settings, engine)


@dataclass
class InitResult:
    yard_path: Path
    yard_id: str
    preset: str
    config_file: Path
    db_url: str
    db_url_source: str
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    # [archive] as written, with what its probe checked ("checked": ["write", ...]).
    archive_store: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "yard_path": str(self.yard_path),
            "yard_id": self.yard_id,
            "preset": self.preset,
            "config_file": str(self.config_file),
            "db_url": redact(self.db_url),
            "db_url_source": self.db_url_source,
            "created": self.created,
            "existing": self.existing,
            "archive_store": self.archive_store,
        }


def init_yard(
    path: str | Path,
    preset: str = "planning",
    db_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    archive_store: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> InitResult:
    """Create a yard at ``path``: ``runyard.toml``, its roots, and the registry.

    Only what is missing is created; existing folders are never touched. Refused where
    a yard already is. On any failure everything this call created is removed again.
    With ``archive_store`` (``s3://BUCKET/PREFIX``) the store is probed first (write,
    read and delete an object): a store error is raised before anything is created.
    """
    if preset not in PRESETS:
        raise Invalid(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    yard_path = check_yard_path(Path(path).expanduser().absolute())
    config_file = yard_path / CONFIG_FILENAME
    if config_file.exists():
        raise Conflict(
            f"a yard already exists at {yard_path} ({CONFIG_FILENAME} is there)",
            hint="use it as it is, or choose another folder",
        )
    if yard_path.exists() and not yard_path.is_dir():
        raise Invalid(f"{yard_path} exists and is not a folder")
    if db_url is not None:
        normalize_db_url(db_url, yard_path)  # validate early, before anything is created
        make_engine(normalize_db_url(db_url, yard_path)).dispose()
    archive: dict[str, Any] | None = None
    if archive_store is not None or endpoint_url is not None or region is not None:
        archive = _probe_archive_store(archive_store, endpoint_url, region)

    created: list[Path] = []
    existing: list[str] = []
    yard_id = new_id("yd")
    try:
        if not yard_path.exists():
            yard_path.mkdir(parents=True)
            created.append(yard_path)
        write_atomic(config_file, render_config(preset, yard_id, db_url, archive).encode())
        created.append(config_file)
        settings = load_settings(yard_path, environ)
        for folder in (settings.runs_root, settings.archive_root, settings.logs_dir):
            rel = _display(folder, yard_path)
            if folder.exists():
                existing.append(rel)
                continue
            to_make = [p for p in reversed(folder.parents) if not p.exists()] + [folder]
            folder.mkdir(parents=True)
            created.extend(to_make)
        db_file = sqlite_path(settings.db_url)
        if db_file is not None and not db_file.exists():
            missing_parents = [p for p in reversed(db_file.parents) if not p.exists()]
            db_file.parent.mkdir(parents=True, exist_ok=True)
            created.extend(missing_parents)
            created.append(db_file)
        engine = make_engine(settings.db_url)
        try:
            upgrade_registry(engine, yard_id)
        finally:
            engine.dispose()
    except BaseException:
        _undo(created)
        raise
    return InitResult(
        yard_path=yard_path,
        yard_id=yard_id,
        preset=preset,
        config_file=config_file,
        db_url=settings.db_url,
        db_url_source=settings.db_url_source,
        created=[_display(p, yard_path) for p in created if p != yard_path],
        existing=existing,
        archive_store=archive,
    )


def _probe_archive_store(
    store: str | None, endpoint_url: str | None, region: str | None
) -> dict[str, Any]:
    """``[archive]`` checked (Invalid) and its store probed (a store error): the table
    to write, with what the probe checked."""
    from runyard.config import archive_section
    from runyard.store import open_store

    section = archive_section(store, endpoint_url, region)
    assert section.store is not None  # archive_section refuses the others without it
    with open_store(section.store, endpoint_url=section.endpoint_url, region=section.region) as s:
        probe = s.probe()
    return {**section.model_dump(), "checked": list(probe.checked)}


def _display(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base)) or "."
    except ValueError:
        return str(path)


def _undo(created: list[Path]) -> None:
    """Remove what a failed init created, newest first; never anything it did not create."""
    for path in reversed(created):
        try:
            if path.is_dir():
                # Only the yard folder itself may hold files by now (all made by this init).
                if path == created[0]:
                    shutil.rmtree(path)
                else:
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)
                for suffix in ("-wal", "-shm", "-journal"):
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
        except OSError:
            pass


__all__ = ["InitResult", "RunyardError", "Yard", "init_yard", "open_yard"]
