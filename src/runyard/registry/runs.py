"""Runs: one execution of a plan version, a row in the registry and a folder on disk.

The plan-centric rule lives here: a new run needs an existing plan version on an
unlocked scenario, and records that plan's config version and scenario as its
own indexed columns. Registry row and ``run.json`` change in one step: the
manifest is written inside the database transaction, so a failure of either
leaves neither changed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    bindparam,
    false,
    func,
    literal,
    select,
)
from sqlalchemy.exc import IntegrityError

from runyard.db.tables import config_versions, plan_versions, runs, scenarios
from runyard.errors import (
    Conflict,
    Invalid,
    LegacyPathClosed,
    ManifestError,
    NotFound,
    Refused,
)
from runyard.fsutil import tree_bytes, write_atomic
from runyard.ids import new_run_id, validate_label, validate_run_id, validate_text
from runyard.manifest import MANIFEST_NAME, read_manifest, write_manifest
from runyard.models import (
    FINISH_STATUSES,
    Page,
    Run,
    RunLocation,
    RunStatus,
)
from runyard.query.ast import Query
from runyard.registry.common import (
    as_aware,
    check_limit,
    dump_json_object,
    load_json_object,
    to_utc_naive,
    utcnow,
)
from runyard.registry.configs import get_config
from runyard.registry.plans import get_plan
from runyard.registry.run_query import check_names, query_page
from runyard.registry.scenarios import ensure_unlocked, get_scenario, scenario_names
from runyard.registry.search_index import index_runs

if TYPE_CHECKING:
    from runyard.config import Settings
    from runyard.yard import Yard

TAG_KEY_MAX = 100
TAG_VALUE_MAX = 1000


def _to_model(row: Any, settings: Settings) -> Run:
    return Run(
        run_id=row.run_id,
        plan_version_id=row.plan_version_id,
        config_version_id=row.config_version_id,
        scenario_id=row.scenario_id,
        group=row.group_name,
        status=RunStatus(row.status),
        legacy=row.legacy,
        location=RunLocation(row.location),
        pinned=row.pinned,
        created_at=as_aware(row.created_at),
        started_at=as_aware(row.started_at),
        finished_at=as_aware(row.finished_at),
        summary=load_json_object(row.summary),
        tags=load_json_object(row.tags),
        error=row.error,
        archive_batch_id=row.archive_batch_id,
        path=str(
            settings.run_dir(
                row.run_id, row.archive_batch_id if row.location == "archived" else None
            )
        ),
        size_bytes=row.size_bytes,
        created_by=row.created_by,
    )


def derive_group(settings: Settings, run_id: str, explicit: str | None) -> str | None:
    """The run's group: ``explicit``, else what ``group_pattern`` finds in the run id.

    Named groups of the pattern are joined with '/' (``CH01`` + ``003`` → ``CH01/003``);
    a pattern without groups gives its whole match.
    """
    if explicit is not None:
        return validate_label(explicit, "group")
    regex = settings.group_regex
    if regex is None:
        return None
    match = regex.search(run_id)
    if match is None:
        return None
    names = sorted(regex.groupindex, key=regex.groupindex.__getitem__)
    parts = [match.group(n) for n in names] if names else list(match.groups())
    parts = [p for p in parts if p]
    if not parts and not regex.groups:
        parts = [match.group(0)]
    return "/".join(parts) or None


def validate_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (tags or {}).items():
        validate_label(str(key), "tag key", TAG_KEY_MAX)
        if not isinstance(value, str):
            value = str(value)
        out[str(key)] = validate_text(value, f"tag {key!r}", TAG_VALUE_MAX)
    return out


def require_runs_root(settings: Settings) -> Path:
    root = settings.runs_root
    if not root.is_dir():
        raise Refused(
            f"the runs root {root} does not exist",
            hint=f"create it (mkdir -p {root}) or fix runs_root in {settings.config_file}",
        )
    return root


_PLAN_FOR_RUN = (
    select(
        plan_versions.c.config_version_id,
        plan_versions.c.scenario_id,
        scenarios.c.locked,
    )
    .join(scenarios, scenarios.c.scenario_id == plan_versions.c.scenario_id)
    .where(plan_versions.c.plan_version_id == bindparam("plan_version_id"))
)
_INSERT_IF_UNLOCKED = (
    runs.insert()
    .from_select(
        [
            "run_id",
            "plan_version_id",
            "config_version_id",
            "scenario_id",
            "group_name",
            "status",
            "legacy",
            "location",
            "pinned",
            "created_at",
            "started_at",
            "summary",
            "tags",
            "created_by",
        ],
        select(
            bindparam("n_run_id", type_=runs.c.run_id.type),
            plan_versions.c.plan_version_id,
            plan_versions.c.config_version_id,
            plan_versions.c.scenario_id,
            bindparam("n_group", type_=runs.c.group_name.type),
            bindparam("n_status", type_=runs.c.status.type),
            false(),
            bindparam("n_location", type_=runs.c.location.type),
            false(),
            bindparam("n_now", type_=runs.c.created_at.type),
            bindparam("n_now", type_=runs.c.started_at.type),
            literal("{}"),
            bindparam("n_tags", type_=runs.c.tags.type),
            bindparam("n_created_by", type_=runs.c.created_by.type),
        )
        .select_from(
            plan_versions.join(scenarios, scenarios.c.scenario_id == plan_versions.c.scenario_id)
        )
        .where(plan_versions.c.plan_version_id == bindparam("n_plan_version_id"))
        .where(scenarios.c.locked == false()),
    )
    .returning(runs.c.run_id)
)
_RUN_BY_ID = select(runs).where(runs.c.run_id == bindparam("run_id"))
_FINISH = (
    runs.update()
    .where(runs.c.run_id == bindparam("b_run_id"))
    .where(runs.c.status == bindparam("b_status"))
)


def _plan_for_run(
    yard: Yard, plan_version_id: str, conn: Connection | None = None, cached: bool = True
) -> Any:
    """The plan's config version and scenario, refusing a missing plan or a locked scenario.

    A plan's lineage never changes, so it is remembered per yard; the lock is checked
    again by the insert itself.
    """
    cache: dict[str, Any] = yard.plan_cache
    if cached and plan_version_id in cache:
        return cache[plan_version_id]
    if conn is None:
        with yard.read() as read_conn:
            return _plan_for_run(yard, plan_version_id, conn=read_conn, cached=False)
    plan = conn.execute(_PLAN_FOR_RUN, {"plan_version_id": plan_version_id}).first()
    if plan is None:
        raise NotFound(
            f"no plan version {plan_version_id!r}: a run can only be started from an "
            "existing plan version",
            hint="create one with `runyard plan create`; `runyard plan list` shows them",
        )
    if plan.locked:
        ensure_unlocked(get_scenario(conn, plan.scenario_id), "starting a run")
    from runyard.registry.lineage_files import ensure_plan_lineage  # it imports this module

    ensure_plan_lineage(yard, plan_version_id, conn)
    cache[plan_version_id] = plan
    return plan


OnCommit = Callable[[Connection, Run], None]
"""Called inside a write's transaction with what it wrote (the web API stores the
request's idempotency key there): raising rolls the whole write back."""


def start_run(
    yard: Yard,
    plan_version_id: str | None,
    group: str | None = None,
    run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    created_by: str | None = None,
    on_commit: OnCommit | None = None,
    take_over: bool = False,
) -> Run:
    """Register a new run of a plan version as running, and create its folder and manifest.

    The folder and manifest are made first (``mkdir`` is what makes a run id exclusive on
    disk), then the row; if the row cannot be written the folder is removed again. A crash
    in between leaves a folder with a manifest, which ``run import`` registers as recorded.

    Args:
        created_by: who asked (the web API's token name), stored on the row.
        on_commit: run inside the row's transaction (see ``OnCommit``).
        take_over: a folder left by a start that died before its row was written (it holds
            only a ``run.json`` naming this run id, and no start holds it) is taken over
            instead of refused: how the web API makes a retried start safe.
    """
    if not plan_version_id:
        raise LegacyPathClosed(
            "a run needs a plan version: the legacy path (runs without a plan) is closed",
            hint="create a plan with `runyard plan create --scenario ID --config ID`, "
            "then `runyard run start --plan PLAN_VERSION_ID`",
        )
    settings = yard.settings
    run_id = validate_run_id(run_id) if run_id is not None else new_run_id()
    group = derive_group(settings, run_id, group)
    clean_tags = validate_tags(tags)
    tags_text = dump_json_object(clean_tags, "tags")
    if created_by is not None:
        validate_text(created_by, "created_by", 200)
    run_dir = require_runs_root(settings) / run_id
    plan = _plan_for_run(yard, plan_version_id)
    now = utcnow()
    run = Run(
        run_id=run_id,
        plan_version_id=plan_version_id,
        config_version_id=plan.config_version_id,
        scenario_id=plan.scenario_id,
        group=group,
        status=RunStatus.running,
        legacy=False,
        location=RunLocation.active,
        pinned=False,
        created_at=as_aware(now),
        started_at=as_aware(now),
        finished_at=None,
        summary={},
        tags=clean_tags,
        error=None,
        path=str(run_dir),
        created_by=created_by,
    )
    held = _claim_folder(yard, run_dir, run_id, take_over)
    try:
        write_manifest(run_dir, run, settings.yard_id)
        with yard.write() as conn:
            inserted = conn.execute(
                _INSERT_IF_UNLOCKED,
                {
                    "n_run_id": run_id,
                    "n_plan_version_id": plan_version_id,
                    "n_group": group,
                    "n_status": RunStatus.running.value,
                    "n_location": RunLocation.active.value,
                    "n_now": now,
                    "n_tags": tags_text,
                    "n_created_by": created_by,
                },
            ).first()
            if inserted is None:  # locked (or gone) since it was looked up
                _plan_for_run(yard, plan_version_id, conn=conn, cached=False)
                raise Conflict(f"plan version {plan_version_id!r} cannot take runs now")
            if clean_tags:
                index_runs(conn, [(run_id, now, plan_version_id, {}, clean_tags)])
            if on_commit is not None:
                on_commit(conn, run)
    except BaseException as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(exc, IntegrityError):
            raise Conflict(f"a run with id {run_id!r} already exists") from None
        raise
    finally:
        os.close(held)  # releases the folder's lock
    return run


def _lock_folder(run_dir: Path, wait: bool) -> int | None:
    """An open descriptor of ``run_dir`` holding its exclusive ``flock`` (released when
    closed, or when the process dies); None when another start holds it (``wait`` false)
    or it is not a plain folder."""
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _claim_folder(yard: Yard, run_dir: Path, run_id: str, take_over: bool) -> int:
    """Make the run's folder (or take over an abandoned one, see ``start_run``) and hold
    its lock while the start goes on: the descriptor to close when done."""
    try:
        run_dir.mkdir()
    except FileExistsError:
        pass
    else:
        held = _lock_folder(run_dir, wait=True)
        if held is None:  # cannot happen but to a folder swapped under us
            shutil.rmtree(run_dir, ignore_errors=True)
            raise Conflict(f"the folder {run_dir} changed while the run was started")
        return held
    if _is_known(yard, run_id):
        raise Conflict(
            f"a run with id {run_id!r} already exists",
            hint="choose another --run-id, or leave it out",
        )
    if take_over:
        held = _lock_folder(run_dir, wait=False)
        if held is not None:
            if _abandoned(yard, run_dir, run_id):
                return held
            os.close(held)
    raise Conflict(
        f"the folder {run_dir} already exists",
        hint=f"register an existing folder with `runyard run import {run_dir}`",
    )


def _is_known(yard: Yard, run_id: str) -> bool:
    with yard.read() as conn:
        return conn.execute(_RUN_BY_ID, {"run_id": run_id}).first() is not None


def _abandoned(yard: Yard, run_dir: Path, run_id: str) -> bool:
    """Whether ``run_dir`` (whose lock the caller holds) is what a start that died before
    its row leaves: only a ``run.json`` of this yard naming ``run_id``, no row."""
    try:
        names = os.listdir(run_dir)
        manifest = read_manifest(run_dir) if names == [MANIFEST_NAME] else None
    except (OSError, ManifestError):
        return False
    return (
        manifest is not None
        and manifest.run_id == run_id
        and manifest.yard_id in (None, yard.settings.yard_id)
        and not _is_known(yard, run_id)
    )


def finish_run(
    yard: Yard,
    run_id: str,
    status: RunStatus | str,
    summary: Mapping[str, Any] | None = None,
    error: str | None = None,
    tags: Mapping[str, Any] | None = None,
    known: Run | None = None,
    *,
    on_commit: OnCommit | None = None,
) -> Run:
    """Move a queued or running run to succeeded, failed or cancelled.

    ``summary`` and ``tags`` are merged into the run's own. The manifest is rewritten
    first, then the row is updated only if its status is still the one read; if it
    changed meanwhile the old manifest is put back and the call is refused. ``known`` is
    the run as the caller last saw it (the Python API's handle), which saves a read;
    ``on_commit`` runs inside the row's transaction (see ``OnCommit``).
    """
    try:
        target = RunStatus(status)
    except ValueError:
        target = None
    if target not in FINISH_STATUSES:
        allowed = ", ".join(s.value for s in FINISH_STATUSES)
        raise Invalid(f"cannot finish a run as {status!r}: use one of {allowed}")
    assert target is not None
    validate_run_id(run_id)
    if error is not None:
        validate_text(error, "error")
    summary_update = dict(summary or {})
    tags_update = validate_tags(tags)
    if known is None:
        known = get_run(yard, run_id)
    current = known.status
    if current in FINISH_STATUSES:
        raise Conflict(
            f"run {run_id} is already finished ({current.value})",
            hint=f"`runyard run show {run_id}` shows it; a finished run's status never changes",
        )
    if current not in (RunStatus.queued, RunStatus.running):
        raise Conflict(
            f"run {run_id!r} is {current.value}; only a queued or running run can be "
            f"finished (as {target.value})"
        )
    now = utcnow()
    run = known.model_copy(
        update={
            "status": target,
            "finished_at": as_aware(now),
            "summary": {**known.summary, **summary_update},
            "tags": {**known.tags, **tags_update},
            "error": error,
        }
    )
    return _rewrite(yard, current, run, {"finished_at": now, "error": error}, on_commit, True)


def update_run(
    yard: Yard,
    run_id: str,
    tags: Mapping[str, Any] | None = None,
    summary: Mapping[str, Any] | None = None,
    *,
    on_commit: OnCommit | None = None,
) -> Run:
    """Merge ``tags`` and ``summary`` into a queued or running run's own (its manifest
    first, then its row, as ``finish_run`` does); Conflict once it is finished."""
    validate_run_id(run_id)
    tags_update = validate_tags(tags)
    known = get_run(yard, run_id)
    current = known.status
    if current not in (RunStatus.queued, RunStatus.running):
        raise Conflict(
            f"run {run_id!r} is {current.value}; only a queued or running run's tags and "
            "summary can change",
            hint=f"`runyard run show {run_id}` shows it",
        )
    run = known.model_copy(
        update={
            "summary": {**known.summary, **(summary or {})},
            "tags": {**known.tags, **tags_update},
        }
    )
    return _rewrite(yard, current, run, {}, on_commit, False)


def _rewrite(
    yard: Yard,
    current: RunStatus,
    run: Run,
    values: dict[str, Any],
    on_commit: OnCommit | None,
    measure: bool,
) -> Run:
    """Write ``run``'s manifest, then its row (status, summary, tags and ``values``) if
    its status is still ``current``; the old manifest is put back on any failure."""
    run_id = run.run_id
    summary_text = dump_json_object(run.summary, "summary")
    tags_text = dump_json_object(run.tags, "tags")
    run_dir = Path(run.path)
    manifest_path = run_dir / MANIFEST_NAME
    try:
        previous = manifest_path.read_bytes()
    except FileNotFoundError:
        previous = None
    if not run_dir.is_dir():
        raise Refused(
            f"the folder of run {run_id!r} ({run_dir}) is missing; nothing was changed",
            hint="`runyard run show` tells where the registry expects it",
        )
    write_manifest(run_dir, run, yard.settings.yard_id)
    if measure:
        run = run.model_copy(update={"size_bytes": tree_bytes(run_dir)})
        values = {**values, "size_bytes": run.size_bytes}
    try:
        with yard.write() as conn:
            updated = conn.execute(
                _FINISH,
                {
                    "b_run_id": run_id,
                    "b_status": current.value,
                    "status": run.status.value,
                    "summary": summary_text,
                    "tags": tags_text,
                    **values,
                },
            ).rowcount
            if updated != 1:
                raise Conflict(
                    f"run {run_id!r} changed status meanwhile; nothing was changed",
                    hint=f"`runyard run show {run_id}` shows it",
                )
            started = to_utc_naive(run.started_at)
            item = (run_id, started, run.plan_version_id, run.summary, run.tags)
            index_runs(conn, [item], replace=True)
            if on_commit is not None:
                on_commit(conn, run)
    except BaseException:
        if previous is None:
            manifest_path.unlink(missing_ok=True)
        else:
            write_atomic(manifest_path, previous)
        raise
    return run


def get_run(yard: Yard, run_id: str) -> Run:
    validate_run_id(run_id)
    with yard.read() as conn:
        row = conn.execute(_RUN_BY_ID, {"run_id": run_id}).first()
    if row is None:
        raise NotFound(f"no run {run_id!r}", hint="`runyard run list` shows them")
    return _to_model(row, yard.settings)


def set_pinned(yard: Yard, run_id: str, pinned: bool) -> Run:
    """Pin (protect from archiving) or unpin a run; idempotent."""
    validate_run_id(run_id)
    with yard.write() as conn:
        result = conn.execute(runs.update().where(runs.c.run_id == run_id).values(pinned=pinned))
        if result.rowcount == 0:
            raise NotFound(f"no run {run_id!r}", hint="`runyard run list` shows them")
    run = get_run(yard, run_id)
    # The manifest says it too (for `runyard rebuild`); a legacy run has none to update.
    if (Path(run.path) / MANIFEST_NAME).is_file():
        write_manifest(Path(run.path), run, yard.settings.yard_id)
    return run


@dataclass(frozen=True)
class RunFilter:
    """What ``list_runs`` keeps; every field is optional and they combine with AND."""

    plan_version_id: str | None = None
    scenario: str | None = None  # id or name
    config_version_id: str | None = None
    status: RunStatus | None = None
    group: str | None = None
    location: RunLocation | None = None
    legacy: bool | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None


def _filter_clauses(conn: Connection, f: RunFilter) -> list[Any]:
    clauses: list[Any] = []
    if f.plan_version_id is not None:
        clauses.append(runs.c.plan_version_id == get_plan(conn, f.plan_version_id).plan_version_id)
    if f.scenario is not None:
        clauses.append(runs.c.scenario_id == get_scenario(conn, f.scenario).scenario_id)
    if f.config_version_id is not None:
        cid = get_config(conn, f.config_version_id).config_version_id
        clauses.append(runs.c.config_version_id == cid)
    if f.status is not None:
        clauses.append(runs.c.status == RunStatus(f.status).value)
    if f.group is not None:
        clauses.append(runs.c.group_name == f.group)
    if f.location is not None:
        clauses.append(runs.c.location == RunLocation(f.location).value)
    if f.legacy is not None:
        clauses.append(runs.c.legacy == f.legacy)
    if f.started_after is not None:
        clauses.append(runs.c.started_at >= to_utc_naive(f.started_after))
    if f.started_before is not None:
        clauses.append(runs.c.started_at < to_utc_naive(f.started_before))
    return clauses


def list_runs(
    yard: Yard,
    filters: RunFilter | None = None,
    limit: int = 50,
    after: str | None = None,
    query: Query | None = None,
) -> Page[Run]:
    """Runs matching ``filters`` and ``query`` (``runyard.query``), a keyset page at a time:
    newest first (by start time, then run id) unless the query orders them otherwise."""
    check_limit(limit)
    query = query or Query()
    with yard.read() as conn:
        filters = filters or RunFilter()
        clauses = _filter_clauses(conn, filters)
        if query.where is not None or query.order_by:
            check_names(conn, query, list(yard.settings.kpis))
        rows, cursor = query_page(conn, query, clauses, limit, after, filters.plan_version_id)
    return Page[Run](items=_to_models(rows, yard.settings), next_cursor=cursor)


_RUN_FIELDS = set(Run.model_fields)
_DECODER = json.JSONDecoder()  # the registry writes these columns: no whitespace around
_new_run = Run.__new__
_set = object.__setattr__


def _constructed(values: dict[str, Any]) -> Run:
    """A Run from values the registry wrote, without validating them again: what
    ``Run.model_construct`` does for a model without defaults to fill, aliases or extras,
    at a third of its cost (a test holds it equal to the validated model)."""
    run = _new_run(Run)
    _set(run, "__dict__", values)
    _set(run, "__pydantic_fields_set__", _RUN_FIELDS.copy())  # model_copy adds to it
    _set(run, "__pydantic_extra__", None)
    _set(run, "__pydantic_private__", None)
    return run


def _to_models(rows: Sequence[Any], settings: Settings) -> list[Run]:
    """Runs from rows, built without re-validating what the registry wrote: a page of
    runs is mostly this loop, so it does the least work per row (``_to_model`` is the
    validating twin, for single runs)."""
    runs_root = str(settings.runs_root)
    batch_dirs: dict[str, str] = {}
    decode = _DECODER.raw_decode
    statuses = {s.value: s for s in RunStatus}
    locations = {loc.value: loc for loc in RunLocation}
    out: list[Run] = []
    for row in rows:
        m = row._mapping
        run_id = m["run_id"]
        location = m["location"]
        batch = m["archive_batch_id"]
        if location != "archived" or batch is None:
            path = f"{runs_root}/{run_id}"
        else:
            base = batch_dirs.get(batch)
            if base is None:
                base = batch_dirs[batch] = str(settings.batch_runs_dir(batch))
            path = f"{base}/{run_id}"
        text = m["summary"]
        summary = {} if text == "{}" else decode(text)[0]
        text = m["tags"]
        tags = {} if text == "{}" else decode(text)[0]
        finished = m["finished_at"]
        out.append(
            _constructed(
                {
                    "run_id": run_id,
                    "plan_version_id": m["plan_version_id"],
                    "config_version_id": m["config_version_id"],
                    "scenario_id": m["scenario_id"],
                    "group": m["group_name"],
                    "status": statuses[m["status"]],
                    "legacy": m["legacy"],
                    "location": locations[location],
                    "pinned": m["pinned"],
                    "created_at": m["created_at"].replace(tzinfo=UTC),
                    "started_at": m["started_at"].replace(tzinfo=UTC),
                    "finished_at": None if finished is None else finished.replace(tzinfo=UTC),
                    "summary": summary if isinstance(summary, dict) else {},
                    "tags": tags if isinstance(tags, dict) else {},
                    "error": m["error"],
                    "archive_batch_id": batch,
                    "path": path,
                    "size_bytes": m["size_bytes"],
                    "created_by": m["created_by"],
                }
            )
        )
    return out


def runs_of_plan(
    conn: Connection, settings: Settings, plan_version_id: str, limit: int
) -> tuple[int, list[Run]]:
    """How many runs a plan version has, and its newest ``limit``."""
    count = conn.execute(
        select(func.count()).select_from(runs).where(runs.c.plan_version_id == plan_version_id)
    ).scalar_one()
    rows = conn.execute(
        select(runs)
        .where(runs.c.plan_version_id == plan_version_id)
        .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        .limit(limit)
    ).all()
    return count, [_to_model(r, settings) for r in rows]


@dataclass(frozen=True)
class LineageNames:
    """What people call the plans and scenarios of a page of runs."""

    plan_labels: dict[str, str]
    scenario_names: dict[str, str]
    config_names: dict[str, str]

    def plan(self, plan_version_id: str | None) -> str:
        """The plan's label, else its id shortened (``pv-…x2k9``); "(legacy)" for none."""
        if plan_version_id is None:
            return "(legacy)"
        return self.plan_labels.get(plan_version_id) or short_id(plan_version_id)

    def scenario(self, scenario_id: str | None) -> str:
        if scenario_id is None:
            return "-"
        return self.scenario_names.get(scenario_id) or scenario_id

    def config(self, config_version_id: str | None) -> str:
        """The config version's name, else its id shortened."""
        if config_version_id is None:
            return "-"
        return self.config_names.get(config_version_id) or short_id(config_version_id)


def short_id(value: str, keep: int = 6) -> str:
    """An id shortened for a table cell: its prefix and its last characters."""
    head, _, tail = value.rpartition("-")
    if not head or len(tail) <= keep + 1:
        return value if len(value) <= keep + 4 else "…" + value[-keep:]
    return f"{head}-…{tail[-keep:]}"


def lineage_names(conn: Connection, page: Sequence[Run]) -> LineageNames:
    """The plan labels, scenario names and config names of a page of runs, in three
    queries."""
    plan_ids = sorted({r.plan_version_id for r in page if r.plan_version_id})
    labels: dict[str, str] = {}
    if plan_ids:
        query = select(plan_versions.c.plan_version_id, plan_versions.c.label).where(
            plan_versions.c.plan_version_id.in_(plan_ids)
        )
        labels = {row.plan_version_id: row.label for row in conn.execute(query) if row.label}
    names = scenario_names(conn, [r.scenario_id for r in page if r.scenario_id])
    config_ids = sorted({r.config_version_id for r in page if r.config_version_id})
    configs: dict[str, str] = {}
    if config_ids:
        query = select(config_versions.c.config_version_id, config_versions.c.name).where(
            config_versions.c.config_version_id.in_(config_ids)
        )
        configs = {row.config_version_id: row.name for row in conn.execute(query) if row.name}
    return LineageNames(labels, names, configs)
