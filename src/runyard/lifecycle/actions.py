"""Archive and restore as the web server offers them: by batch id and run id, never by
a path from the request.

The CLI takes a report's path (an operator's own file system); the server takes a
batch id, checks its shape, and finds the report inside the archive root itself. The
moves are the same core functions (``plan_archive``/``run_archive``,
``plan_restore``/``run_restore``), so every guard, the journal and the dry-run files
behave exactly as on the command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runyard.errors import NotFound, Refused
from runyard.ids import validate_run_id
from runyard.lifecycle import archive as archive_core
from runyard.lifecycle import restore as restore_core
from runyard.lifecycle.batches import validate_batch_id
from runyard.lifecycle.report import ARCHIVE_REPORT_NAME, ArchiveReport, RestoreReport
from runyard.models import RunLocation
from runyard.registry.runs import get_run

if TYPE_CHECKING:
    from runyard.config import Settings
    from runyard.yard import Yard


def batch_report_path(settings: Settings, batch_id: str) -> Path:
    """``<archive_root>/<batch>/archive_report.json``, which must exist."""
    path = settings.archive_root / validate_batch_id(batch_id) / ARCHIVE_REPORT_NAME
    if not path.is_file():
        raise NotFound(f"no archive batch {batch_id} in {settings.archive_root}")
    return path


@dataclass
class ArchiveOutcome:
    report: ArchiveReport
    report_path: Path | None  # the dry-run file, or the batch's report
    dry_run: bool
    recovered: list[str]


def archive(yard: Yard, options: archive_core.ArchiveOptions, run: bool) -> ArchiveOutcome:
    """A dry run (the default everywhere) or the real archive."""
    if not run:
        plan = archive_core.plan_archive(yard, options)
        path = archive_core.write_dry_run(yard, plan)
        return ArchiveOutcome(plan.report, path, dry_run=True, recovered=[])
    result = archive_core.run_archive(yard, options)
    return ArchiveOutcome(
        result.report, result.report_path, dry_run=False, recovered=result.recovered
    )


@dataclass
class RestoreOutcome:
    report: RestoreReport
    report_path: Path
    dry_run: bool
    recovered: list[str]


def restore(
    yard: Yard,
    batch_id: str,
    run_ids: Sequence[str] = (),
    run: bool = False,
    command: Sequence[str] = (),
) -> RestoreOutcome:
    """Restore all of a batch, or only ``run_ids`` of it; a dry run unless ``run``."""
    only = [validate_run_id(r) for r in run_ids]
    report_path = batch_report_path(yard.settings, batch_id)
    if not run:
        plan = restore_core.plan_restore(yard, report_path, only)
        path = restore_core.write_restore_dry_run(yard, plan)
        return RestoreOutcome(plan.report, path, dry_run=True, recovered=[])
    result = restore_core.run_restore(yard, report_path, only, command)
    return RestoreOutcome(
        result.report, result.report_path, dry_run=False, recovered=result.recovered
    )


def restore_run(
    yard: Yard, run_id: str, run: bool = False, command: Sequence[str] = ()
) -> RestoreOutcome:
    """Restore one archived run from the batch that holds it."""
    found = get_run(yard, validate_run_id(run_id))
    if found.location != RunLocation.archived or not found.archive_batch_id:
        raise Refused(
            f"run {run_id} is {found.location.value}, not archived: there is nothing to restore"
        )
    return restore(yard, found.archive_batch_id, [run_id], run=run, command=command)
