"""``runyard check``: compare the registry with the disk and list every mismatch.

Read-only. The registry is read once (one transaction, rows fetched in batches);
the disk is read with ``os.scandir``: the runs root, each archive batch's runs
folder, each batch's reports, and the ``run.json`` of every run found where the
registry expects it. Every disagreement becomes one ``Mismatch`` of a kind in
``KINDS``; nothing is repaired here (``recover``, ``run import`` and ``rebuild``
do that), so the check can run at any time, also while a yard is in use, at the
price of reporting a run that is being started, finished or moved that instant.

An archived run whose batch lives in an object store (its report names ``store``)
has no folder: its object is checked instead (``check_objects``, one listing per
batch; ``deep`` re-hashes every object), and only then is boto3 loaded.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from runyard import fsnames
from runyard.db.tables import runs
from runyard.errors import Invalid, ManifestError
from runyard.lifecycle.report import (
    ARCHIVE_REPORT_NAME,
    ArchiveEntry,
    ArchiveReport,
    load_report,
    relative_to_yard,
)
from runyard.lifecycle.roots import symlinked_roots
from runyard.manifest import MANIFEST_NAME, read_manifest
from runyard.models import RunLocation

if TYPE_CHECKING:
    from runyard.config import Settings
    from runyard.yard import Yard

KINDS = (
    "symlinked_root",
    "missing_active",
    "marked_missing",
    "swapped_for_symlink",
    "unknown_folder",
    "missing_archived",
    "store_unavailable",
    "missing_object",
    "object_size",
    "object_sha256",
    "in_both_places",
    "incomplete_report",
    "manifest_mismatch",
    "leftover",
)
"""Every kind of mismatch, in the order a report lists them."""

_LEFTOVER_SUFFIXES = (".partial", ".deleting")  # fsops.partial_path, fsops.tombstone_path
_FETCH_BATCH = 10_000
_RECOVER = "run `runyard recover`"


@dataclass(frozen=True)
class Mismatch:
    """One disagreement between the registry and the disk."""

    kind: str  # one of KINDS
    run_id: str | None
    path: str | None  # relative to the yard where possible
    detail: str

    def to_dict(self) -> dict[str, str | None]:
        """Display forms; a path that is not UTF-8 also as ``path_b64`` (runyard.fsnames)."""
        out = {
            "kind": self.kind,
            "run_id": fsnames.shown(self.run_id) if self.run_id is not None else None,
            "path": fsnames.shown(self.path) if self.path is not None else None,
            "detail": fsnames.shown(self.detail),
        }
        if self.path is not None and not fsnames.is_utf8(self.path):
            out["path_b64"] = fsnames.exact_b64(self.path)
        return out


@dataclass
class CheckReport:
    """What ``check_yard`` found: the mismatches (sorted by kind, then path) and counts."""

    mismatches: list[Mismatch]
    counts: dict[str, int]  # every kind, zero included
    runs_checked: int
    folders_seen: int
    objects_seen: int = 0  # run objects found in archive stores

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": dict(self.counts),
            "mismatches": [m.to_dict() for m in self.mismatches],
            "runs_checked": self.runs_checked,
            "folders_seen": self.folders_seen,
            "objects_seen": self.objects_seen,
        }


@dataclass(frozen=True)
class _Row:
    run_id: str
    plan_version_id: str | None
    status: str
    legacy: bool
    location: str
    batch_id: str | None


def _registry_rows(conn: Connection) -> dict[str, _Row]:
    """Every run with what the check compares, in one query fetched in batches."""
    # The one query of this module; it belongs with the lifecycle queries of registry/.
    query = select(
        runs.c.run_id,
        runs.c.plan_version_id,
        runs.c.status,
        runs.c.legacy,
        runs.c.location,
        runs.c.archive_batch_id,
    ).execution_options(yield_per=_FETCH_BATCH)
    out: dict[str, _Row] = {}
    for part in conn.execute(query).partitions():
        for run_id, plan_version_id, status, legacy, location, batch_id in part:
            out[run_id] = _Row(run_id, plan_version_id, status, bool(legacy), location, batch_id)
    return out


@dataclass
class _Disk:
    active: dict[str, Path] = field(default_factory=dict)  # run_id → folder in the runs root
    archived: dict[str, dict[str, Path]] = field(default_factory=dict)  # run_id → batch → folder
    leftovers: list[tuple[str, Path]] = field(default_factory=list)  # (run_id, path)
    symlinks: list[tuple[str, Path]] = field(default_factory=list)  # run folders that are links
    batches: set[str] = field(default_factory=set)
    folders: int = 0


def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    """The entries of ``folder``; none when it does not exist (or is not a folder)."""
    try:
        with os.scandir(folder) as it:
            yield from it
    except (FileNotFoundError, NotADirectoryError):
        return


def _scan_runs_folder(folder: Path, disk: _Disk) -> dict[str, Path]:
    """Run folders in ``folder`` by name; ``.X.partial``/``.X.deleting`` go to leftovers.

    Other names starting with "." are not runs; plain files are not run folders. A
    symlink to a folder counts as a folder (one that points nowhere does not).
    """
    found: dict[str, Path] = {}
    for entry in _entries(folder):
        name = entry.name
        if name.startswith("."):
            for suffix in _LEFTOVER_SUFFIXES:
                run_id = name[1 : -len(suffix)] if name.endswith(suffix) else ""
                if run_id:
                    disk.leftovers.append((run_id, Path(entry.path)))
            continue
        if entry.is_symlink():
            disk.symlinks.append((name, Path(entry.path)))
        if entry.is_dir():
            found[name] = Path(entry.path)
    disk.folders += len(found)
    return found


def _scan_disk(settings: Settings) -> _Disk:
    disk = _Disk()
    disk.active = _scan_runs_folder(settings.runs_root, disk)
    for entry in _entries(settings.archive_root):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            disk.symlinks.append(("", Path(entry.path)))  # a batch folder swapped for a link
        if not entry.is_dir(follow_symlinks=False):
            continue
        batch_id = entry.name
        disk.batches.add(batch_id)
        for run_id, folder in _scan_runs_folder(settings.batch_runs_dir(batch_id), disk).items():
            disk.archived.setdefault(run_id, {})[batch_id] = folder
    return disk


def _report_paths(settings: Settings, batches: set[str]) -> Iterator[Path]:
    """Archive and restore reports of every batch, then purge reports of the logs folder."""
    for batch_id in sorted(batches):
        for entry in _entries(settings.archive_root / batch_id):
            name = entry.name
            if name == ARCHIVE_REPORT_NAME or (
                name.startswith("restore_report_") and name.endswith(".json")
            ):
                yield Path(entry.path)
    for entry in _entries(settings.logs_dir):
        if entry.name.startswith("purge_report_") and entry.name.endswith(".json"):
            yield Path(entry.path)


def _report_problem(path: Path) -> str | None:
    """Why a report needs ``recover`` (or a person), or None when it is settled."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"cannot be read ({exc}); neither restore nor recover can use it"
    if not isinstance(data, dict):
        return "is not a JSON object; neither restore nor recover can use it"
    if data.get("status") == "in_progress":
        kind = data.get("kind") or path.name.split("_", 1)[0]
        return f"{kind} report still in_progress (interrupted?): {_RECOVER}"
    return None


def _manifest_problem(row: _Row, folder: Path, yard_id: str) -> str | None:
    """How ``run.json`` disagrees with the registry, or None when it agrees."""
    try:
        manifest = read_manifest(folder)
    except ManifestError as exc:
        where = f"{folder / MANIFEST_NAME}: "
        return f"{MANIFEST_NAME} cannot be read: {exc.message.removeprefix(where)}"
    if manifest is None:
        return None if row.legacy else f"no {MANIFEST_NAME} (only a legacy run may lack one)"
    differences = [
        f"{key} {mine!r} (registry: {theirs!r})"
        for key, mine, theirs in (
            ("run_id", manifest.run_id, row.run_id),
            ("plan_version_id", manifest.plan_version_id, row.plan_version_id),
            ("status", manifest.status.value, row.status),
        )
        if mine != theirs
    ]
    if manifest.yard_id is not None and manifest.yard_id != yard_id:
        differences.append(f"yard_id {manifest.yard_id!r} (this yard: {yard_id!r})")
    if not differences:
        return None
    return f"{MANIFEST_NAME} says " + "; ".join(differences)


def check_yard(yard: Yard, *, deep: bool = False) -> CheckReport:
    """Compare the registry with the runs root, the archive root and the archive stores;
    read-only. ``deep`` reads every run object back and re-hashes it."""
    with yard.read() as conn:
        rows = _registry_rows(conn)
    check = _Checker(yard.settings, rows, _scan_disk(yard.settings))
    check.roots_and_symlinks()
    to_read = check.registered_runs()
    check.stray_folders()
    check.leftovers_and_reports()
    check.manifests(to_read)
    check.objects(deep)
    return check.report()


class _Checker:
    """One comparison: the registry's rows and the disk's folders, and what disagrees."""

    def __init__(self, settings: Settings, rows: dict[str, _Row], disk: _Disk) -> None:
        self.settings = settings
        self.rows = rows
        self.disk = disk
        self.found: list[Mismatch] = []
        self.store_reports: dict[str, ArchiveReport | None] = {}  # batch → its report if in a store
        self.stored: dict[str, list[str]] = {}  # store batch → its archived runs
        self.objects_seen = 0

    def rel(self, path: Path) -> str:
        return relative_to_yard(self.settings, path)

    def add(self, kind: str, run_id: str | None, path: Path, detail: str) -> None:
        self.found.append(Mismatch(kind, run_id, self.rel(path), detail))

    def add_at(self, kind: str, run_id: str | None, location: str, detail: str) -> None:
        """A mismatch at a place that is not a path (an s3:// location)."""
        self.found.append(Mismatch(kind, run_id, location, detail))

    def store_report(self, batch_id: str) -> ArchiveReport | None:
        """The report of ``batch_id`` when it names a store, else None; read once, and
        only for batches whose runs have no folder (a local batch's is never parsed)."""
        if batch_id not in self.store_reports:
            path = self.settings.archive_root / batch_id / ARCHIVE_REPORT_NAME
            report = None
            if batch_id in self.disk.batches and not path.is_symlink():
                # A report that cannot be read leaves its runs missing_archived (and is
                # an incomplete_report when it is not even JSON).
                with contextlib.suppress(Invalid):
                    report = load_report(path, ArchiveReport)
            if report is not None and (report.store is None or report.batch_id != batch_id):
                report = None
            self.store_reports[batch_id] = report
        return self.store_reports[batch_id]

    def home(self, row: _Row) -> tuple[str | None, Path] | None:
        """Where the registry says the run's folder is, if it says it has one: (the batch,
        None for the runs root; the folder)."""
        if row.location == RunLocation.active:
            return None, self.settings.runs_root / row.run_id
        if row.location == RunLocation.archived and row.batch_id is not None:
            return row.batch_id, self.settings.run_dir(row.run_id, row.batch_id)
        return None

    def places(self, run_id: str) -> list[tuple[str | None, Path]]:
        """Every folder of ``run_id`` on disk: in the runs root (None), then in batches."""
        out: list[tuple[str | None, Path]] = []
        if run_id in self.disk.active:
            out.append((None, self.disk.active[run_id]))
        out.extend(sorted(self.disk.archived.get(run_id, {}).items()))
        return out

    def only_at_home(self, row: _Row) -> bool:
        """Whether the run has one folder on disk, where the registry says it is."""
        batches = self.disk.archived.get(row.run_id)
        if row.location == RunLocation.active:
            return not batches and row.run_id in self.disk.active
        if row.location == RunLocation.archived:
            return (
                batches is not None
                and len(batches) == 1
                and row.batch_id in batches
                and row.run_id not in self.disk.active
            )
        return False

    def roots_and_symlinks(self) -> None:
        """Roots that are links, run and batch folders swapped for links, runs lost."""
        for name, path, target in symlinked_roots(self.settings):
            detail = (
                f"{name} is a symlink (to {target}); archive, restore, recover and purge "
                f"refuse to work through it: set {name} in runyard.toml to the real folder"
            )
            self.add("symlinked_root", None, path, detail)
        for run_id, path in self.disk.symlinks:
            what = f"the folder of run {run_id}" if run_id else "an archive batch folder"
            detail = (
                f"{what} was replaced by a symlink (to {os.readlink(path)}); runyard never "
                "moves, restores or deletes through one: put the real folder back"
            )
            self.add("swapped_for_symlink", run_id or None, path, detail)
        for row in self.rows.values():
            if row.location == RunLocation.missing:
                detail = (
                    "the registry marks this run missing: its folder was gone when a restore "
                    "looked for it; put the folder back and run `runyard rebuild`"
                )
                self.add("marked_missing", row.run_id, self.settings.runs_root / row.run_id, detail)

    def registered_runs(self) -> list[tuple[_Row, Path]]:
        """Each active or archived run whose folder is missing; the (run, folder) found."""
        present: list[tuple[_Row, Path]] = []
        for row in self.rows.values():
            if row.location == RunLocation.active:
                folder = self.disk.active.get(row.run_id)
                kind, where = "missing_active", "active"
            elif row.location == RunLocation.archived:
                in_batches = self.disk.archived.get(row.run_id)
                folder = in_batches.get(row.batch_id or "") if in_batches else None
                kind, where = "missing_archived", f"archived in batch {row.batch_id}"
                if row.batch_id not in self.disk.batches:
                    where += " (that batch folder does not exist)"
            else:
                continue  # purged (or missing): no folder expected
            if folder is not None:
                present.append((row, folder))
                continue
            in_store = row.location == RunLocation.archived and row.batch_id is not None
            if in_store and self.store_report(row.batch_id or "") is not None:
                self.stored.setdefault(row.batch_id or "", []).append(row.run_id)
                continue  # no folder expected: its object is checked in objects()
            home = self.home(row)
            elsewhere = [self.rel(p) for _, p in self.places(row.run_id)]
            detail = f"{where}, but its folder is missing"
            if elsewhere:
                detail += f"; a folder of it is at {', '.join(elsewhere)}"
            self.add(kind, row.run_id, home[1] if home else self.settings.archive_root, detail)
        return present

    def stray_folders(self) -> None:
        """Each run folder that is not where the registry puts its run."""
        for run_id in sorted(set(self.disk.active) | set(self.disk.archived)):
            row = self.rows.get(run_id)
            if row is not None and self.only_at_home(row):
                continue  # the usual case, decided without building a path
            home = self.home(row) if row is not None else None
            copies = self.places(run_id)
            home_found = home is not None and any(where == home[0] for where, _ in copies)
            for where, folder in copies:
                if home is not None and where == home[0]:
                    continue
                if row is None:
                    self.add("unknown_folder", run_id, folder, "not in the registry")
                elif home is None:
                    detail = f"the registry has this run as {row.location}"
                    self.add("unknown_folder", run_id, folder, detail)
                elif home_found:
                    state = "active" if home[0] is None else "archived"
                    detail = f"{state} at {self.rel(home[1])}, and also here"
                    self.add("in_both_places", run_id, folder, detail)
                # else: reported as missing_active/missing_archived, naming this folder

    def leftovers_and_reports(self) -> None:
        for run_id, path in self.disk.leftovers:
            detail = (
                f"left over from an interrupted move: {_RECOVER} (if it stays, no report "
                "claims it: compare it with the run and remove it by hand)"
            )
            self.add("leftover", run_id, path, detail)
        for path in _report_paths(self.settings, self.disk.batches):
            problem = _report_problem(path)
            if problem is not None:
                self.add("incomplete_report", None, path, problem)

    def manifests(self, present: list[tuple[_Row, Path]]) -> None:
        yard_id = self.settings.yard_id
        for row, folder in present:
            problem = _manifest_problem(row, folder, yard_id)
            if problem is not None:
                self.add("manifest_mismatch", row.run_id, folder / MANIFEST_NAME, problem)

    def objects(self, deep: bool) -> None:
        """Each archived run of a store batch has its object, of the recorded size (and,
        ``deep``, SHA-256)."""
        if not self.stored:
            return
        from runyard.durability.check_objects import StoredRun, check_store_batches

        work = []
        for batch_id, run_ids in sorted(self.stored.items()):
            report = self.store_reports[batch_id]
            assert report is not None
            moved: dict[str, ArchiveEntry] = {
                e.run_id: e for e in report.entries if e.status == "moved"
            }
            work.append((report, [StoredRun(r, moved.get(r)) for r in run_ids]))
        self.objects_seen = check_store_batches(self.settings, work, self.add_at, deep=deep)

    def report(self) -> CheckReport:
        order = {kind: i for i, kind in enumerate(KINDS)}
        found = sorted(self.found, key=lambda m: (order[m.kind], m.path or "", m.run_id or ""))
        counts = dict.fromkeys(KINDS, 0)
        for mismatch in found:
            counts[mismatch.kind] += 1
        return CheckReport(
            found,
            counts,
            runs_checked=len(self.rows),
            folders_seen=self.disk.folders,
            objects_seen=self.objects_seen,
        )
