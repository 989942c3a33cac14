"""``runyard purge``: delete archived runs of batches older than N days. The only deletion.

Dry run by default. Never a pinned run, never a run that is no longer archived in
that batch (restored, or purged before). The purge report
(``<logs_dir>/purge_report_<ts>.json``) lists every run it will delete before the
first deletion and is kept current; a crash leaves it ``in_progress`` and
``recover`` finishes the deletions it had started (they were decided and reported).
The registry keeps every row, with location ``purged``.

A batch in an object store (its report names ``store``) is purged the same way, with
its runs' objects (``PREFIX/<batch>/<run_id>.tar``) in place of folders: the plan lists
the batch's prefix once (a run whose object is gone is skipped), the apply marks the
batch's entries ``deleting`` in the report, deletes their objects in one
``DeleteObjects`` series, then sets the registry. When no run of the batch is left
archived in it, the batch's report copies and log object in the bucket go too (its
local report stays, as for a local batch). A store that fails midway stops the purge
with the report still ``in_progress``: the next ``purge --run`` or ``recover`` deletes
again (a missing key is no error) and finishes.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from runyard.errors import Invalid, Refused, RunyardError
from runyard.ids import run_id_problem
from runyard.lifecycle import fsops
from runyard.lifecycle.crashpoints import crashpoint
from runyard.lifecycle.execlog import log_execution
from runyard.lifecycle.lock import yard_lock
from runyard.lifecycle.report import (
    ARCHIVE_REPORT_NAME,
    ArchiveReport,
    checked_path,
    entry_paths,
    load_report,
    relative_to_yard,
    write_report,
)
from runyard.lifecycle.roots import require_real_roots
from runyard.lifecycle.stores import (
    EXECUTION_LOG_OBJECT,
    open_batch_store,
    run_object_key,
)
from runyard.models import RunLocation
from runyard.registry import lifecycle as registry
from runyard.store import StoreError
from runyard.timeutil import days_before

if TYPE_CHECKING:
    from runyard.config import Settings
    from runyard.store.s3 import ObjectStore
    from runyard.yard import Yard


_SWAPPED = "its folder was replaced by a symlink; not followed, nothing deleted"


_OBJECT_GONE = "its object is gone from the archive store"
# The files of a batch that the archive copies into the bucket beside its runs
# (lifecycle.stores); only these are deleted with a wholly purged batch.
_BATCH_FILE = re.compile(
    rf"^({re.escape(ARCHIVE_REPORT_NAME)}|{re.escape(EXECUTION_LOG_OBJECT)}"
    r"|restore_report_[A-Za-z0-9._-]+\.json)$"
)

PurgeStatus = Literal["pending", "deleting", "deleted", "skipped", "failed"]


class PurgeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    batch_id: str
    path: str  # relative to the yard; for a batch in a store, the object's s3:// location
    bytes: int = 0  # for a batch in a store, the object's (the tar's) size
    status: PurgeStatus = "pending"
    reason: str | None = None
    # A batch in an object store: the store (s3://BUCKET/PREFIX) and the run's key in it.
    store: str | None = None
    object_key: str | None = None


class PurgeBatchFiles(BaseModel):
    """A batch in a store whose every run is purged (or restored): its report copies
    and log object in the bucket, deleted once all its run objects are."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    store: str
    keys: list[str] = Field(default_factory=list)
    bytes: int = 0
    status: PurgeStatus = "pending"
    reason: str | None = None


class PurgeReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    kind: Literal["purge"] = "purge"
    yard_id: str
    status: Literal["dry_run", "in_progress", "complete", "failed", "recovered"]
    older_than_days: float
    command: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    batches: list[str] = Field(default_factory=list)
    entries: list[PurgeEntry] = Field(default_factory=list)
    batch_files: list[PurgeBatchFiles] = Field(default_factory=list)
    deleted: int = 0
    skipped: int = 0
    bytes_deleted: int = 0


@dataclass
class PurgeResult:
    report: PurgeReport
    report_path: Path
    recovered: list[str]  # what recover settled first


def _check_days(older_than_days: float) -> datetime:
    """The cutoff ``older_than_days`` before now; Invalid for a number that gives none."""
    return days_before(datetime.now(UTC), older_than_days, "--older-than")


def plan_purge(yard: Yard, older_than_days: float, command: list[str]) -> PurgeReport:
    """Which archived runs of which batches would be deleted, and which are kept and why."""
    cutoff = _check_days(older_than_days)
    settings = yard.settings
    require_real_roots(settings)
    now = datetime.now(UTC)
    report = PurgeReport(
        yard_id=settings.yard_id,
        status="dry_run",
        older_than_days=older_than_days,
        command=command,
        created_at=now,
        updated_at=now,
    )
    archive_root = settings.archive_root
    if not archive_root.is_dir():
        return report
    reports: list[ArchiveReport] = []
    for batch in sorted(archive_root.iterdir()):
        path = batch / ARCHIVE_REPORT_NAME
        if batch.is_symlink() or path.is_symlink() or not path.is_file():
            continue
        try:
            archived = load_report(path, ArchiveReport)
        except Invalid:
            continue  # not a batch purge can vouch for; `runyard check` lists it
        if archived.yard_id != settings.yard_id or archived.batch_id != batch.name:
            continue
        done = archived.finished_at or archived.created_at
        if archived.status in ("complete", "recovered", "failed") and done < cutoff:
            reports.append(archived)
    ids = [e.run_id for r in reports for e in r.entries if e.status == "moved"]
    with yard.read() as conn:
        where = registry.locations(conn, ids)
        pinned = registry.pinned_runs(conn, ids)
    resolved: dict[Path, Path] = {}
    with _Stores(settings) as stores:
        for archived in reports:
            assert archived.batch_id is not None
            report.batches.append(archived.batch_id)
            if archived.store is not None:
                _plan_store_batch(report, archived, stores.get(archived.store), where, pinned)
                continue
            for e in archived.entries:
                if e.status != "moved":
                    continue
                _active, folder = entry_paths(
                    settings, archived.batch_id, e.run_id, e.src, e.dst, resolved
                )
                entry = PurgeEntry(
                    run_id=e.run_id,
                    batch_id=archived.batch_id,
                    path=relative_to_yard(settings, folder),
                    bytes=e.bytes,
                )
                if _guard(entry, where, pinned):
                    if folder.is_symlink():
                        entry.status, entry.reason = "skipped", _SWAPPED
                    elif not folder.is_dir():
                        entry.status, entry.reason = "skipped", "its folder is gone"
                report.entries.append(entry)
    report.skipped = sum(1 for e in report.entries if e.status == "skipped")
    return report


def _guard(entry: PurgeEntry, where: dict[str, tuple[str, str | None]], pinned: set[str]) -> bool:
    """Skip ``entry`` for a pinned run or one no longer archived in its batch; False then."""
    if entry.run_id in pinned:
        entry.status, entry.reason = "skipped", "pinned"
    elif where.get(entry.run_id) != (RunLocation.archived.value, entry.batch_id):
        entry.status, entry.reason = "skipped", "no longer archived in this batch"
    return entry.status != "skipped"


class _Stores(contextlib.ExitStack):
    """The stores one purge talks to, each opened once (by its s3:// URL) and closed
    at the end."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.opened: dict[str, ObjectStore] = {}

    def get(self, url: str) -> ObjectStore:
        if url not in self.opened:
            self.opened[url] = self.enter_context(open_batch_store(self.settings, url))
        return self.opened[url]


def _plan_store_batch(
    report: PurgeReport,
    archived: ArchiveReport,
    store: ObjectStore,
    where: dict[str, tuple[str, str | None]],
    pinned: set[str],
) -> None:
    """The entries of a batch in ``store``: one listing of its prefix says which run
    objects are still there, and which report and log copies go with a whole batch."""
    batch_id = archived.batch_id
    assert batch_id is not None and archived.store is not None
    if run_id_problem(batch_id):
        raise Refused(f"archive report has an invalid batch id {batch_id!r}")
    prefix = store.key(batch_id) + "/"
    listed = {o.key: o.size for o in store.list_objects(prefix)}
    whole = True  # no run of the batch stays archived in it
    for e in archived.entries:
        if e.status != "moved":
            continue
        problem = run_id_problem(e.run_id)
        if problem:
            raise Refused(f"report entry has an invalid run id {e.run_id!r}: {problem}")
        # The key is made from the ids, never read from the report: a report is only a
        # file, and whatever it says, a purge deletes no other object.
        key = run_object_key(store, batch_id, e.run_id)
        entry = PurgeEntry(
            run_id=e.run_id,
            batch_id=batch_id,
            path=store.location(key),
            bytes=listed.get(key, e.tar_bytes or 0),
            store=archived.store,
            object_key=key,
        )
        if _guard(entry, where, pinned) and key not in listed:
            entry.status, entry.reason = "skipped", _OBJECT_GONE
        if entry.status == "skipped" and entry.reason != "no longer archived in this batch":
            whole = False
        report.entries.append(entry)
    files = sorted(k for k in listed if _BATCH_FILE.match(k[len(prefix) :]))
    if whole and files:
        report.batch_files.append(
            PurgeBatchFiles(
                batch_id=batch_id,
                store=archived.store,
                keys=files,
                bytes=sum(listed[k] for k in files),
            )
        )


def write_purge_dry_run(yard: Yard, report: PurgeReport) -> Path:
    stamp = report.created_at.strftime("%Y%m%dT%H%M%S%fZ")
    path = yard.settings.logs_dir / f"purge_dryrun_{stamp}.json"
    write_report(path, report)
    return path


def run_purge(yard: Yard, older_than_days: float, command: list[str]) -> PurgeResult:
    """Delete for real: report first, then each folder, then the registry row's location.

    Like archive and restore, it settles interrupted batches first, and refuses to go on
    while one raises an alarm: a yard that has lost track of a run is no place to delete.
    """
    from runyard.lifecycle.recover import recover_locked

    _check_days(older_than_days)
    with yard_lock(yard.settings.yard_path, "purge"):
        recovered = recover_locked(yard, command)
        report = plan_purge(yard, older_than_days, command)
        report.status = "in_progress"
        stamp = report.created_at.strftime("%Y%m%dT%H%M%S%fZ")
        path = yard.settings.logs_dir / f"purge_report_{stamp}.json"
        write_report(path, report)  # before the first deletion
        crashpoint("purge:report-written")
        _apply(yard, report, path)
        _finish(report)
        write_report(path, report)
        log_execution(
            yard,
            kind="purge",
            status=report.status,
            command=command,
            started_at=report.created_at,
            moved=report.deleted,
            skipped=report.skipped,
            failed=sum(1 for e in report.entries if e.status == "failed"),
            size=report.bytes_deleted,
            reason=f"older than {older_than_days:g} days",
            report_path=relative_to_yard(yard.settings, path),
        )
        return PurgeResult(report=report, report_path=path, recovered=recovered)


_UNFINISHED_HINT = (
    "the deletions this purge had started are in its report, still in_progress: "
    "`runyard recover` (or the next `purge --run`) finishes them once the store answers"
)


def _apply(yard: Yard, report: PurgeReport, path: Path) -> None:
    """Delete what ``report`` decided and has not finished: folders one by one, a store
    batch's objects together, then the bucket files of wholly purged batches.

    A store error leaves the report ``in_progress`` (its entries ``deleting``) and is
    raised: the objects may be half deleted, so only finishing the purge is right.
    """
    groups: dict[tuple[str, str], list[PurgeEntry]] = {}
    for entry in report.entries:
        if entry.status not in ("pending", "deleting"):
            continue
        if entry.store is None:
            _delete(yard, report, path, entry)
        else:
            groups.setdefault((entry.store, entry.batch_id), []).append(entry)
    try:
        with _Stores(yard.settings) as stores:
            for (url, batch_id), entries in groups.items():
                _delete_objects(yard, report, path, stores.get(url), batch_id, entries)
            for files in report.batch_files:
                if files.status in ("pending", "deleting"):
                    _delete_batch_files(report, path, stores.get(files.store), files)
    except StoreError as exc:
        exc.hint = exc.hint or _UNFINISHED_HINT
        raise


def _delete_objects(
    yard: Yard,
    report: PurgeReport,
    path: Path,
    store: ObjectStore,
    batch_id: str,
    entries: list[PurgeEntry],
) -> None:
    """Delete the objects of one store batch's ``entries``: journal, delete, registry."""
    keys: list[str] = []
    for entry in entries:
        try:
            if run_id_problem(entry.run_id) or run_id_problem(batch_id):
                raise Refused(f"purge entry {entry.run_id!r}/{batch_id!r} is not a valid id")
            key = run_object_key(store, batch_id, entry.run_id)
            if entry.object_key != key:
                # A report is only a file: it may name no object but the run's own.
                raise Refused(f"purge entry {entry.run_id!r} names another object than its run's")
        except RunyardError as exc:
            entry.status, entry.reason = "failed", exc.message
            continue
        entry.status = "deleting"
        keys.append(key)
    report.updated_at = datetime.now(UTC)
    write_report(path, report)  # the intent, before the first object goes
    crashpoint("purge:objects-deleting")
    store.delete(keys)  # a key deleted before a crash is no error
    crashpoint("purge:objects-deleted")
    done = [e for e in entries if e.status == "deleting"]
    with yard.write() as conn:
        registry.set_locations(conn, [(e.run_id, RunLocation.purged, batch_id) for e in done])
    for entry in done:
        entry.status = "deleted"
    report.updated_at = datetime.now(UTC)
    write_report(path, report)


def _delete_batch_files(
    report: PurgeReport, path: Path, store: ObjectStore, files: PurgeBatchFiles
) -> None:
    """Delete a wholly purged batch's report copies and log object in the bucket, once
    every run object the purge meant to delete of that batch is gone."""
    runs = [e for e in report.entries if e.batch_id == files.batch_id and e.store == files.store]
    if any(e.status not in ("deleted", "skipped") for e in runs):
        files.status, files.reason = "skipped", "a run of the batch was not deleted"
        return
    try:
        if run_id_problem(files.batch_id):
            raise Refused(f"purge report has an invalid batch id {files.batch_id!r}")
        prefix = store.key(files.batch_id) + "/"
        for key in files.keys:  # a report is only a file: only the batch's own files go
            if not key.startswith(prefix) or not _BATCH_FILE.match(key[len(prefix) :]):
                raise Refused(f"purge report names {store.location(key)}, not a batch file")
    except RunyardError as exc:
        files.status, files.reason = "failed", exc.message
        return
    files.status = "deleting"
    write_report(path, report)
    crashpoint("purge:batch-files-deleting")
    store.delete(files.keys)
    files.status = "deleted"
    report.updated_at = datetime.now(UTC)
    write_report(path, report)


def _finish(report: PurgeReport) -> None:
    report.deleted = sum(1 for e in report.entries if e.status == "deleted")
    report.bytes_deleted = sum(e.bytes for e in report.entries if e.status == "deleted")
    failed = any(e.status == "failed" for e in report.entries) or any(
        f.status == "failed" for f in report.batch_files
    )
    if report.status == "in_progress":
        report.status = "failed" if failed else "complete"
    report.finished_at = report.updated_at = datetime.now(UTC)


def _delete(yard: Yard, report: PurgeReport, path: Path, entry: PurgeEntry) -> None:
    settings = yard.settings
    try:
        # A report is only a file: what it names is checked before anything is deleted.
        if run_id_problem(entry.run_id) or run_id_problem(entry.batch_id):
            raise Refused(f"purge entry {entry.run_id!r}/{entry.batch_id!r} is not a valid id")
        folder = checked_path(
            settings,
            entry.path,
            settings.run_dir(entry.run_id, entry.batch_id),
            settings.archive_root,
            "path",
        )
        if folder.is_symlink():  # swapped for a link since the plan: never followed
            raise Refused(_SWAPPED)
        if entry.status == "pending" and not folder.is_dir():
            raise Refused(f"{relative_to_yard(settings, folder)} is gone; nothing deleted")
        entry.status = "deleting"
        write_report(path, report)
        crashpoint("purge:entry-deleting")
        # A "deleting" entry whose folder is gone was deleted before a crash.
        if folder.is_dir():
            fsops.remove_tree(folder)
        crashpoint("purge:entry-deleted")
        with yard.write() as conn:
            registry.set_locations(conn, [(entry.run_id, RunLocation.purged, entry.batch_id)])
        entry.status = "deleted"
    except RunyardError as exc:
        entry.status, entry.reason = "failed", exc.message
    except OSError as exc:
        entry.status, entry.reason = "failed", str(exc)
    report.updated_at = datetime.now(UTC)
    write_report(path, report)


def recover_purges(yard: Yard) -> list[str]:
    """Finish purges a crash interrupted: their deletions were decided and reported."""
    settled: list[str] = []
    logs = yard.settings.logs_dir
    if not logs.is_dir():
        return settled
    for path in sorted(logs.glob("purge_report_*.json")):
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("status") != "in_progress":
            continue
        try:
            report = PurgeReport.model_validate(data)
        except ValueError:
            continue  # not a purge report runyard wrote; left for a person
        if report.yard_id != yard.settings.yard_id:
            continue
        todo = [e for e in report.entries if e.status in ("pending", "deleting")]
        _apply(yard, report, path)  # a store that still fails stops here, the report kept
        settled.extend(f"purge {e.batch_id}/{e.run_id}: {e.status}" for e in todo)
        report.status = "recovered"
        _finish(report)
        write_report(path, report)
    return settled
