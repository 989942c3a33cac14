"""Recording many already-executed runs in one call: the code behind ``Yard.record_runs``.

``start_run`` pays, for each run, a folder, two manifest writes (two new files and two
``fsync`` calls) and two transactions, which bounds it to a few hundred runs a second. A
batch of finished runs needs one folder and one file each and nothing more per run: every
check is done for the whole batch before anything is touched, the manifests are made
durable with one flush, and the rows go in with one ``executemany`` transaction.

The order is what makes it crash-safe, and matches ``start_run``'s:

1. validate every record (ids, duplicates, statuses, tags, summaries), look up all their
   plans in one query and all their ids in the registry; a bad record refuses the batch
   before anything exists on disk;
2. ``mkdir`` every run folder (``mkdir`` is what makes a run id exclusive on disk);
3. write every manifest to a temporary file, without ``fsync``;
4. make all of them durable at once (parallel ``fsync``, see ``_write_durably``), rename
   each to ``run.json`` and ``fsync`` the runs root once;
5. insert every row in one transaction, re-checking that no scenario was locked meanwhile.

A failure in steps 2-5 removes every folder this call made. A crash (no chance to clean
up) leaves folders whose manifest is either absent or complete, never torn; ``run import``
registers them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from runyard.db.tables import plan_versions, runs, scenarios
from runyard.errors import Conflict, Invalid, LegacyPathClosed, NotFound
from runyard.ids import new_run_id, validate_run_id, validate_text
from runyard.manifest import MANIFEST_NAME, manifest_bytes
from runyard.models import FINISH_STATUSES, TERMINAL_STATUSES, Run, RunLocation, RunStatus
from runyard.registry.common import as_aware, dump_json_object, to_utc_naive, utcnow
from runyard.registry.runs import derive_group, require_runs_root, validate_tags
from runyard.registry.scenarios import ensure_unlocked, get_scenario
from runyard.registry.search_index import index_inserted

if TYPE_CHECKING:
    from runyard.yard import Yard

# Ids per ``IN (...)`` lookup and rows per ``executemany`` call (all in one transaction).
_CHUNK = 1000
# Threads that write and fsync the manifests (see _write_durably); fewer files than
# _MIN_PARALLEL are done inline.
_THREADS = 16
_MIN_PARALLEL = 8


class RunRecord(BaseModel):
    """A run that has already executed, to be registered by ``record_runs``.

    Times may carry a timezone; naive ones are taken as UTC, as everywhere in runyard.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan_version_id: str
    run_id: str | None = Field(default=None, description="default: a new time-ordered id")
    group: str | None = Field(default=None, description="default: from group_pattern")
    status: RunStatus = Field(default=RunStatus.succeeded, description="a finished status")
    summary: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    started_at: datetime | None = Field(default=None, description="default: now")
    finished_at: datetime | None = Field(default=None, description="default: now")


@dataclass
class _Prepared:
    run: Run
    row: dict[str, Any]
    manifest: bytes


def record_runs(
    yard: Yard,
    records: Iterable[RunRecord | Mapping[str, Any]],
    *,
    created_by: str | None = None,
    on_commit: Callable[[Connection, list[Run]], None] | None = None,
) -> list[Run]:
    """Register already-executed runs, with their folders and manifests, all or none.

    Args:
        records: ``RunRecord`` objects or mappings with the same keys.
        created_by: who asked (the web API's token name), stored on every row.
        on_commit: called inside the rows' transaction with the runs (the web API
            stores its idempotency key there); raising rolls everything back.

    Returns the runs in the order given. Raises Invalid, NotFound, Locked or Conflict,
    naming a bad record, with nothing created. Batches of about a thousand keep
    the registry's write lock short; larger ones work but hold it longer.
    """
    parsed = [_parse(i, r) for i, r in enumerate(records)]
    if not parsed:
        return []
    settings = yard.settings
    root = require_runs_root(settings)
    now = utcnow()
    run_ids = _run_ids(parsed)
    with yard.read() as conn:
        plans = _lookup_plans(conn, [r.plan_version_id for r in parsed])
        _refuse_existing(conn, run_ids)
        from runyard.registry.lineage_files import ensure_plan_lineage

        for plan_version_id in plans:
            ensure_plan_lineage(yard, plan_version_id, conn)
    if created_by is not None:
        validate_text(created_by, "created_by", 200)
    prepared = [
        _prepare(yard, i, record, run_id, plans[record.plan_version_id], root, now, created_by)
        for i, (record, run_id) in enumerate(zip(parsed, run_ids, strict=True))
    ]

    created: list[Path] = []
    try:
        _write_folders(root, prepared, created)
        with yard.write() as conn:
            _recheck_unlocked(conn, {p.run.scenario_id for p in prepared})
            rows = [p.row for p in prepared]
            for start in range(0, len(rows), _CHUNK):
                conn.execute(runs.insert(), rows[start : start + _CHUNK])
            index_inserted(conn, "runs", rows)
            if on_commit is not None:
                on_commit(conn, [p.run for p in prepared])
    except BaseException as exc:
        for folder in reversed(created):
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, IntegrityError):
            raise _explain_integrity_error(yard, run_ids) from None
        raise
    return [p.run for p in prepared]


# --- validation (nothing touched yet) -------------------------------------------------


def _parse(index: int, record: RunRecord | Mapping[str, Any]) -> RunRecord:
    if not isinstance(record, RunRecord):
        try:
            record = RunRecord.model_validate(record)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "record"
            raise Invalid(f"record {index}: `{key}`: {first['msg']}") from None
    if not record.plan_version_id:
        raise LegacyPathClosed(
            f"record {index}: a run needs a plan version: the legacy path (runs without a "
            "plan) is closed",
            hint="create a plan with `runyard plan create --scenario ID --config ID`",
        )
    if record.status not in TERMINAL_STATUSES:
        allowed = ", ".join(s.value for s in FINISH_STATUSES)
        raise Invalid(
            f"record {index}: cannot record a run as {record.status.value!r}: a recorded run "
            f"has finished, use one of {allowed}",
            hint="use `yard.start_run` for a run that is still going",
        )
    return record


def _run_ids(records: Sequence[RunRecord]) -> list[str]:
    """Each record's run id (validated, or new); duplicates in the batch are refused."""
    seen: dict[str, int] = {}
    out: list[str] = []
    for index, record in enumerate(records):
        if record.run_id is None:
            run_id = new_run_id()
        else:
            try:
                run_id = validate_run_id(record.run_id)
            except Invalid as exc:
                raise Invalid(f"record {index}: {exc.message}") from None
        if run_id in seen:
            raise Invalid(
                f"record {index}: run id {run_id!r} is already used by record {seen[run_id]} "
                "of this batch"
            )
        seen[run_id] = index
        out.append(run_id)
    return out


_PLANS = select(
    plan_versions.c.plan_version_id,
    plan_versions.c.config_version_id,
    plan_versions.c.scenario_id,
    scenarios.c.locked,
).join(scenarios, scenarios.c.scenario_id == plan_versions.c.scenario_id)


def _lookup_plans(conn: Connection, plan_ids: Sequence[str]) -> dict[str, Any]:
    """The plan of every record, refusing a missing plan or a locked scenario."""
    wanted = list(dict.fromkeys(plan_ids))
    found: dict[str, Any] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        for row in conn.execute(_PLANS.where(plan_versions.c.plan_version_id.in_(chunk))):
            found[row.plan_version_id] = row
    for index, plan_id in enumerate(plan_ids):
        plan = found.get(plan_id)
        if plan is None:
            raise NotFound(
                f"record {index}: no plan version {plan_id!r}: a run can only be recorded "
                "for an existing plan version",
                hint="create one with `runyard plan create`; `runyard plan list` shows them",
            )
        if plan.locked:
            ensure_unlocked(get_scenario(conn, plan.scenario_id), "recording runs")
    return found


def _refuse_existing(conn: Connection, run_ids: Sequence[str]) -> None:
    for start in range(0, len(run_ids), _CHUNK):
        chunk = run_ids[start : start + _CHUNK]
        taken = conn.execute(
            select(runs.c.run_id).where(runs.c.run_id.in_(chunk)).limit(1)
        ).scalar()
        if taken is not None:
            raise Conflict(
                f"a run with id {taken!r} already exists; nothing was recorded",
                hint="leave run_id out to get a new id",
            )


def _prepare(
    yard: Yard,
    index: int,
    record: RunRecord,
    run_id: str,
    plan: Any,
    root: Path,
    now: datetime,
    created_by: str | None = None,
) -> _Prepared:
    settings = yard.settings
    try:
        group = derive_group(settings, run_id, record.group)
        tags = validate_tags(record.tags)
        tags_text = dump_json_object(tags, "tags")
        summary_text = dump_json_object(record.summary, "summary")
    except Invalid as exc:
        raise Invalid(f"record {index} ({run_id}): {exc.message}") from None
    started = to_utc_naive(record.started_at) if record.started_at is not None else now
    finished = to_utc_naive(record.finished_at) if record.finished_at is not None else now
    if finished < started:
        raise Invalid(
            f"record {index} ({run_id}): finished_at {as_aware(finished)} is before "
            f"started_at {as_aware(started)}"
        )
    run = Run(
        run_id=run_id,
        plan_version_id=record.plan_version_id,
        config_version_id=plan.config_version_id,
        scenario_id=plan.scenario_id,
        group=group,
        status=record.status,
        legacy=False,
        location=RunLocation.active,
        pinned=False,
        created_at=as_aware(now),
        started_at=as_aware(started),
        finished_at=as_aware(finished),
        summary=dict(record.summary),
        tags=tags,
        error=record.error,
        path=str(root / run_id),
        created_by=created_by,
    )
    row = {
        "run_id": run_id,
        "plan_version_id": record.plan_version_id,
        "config_version_id": plan.config_version_id,
        "scenario_id": plan.scenario_id,
        "group_name": group,
        "status": record.status.value,
        "legacy": False,
        "location": RunLocation.active.value,
        "pinned": False,
        "created_at": now,
        "started_at": started,
        "finished_at": finished,
        "summary": summary_text,
        "tags": tags_text,
        "error": record.error,
        "created_by": created_by,
    }
    manifest = manifest_bytes(run, settings.yard_id)
    row["size_bytes"] = len(manifest)  # the folder holds its run.json only
    run = run.model_copy(update={"size_bytes": len(manifest)})
    return _Prepared(run=run, row=row, manifest=manifest)


# --- the file system -----------------------------------------------------------------


def _write_folders(root: Path, prepared: Sequence[_Prepared], created: list[Path]) -> None:
    """Make every folder and its ``run.json``; ``created`` collects the folders made."""
    for p in prepared:
        folder = root / p.run.run_id
        try:
            folder.mkdir()
        except FileExistsError:
            raise Conflict(
                f"the folder {folder} already exists; nothing was recorded",
                hint=f"register an existing folder with `runyard run import {folder}`",
            ) from None
        created.append(folder)
    temp_name = f".{MANIFEST_NAME}.{os.getpid()}.tmp"
    files = [(folder / temp_name, p.manifest) for folder, p in zip(created, prepared, strict=True)]
    _write_durably(files)
    for temp, _ in files:
        os.replace(temp, temp.with_name(MANIFEST_NAME))
    if os.name == "posix":  # the new folder names themselves
        _fsync(root)


def _write_durably(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write every file without syncing, then make all of them durable with one flush.

    The flush is ``fsync`` on every file from a pool of threads rather than one
    ``os.sync()``. ``sync`` took less time where this was measured (bench/README.md), but
    it flushes every dirty page of every file system on the machine, so its cost is
    whatever else has been written; and outside Linux POSIX lets it return before the data
    is on disk. ``fsync`` is scoped to these files and waits everywhere; the calls sleep in
    the kernel with the GIL released and overlap. The files are written from the same
    threads, since creating a file is kernel work that overlaps too (in different folders).
    Threads take slices of the batch, not one task per file, which would cost more in
    scheduling than an ``fsync`` does.
    """
    if len(files) < _MIN_PARALLEL:
        for path, data in files:
            _write_file(path, data)
        for path, _ in files:
            _fsync(path)
        return
    threads = min(_THREADS, len(files))
    slices = [files[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(_write_slice, slices):
            pass
        for _ in pool.map(_fsync_slice, slices):
            pass


def _write_slice(files: Sequence[tuple[Path, bytes]]) -> None:
    for path, data in files:
        _write_file(path, data)


def _fsync_slice(files: Sequence[tuple[Path, bytes]]) -> None:
    for path, _ in files:
        _fsync(path)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the registry ----------------------------------------------------------------------


def _recheck_unlocked(conn: Connection, scenario_ids: set[str | None]) -> None:
    """Refuse if a scenario was locked since the plans were read.

    SQLite: the write transaction already excludes other writers. PostgreSQL: ``FOR
    SHARE`` keeps the scenarios from being locked until this transaction ends.
    """
    wanted = sorted(s for s in scenario_ids if s is not None)
    rows = conn.execute(
        select(scenarios.c.scenario_id, scenarios.c.locked)
        .where(scenarios.c.scenario_id.in_(wanted))
        .order_by(scenarios.c.scenario_id)
        .with_for_update(read=True)
    ).all()
    for row in rows:
        if row.locked:
            ensure_unlocked(get_scenario(conn, row.scenario_id), "recording runs")


def _explain_integrity_error(yard: Yard, run_ids: Sequence[str]) -> Exception:
    """The Conflict behind a refused insert: a run id taken meanwhile, if one was."""
    try:
        with yard.read() as conn:
            _refuse_existing(conn, run_ids)
    except Conflict as exc:
        return exc
    return Conflict(
        "the registry refused the runs (a plan or scenario changed meanwhile); nothing was recorded"
    )
