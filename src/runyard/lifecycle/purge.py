"""``runyard purge``: delete archived runs of batches older than N days. The only deletion.

Dry run by default. Never a pinned run, never a run that is no longer archived in
that batch (restored, or purged before). The purge report
(``<logs_dir>/purge_report_<ts>.json``) lists every run it will delete before the
first deletion and is kept current; a crash leaves it ``in_progress`` and
``recover`` finishes the deletions it had started (they were decided and reported).
The registry keeps every row, with location ``purged``.
"""

from __future__ import annotations

import json
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
from runyard.models import RunLocation
from runyard.registry import lifecycle as registry
from runyard.timeutil import days_before

if TYPE_CHECKING:
    from runyard.yard import Yard


_SWAPPED = "its folder was replaced by a symlink; not followed, nothing deleted"


class PurgeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    batch_id: str
    path: str
    bytes: int = 0
    status: Literal["pending", "deleting", "deleted", "skipped", "failed"] = "pending"
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
    for archived in reports:
        assert archived.batch_id is not None
        report.batches.append(archived.batch_id)
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
            if e.run_id in pinned:
                entry.status, entry.reason = "skipped", "pinned"
            elif where.get(e.run_id) != (RunLocation.archived.value, archived.batch_id):
                entry.status, entry.reason = "skipped", "no longer archived in this batch"
            elif folder.is_symlink():
                entry.status, entry.reason = "skipped", _SWAPPED
            elif not folder.is_dir():
                entry.status, entry.reason = "skipped", "its folder is gone"
            report.entries.append(entry)
    report.skipped = sum(1 for e in report.entries if e.status == "skipped")
    return report


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
        for entry in report.entries:
            if entry.status == "pending":
                _delete(yard, report, path, entry)
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


def _finish(report: PurgeReport) -> None:
    report.deleted = sum(1 for e in report.entries if e.status == "deleted")
    report.bytes_deleted = sum(e.bytes for e in report.entries if e.status == "deleted")
    failed = any(e.status == "failed" for e in report.entries)
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
        for entry in report.entries:
            if entry.status in ("pending", "deleting"):
                _delete(yard, report, path, entry)
                settled.append(f"purge {entry.batch_id}/{entry.run_id}: {entry.status}")
        report.status = "recovered"
        _finish(report)
        write_report(path, report)
    return settled
