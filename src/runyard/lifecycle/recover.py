"""``runyard recover``: finish archives and restores that a crash interrupted.

A report whose status is still ``in_progress`` was cut off. Each of its entries is
settled from what is on disk (``fsops.finish_interrupted_move``): only the source →
not moved; only the destination → moved; both → the copy is verified and the
redundant side removed; neither → an alarm, and nothing is deleted. Then the registry
and the report are brought in line. ``archive`` and ``restore`` run this first.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from runyard.errors import Refused, RunyardError
from runyard.lifecycle import fsops, storemoves, stores
from runyard.lifecycle.execlog import log_execution
from runyard.lifecycle.lock import yard_lock
from runyard.lifecycle.report import (
    ARCHIVE_REPORT_NAME,
    ArchiveReport,
    RestoreReport,
    SymlinkDoc,
    checked_path,
    entry_paths,
    load_report,
    relative_to_yard,
    write_report,
)
from runyard.lifecycle.roots import require_real_roots
from runyard.models import RunLocation
from runyard.registry import lifecycle as registry

if TYPE_CHECKING:
    from runyard.store.s3 import ObjectStore
    from runyard.yard import Yard


@dataclass
class RecoverResult:
    settled: list[str] = field(default_factory=list)  # "batch/run_id: outcome"
    alarms: list[str] = field(default_factory=list)
    removed_temp_files: list[str] = field(default_factory=list)  # relative to the yard

    @property
    def reports(self) -> int:
        return len({s.split("/")[0] for s in self.settled})


_REPORT_TEMP = re.compile(
    r"^\.(archive_report\.json|restore_report_[^/]+\.json)\.\d+(\.[0-9a-f]+)?\.tmp$"
)
"""A report's temporary file (``fsutil.write_atomic``), left behind by a process killed
between writing it and renaming it into place. Under the yard lock nobody else writes
reports, so any such file is a leftover: the report itself is the old or the new one."""


def _interrupted(archive_root: Path, removed: list[Path]) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    if not archive_root.is_dir():
        return found
    for batch in sorted(archive_root.iterdir()):
        if not batch.is_dir() or batch.is_symlink():
            continue
        for temp in sorted(batch.glob(".*.tmp")):
            if _REPORT_TEMP.match(temp.name) and not temp.is_symlink():
                temp.unlink()
                removed.append(temp)
        for path in sorted(batch.glob("*.json")):
            if path.name != ARCHIVE_REPORT_NAME and not path.name.startswith("restore_report_"):
                continue
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("status") == "in_progress":
                found.append((str(data.get("kind")), path))
    return found


def recover(yard: Yard, command: list[str] | None = None) -> RecoverResult:
    """Take the yard lock and settle every interrupted archive, restore and purge.

    A report with an alarm stays ``in_progress``: every later ``recover`` (and every
    ``archive``/``restore``, which refuse to go on) raises the alarm again until a
    person has dealt with it.
    """
    with yard_lock(yard.settings.yard_path, "recover"):
        return _recover_and_log(yard, command or ["runyard", "recover"])


def _recover_and_log(yard: Yard, command: list[str]) -> RecoverResult:
    started = datetime.now(UTC)
    result = _recover(yard)
    if result.settled or result.alarms:
        moved = sum(1 for s in result.settled if s.endswith((": moved", ": settled_both")))
        log_execution(
            yard,
            kind="recover",
            status="failed" if result.alarms else "complete",
            command=command,
            started_at=started,
            moved=moved,
            skipped=len(result.settled) - moved,
            failed=len(result.alarms),
            reason="; ".join(result.alarms)[:500] or None,
        )
    return result


def recover_locked(yard: Yard, command: list[str]) -> list[str]:
    """For callers that hold the lock already: settle, refuse to go on after an alarm."""
    result = _recover_and_log(yard, command)
    if result.alarms:
        raise Refused(
            "an interrupted archive or restore could not be settled: " + "; ".join(result.alarms),
            hint="nothing was deleted; look at the folders named, then run `runyard recover`",
        )
    return result.settled


def _recover(yard: Yard) -> RecoverResult:
    from runyard.lifecycle.purge import recover_purges

    result = RecoverResult()
    settings = yard.settings
    require_real_roots(settings)
    result.settled.extend(recover_purges(yard))
    removed: list[Path] = []
    interrupted = _interrupted(settings.archive_root, removed)
    result.removed_temp_files = [relative_to_yard(settings, p) for p in removed]
    for kind, path in interrupted:
        try:
            if kind == "archive":
                _settle_archive(yard, path, result)
            elif kind == "restore":
                _settle_restore(yard, path, result)
        except RunyardError as exc:
            result.alarms.append(f"{relative_to_yard(settings, path)}: {exc.message}")
    return result


def _settle_archive(yard: Yard, path: Path, result: RecoverResult) -> None:
    settings = yard.settings
    report = load_report(path, ArchiveReport)
    if report.yard_id != settings.yard_id or report.batch_id is None:
        raise Refused(f"{path} is not an interrupted archive of this yard")
    changes: list[tuple[str, RunLocation, str | None]] = []
    resolved: dict[Path, Path] = {}
    if report.store is not None:
        with stores.open_batch_store(settings, report.store) as store:
            _settle_store_archive(yard, store, path, report, result, changes)
            _finish_archive_report(yard, path, report, result, changes)
            stores.copy_report_quietly(store, report.batch_id, path)
        return
    for entry in report.entries:
        if entry.status not in ("pending", "moving", "moved"):
            continue
        active, archived = entry_paths(
            settings, report.batch_id, entry.run_id, entry.src, entry.dst, resolved
        )
        try:
            outcome = fsops.finish_interrupted_move(active, archived, entry.digest)
        except RunyardError as exc:
            entry.error = exc.message  # status kept: the alarm is raised again next time
            result.alarms.append(f"{report.batch_id}/{entry.run_id}: {exc.message}")
            continue
        was = entry.status
        entry.error = None
        if outcome in ("moved", "settled_both"):
            entry.status = "moved"
            if not (entry.digest or "").startswith(fsops.DIGEST_PREFIX) or not entry.symlinks:
                # Cut off before its journal said so: the report gets what the move
                # would have recorded, the tree's sha256 digest and its links.
                scan = fsops.scan_tree(archived)
                entry.digest, links = scan.digest, scan.symlinks
                entry.symlinks = [
                    SymlinkDoc.of(s["path"], s["target"], s["resolves_after_move"])
                    for s in fsops.symlink_resolution(archived, links)
                ]
            changes.append((entry.run_id, RunLocation.archived, report.batch_id))
        else:
            entry.status = "not_moved"
            changes.append((entry.run_id, RunLocation.active, None))
        # A run the report already had as moved (a report kept open by an alarm elsewhere
        # in it) was only checked again: it is not news, and not counted twice.
        if was != "moved" or outcome == "settled_both":
            result.settled.append(f"{report.batch_id}/{entry.run_id}: {outcome}")
    _finish_archive_report(yard, path, report, result, changes)


def _settle_store_archive(
    yard: Yard,
    store: ObjectStore,
    path: Path,
    report: ArchiveReport,
    result: RecoverResult,
    changes: list[tuple[str, RunLocation, str | None]],
) -> None:
    """``_settle_archive`` for a batch going to an object store: incomplete uploads are
    aborted, each run settled from its folder, its tombstone, the batch's journal of
    verified objects and the object itself (``storemoves.settle_archive``)."""
    settings = yard.settings
    assert report.batch_id is not None and report.store is not None
    store.abort_incomplete_uploads(store.key(report.batch_id) + "/")
    verified = storemoves.StoreJournal.read(path.parent / storemoves.JOURNAL_NAME)
    runs_root = settings.runs_root
    for entry in report.entries:
        if entry.status not in ("pending", "moving", "moved"):
            continue
        active = checked_path(settings, entry.src, runs_root / entry.run_id, runs_root, "src")
        key = stores.checked_object_key(
            store, report.batch_id, entry.run_id, entry.object_key, entry.dst
        )
        record = verified.get(entry.run_id)
        if record is None and entry.status == "moved" and entry.tar_sha256 is not None:
            record = storemoves.VerifiedObject(
                entry.run_id, key, entry.tar_bytes or 0, entry.tar_sha256, entry.digest or ""
            )
        was = entry.status
        tomb = fsops.tombstone_path(active)
        if was == "moved" and not os.path.lexists(active) and not os.path.lexists(tomb):
            continue  # settled before: checked by `runyard check`, not re-read here
        try:
            outcome = storemoves.settle_archive(store, active, key, record)
        except RunyardError as exc:
            entry.error = exc.message  # status kept: the alarm is raised again next time
            result.alarms.append(f"{report.batch_id}/{entry.run_id}: {exc.message}")
            continue
        entry.error = None
        if outcome == "moved":
            assert record is not None
            entry.status, entry.method = "moved", "store"
            entry.digest = record.digest or entry.digest
            entry.tar_bytes, entry.tar_sha256 = record.size, record.sha256
            changes.append((entry.run_id, RunLocation.archived, report.batch_id))
        else:
            entry.status = "not_moved"
            changes.append((entry.run_id, RunLocation.active, None))
        if was != "moved":
            result.settled.append(f"{report.batch_id}/{entry.run_id}: {outcome}")


def _finish_archive_report(
    yard: Yard,
    path: Path,
    report: ArchiveReport,
    result: RecoverResult,
    changes: list[tuple[str, RunLocation, str | None]],
) -> None:
    with yard.write() as conn:
        registry.set_locations(conn, changes)
    moved = [e for e in report.entries if e.status == "moved"]
    report.summary.moved = len(moved)
    report.summary.bytes_moved = sum(e.bytes for e in moved)
    report.summary.failed = sum(1 for e in report.entries if e.status == "failed")
    alarmed = any(a.startswith(f"{report.batch_id}/") for a in result.alarms)
    report.status = "in_progress" if alarmed else "recovered"  # an alarm is raised again
    report.finished_at = report.updated_at = datetime.now(UTC)
    write_report(path, report)


def _settle_restore(yard: Yard, path: Path, result: RecoverResult) -> None:
    settings = yard.settings
    report = load_report(path, RestoreReport)
    if report.yard_id != settings.yard_id:
        raise Refused(f"{path} is not an interrupted restore of this yard")
    archive = load_report(path.parent / ARCHIVE_REPORT_NAME, ArchiveReport)
    if archive.store is None:
        _settle_restore_from(yard, path, report, archive, result, None)
        return
    with stores.open_batch_store(settings, archive.store) as store:
        _settle_restore_from(yard, path, report, archive, result, store)
        stores.copy_report_quietly(store, report.batch_id, path)


def _settle_restore_from(
    yard: Yard,
    path: Path,
    report: RestoreReport,
    archive: ArchiveReport,
    result: RecoverResult,
    store: ObjectStore | None,
) -> None:
    """Settle each entry of an interrupted restore from ``archive``'s batch (in
    ``store`` when the batch is in one)."""
    settings = yard.settings
    digests = {e.run_id: e.digest for e in archive.entries}
    originals = {e.run_id: e for e in archive.entries}
    changes: list[tuple[str, RunLocation, str | None]] = []
    resolved: dict[Path, Path] = {}
    if store is not None:  # restored, but their objects not yet deleted when it stopped
        left = [
            stores.checked_object_key(store, report.batch_id, e.run_id, o.object_key, o.dst)
            for e in report.entries
            if e.status == "restored" and (o := originals.get(e.run_id)) is not None
        ]
        storemoves.delete_left_objects(store, left)
    for entry in report.entries:
        if entry.status not in ("pending", "moving"):
            continue
        original = originals.get(entry.run_id)
        if original is None:
            raise Refused(f"{entry.run_id} is not in the batch's archive report")
        try:
            if store is not None:  # archived is an object: unpacked into active, or not
                runs_root = settings.runs_root
                active = checked_path(
                    settings, original.src, runs_root / entry.run_id, runs_root, "src"
                )
                key = stores.checked_object_key(
                    store, report.batch_id, entry.run_id, original.object_key, original.dst
                )
                outcome: str = storemoves.settle_restore(
                    store, key, active, digests.get(entry.run_id)
                )
            else:
                active, archived = entry_paths(
                    settings, report.batch_id, entry.run_id, original.src, original.dst, resolved
                )
                # A restore moves archived → active.
                outcome = fsops.finish_interrupted_move(archived, active, digests.get(entry.run_id))
        except RunyardError as exc:
            entry.error = exc.message  # status kept: the alarm is raised again next time
            result.alarms.append(f"{report.batch_id}/{entry.run_id}: {exc.message}")
            continue
        entry.error = None
        if outcome in ("moved", "settled_both"):
            entry.status = "restored"
            changes.append((entry.run_id, RunLocation.active, None))
        else:
            entry.status = "failed"
            entry.error = "interrupted before it moved; still archived"
            changes.append((entry.run_id, RunLocation.archived, report.batch_id))
        result.settled.append(f"{report.batch_id}/{entry.run_id}: restore {outcome}")
    with yard.write() as conn:
        registry.set_locations(conn, changes)
    report.restored = sum(1 for e in report.entries if e.status == "restored")
    report.failed = sum(1 for e in report.entries if e.status == "failed")
    alarmed = any(a.startswith(f"{report.batch_id}/") for a in result.alarms)
    report.status = "in_progress" if alarmed else "recovered"
    report.finished_at = report.updated_at = datetime.now(UTC)
    write_report(path, report)
