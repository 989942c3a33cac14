"""``runyard rebuild``: recreate the registry from what is on disk, idempotently.

Sources, all in the yard:

- ``lineage/`` (``registry.lineage_files``): scenarios, config versions (their canonical
  text) and plan versions, with their original ids; ``scenario_data/<sha256>.json``;
- every run folder, in the runs root (``active``) and in every archive batch
  (``archived`` in that batch), by its ``run.json``; a folder without one comes back as
  a legacy run; an unreadable manifest is reported and the folder skipped; the
  ``config.json``/``plan.json``/``scenario.json`` a planning job wrote there fill in
  lineage the ``lineage/`` folder lacks;
- ``aggregates/<plan_version_id>/<job_id>/aggregate.json``;
- the reports of batches archived to an object store (``rebuild_store``): their runs
  have no folder on disk, only an entry ``moved`` in the report and a tar in the bucket.

Only what the registry lacks is inserted, and a known run whose folder is elsewhere than
the registry says gets its location corrected: running it twice changes nothing the
second time. Jobs and the execution log are history, not state, and are not rebuilt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy import Connection, select

from runyard import canonical, fsutil
from runyard.db.tables import aggregates, config_versions, plan_versions, runs, scenario_data
from runyard.db.tables import scenarios as scenario_table
from runyard.durability import rebuild_store
from runyard.errors import Invalid, ManifestError, NotFound, RunyardError
from runyard.ids import new_id, run_id_problem
from runyard.manifest import Manifest, read_manifest
from runyard.models import PlanVersion, RunLocation, RunStatus, Scenario
from runyard.registry.common import to_utc_naive, utcnow
from runyard.registry.lineage_files import ConfigFile, read_lineage
from runyard.registry.run_import import import_row
from runyard.registry.runs import derive_group
from runyard.registry.search_index import index_inserted

if TYPE_CHECKING:
    from runyard.config import Settings
    from runyard.yard import Yard

BATCH = 500


@dataclass
class RebuildReport:
    dry_run: bool
    inserted: dict[str, int] = field(default_factory=dict)
    runs_relocated: int = 0  # known runs whose location or batch was corrected
    legacy_runs: int = 0  # of the inserted runs, those without a (usable) manifest
    runs_seen: int = 0
    problems: list[str] = field(default_factory=list)
    # ``rebuild --from-store``: the batches whose report was copied from the bucket.
    reports_fetched: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(self.inserted.values()) or self.runs_relocated > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changed": self.changed,
            "inserted": self.inserted,
            "runs_relocated": self.runs_relocated,
            "legacy_runs": self.legacy_runs,
            "runs_seen": self.runs_seen,
            "problems": self.problems,
            "reports_fetched": self.reports_fetched,
        }


@dataclass(frozen=True)
class _Folder:
    path: Path
    location: RunLocation
    batch_id: str | None


def rebuild(yard: Yard, dry_run: bool = False, registry_empty: bool = False) -> RebuildReport:
    """Recreate what the registry lacks from the disk (``registry_empty``: a dry run on a
    registry that does not exist yet, so nothing is read from it)."""
    settings = yard.settings
    report = RebuildReport(dry_run=dry_run)
    lineage = read_lineage(settings)
    report.problems += lineage.problems
    folders = _run_folders(settings, report)
    # A folder on disk wins over a store batch's entry (the run was restored, or a
    # crash left it in both places and recover keeps the folder).
    in_store = {
        run_id: run
        for run_id, run in rebuild_store.store_runs(settings, report.problems).items()
        if run_id not in folders
    }
    report.runs_seen = len(folders) + len(in_store)
    manifests = _read_manifests(folders, report)
    _read_store_manifests(settings, in_store, manifests, report)
    _lineage_from_runs(folders, lineage.scenarios, lineage.configs, lineage.plans, report)
    if registry_empty:
        _plan_rows(settings, lineage, folders, in_store, manifests, _Known.empty(), report)
        return report
    with yard.read() as conn:
        known = _Known.read(conn, lineage, [*folders, *in_store])
    rows = _plan_rows(settings, lineage, folders, in_store, manifests, known, report)
    if not dry_run and (any(rows.inserts.values()) or rows.relocations):
        with yard.write() as conn:
            for table, values in rows.inserts.items():
                for start in range(0, len(values), BATCH):
                    conn.execute(_TABLES[table].insert(), values[start : start + BATCH])
                index_inserted(conn, table, values)
            for run_id, location, batch_id in rows.relocations:
                conn.execute(
                    runs.update()
                    .where(runs.c.run_id == run_id)
                    .values(location=location.value, archive_batch_id=batch_id)
                )
    return report


_TABLES = {
    "scenario_data": scenario_data,
    "scenarios": scenario_table,
    "config_versions": config_versions,
    "plan_versions": plan_versions,
    "runs": runs,
    "aggregates": aggregates,
}


# --- reading the disk -----------------------------------------------------------------------


def _dirs(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _run_folders(settings: Settings, report: RebuildReport) -> dict[str, _Folder]:
    """Every run folder on disk by run id; one in the runs root wins over a batch's."""
    found: dict[str, _Folder] = {}
    archived: list[_Folder] = []
    for batch in sorted(_dirs(settings.archive_root), key=lambda e: e.name):
        if batch.name.startswith(".") or run_id_problem(batch.name):
            continue
        for entry in _dirs(settings.batch_runs_dir(batch.name)):
            if not entry.name.startswith("."):
                archived.append(_Folder(Path(entry.path), RunLocation.archived, batch.name))
    active = [
        _Folder(Path(e.path), RunLocation.active, None)
        for e in _dirs(settings.runs_root)
        if not e.name.startswith(".")
    ]
    for folder in [*archived, *active]:
        name = folder.path.name
        problem = run_id_problem(name)
        if problem:
            report.problems.append(f"{_rel(settings, folder.path)}: not a run id: {problem}")
            continue
        if name in found:
            kept = folder if folder.location == RunLocation.active else found[name]
            report.problems.append(
                f"{name}: in more than one place ({_rel(settings, found[name].path)} and "
                f"{_rel(settings, folder.path)}); registered at {_rel(settings, kept.path)}"
            )
            folder = kept
        found[name] = folder
    return found


def _read_manifests(
    folders: dict[str, _Folder], report: RebuildReport
) -> dict[str, Manifest | None]:
    out: dict[str, Manifest | None] = {}
    for run_id, folder in folders.items():
        try:
            out[run_id] = read_manifest(folder.path)
        except ManifestError as exc:
            report.problems.append(f"{run_id}: {exc.message}; not registered")
    return out


def _read_store_manifests(
    settings: Settings,
    in_store: dict[str, rebuild_store.StoreRun],
    manifests: dict[str, Manifest | None],
    report: RebuildReport,
) -> None:
    """The manifests of the store runs that have one (an entry not legacy), read from
    their tars; a run whose manifest cannot be read is not registered this time (a later
    rebuild, once the store answers, takes it) rather than registered without lineage."""
    opened = rebuild_store.Opened(settings)
    try:
        for run_id, run in sorted(in_store.items()):
            if run.entry.legacy:
                manifests[run_id] = None
                continue
            try:
                manifests[run_id] = rebuild_store.manifest_of(opened, run)
            except ManifestError as exc:
                report.problems.append(f"{run_id}: {exc.message}; not registered")
            except RunyardError as exc:
                report.problems.append(
                    f"{run_id} (batch {run.batch_id}): its run.json could not be read from "
                    f"{run.store}: {exc.message}; not registered, run rebuild again"
                )
    finally:
        opened.close()


def _lineage_from_runs(
    folders: dict[str, _Folder],
    scenarios: dict[str, Scenario],
    configs: dict[str, ConfigFile],
    plans: dict[str, PlanVersion],
    report: RebuildReport,
) -> None:
    """Fill in lineage from the files planning jobs write into run folders."""
    for folder in folders.values():
        plan_file = folder.path / "plan.json"
        if not plan_file.is_file():
            continue
        try:
            plan = PlanVersion.model_validate_json(_read(plan_file, LINEAGE_FILE_BYTES))
            canonical.check_json_limits(plan.params, "its plan.json params")
            if plan.plan_version_id not in plans:
                plans[plan.plan_version_id] = plan
            if plan.scenario_id not in scenarios:
                scenario = Scenario.model_validate_json(
                    _read(folder.path / "scenario.json", LINEAGE_FILE_BYTES)
                )
                scenarios[scenario.scenario_id] = scenario
            if plan.config_version_id not in configs:
                content = canonical.loads_checked(
                    _read(folder.path / "config.json", canonical.MAX_JSON_BYTES), "config.json"
                )
                text = canonical.canonical_text(canonical.parse_exact(json.dumps(content)))
                if canonical.config_version_id(text) == plan.config_version_id:
                    configs[plan.config_version_id] = ConfigFile(
                        config_version_id=plan.config_version_id,
                        name=None,
                        digest=canonical.content_digest(text),
                        created_at=plan.created_at,
                        content=content,
                        canonical=text,
                    )
        except (OSError, ValueError, ValidationError, Invalid) as exc:
            first = (exc.message if isinstance(exc, Invalid) else str(exc)).splitlines()[0]
            report.problems.append(f"{folder.path.name}: its lineage files cannot be read: {first}")


# A sanity cap only: a run's plan.json holds its params as indented JSON.
LINEAGE_FILE_BYTES = 1024 * 1024 * 1024
# An aggregate.json holds a table of every run of its plan: no JSON limit of ours, a sane cap.
AGGREGATE_FILE_BYTES = 1024 * 1024 * 1024


def _read(path: Path, max_bytes: int) -> bytes:
    """A file a planning job wrote, never blocking on a FIFO put in its place; Invalid when
    it is not a regular file or larger than ``max_bytes``."""
    raw = fsutil.read_regular_file(path, path.name, max_bytes)
    if len(raw) > max_bytes:
        raise Invalid(f"{path.name}: larger than {max_bytes} bytes")
    return raw


# --- what the registry has ------------------------------------------------------------------


@dataclass
class _Known:
    scenario_ids: set[str]
    scenario_names: dict[str, str]  # name → id
    data_digests: set[str]
    config_ids: set[str]
    plan_ids: set[str]
    runs: dict[str, tuple[str, str | None]]  # run id → (location, batch)
    aggregate_jobs: set[str]

    @classmethod
    def empty(cls) -> _Known:
        return cls(set(), {}, set(), set(), set(), {}, set())

    @classmethod
    def read(cls, conn: Connection, lineage: Any, run_ids: Iterable[str]) -> _Known:
        names = dict(
            conn.execute(select(scenario_table.c.name, scenario_table.c.scenario_id)).all()
        )
        known_runs: dict[str, tuple[str, str | None]] = {}
        for chunk in _chunks(sorted(run_ids)):
            query = select(runs.c.run_id, runs.c.location, runs.c.archive_batch_id).where(
                runs.c.run_id.in_(chunk)
            )
            for row in conn.execute(query):
                known_runs[row.run_id] = (row.location, row.archive_batch_id)
        return cls(
            scenario_ids=set(names.values()),
            scenario_names=names,
            data_digests=set(conn.execute(select(scenario_data.c.digest)).scalars()),
            config_ids=set(conn.execute(select(config_versions.c.config_version_id)).scalars()),
            plan_ids=set(conn.execute(select(plan_versions.c.plan_version_id)).scalars()),
            runs=known_runs,
            aggregate_jobs=set(conn.execute(select(aggregates.c.job_id)).scalars()),
        )


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


# --- what to write --------------------------------------------------------------------------


@dataclass
class _Rows:
    inserts: dict[str, list[dict[str, Any]]]
    relocations: list[tuple[str, RunLocation, str | None]]


def _plan_rows(
    settings: Settings,
    lineage: Any,
    folders: dict[str, _Folder],
    in_store: dict[str, rebuild_store.StoreRun],
    manifests: dict[str, Manifest | None],
    known: _Known,
    report: RebuildReport,
) -> _Rows:
    inserts: dict[str, list[dict[str, Any]]] = {name: [] for name in _TABLES}
    now = utcnow()
    scenario_ids = set(known.scenario_ids)
    for scenario in lineage.scenarios.values():
        if scenario.scenario_id in scenario_ids:
            continue
        other = known.scenario_names.get(scenario.name)
        if other is not None:
            report.problems.append(
                f"scenario {scenario.scenario_id}: its name {scenario.name!r} is taken by "
                f"{other}; not recreated"
            )
            continue
        if scenario.data_digest and scenario.data_digest not in known.data_digests:
            data = _data_row(settings, scenario.data_digest, report)
            if data is None:
                continue
            inserts["scenario_data"].append(data)
            known.data_digests.add(scenario.data_digest)
        inserts["scenarios"].append(
            {
                "scenario_id": scenario.scenario_id,
                "name": scenario.name,
                "description": scenario.description,
                "locked": scenario.locked,
                "locked_reason": scenario.locked_reason,
                "locked_at": to_utc_naive(scenario.locked_at) if scenario.locked_at else None,
                "created_at": to_utc_naive(scenario.created_at),
                "data_digest": scenario.data_digest,
            }
        )
        scenario_ids.add(scenario.scenario_id)
    config_ids = set(known.config_ids)
    for config in lineage.configs.values():
        if config.config_version_id in config_ids:
            continue
        if canonical.config_version_id(config.canonical) != config.config_version_id:
            report.problems.append(
                f"config {config.config_version_id}: its content does not give its id; "
                "not recreated"
            )
            continue
        try:  # content that `config add` would refuse is not brought back either
            canonical.parse_exact(config.canonical, "its canonical text")
        except Invalid as exc:
            report.problems.append(
                f"config {config.config_version_id}: {exc.message}; not recreated"
            )
            continue
        inserts["config_versions"].append(
            {
                "config_version_id": config.config_version_id,
                "name": config.name,
                "content": config.canonical,
                "digest": canonical.content_digest(config.canonical),
                "created_at": to_utc_naive(config.created_at),
            }
        )
        config_ids.add(config.config_version_id)
    plan_ids = set(known.plan_ids)
    plan_lineage: dict[str, Any] = {}
    for plan in lineage.plans.values():
        plan_lineage[plan.plan_version_id] = plan
        if plan.plan_version_id in plan_ids:
            continue
        missing = [
            what
            for what, ok in (
                (f"scenario {plan.scenario_id}", plan.scenario_id in scenario_ids),
                (f"config version {plan.config_version_id}", plan.config_version_id in config_ids),
            )
            if not ok
        ]
        if missing:
            report.problems.append(
                f"plan {plan.plan_version_id}: {' and '.join(missing)} unknown; not recreated"
            )
            continue
        try:
            params_text = canonical.canonical_text(plan.params, "its params")
        except Invalid as exc:
            report.problems.append(f"plan {plan.plan_version_id}: {exc.message}; not recreated")
            continue
        inserts["plan_versions"].append(
            {
                "plan_version_id": plan.plan_version_id,
                "scenario_id": plan.scenario_id,
                "config_version_id": plan.config_version_id,
                "params": params_text,
                "label": plan.label,
                "runner": plan.runner,
                "created_at": to_utc_naive(plan.created_at),
            }
        )
        plan_ids.add(plan.plan_version_id)
    plans_for_runs = {k: v for k, v in plan_lineage.items() if k in plan_ids}
    relocations: list[tuple[str, RunLocation, str | None]] = []
    for run_id, folder in sorted(folders.items()):
        if run_id not in manifests:
            continue  # unreadable manifest, reported
        if run_id in known.runs:
            location, batch = known.runs[run_id]
            if (location, batch) != (folder.location.value, folder.batch_id):
                relocations.append((run_id, folder.location, folder.batch_id))
            continue
        manifest = manifests[run_id]
        try:
            row = import_row(settings, folder.path, manifest, plans_for_runs, now)
        except (Invalid, NotFound) as exc:
            report.problems.append(f"{run_id}: {exc.message}; registered as a legacy run")
            row = import_row(settings, folder.path, None, {}, now)
            if manifest is not None:
                row.update(
                    status=manifest.status.value, started_at=to_utc_naive(manifest.started_at)
                )
        row.update(location=folder.location.value, archive_batch_id=folder.batch_id)
        report.legacy_runs += bool(row["legacy"])
        inserts["runs"].append(row)
    for run_id, run in sorted(in_store.items()):
        if run_id not in manifests:
            continue  # its manifest could not be read, reported
        if run_id in known.runs:
            if known.runs[run_id] != (RunLocation.archived.value, run.batch_id):
                relocations.append((run_id, RunLocation.archived, run.batch_id))
            continue
        row = _store_row(settings, run, manifests[run_id], plans_for_runs, now, report)
        report.legacy_runs += bool(row["legacy"])
        inserts["runs"].append(row)
    inserts["aggregates"] = _aggregate_rows(settings, plan_ids, known.aggregate_jobs, report)
    report.inserted = {name: len(values) for name, values in inserts.items()}
    report.runs_relocated = len(relocations)
    return _Rows(inserts, relocations)


def _store_row(
    settings: Settings,
    run: rebuild_store.StoreRun,
    manifest: Manifest | None,
    plans: dict[str, Any],
    now: datetime,
    report: RebuildReport,
) -> dict[str, Any]:
    """The row of a run that is a tar in a store: from its manifest, or (legacy, or a
    manifest the registry cannot take) from its report entry, dated by the batch."""
    entry = run.entry
    row: dict[str, Any] | None = None
    if manifest is not None:
        try:  # the folder does not exist: import_row reads its name only
            row = import_row(
                settings, settings.run_dir(entry.run_id, run.batch_id), manifest, plans, now
            )
        except (Invalid, NotFound) as exc:
            report.problems.append(f"{entry.run_id}: {exc.message}; registered as a legacy run")
    if row is None:
        created = to_utc_naive(run.report.created_at)
        group = (
            entry.group if entry.group is not None else derive_group(settings, entry.run_id, None)
        )
        row = {
            "run_id": entry.run_id,
            "plan_version_id": None,
            "config_version_id": None,
            "scenario_id": None,
            "group_name": group,
            "status": manifest.status.value if manifest else RunStatus.unknown.value,
            "legacy": True,
            "pinned": False,
            "created_at": created,
            "started_at": to_utc_naive(manifest.started_at) if manifest else created,
            "finished_at": None,
            "summary": "{}",
            "tags": "{}",
            "error": None,
        }
    row.update(
        location=RunLocation.archived.value,
        archive_batch_id=run.batch_id,
        size_bytes=entry.bytes,
    )
    return row


def _data_row(settings: Settings, digest: str, report: RebuildReport) -> dict[str, Any] | None:
    path = settings.scenario_data_dir / f"{digest}.json"
    try:
        text = canonical.canonicalize(canonical.read_json_text(path, str(path)), str(path))
    except (OSError, Invalid) as exc:
        why = exc.message if isinstance(exc, Invalid) else str(exc)
        report.problems.append(f"scenario data {digest}: cannot be read ({why}); not recreated")
        return None
    if canonical.content_digest(text) != digest:
        report.problems.append(f"scenario data {digest}: its content does not match its digest")
        return None
    return {"digest": digest, "content": text, "bytes": len(text.encode()), "created_at": utcnow()}


def _aggregate_rows(
    settings: Settings, plan_ids: set[str], known_jobs: set[str], report: RebuildReport
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for plan_dir in _dirs(settings.aggregates_dir):
        for job_dir in _dirs(Path(plan_dir.path)):
            if job_dir.name in known_jobs or plan_dir.name not in plan_ids:
                continue
            path = Path(job_dir.path) / "aggregate.json"
            try:
                doc = canonical.loads_checked(
                    _read(path, AGGREGATE_FILE_BYTES), path.name, max_bytes=AGGREGATE_FILE_BYTES
                )
                created = datetime.fromisoformat(doc["created_at"])
                run_count = int(doc["run_count"])
            except (OSError, ValueError, KeyError, TypeError, Invalid) as exc:
                why = exc.message if isinstance(exc, Invalid) else str(exc)
                report.problems.append(f"{_rel(settings, path)}: cannot be read ({why})")
                continue
            rows.append(
                {
                    "aggregate_id": new_id("agg"),
                    "plan_version_id": plan_dir.name,
                    "job_id": job_dir.name,
                    "path": _rel(settings, Path(job_dir.path)),
                    "run_count": run_count,
                    "created_at": to_utc_naive(created),
                }
            )
    return rows


def _rel(settings: Settings, path: Path) -> str:
    try:
        return str(path.relative_to(settings.yard_path))
    except ValueError:
        return str(path)
