"""``runyard restore``: put archived runs back exactly where they were, from a report.

Dry run by default. Every path of the report is checked (this yard, this batch, inside
the roots, no symlinked parents) before anything moves; an existing target is a
conflict and is never overwritten; the archived tree must still have the digest the
archive recorded. The restore report is written beside the archive report before the
first move and kept current, so ``recover`` can finish an interrupted restore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from runyard.errors import Invalid, Refused, RunyardError
from runyard.lifecycle import fsops, movers, storemoves, stores
from runyard.lifecycle.crashpoints import crashpoint
from runyard.lifecycle.execlog import log_execution
from runyard.lifecycle.journal import Journal
from runyard.lifecycle.lock import yard_lock
from runyard.lifecycle.report import (
    ARCHIVE_REPORT_NAME,
    ArchiveEntry,
    ArchiveReport,
    RestoreEntry,
    RestoreReport,
    checked_path,
    entry_paths,
    read_archive_report,
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
class RestorePlan:
    report: RestoreReport
    archive_report_path: Path
    digests: dict[str, str | None]
    # A batch in an object store: the store as the plan opened it (to list the batch;
    # the restore goes on with it), and each run's (key, tar size, SHA-256).
    store: ObjectStore | None = None
    objects: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    # Runs that are gone from where the archive put them: the registry says ``missing``.
    # None: every entry that failed the plan (a local batch's folder is gone or a link).
    # A store run whose object is there but wrong stays archived: it may be put back.
    lost: list[str] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _locate_report(yard: Yard, report_path: Path) -> Path:
    """The report's real path; it must be ``<archive_root>/<batch>/archive_report.json``."""
    path = report_path if report_path.is_absolute() else Path.cwd() / report_path
    if path.is_dir():
        path = path / ARCHIVE_REPORT_NAME
    real = path.resolve()
    if real.name != ARCHIVE_REPORT_NAME or real.parent.parent != (
        yard.settings.archive_root.resolve()
    ):
        raise Refused(
            f"{report_path} is not an archive report of this yard's archive root "
            f"({yard.settings.archive_root}/<batch>/{ARCHIVE_REPORT_NAME})"
        )
    return real


def plan_restore(yard: Yard, report_path: Path, only: Sequence[str] = ()) -> RestorePlan:
    """What a restore would do: each run restored, or skipped as a conflict."""
    settings = yard.settings
    require_real_roots(settings)
    path = _locate_report(yard, report_path)
    archive = read_archive_report(path, settings)
    assert archive.batch_id is not None
    if path.parent.name != archive.batch_id:
        raise Refused(f"{path} says batch {archive.batch_id!r} but lies in {path.parent.name!r}")
    moved = {e.run_id: e for e in archive.entries if e.status == "moved"}
    all_ids = {e.run_id for e in archive.entries}
    unknown = [r for r in only if r not in all_ids]
    if unknown:
        raise Invalid(f"not in this report: {', '.join(unknown)}")
    chosen = [r for r in (only or [e.run_id for e in archive.entries]) if r in all_ids]
    now = _now()
    report = RestoreReport(
        yard_id=settings.yard_id,
        batch_id=archive.batch_id,
        archive_report=relative_to_yard(settings, path),
        status="dry_run",
        created_at=now,
        updated_at=now,
    )
    digests: dict[str, str | None] = {}
    by_id = {e.run_id: e for e in reversed(archive.entries)}  # the first entry of an id wins
    resolved: dict[Path, Path] = {}
    with yard.read() as conn:
        where = registry.locations(conn, list(dict.fromkeys(chosen)))
    if archive.store is not None:
        return _plan_store_restore(yard, path, archive, report, chosen, by_id, where)
    # Check every entry before anything moves: one tampered path refuses the whole restore.
    for run_id in dict.fromkeys(chosen):
        original = by_id[run_id]
        active, archived = entry_paths(
            settings, archive.batch_id, run_id, original.src, original.dst, resolved
        )
        entry = RestoreEntry(
            run_id=run_id,
            src=relative_to_yard(settings, archived),
            dst=relative_to_yard(settings, active),
            bytes=original.bytes,
        )
        location, batch = where.get(run_id, (None, None))
        if run_id not in moved:
            entry.status, entry.error = "not_archived", f"its archive entry is {original.status}"
        elif not archived.is_dir() or archived.is_symlink():
            already = active.is_dir() and not active.is_symlink()
            entry.status = "not_archived"
            if already:
                entry.error = "already restored"
            elif location == RunLocation.purged and batch == archive.batch_id:
                entry.error = "purged: deleted from this batch by `runyard purge`"
            elif location == RunLocation.purged:
                entry.error = f"purged, from a later batch ({batch})"
            elif location != RunLocation.missing and (location, batch) != (
                RunLocation.archived.value,
                archive.batch_id,
            ):
                entry.error = f"no longer in this batch (the registry has it {location}" + (
                    f" in batch {batch})" if batch else ")"
                )
            else:
                # Archived here, and not here: it cannot come back, and the command says so.
                entry.status = "failed"
                entry.error = (
                    f"{entry.src} was replaced by a symlink; not followed, not restored"
                    if archived.is_symlink()
                    else f"missing: no folder at {entry.src}; not restored"
                )
        elif active.exists() or active.is_symlink():
            entry.status, entry.error = "conflict", f"{active} exists; it is never overwritten"
        digests[run_id] = original.digest
        report.entries.append(entry)
    report.conflicts = sum(1 for e in report.entries if e.status == "conflict")
    report.failed = sum(1 for e in report.entries if e.status == "failed")
    return RestorePlan(report=report, archive_report_path=path, digests=digests)


def _plan_store_restore(
    yard: Yard,
    path: Path,
    archive: ArchiveReport,
    report: RestoreReport,
    chosen: Sequence[str],
    by_id: dict[str, ArchiveEntry],
    where: dict[str, tuple[str, str | None]],
) -> RestorePlan:
    """``plan_restore`` for a batch in an object store: each run's object is looked up
    with one listing of the batch (not a request per run)."""
    settings = yard.settings
    assert archive.batch_id is not None and archive.store is not None
    store = stores.open_batch_store(settings, archive.store)
    present = {o.key: o.size for o in store.list_objects(store.key(archive.batch_id) + "/")}
    lost: list[str] = []
    plan = RestorePlan(
        report=report,
        archive_report_path=path,
        digests={},
        store=store,
        lost=lost,
    )
    runs_root = settings.runs_root
    for run_id in dict.fromkeys(chosen):
        original = by_id[run_id]
        active = checked_path(settings, original.src, runs_root / run_id, runs_root, "src")
        entry = RestoreEntry(
            run_id=run_id,
            src=original.dst,
            dst=relative_to_yard(settings, active),
            bytes=original.bytes,
        )
        location = where.get(run_id, (None, None))[0]
        if original.status != "moved":
            entry.status, entry.error = "not_archived", f"its archive entry is {original.status}"
        else:
            key = stores.checked_object_key(
                store, archive.batch_id, run_id, original.object_key, original.dst
            )
            if key not in present:
                already = active.is_dir() and not active.is_symlink()
                entry.status = "not_archived"
                if already:
                    entry.error = "already restored"
                elif location == RunLocation.purged:
                    entry.error = "purged: deleted from the store by `runyard purge`"
                else:
                    entry.status = "failed"
                    entry.error = f"missing: no object {original.dst} in the store; not restored"
                    lost.append(run_id)
            elif original.tar_bytes is None or original.tar_sha256 is None:
                entry.status, entry.error = "failed", "the report records no tar size or SHA-256"
            elif present[key] != original.tar_bytes:
                entry.status = "failed"
                entry.error = (
                    f"{original.dst} holds {present[key]} bytes, not the {original.tar_bytes} "
                    "archived; not restored"
                )
            elif active.exists() or active.is_symlink():
                entry.status, entry.error = "conflict", f"{active} exists; it is never overwritten"
            else:
                plan.objects[run_id] = (key, original.tar_bytes, original.tar_sha256)
        plan.digests[run_id] = original.digest
        report.entries.append(entry)
    report.conflicts = sum(1 for e in report.entries if e.status == "conflict")
    report.failed = sum(1 for e in report.entries if e.status == "failed")
    return plan


def write_restore_dry_run(yard: Yard, plan: RestorePlan) -> Path:
    stamp = plan.report.created_at.strftime("%Y%m%dT%H%M%S%fZ")
    path = yard.settings.logs_dir / f"restore_dryrun_{stamp}.json"
    write_report(path, plan.report)
    return path


@dataclass
class RestoreResult:
    report: RestoreReport
    report_path: Path
    recovered: list[str]


def run_restore(
    yard: Yard, report_path: Path, only: Sequence[str] = (), command: Sequence[str] = ()
) -> RestoreResult:
    """Restore for real; the report goes beside the archive report."""
    from runyard.lifecycle.recover import recover_locked

    settings = yard.settings
    with yard_lock(settings.yard_path, "restore"):
        recovered = recover_locked(yard, list(command))
        plan = plan_restore(yard, report_path, only)
        report = plan.report
        report.status = "in_progress"
        report.command = list(command)
        started = _now()
        stamp = started.strftime("%Y%m%dT%H%M%S%fZ")
        out = plan.archive_report_path.parent / f"restore_report_{stamp}.json"
        write_report(out, report)  # before the first move
        crashpoint("restore:report-written")
        journal = Journal(yard, report, out, RunLocation.active, None)
        pending = [e for e in report.entries if e.status == "pending"]
        lost = (
            plan.lost
            if plan.lost is not None
            else [e.run_id for e in report.entries if e.status == "failed"]
        )
        if lost:  # the registry never claims a place the run is not in
            with yard.write() as conn:
                registry.set_locations(conn, [(r, RunLocation.missing, None) for r in lost])

        store = plan.store
        if store is not None:
            store.check_bucket()  # before the first run: a store that is not there says so

            restored = storemoves.RestoredObjects(store)

            def restore_from_store(entry: RestoreEntry) -> None:
                _restore_one_from_store(yard, store, journal, entry, plan, restored)

            # Each run waits on the store, then on fsync (runtar), then on the CPU.
            for _ in movers.ordered_map(restore_from_store, pending, movers.STORE_DOWNLOADS):
                pass
            restored.flush()  # before the report says complete: recover deletes the rest
        else:
            threads = movers.move_threads(settings.archive_root, settings.runs_root)
            with movers.source_remover(threads) as remove:

                def restore_one(entry: RestoreEntry) -> None:
                    _restore_one(yard, journal, entry, plan.digests.get(entry.run_id), remove)

                for _ in movers.ordered_map(restore_one, pending, threads):
                    pass
        journal.flush()
        report.restored = sum(1 for e in report.entries if e.status == "restored")
        report.failed = sum(1 for e in report.entries if e.status == "failed")
        report.status = "failed" if report.failed else "complete"
        report.finished_at = report.updated_at = _now()
        write_report(out, report)
        crashpoint("restore:report-complete")
        if store is not None:
            stores.copy_report_quietly(store, report.batch_id, out)
            store.close()
        log_execution(
            yard,
            kind="restore",
            # The command exits 4 when a run could not come back; the log says why.
            status="conflicts"
            if report.conflicts and report.status == "complete"
            else report.status,
            command=command,
            started_at=started,
            batch_id=report.batch_id,
            moved=report.restored,
            skipped=report.conflicts,
            size=sum(e.bytes for e in report.entries if e.status == "restored"),
            failed=report.failed,
            report_path=relative_to_yard(settings, out),
        )
        return RestoreResult(report=report, report_path=out, recovered=recovered)


def _restore_one(
    yard: Yard,
    journal: Journal,
    entry: RestoreEntry,
    digest: str | None,
    remove: fsops.Remover | None,
) -> None:
    settings = yard.settings
    archived = settings.yard_path / entry.src
    active = settings.yard_path / entry.dst
    try:
        crashpoint("restore:entry-moving")
        fsops.move_tree(archived, active, expected=digest, remove_source=remove)
        crashpoint("restore:entry-moved")
    except RunyardError as exc:
        journal.failed(entry, exc.message)
        return
    with journal.lock:
        entry.status = "restored"
        journal.moved(entry.run_id)


def _restore_one_from_store(
    yard: Yard,
    store: ObjectStore,
    journal: Journal,
    entry: RestoreEntry,
    plan: RestorePlan,
    restored: storemoves.RestoredObjects,
) -> None:
    key, size, sha256 = plan.objects[entry.run_id]
    active = yard.settings.yard_path / entry.dst
    try:
        crashpoint("restore:entry-moving")
        storemoves.restore_run(store, key, active, size, sha256, plan.digests.get(entry.run_id))
        crashpoint("restore:entry-moved")
    except RunyardError as exc:
        journal.failed(entry, exc.message)
        return
    with journal.lock:
        entry.status = "restored"
        journal.moved(entry.run_id)
    restored.add(key)
