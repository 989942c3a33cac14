"""What the archive root holds: its batches, their reports, and each run's lifecycle story.

Read-only, for the archives pages. The reports are the record (the registry keeps only
where a run is now), so this module reads them, and never lets one bad report hide the
others: an unreadable report is listed as such, not raised.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from runyard.config import Settings
from runyard.errors import Invalid, NotFound, Refused, RunyardError
from runyard.ids import run_id_problem, validate_run_id
from runyard.lifecycle.purge import PurgeReport
from runyard.lifecycle.report import (
    ARCHIVE_REPORT_NAME,
    ArchiveReport,
    RestoreReport,
    read_archive_report,
    relative_to_yard,
)
from runyard.models import FrozenModel

# What lifecycle/archive.py::new_batch_id makes: a UTC second, then "-2", "-3" … if taken.
BATCH_ID_RE = re.compile(r"([0-9]{8}T[0-9]{6}Z)(?:-([1-9][0-9]{0,5}))?")
RESTORE_REPORT_GLOB = "restore_report_*.json"
PURGE_REPORT_GLOB = "purge_report_*.json"
UNREADABLE = "unreadable"


class BatchSummary(FrozenModel):
    batch_id: str
    status: str = Field(description="the archive report's status, or 'unreadable'")
    reason: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    moved: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_moved: int = 0
    restores: int = Field(default=0, description="restore reports beside the archive report")
    runs_present: int = Field(default=0, description="entries whose folder is still here")
    report_path: str = Field(description="relative to the yard")
    error: str | None = Field(default=None, description="why the report is unreadable")


class BatchDetail(FrozenModel):
    summary: BatchSummary
    report: ArchiveReport
    restores: list[RestoreReport] = Field(description="newest first")
    problems: list[str] = Field(default_factory=list, description="restore reports not read")


class RunEvent(FrozenModel):
    at: datetime
    kind: Literal["archived", "restored", "purged"]
    batch_id: str
    report_path: str = Field(description="relative to the yard")
    status: str = Field(description="the run's entry status in that report")


def validate_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` unchanged, or raise Invalid: it becomes a folder name."""
    if not isinstance(batch_id, str) or not BATCH_ID_RE.fullmatch(batch_id):
        raise Invalid(
            f"invalid batch id {batch_id!r}: expected a UTC timestamp like "
            "20260131T235959Z, optionally with -N"
        )
    return batch_id


def _newest_first_key(batch_id: str) -> tuple[str, int]:
    match = BATCH_ID_RE.fullmatch(batch_id)
    assert match is not None
    return match.group(1), int(match.group(2) or 1)  # "-10" after "-9", not before "-2"


def _batch_dirs(settings: Settings) -> Iterator[tuple[str, Path]]:
    """(batch id, folder) of every real folder named like a batch, holding a report."""
    try:
        with os.scandir(settings.archive_root) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise Refused(
            f"cannot read the archive root {settings.archive_root}: {exc.strerror}"
        ) from None
    names = [
        e.name
        for e in entries
        if BATCH_ID_RE.fullmatch(e.name)
        and e.is_dir(follow_symlinks=False)
        and os.path.lexists(os.path.join(e.path, ARCHIVE_REPORT_NAME))
    ]
    for name in sorted(names, key=_newest_first_key, reverse=True):
        yield name, settings.archive_root / name


def _read_report(settings: Settings, batch_id: str, path: Path) -> ArchiveReport:
    if path.is_symlink():
        raise Invalid(f"{path} is a symlink, not a report")
    report = read_archive_report(path, settings)
    if report.batch_id != batch_id:
        raise Invalid(f"{path} says batch {report.batch_id!r} but lies in {batch_id!r}")
    return report


def _restore_paths(folder: Path) -> list[Path]:
    """The batch's restore reports, newest first (their names carry a sortable time)."""
    return sorted((p for p in folder.glob(RESTORE_REPORT_GLOB) if not p.is_symlink()), reverse=True)


def _summary(settings: Settings, batch_id: str, folder: Path) -> BatchSummary:
    path = folder / ARCHIVE_REPORT_NAME
    try:
        report = _read_report(settings, batch_id, path)
    except RunyardError as exc:
        return BatchSummary(
            batch_id=batch_id,
            status=UNREADABLE,
            restores=len(_restore_paths(folder)),
            report_path=relative_to_yard(settings, path),
            error=exc.message,
        )
    return _summary_of(settings, folder, report)


def _summary_of(settings: Settings, folder: Path, report: ArchiveReport) -> BatchSummary:
    batch_id = folder.name
    present = 0
    for entry in report.entries:
        # The report is only a file: its dst is not trusted, the folder is derived here.
        if not run_id_problem(entry.run_id):
            run_dir = settings.run_dir(entry.run_id, batch_id)
            present += run_dir.is_dir() and not run_dir.is_symlink()
    s = report.summary
    return BatchSummary(
        batch_id=batch_id,
        status=report.status,
        reason=report.reason,
        created_at=report.created_at,
        finished_at=report.finished_at,
        moved=s.moved,
        failed=s.failed,
        skipped=s.skipped,
        bytes_moved=s.bytes_moved,
        restores=len(_restore_paths(folder)),
        runs_present=present,
        report_path=relative_to_yard(settings, folder / ARCHIVE_REPORT_NAME),
    )


def list_batches(settings: Settings) -> list[BatchSummary]:
    """Every archive batch of the yard, newest first; a missing archive root has none."""
    return [_summary(settings, batch_id, folder) for batch_id, folder in _batch_dirs(settings)]


def _read_restore(settings: Settings, batch_id: str, path: Path) -> RestoreReport:
    try:
        report = RestoreReport.model_validate_json(path.read_bytes())
    except (OSError, ValueError, ValidationError) as exc:
        first_line = (str(exc).splitlines() or ["unreadable"])[0]
        raise Invalid(f"{path.name} is not a restore report: {first_line}") from None
    if report.yard_id != settings.yard_id or report.batch_id != batch_id:
        raise Invalid(f"{path.name} is a report of another yard or batch")
    return report


def get_batch(settings: Settings, batch_id: str) -> BatchDetail:
    """One batch: its summary, archive report and restore reports.

    NotFound for a batch that is not there; Invalid (or Refused) when its archive report
    cannot be read, as ``restore`` would say.
    """
    validate_batch_id(batch_id)
    folder = settings.archive_root / batch_id
    path = folder / ARCHIVE_REPORT_NAME
    if folder.is_symlink() or not folder.is_dir() or not os.path.lexists(path):
        raise NotFound(f"no archive batch {batch_id!r}", hint="the archives page lists them")
    report = _read_report(settings, batch_id, path)
    restores: list[RestoreReport] = []
    problems: list[str] = []
    for restore_path in _restore_paths(folder):
        try:
            restores.append(_read_restore(settings, batch_id, restore_path))
        except RunyardError as exc:
            problems.append(exc.message)
    return BatchDetail(
        summary=_summary_of(settings, folder, report),
        report=report,
        restores=restores,
        problems=problems,
    )


def _mentions(path: Path, run_id: str) -> bytes | None:
    """The file's bytes if it names the run; reading all of a big report is saved otherwise."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    # A valid run id is JSON-encoded as itself, quoted.
    return raw if f'"{run_id}"'.encode() in raw else None


def _aware(value: datetime) -> datetime:
    # Reports are written with UTC offsets; one edited by hand may lack it.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _event(
    settings: Settings,
    kind: Literal["archived", "restored", "purged"],
    report: ArchiveReport | RestoreReport | PurgeReport,
    path: Path,
    batch_id: str,
    status: str,
) -> RunEvent:
    return RunEvent(
        at=_aware(report.finished_at or report.updated_at),
        kind=kind,
        batch_id=batch_id,
        report_path=relative_to_yard(settings, path),
        status=status,
    )


def _batch_events(settings: Settings, batch_id: str, folder: Path, run_id: str) -> list[RunEvent]:
    events: list[RunEvent] = []
    path = folder / ARCHIVE_REPORT_NAME
    if _mentions(path, run_id) is None:
        return events  # a batch that never held the run has no restores of it either
    try:
        report = _read_report(settings, batch_id, path)
    except RunyardError:
        return events
    for entry in report.entries:
        if entry.run_id == run_id:
            events.append(_event(settings, "archived", report, path, batch_id, entry.status))
    for restore_path in _restore_paths(folder):
        if _mentions(restore_path, run_id) is None:
            continue
        try:
            restore = _read_restore(settings, batch_id, restore_path)
        except RunyardError:
            continue
        for r in restore.entries:
            if r.run_id == run_id:
                events.append(
                    _event(settings, "restored", restore, restore_path, batch_id, r.status)
                )
    return events


def _purge_events(settings: Settings, run_id: str) -> list[RunEvent]:
    events: list[RunEvent] = []
    logs = settings.logs_dir
    if not logs.is_dir():
        return events
    for path in sorted(logs.glob(PURGE_REPORT_GLOB)):
        raw = None if path.is_symlink() else _mentions(path, run_id)
        if raw is None:
            continue
        try:
            report = PurgeReport.model_validate_json(raw)
        except ValidationError:
            continue
        if report.yard_id != settings.yard_id:
            continue
        for entry in report.entries:
            if entry.run_id == run_id:
                events.append(
                    _event(settings, "purged", report, path, entry.batch_id, entry.status)
                )
    return events


_KIND_ORDER = {"archived": 0, "restored": 1, "purged": 2}


def run_history(settings: Settings, run_id: str) -> list[RunEvent]:
    """Every archive, restore and purge report entry of one run, oldest first.

    Reports that cannot be read are left out: the history is what can be shown.
    """
    validate_run_id(run_id)
    events: list[RunEvent] = []
    for batch_id, folder in _batch_dirs(settings):
        events += _batch_events(settings, batch_id, folder, run_id)
    events += _purge_events(settings, run_id)
    return sorted(events, key=lambda e: (e.at, _KIND_ORDER[e.kind]))
