"""``runyard archive``: plan (every candidate, every skip and its reason), then apply.

Plan → report → apply, as restic does: ``plan_archive`` only reads; ``run_archive``
takes the yard lock, settles any interrupted batch first (``recover``), registers
unknown folders as legacy runs (so the registry always knows what moved), writes the
batch's ``archive_report.json`` before the first move (every entry with its metadata
digest), and keeps it current as runs move (each with its sha256 digest, through the
``Journal``). A crash at any point leaves a report from which ``recover`` finishes the
batch.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from runyard import fsnames
from runyard.errors import Invalid, NotFound, RunyardError
from runyard.ids import run_id_problem
from runyard.lifecycle import fsops, guards, movers, references, storemoves, stores
from runyard.lifecycle.crashpoints import crashpoint
from runyard.lifecycle.execlog import LOG_NAME, log_execution
from runyard.lifecycle.journal import Journal
from runyard.lifecycle.lock import yard_lock
from runyard.lifecycle.report import (
    ARCHIVE_REPORT_NAME,
    PROBLEM_SKIPS,
    ArchiveEntry,
    ArchiveReport,
    ArchiveSkip,
    ArchiveSummary,
    SkipReasonDoc,
    SymlinkDoc,
    relative_to_yard,
    write_report,
)
from runyard.lifecycle.roots import require_real_roots
from runyard.models import RunLocation
from runyard.registry import lifecycle as registry
from runyard.registry.run_import import import_runs
from runyard.registry.runs import derive_group, require_runs_root
from runyard.store import parse_store_url
from runyard.store.errors import StoreUnreachable

if TYPE_CHECKING:
    from runyard.store.s3 import ObjectStore
    from runyard.yard import Yard

JOURNAL_NAME = storemoves.JOURNAL_NAME


@dataclass
class ArchiveOptions:
    """What to archive and how; ``None`` guard values take the yard's settings."""

    scope: guards.Scope
    keep_recent_minutes: int | None = None
    keep_last_runs: int | None = None
    reason: str | None = None
    command: list[str] = field(default_factory=list)
    # Retention: archive only the oldest N eligible runs (the rest stay, "within the cap").
    oldest: int | None = None
    # ``archive --to s3://BUCKET/PREFIX``: this batch goes to that store; None takes
    # ``[archive] store`` from runyard.toml (and without one, the archive root).
    store: str | None = None
    kind: str = "archive"  # how the execution log names it


@dataclass(frozen=True)
class _Candidate:
    """A run as the archive sees it; ``group`` is the registry's (references add theirs)."""

    run_id: str
    group: str | None
    started_at: datetime
    status: str
    pinned: bool
    legacy: bool
    registered: bool


@dataclass
class ArchivePlan:
    report: ArchiveReport
    unregistered: list[str]  # folders to register as legacy runs before moving
    # The metadata scan of each entry's tree: what the move checks the tree against.
    scans: dict[str, fsops.TreeScan] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


def _unknown_folders(root: Path, known: set[str]) -> list[os.DirEntry[str]]:
    with os.scandir(root) as entries:
        return [
            e
            for e in entries
            if e.name not in known
            and not e.name.startswith(".")
            and e.is_dir(follow_symlinks=False)
        ]


def plan_archive(yard: Yard, options: ArchiveOptions) -> ArchivePlan:
    """Every candidate with its action (archive or skip, with every reason) and size."""
    settings = yard.settings
    root = require_runs_root(settings)
    require_real_roots(settings)
    now = _now()
    keep_recent = (
        options.keep_recent_minutes
        if options.keep_recent_minutes is not None
        else settings.file.keep_recent_minutes
    )
    keep_last = (
        options.keep_last_runs
        if options.keep_last_runs is not None
        else settings.file.keep_last_runs
    )
    if keep_recent < 0 or keep_last < 0:
        raise Invalid("--keep-recent-minutes and --keep-last-runs cannot be negative")
    _check_reason(options.reason)
    refs = references.scan_references(settings.yard_path, settings.file.references)
    store_url = options.store or settings.file.archive.store
    with yard.read() as conn:
        active = registry.active_runs(conn)
        # Only names that can be run ids are looked up: a name that is not UTF-8 is
        # no run id, and no database could be asked about it.
        names = [e.name for e in os.scandir(root) if not run_id_problem(e.name)]
        known_ids = set(registry.locations(conn, names))
    facts: list[_Candidate] = []
    for run in active:
        facts.append(
            _Candidate(
                run_id=run.run_id,
                group=run.group,
                status=run.status,
                pinned=run.pinned,
                legacy=run.legacy,
                registered=True,
                started_at=run.started_at,
            )
        )
    unknown = _unknown_folders(root, known_ids)
    invalid: list[ArchiveSkip] = []
    for entry in unknown:
        problem = run_id_problem(entry.name)
        if problem:  # never registered, never moved; reported with every candidate
            invalid.append(
                ArchiveSkip(
                    run_id=fsnames.shown(entry.name),
                    reasons=[
                        SkipReasonDoc(
                            code="invalid_run_id", message=f"folder name is not a run id: {problem}"
                        )
                    ],
                )
            )
            continue
        facts.append(
            _Candidate(
                run_id=entry.name,
                group=derive_group(settings, entry.name, None),
                status="unknown",
                pinned=False,
                legacy=True,
                registered=False,
                started_at=datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime, UTC),
            )
        )
    _check_named_runs_exist(options.scope, facts, refs)
    selected = guards.select_candidates(
        facts, options.scope, settings.file.legacy_patterns, now, refs
    )
    kept = guards.keep_last_runs_per_group(
        [
            (f.run_id, references.effective_group(f.run_id, f.group, refs), f.started_at)
            for f in facts
        ],
        keep_last,
    )
    guard_settings = guards.GuardSettings(
        now=now,
        keep_recent_minutes=keep_recent,
        keep_last_runs=keep_last,
        keep_marker=settings.file.keep_marker,
    )
    report = ArchiveReport(
        yard_id=settings.yard_id,
        batch_id=None,
        status="dry_run",
        reason=options.reason,
        command=options.command,
        created_at=now,
        updated_at=now,
        problems=[f"{p.path}: {p.message}" for p in refs.problems],
        store=str(parse_store_url(store_url)) if store_url is not None else None,
    )
    report.skips.extend(invalid)
    scans: dict[str, fsops.TreeScan] = {}
    started = {f.run_id: f.started_at for f in selected}
    # Only a copy can lose what a rename keeps: asked once, not for every run.
    # A tar in a store keeps everything a run holds (runtar), so only a local batch on
    # another filesystem asks what a copy could lose.
    to_store = store_url is not None
    across = (
        bool(selected) and not to_store and not fsops.same_filesystem(root, settings.archive_root)
    )
    for fact in sorted(selected, key=lambda f: f.run_id):
        folder = root / fact.run_id
        shown_group = references.effective_group(fact.run_id, fact.group, refs)
        scan, unmovable = _scan_or_problem(folder, settings.archive_root if across else None)
        if unmovable is not None:  # one odd run never stops the others
            report.skips.append(
                ArchiveSkip(
                    run_id=fact.run_id,
                    group=shown_group,
                    bytes=scan.bytes if scan is not None else 0,
                    reasons=[unmovable],
                )
            )
            continue
        assert scan is not None  # no scan comes only with a reason
        reasons = guards.evaluate(
            guards.CandidateFacts(
                run_id=fact.run_id,
                group=fact.group,
                status=fact.status,
                pinned=fact.pinned,
                legacy=fact.legacy,
                registered=fact.registered,
                started_at=fact.started_at,
                newest_mtime_ns=scan.newest_mtime_ns,
                has_keep_marker=os.path.lexists(folder / settings.file.keep_marker),
            ),
            guard_settings,
            kept,
            refs,
        )
        if reasons:
            report.skips.append(
                ArchiveSkip(
                    run_id=fact.run_id,
                    group=shown_group,
                    bytes=scan.bytes,
                    reasons=[SkipReasonDoc(code=r.code, message=r.message) for r in reasons],
                )
            )
        else:
            report.entries.append(
                ArchiveEntry(
                    run_id=fact.run_id,
                    group=shown_group,
                    legacy=fact.legacy,
                    src=relative_to_yard(settings, folder),
                    dst="",  # set when the batch exists
                    bytes=scan.bytes,
                    files=scan.files,
                    digest=scan.metadata_digest,
                )
            )
            scans[fact.run_id] = scan
    if options.oldest is not None:
        by_age = sorted(report.entries, key=lambda e: (started[e.run_id], e.run_id))
        report.entries = sorted(by_age[: options.oldest], key=lambda e: e.run_id)
        for e in by_age[options.oldest :]:
            report.skips.append(
                ArchiveSkip(
                    run_id=e.run_id,
                    group=e.group,
                    bytes=e.bytes,
                    reasons=[SkipReasonDoc(code="within_cap", message="newer; within the cap")],
                )
            )
    report.summary = ArchiveSummary(
        candidates=len(selected),
        to_archive=len(report.entries),
        skipped=len(report.skips),
        problems=sum(
            1 for skip in report.skips if any(r.code in PROBLEM_SKIPS for r in skip.reasons)
        ),
        bytes_to_archive=sum(e.bytes for e in report.entries),
    )
    unregistered = [f.run_id for f in facts if not f.registered]
    return ArchivePlan(report=report, unregistered=unregistered, scans=scans)


def _scan_or_problem(
    folder: Path, copy_to: Path | None
) -> tuple[fsops.TreeScan | None, SkipReasonDoc | None]:
    """A candidate's cheap scan, or why runyard cannot move it (a skip in PROBLEM_SKIPS,
    or ``missing``); ``copy_to`` is the archive root when moves there are copies."""
    if folder.is_symlink():
        message = f"{folder} was replaced by a symlink; runyard never moves through one"
        return None, SkipReasonDoc(code="swapped_for_symlink", message=message)
    if not folder.is_dir():
        return None, SkipReasonDoc(code="missing", message=f"no folder at {folder}")
    try:
        scan = fsops.scan_tree(folder, hash_content=False)
    except RunyardError as exc:
        return None, SkipReasonDoc(code="unreadable", message=exc.message)
    lost = fsops.cannot_keep(scan, folder, copy_to) if copy_to is not None else None
    if lost:
        return scan, SkipReasonDoc(code="cannot_keep", message=lost)
    return scan, None


def _check_reason(reason: str | None) -> None:
    """``--reason`` is kept in reports and the log exactly: text that is not UTF-8 (or is
    unprintable) is refused before anything is planned or moved."""
    if reason is None:
        return
    if not fsnames.is_utf8(reason):
        raise Invalid(
            f"--reason {fsnames.shown(reason)!r} is not valid UTF-8 text",
            hint="give the reason in UTF-8; nothing was archived",
        )
    if any(ord(c) < 32 and c not in "\t" for c in reason) or len(reason) > 1000:
        raise Invalid(
            "--reason must be one line of at most 1000 characters without control characters"
        )


def _check_named_runs_exist(
    scope: guards.Scope, facts: list[_Candidate], refs: references.ReferenceScan
) -> None:
    """``--run-id`` and ``--group`` that match no active run are errors, not an empty batch."""
    if scope.run_ids:
        known = {f.run_id for f in facts}
        missing = [r for r in scope.run_ids if r not in known]
        if missing:
            raise NotFound(
                f"no active run {', '.join(missing)} in the runs root",
                hint="`runyard run list --location active` lists the runs an archive can move; "
                "an archived run is put back with `runyard restore --run-id ID`",
            )
    if scope.groups:
        present = {references.effective_group(f.run_id, f.group, refs) for f in facts}
        missing = [g for g in scope.groups if g not in present]
        if missing:
            raise NotFound(
                f"no active run in group {', '.join(missing)}",
                hint="`runyard run list --group G` lists a group's runs; groups are exact "
                "(e.g. CH01/003)",
            )


def write_dry_run(yard: Yard, plan: ArchivePlan) -> Path:
    """The dry run's report, in the logs folder."""
    stamp = plan.report.created_at.strftime("%Y%m%dT%H%M%S%fZ")
    path = yard.settings.logs_dir / f"archive_dryrun_{stamp}.json"
    write_report(path, plan.report)
    return path


def new_batch_id(archive_root: Path, now: datetime) -> str:
    """A UTC timestamp, made unique in the archive root by a counter if needed."""
    base = now.strftime("%Y%m%dT%H%M%SZ")
    candidate, n = base, 1
    while (archive_root / candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


@dataclass
class ArchiveResult:
    report: ArchiveReport
    report_path: Path | None
    recovered: list[str]


def run_archive(yard: Yard, options: ArchiveOptions) -> ArchiveResult:
    """Archive for real: recover, plan, register unknown folders, journal, move."""
    from runyard.lifecycle.recover import recover_locked

    settings = yard.settings
    with yard_lock(settings.yard_path, "archive"):
        recovered = recover_locked(yard, options.command)
        plan = plan_archive(yard, options)
        store = None
        store_url = plan.report.store  # --to, else [archive] store, as the plan parsed it
        if store_url is not None and plan.report.entries:
            # An unreachable endpoint, refused credentials, a missing bucket or one
            # without write permission is found here, before the first run moves.
            store = stores.open_batch_store(settings, store_url)
            store.probe()
        report = plan.report
        moving_ids = {e.run_id for e in report.entries}
        to_register = [r for r in plan.unregistered if r in moving_ids]
        if to_register:
            import_runs(yard, [settings.runs_root / r for r in to_register])
        if not report.entries:
            report.status = "complete"
            report.finished_at = _now()
            return ArchiveResult(report=report, report_path=None, recovered=recovered)
        started = _now()
        batch_id = new_batch_id(settings.archive_root, started)
        batch_dir = settings.archive_root / batch_id
        batch_dir.mkdir(parents=True)
        report.batch_id = batch_id
        report.status = "in_progress"
        for entry in report.entries:
            if store is not None:
                entry.object_key = stores.run_object_key(store, batch_id, entry.run_id)
                entry.dst = store.location(entry.object_key)
            else:
                entry.dst = relative_to_yard(settings, settings.run_dir(entry.run_id, batch_id))
        if store is not None:
            report.store = store.location()
        report_path = batch_dir / ARCHIVE_REPORT_NAME
        # Every tree is hashed before the first move, so the report holds the digest of
        # each run from the start: recovery can verify any copy it finds.
        threads = (
            movers.STORE_UPLOADS
            if store is not None
            else movers.move_threads(settings.runs_root, settings.archive_root)
        )
        scans = plan.scans
        # Each entry's metadata digest is in the report before the first move; its
        # sha256 digest replaces it as it moves (a tree is hashed once, as it moves).
        try:
            write_report(report_path, report)  # before the first move
            if store is not None:  # the bucket alone is enough to restore
                storemoves.copy_to_store(
                    store,
                    stores.batch_object_key(store, batch_id, ARCHIVE_REPORT_NAME),
                    report_path,
                )
        except BaseException:
            # Nothing moved: a batch that never started leaves no folder behind.
            _remove_unstarted_batch(batch_dir)
            raise
        crashpoint("archive:report-written")
        journal = Journal(yard, report, report_path, RunLocation.archived, batch_id)
        pending = [e for e in report.entries if e.status == "pending"]

        with (
            movers.source_remover(threads) as remove,
            storemoves.StoreJournal(batch_dir / JOURNAL_NAME) as store_journal,
        ):
            if store is not None:
                to_store = _StoreBatch(store, store_journal)

                def archive_one(entry: ArchiveEntry) -> None:
                    src = settings.run_dir(entry.run_id)
                    to_store.archive(journal, entry, src, scans[entry.run_id], remove)

            else:

                def archive_one(entry: ArchiveEntry) -> None:
                    src = settings.run_dir(entry.run_id)
                    dst = settings.run_dir(entry.run_id, batch_id)
                    _archive_one(journal, entry, src, dst, scans[entry.run_id], remove)

            for _ in movers.ordered_map(archive_one, pending, threads):
                pass
        journal.flush()
        report.status = (
            "complete" if not any(e.status == "failed" for e in report.entries) else "failed"
        )
        report.finished_at = _now()
        report.updated_at = report.finished_at
        moved = [e for e in report.entries if e.status == "moved"]
        report.summary.moved = len(moved)
        report.summary.failed = sum(1 for e in report.entries if e.status == "failed")
        report.summary.bytes_moved = sum(e.bytes for e in moved)
        write_report(report_path, report)
        crashpoint("archive:report-complete")
        log_execution(
            yard,
            kind=options.kind,
            status=report.status,
            command=options.command,
            started_at=started,
            batch_id=batch_id,
            reason=options.reason,
            moved=report.summary.moved,
            skipped=report.summary.skipped,
            failed=report.summary.failed,
            size=report.summary.bytes_moved,
            report_path=relative_to_yard(settings, report_path),
            skip_reasons=Counter(r.code for skip in report.skips for r in skip.reasons),
        )
        if store is not None:
            _copy_batch_files(yard, store, report, report_path)
        return ArchiveResult(report=report, report_path=report_path, recovered=recovered)


def _copy_batch_files(yard: Yard, store: ObjectStore, report: ArchiveReport, path: Path) -> None:
    """The finished report and the execution log, beside the batch's runs in the bucket.
    The runs are safe whatever happens here: a copy that fails is a problem the report
    names (``archive`` and ``recover`` copy the report again next time)."""
    assert report.batch_id is not None
    log = yard.settings.logs_dir / LOG_NAME
    try:
        key = stores.batch_object_key(store, report.batch_id, ARCHIVE_REPORT_NAME)
        storemoves.copy_to_store(store, key, path)
        if log.is_file():
            key = stores.batch_object_key(store, report.batch_id, stores.EXECUTION_LOG_OBJECT)
            storemoves.copy_to_store(store, key, log)
    except RunyardError as exc:
        report.problems.append(f"the report could not be copied into the store: {exc.message}")
        write_report(path, report)


class _StoreBatch:
    """The runs of one batch going to a store: once the store stops answering, the runs
    not yet tried fail at once (each would wait out its retries), stay where they are,
    and a later ``archive`` takes them."""

    def __init__(self, store: ObjectStore, store_journal: storemoves.StoreJournal) -> None:
        self.store, self.store_journal = store, store_journal
        self.down: str | None = None

    def archive(
        self,
        journal: Journal,
        entry: ArchiveEntry,
        src: Path,
        scan: fsops.TreeScan,
        remove: fsops.Remover | None,
    ) -> None:
        assert entry.object_key is not None
        if self.down is not None:
            journal.failed(entry, f"not tried: {self.down}")
            return
        try:
            crashpoint("archive:entry-moving")
            links = fsops.symlink_resolution(src, scan.symlinks)
            verified = storemoves.archive_run(
                self.store, entry.run_id, src, entry.object_key, scan, self.store_journal, remove
            )
            crashpoint("archive:entry-moved")
        except StoreUnreachable as exc:
            self.down = f"the store stopped answering ({exc.message})"
            journal.failed(entry, exc.message)
            return
        except RunyardError as exc:
            journal.failed(entry, exc.message)
            return
        with journal.lock:
            entry.method = "store"
            entry.digest = verified.digest
            entry.tar_bytes, entry.tar_sha256 = verified.size, verified.sha256
            entry.symlinks = [
                SymlinkDoc.of(s["path"], s["target"], s["resolves_after_move"]) for s in links
            ]
            entry.status = "moved"
            journal.moved(entry.run_id)


def _remove_unstarted_batch(batch_dir: Path) -> None:
    """Remove the folder of a batch whose report could not be written (a full disk)."""
    try:
        for leftover in batch_dir.iterdir():  # only write_report's temporary file
            if leftover.name.startswith(f".{ARCHIVE_REPORT_NAME}."):
                leftover.unlink()
        batch_dir.rmdir()
        fsops.fsync_dir(batch_dir.parent)
    except OSError:
        pass  # something else is in it: left for a person (check lists it)


def _archive_one(
    journal: Journal,
    entry: ArchiveEntry,
    src: Path,
    dst: Path,
    scan: fsops.TreeScan,
    remove: fsops.Remover | None,
) -> None:
    """Move one run from ``src`` (in the runs root) to ``dst`` (in the batch)."""
    try:
        crashpoint("archive:entry-moving")
        result = fsops.move_tree(src, dst, expected=scan, remove_source=remove)
        crashpoint("archive:entry-moved")
    except RunyardError as exc:
        journal.failed(entry, exc.message)
        return
    with journal.lock:
        entry.method = result.method
        entry.digest = result.scan.digest
        entry.symlinks = [
            SymlinkDoc.of(s["path"], s["target"], s["resolves_after_move"]) for s in result.symlinks
        ]
        entry.status = "moved"
        journal.moved(entry.run_id)
