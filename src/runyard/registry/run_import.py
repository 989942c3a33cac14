"""Registering run folders that already exist: ``runyard run import``.

A folder with a valid ``run.json`` comes in as recorded (its plan version must be in
the registry); a folder without one comes in as a **legacy** run (no plan, status
``unknown``, started at the folder's mtime) and is never given a plan; a corrupt
manifest is reported and its folder skipped while the rest go in. Folders are only
read, never written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from runyard.db.tables import plan_versions, runs
from runyard.errors import Invalid, ManifestError, NotFound
from runyard.fsutil import tree_bytes
from runyard.ids import run_id_problem, validate_label
from runyard.manifest import MANIFEST_NAME, Manifest, read_manifest
from runyard.models import ImportOutcome, ImportResult, RunLocation, RunStatus
from runyard.registry.common import dump_json_object, to_utc_naive, utcnow
from runyard.registry.runs import derive_group, require_runs_root, validate_tags
from runyard.registry.search_index import index_inserted

if TYPE_CHECKING:
    from runyard.config import Settings
    from runyard.yard import Yard

_IMPORT_BATCH = 500


def _import_candidates(
    settings: Settings, paths: Iterable[Path], scan_all: bool
) -> tuple[list[Path], list[ImportOutcome]]:
    root = settings.runs_root.resolve()
    chosen: dict[str, Path] = {}
    errors: list[ImportOutcome] = []
    if scan_all:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                    continue
                chosen.setdefault(entry.name, Path(entry.path))
    for raw in paths:
        path = Path(raw)
        absolute = path if path.is_absolute() else Path.cwd() / path
        parent = Path(os.path.normpath(absolute)).parent
        if parent.resolve() != root:
            errors.append(
                ImportOutcome(
                    path=str(path),
                    run_id=None,
                    outcome="error",
                    message=f"not directly inside the runs root {root}; move it there first",
                )
            )
            continue
        absolute = parent.resolve() / absolute.name
        if absolute.is_symlink() or not absolute.is_dir():
            errors.append(
                ImportOutcome(
                    path=str(path),
                    run_id=None,
                    outcome="error",
                    message="not a directory" + (" (a symlink)" if absolute.is_symlink() else ""),
                )
            )
            continue
        chosen.setdefault(absolute.name, absolute)
    return sorted(chosen.values()), errors


def _has_unfinished_manifest(folder: Path) -> bool:
    """A temporary manifest left by a crash between writing it and renaming it."""
    prefix = f".{MANIFEST_NAME}."
    with os.scandir(folder) as entries:
        return any(e.name.startswith(prefix) and e.name.endswith(".tmp") for e in entries)


def import_runs(yard: Yard, paths: Iterable[Path], scan_all: bool = False) -> ImportResult:
    """Register existing run folders: by manifest where one is valid, as legacy where none.

    A corrupt manifest is reported and that folder skipped; the rest are imported.
    Folders are never modified.
    """
    settings = yard.settings
    require_runs_root(settings)
    candidates, outcomes = _import_candidates(settings, paths, scan_all)
    parsed: list[tuple[Path, Manifest | None]] = []
    for path in candidates:
        problem = run_id_problem(path.name)
        if problem:
            outcomes.append(
                ImportOutcome(
                    path=str(path),
                    run_id=None,
                    outcome="error",
                    message=f"folder name is not a valid run id: {problem}",
                )
            )
            continue
        try:
            manifest = read_manifest(path)
        except ManifestError as exc:
            outcomes.append(
                ImportOutcome(
                    path=str(path), run_id=path.name, outcome="error", message=exc.message
                )
            )
            continue
        if manifest is None and _has_unfinished_manifest(path):
            outcomes.append(
                ImportOutcome(
                    path=str(path),
                    run_id=path.name,
                    outcome="error",
                    message=f"an unfinished {MANIFEST_NAME} write is there "
                    f"(.{MANIFEST_NAME}.*.tmp): runyard was stopped while starting this run; "
                    "check the folder, then remove the .tmp file to import it as a legacy run",
                )
            )
            continue
        if manifest is not None and manifest.run_id != path.name:
            outcomes.append(
                ImportOutcome(
                    path=str(path),
                    run_id=path.name,
                    outcome="error",
                    message=f"manifest run_id {manifest.run_id!r} does not match the folder name",
                )
            )
            continue
        parsed.append((path, manifest))

    now = utcnow()
    with yard.write() as conn:
        known: set[str] = set()
        names = [p.name for p, _ in parsed]
        for i in range(0, len(names), _IMPORT_BATCH):
            chunk = names[i : i + _IMPORT_BATCH]
            known.update(
                conn.execute(select(runs.c.run_id).where(runs.c.run_id.in_(chunk))).scalars()
            )
        plan_ids = {m.plan_version_id for _, m in parsed if m and m.plan_version_id}
        plans: dict[str, Any] = {}
        plan_list = sorted(plan_ids)
        for i in range(0, len(plan_list), _IMPORT_BATCH):
            for row in conn.execute(
                select(
                    plan_versions.c.plan_version_id,
                    plan_versions.c.config_version_id,
                    plan_versions.c.scenario_id,
                ).where(plan_versions.c.plan_version_id.in_(plan_list[i : i + _IMPORT_BATCH]))
            ):
                plans[row.plan_version_id] = row
        rows: list[dict[str, Any]] = []
        for path, manifest in parsed:
            run_id = path.name
            if run_id in known:
                outcomes.append(
                    ImportOutcome(path=str(path), run_id=run_id, outcome="already_registered")
                )
                continue
            try:
                new_row = import_row(settings, path, manifest, plans, now)
            except (Invalid, NotFound) as exc:
                outcomes.append(
                    ImportOutcome(
                        path=str(path), run_id=run_id, outcome="error", message=exc.message
                    )
                )
                continue
            rows.append(new_row)
            outcomes.append(
                ImportOutcome(
                    path=str(path),
                    run_id=run_id,
                    outcome="legacy" if new_row["legacy"] else "imported",
                )
            )
        if rows:
            conn.execute(runs.insert(), rows)
            index_inserted(conn, "runs", rows)
    counts = {
        k: sum(1 for o in outcomes if o.outcome == k)
        for k in ("imported", "legacy", "already_registered", "error")
    }
    return ImportResult(
        items=sorted(outcomes, key=lambda o: o.path),
        imported=counts["imported"],
        legacy=counts["legacy"],
        already_registered=counts["already_registered"],
        errors=counts["error"],
    )


def import_row(
    settings: Settings,
    path: Path,
    manifest: Manifest | None,
    plans: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    run_id = path.name
    if manifest is None:
        started = datetime.fromtimestamp(path.stat().st_mtime)
        # created = started: both come from the folder, so a rebuild gives the same row.
        return {
            "run_id": run_id,
            "plan_version_id": None,
            "config_version_id": None,
            "scenario_id": None,
            "group_name": derive_group(settings, run_id, None),
            "status": RunStatus.unknown.value,
            "legacy": True,
            "location": RunLocation.active.value,
            "pinned": False,
            "created_at": to_utc_naive(started.astimezone()),
            "started_at": to_utc_naive(started.astimezone()),
            "finished_at": None,
            "summary": "{}",
            "tags": "{}",
            "error": None,
            "size_bytes": tree_bytes(path),
        }
    if manifest.yard_id is not None and manifest.yard_id != settings.yard_id:
        raise Invalid(
            f"its manifest belongs to another yard ({manifest.yard_id}; this is {settings.yard_id})"
        )
    plan = None
    if manifest.plan_version_id:
        plan = plans.get(manifest.plan_version_id)
        if plan is None:
            raise NotFound(
                f"its manifest names plan version {manifest.plan_version_id!r}, which is not "
                "in the registry"
            )
        for key in ("config_version_id", "scenario_id"):
            stated = getattr(manifest, key)
            if stated is not None and stated != getattr(plan, key):
                raise Invalid(
                    f"its manifest says {key} {stated!r} but plan version "
                    f"{manifest.plan_version_id} has {getattr(plan, key)!r}"
                )
    group = manifest.group if manifest.group is not None else derive_group(settings, run_id, None)
    return {
        "run_id": run_id,
        "plan_version_id": manifest.plan_version_id,
        "config_version_id": plan.config_version_id if plan else None,
        "scenario_id": plan.scenario_id if plan else None,
        "group_name": validate_label(group, "group") if group is not None else None,
        "status": manifest.status.value,
        "legacy": plan is None,
        "location": RunLocation.active.value,
        "pinned": manifest.pinned,
        "created_at": to_utc_naive(manifest.created_at) if manifest.created_at else now,
        "started_at": to_utc_naive(manifest.started_at),
        "finished_at": to_utc_naive(manifest.finished_at) if manifest.finished_at else None,
        "summary": dump_json_object(manifest.summary, "summary"),
        "tags": dump_json_object(validate_tags(manifest.tags), "tags"),
        "error": manifest.error,
        "size_bytes": tree_bytes(path),
    }
