"""Where an archive batch lives, for the archives pages and a run's page: in the archive
root (a folder per run), or in an object store (one tar object per run, issue 16).

The archive report is the record of where each run went (``ArchiveReport.store``; per
entry ``object_key``, ``tar_bytes``, ``tar_sha256``); the registry says whether a run is
still archived there. A folder on disk says nothing about a store batch: its runs have
none. Nothing here talks to the store, so a page never waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runyard.errors import RunyardError
from runyard.ids import run_id_problem
from runyard.lifecycle import actions
from runyard.lifecycle.batches import BatchSummary
from runyard.lifecycle.report import ArchiveEntry, ArchiveReport, read_archive_report
from runyard.models import Run
from runyard.registry import lifecycle as lifecycle_registry
from runyard.statuses import RunLocation
from runyard.yard import Yard

SHA_SHORT = 12


def short_sha(value: str | None) -> str:
    """The first hex digits of a SHA-256, as a page shows it (the full one in a title)."""
    return value[:SHA_SHORT] if value else "—"


@dataclass(frozen=True)
class BatchPlace:
    """Where one batch's runs are: ``store`` is ``s3://BUCKET/PREFIX``, or None for the
    archive root; ``in_store`` the runs of a store batch the registry still has there."""

    store: str | None = None
    in_store: list[str] = field(default_factory=list)


def runs_in_store(yard: Yard, report: ArchiveReport) -> list[str]:
    """Run ids of a store batch's moved entries that the registry has archived in it
    (restored, purged or archived again since: no longer there)."""
    assert report.batch_id is not None
    moved = list(
        dict.fromkeys(
            e.run_id for e in report.entries if e.status == "moved" and not run_id_problem(e.run_id)
        )
    )
    with yard.read() as conn:
        where = lifecycle_registry.locations(conn, moved)
    here = (RunLocation.archived.value, report.batch_id)
    return [run_id for run_id in moved if where.get(run_id) == here]


def batch_place(yard: Yard, report: ArchiveReport) -> BatchPlace:
    if report.store is None:
        return BatchPlace()
    return BatchPlace(store=report.store, in_store=runs_in_store(yard, report))


def batch_places(yard: Yard, batches: list[BatchSummary]) -> dict[str, BatchPlace]:
    """The place of each listed batch (an unreadable report: as a local batch, since the
    list already says it is unreadable).

    ``BatchSummary`` does not carry the store, so each report is read again here; the
    list is of batches, not runs, and this keeps the lifecycle's reader as it is.
    """
    places: dict[str, BatchPlace] = {}
    for batch in batches:
        if batch.error is not None:
            continue
        try:
            report = read_archive_report(
                actions.batch_report_path(yard.settings, batch.batch_id), yard.settings
            )
        except RunyardError:
            continue
        places[batch.batch_id] = batch_place(yard, report)
    return places


@dataclass(frozen=True)
class StoredRun:
    """An archived run's object in a store, as its batch's report recorded it."""

    batch_id: str
    store: str
    location: str  # s3://BUCKET/KEY
    tar_bytes: int | None
    tar_sha256: str | None

    @property
    def sha_short(self) -> str:
        return short_sha(self.tar_sha256)


def stored_run(yard: Yard, run: Run) -> StoredRun | None:
    """The object of a run archived to a store; None for any other run (active, in the
    archive root, or a batch whose report cannot be read: the page says what it can)."""
    if run.location != RunLocation.archived or run.archive_batch_id is None:
        return None
    try:
        path = actions.batch_report_path(yard.settings, run.archive_batch_id)
        report = read_archive_report(path, yard.settings)
    except RunyardError:
        return None
    if report.store is None:
        return None
    entry = _moved_entry(report, run.run_id)
    if entry is None:
        return None
    return StoredRun(
        batch_id=run.archive_batch_id,
        store=report.store,
        location=entry.dst,
        tar_bytes=entry.tar_bytes,
        tar_sha256=entry.tar_sha256,
    )


def _moved_entry(report: ArchiveReport, run_id: str) -> ArchiveEntry | None:
    return next((e for e in report.entries if e.run_id == run_id and e.status == "moved"), None)
