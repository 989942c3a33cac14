"""The yard at a glance (``/ui`` and ``/api/v1/overview``): one core call, ``overview``.

It owns the grouped queries behind the overview and nothing else. Every figure comes
from the registry, never from the disk: a page view must cost the same at ten runs and
at a million, and must not walk a runs root of a terabyte. So

- disk use is the sum of ``runs.size_bytes``, the size recorded when a run finished,
  was imported, archived or restored; runs with no recorded size are counted, not
  measured;
- runs per day read the ``ix_runs_started`` index over the last 30 days only (a range,
  never the whole table); runs by status read ``ix_runs_status``;
- what retention would archive is the cap arithmetic of ``lifecycle/retention.py``
  (active runs over ``retention.max_active_runs``), an upper bound: the real dry run
  (``runyard retention``) applies every guard, which needs each run's folder;
- the last good backup is the newest backup record in ``<yard>/backups`` that says
  verified, read newest first and stopping at the first good one (one small JSON file
  in the usual case), never re-verifying a copy.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, and_, func, select

from runyard.db.tables import jobs, plan_versions, runs, scenarios
from runyard.durability import backup as backups
from runyard.models import JobStatus, JobType, RunLocation, RunStatus
from runyard.registry.common import as_aware

if TYPE_CHECKING:
    from runyard.config import Settings
    from runyard.yard import Yard

DAYS = 30  # runs per day: this many UTC days, today included
TOP_GROUPS = 10
RUNNING_JOBS = 20  # running jobs listed (the count is exact)
FAILED_JOBS = 10  # recently failed jobs listed
FAILED_WITHIN_DAYS = 7  # "recently"
BACKUP_STALE_DAYS = 7  # a newest good backup older than this is a warning
ON_DISK = (RunLocation.active, RunLocation.archived)


class StatusCount(BaseModel):
    status: RunStatus
    runs: int


class LocationCount(BaseModel):
    location: RunLocation
    runs: int


class DayCount(BaseModel):
    day: date = Field(description="a UTC day")
    runs: int = Field(description="runs started that day")


class DiskUse(BaseModel):
    location: RunLocation = Field(description="active: the runs root; archived: the archive")
    root: str = Field(description="the folder these runs are in")
    runs: int
    bytes: int = Field(description="the sum of the runs' recorded sizes")
    unmeasured_runs: int = Field(description="runs with no recorded size (not in bytes)")


class GroupUse(BaseModel):
    group: str
    runs: int = Field(description="runs of the group, wherever they are")
    bytes: int = Field(description="recorded sizes of its active and archived runs")
    unmeasured_runs: int = Field(description="active or archived runs with no recorded size")


class JobBrief(BaseModel):
    job_id: str
    type: JobType
    status: JobStatus
    plan_version_id: str | None
    plan_label: str | None
    scenario_name: str | None
    run_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None


class JobsAtAGlance(BaseModel):
    running: int
    queued: int
    running_jobs: list[JobBrief] = Field(description=f"the {RUNNING_JOBS} newest running jobs")
    failed_recently: int = Field(description=f"jobs failed in the last {FAILED_WITHIN_DAYS} days")
    failed_jobs: list[JobBrief] = Field(description=f"the {FAILED_JOBS} newest of them")
    failed_within_days: int = FAILED_WITHIN_DAYS


class BackupAge(BaseModel):
    last_good_at: datetime | None = Field(description="None: no verified backup yet")
    age_seconds: float | None
    stale: bool = Field(description="no good backup, or the newest is older than stale_after")
    stale_after_days: int = BACKUP_STALE_DAYS
    path: str | None = Field(description="the newest verified backup's file")


class RetentionOutlook(BaseModel):
    cap: int | None = Field(description="retention.max_active_runs; None: no cap is set")
    active: int
    over_cap: int = Field(description="active runs beyond the cap")
    would_archive_at_most: int = Field(
        description="the next retention pass archives at most this many (guards may keep some)"
    )


class Overview(BaseModel):
    """The yard at a glance, every figure read from the registry."""

    generated_at: datetime
    runs: int
    by_status: list[StatusCount] = Field(description="every status, zeros included")
    by_location: list[LocationCount] = Field(description="every location, zeros included")
    per_day: list[DayCount] = Field(description=f"the last {DAYS} UTC days, oldest first")
    disk: list[DiskUse] = Field(description="the runs root (active) and the archive (archived)")
    largest_groups: list[GroupUse] = Field(description=f"the {TOP_GROUPS} groups with most runs")
    jobs: JobsAtAGlance
    backup: BackupAge
    retention: RetentionOutlook


def overview(yard: Yard, now: datetime | None = None) -> Overview:
    """The yard at a glance: a handful of grouped, indexed queries and one backup record.

    Args:
        now: the moment to look from (naive means UTC); tests pass one, pages use the
            clock.
    """
    now = now or datetime.now(UTC)
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    settings = yard.settings
    with yard.read() as conn:
        by_status = _counts(conn, runs.c.status)
        per_location = _by_location(conn)
        per_day = runs_per_day(conn, now.date())
        groups = largest_groups(conn)
        job_figures = _jobs(conn, now)
    total = sum(by_status.values())
    by_location = {loc: counts[0] for loc, counts in per_location.items()}
    disk = []
    for loc, root in (
        (RunLocation.active, settings.runs_root),
        (RunLocation.archived, settings.archive_root),
    ):
        n, measured, size = per_location.get(loc.value, (0, 0, 0))
        disk.append(
            DiskUse(location=loc, root=str(root), runs=n, bytes=size, unmeasured_runs=n - measured)
        )
    active = by_location.get(RunLocation.active.value, 0)
    cap = settings.max_active_runs
    over = max(0, active - cap) if cap is not None else 0
    return Overview(
        generated_at=now,
        runs=total,
        by_status=[StatusCount(status=s, runs=by_status.get(s.value, 0)) for s in RunStatus],
        by_location=[
            LocationCount(location=loc, runs=by_location.get(loc.value, 0)) for loc in RunLocation
        ],
        per_day=per_day,
        disk=disk,
        largest_groups=groups,
        jobs=job_figures,
        backup=backup_age(settings, now),
        retention=RetentionOutlook(
            cap=cap, active=active, over_cap=over, would_archive_at_most=over
        ),
    )


# --- runs ---------------------------------------------------------------------------------


def _counts(conn: Connection, column: Any) -> dict[str, int]:
    """Rows per value of an indexed column (an index-only scan of its index)."""
    query = select(column, func.count()).group_by(column)
    return {str(value): int(n) for value, n in conn.execute(query).all()}


def _by_location(conn: Connection) -> dict[str, tuple[int, int, int]]:
    """Per location: (runs, runs with a recorded size, the sum of those sizes)."""
    query = select(
        runs.c.location, func.count(), func.count(runs.c.size_bytes), func.sum(runs.c.size_bytes)
    ).group_by(runs.c.location)
    return {
        str(loc): (int(n), int(measured), int(size or 0))
        for loc, n, measured, size in conn.execute(query).all()
    }


def runs_per_day(conn: Connection, today: date, days: int = DAYS) -> list[DayCount]:
    """Runs started on each of the last ``days`` UTC days (today last), zeros included.

    One range of ``ix_runs_started`` (started_at is naive UTC, so ``date()`` is the UTC
    day on both engines).
    """
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day)
    until = datetime(today.year, today.month, today.day) + timedelta(days=1)
    day = func.date(runs.c.started_at)
    query = (
        select(day, func.count())
        .where(runs.c.started_at >= since, runs.c.started_at < until)
        .group_by(day)
    )
    found = {str(d)[:10]: int(n) for d, n in conn.execute(query).all()}
    return [
        DayCount(day=d, runs=found.get(d.isoformat(), 0))
        for d in (first + timedelta(days=i) for i in range(days))
    ]


def largest_groups(conn: Connection, limit: int = TOP_GROUPS) -> list[GroupUse]:
    """The groups with most runs (ties by name), with the recorded bytes of their runs on
    disk. Two steps: counts from ``ix_runs_group`` alone, then sizes for those groups only."""
    count = func.count().label("n")
    top = conn.execute(
        select(runs.c.group_name, count)
        .where(runs.c.group_name.is_not(None))
        .group_by(runs.c.group_name)
        .order_by(count.desc(), runs.c.group_name)
        .limit(limit)
    ).all()
    if not top:
        return []
    names = [str(name) for name, _ in top]
    # Grouped by location too, and filtered here: a WHERE on location would lead SQLite
    # to scan ix_runs_location (every active run) instead of seeking ix_runs_group.
    on_disk = {loc.value for loc in ON_DISK}
    sizes: dict[str, tuple[int, int, int]] = {}
    for name, location, n, measured, size in conn.execute(
        select(
            runs.c.group_name,
            runs.c.location,
            func.count(),
            func.count(runs.c.size_bytes),
            func.sum(runs.c.size_bytes),
        )
        .where(runs.c.group_name.in_(names))
        .group_by(runs.c.group_name, runs.c.location)
    ).all():
        if str(location) in on_disk:
            before = sizes.get(str(name), (0, 0, 0))
            sizes[str(name)] = (before[0] + n, before[1] + measured, before[2] + int(size or 0))
    out = []
    for name, n in top:
        kept, measured, size = sizes.get(str(name), (0, 0, 0))
        out.append(
            GroupUse(group=str(name), runs=int(n), bytes=size, unmeasured_runs=kept - measured)
        )
    return out


# --- jobs ---------------------------------------------------------------------------------


def _job_briefs(conn: Connection, where: Any, limit: int) -> list[JobBrief]:
    """Jobs newest first (``ix_jobs_queue``: status, created_at), with their plan's label
    and scenario's name."""
    query = (
        select(
            jobs.c.job_id,
            jobs.c.type,
            jobs.c.status,
            jobs.c.plan_version_id,
            jobs.c.run_id,
            jobs.c.created_at,
            jobs.c.started_at,
            jobs.c.finished_at,
            jobs.c.error,
            plan_versions.c.label,
            scenarios.c.name,
        )
        .select_from(
            jobs.outerjoin(
                plan_versions, plan_versions.c.plan_version_id == jobs.c.plan_version_id
            ).outerjoin(scenarios, scenarios.c.scenario_id == plan_versions.c.scenario_id)
        )
        .where(where)
        .order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc())
        .limit(limit)
    )
    return [
        JobBrief(
            job_id=row.job_id,
            type=JobType(row.type),
            status=JobStatus(row.status),
            plan_version_id=row.plan_version_id,
            plan_label=row.label,
            scenario_name=row.name,
            run_id=row.run_id,
            created_at=row.created_at.replace(tzinfo=UTC),
            started_at=as_aware(row.started_at),
            finished_at=as_aware(row.finished_at),
            error=row.error,
        )
        for row in conn.execute(query)
    ]


def _jobs(conn: Connection, now: datetime) -> JobsAtAGlance:
    since = now.replace(tzinfo=None) - timedelta(days=FAILED_WITHIN_DAYS)
    counts = {
        str(status): int(n)
        for status, n in conn.execute(
            select(jobs.c.status, func.count())
            .where(jobs.c.status.in_([JobStatus.running.value, JobStatus.queued.value]))
            .group_by(jobs.c.status)
        ).all()
    }
    failed = and_(jobs.c.status == JobStatus.failed.value, jobs.c.created_at >= since)
    failed_count = int(conn.execute(select(func.count()).where(failed)).scalar_one())
    return JobsAtAGlance(
        running=counts.get(JobStatus.running.value, 0),
        queued=counts.get(JobStatus.queued.value, 0),
        running_jobs=_job_briefs(conn, jobs.c.status == JobStatus.running.value, RUNNING_JOBS),
        failed_recently=failed_count,
        failed_jobs=_job_briefs(conn, failed, FAILED_JOBS),
    )


# --- backups ------------------------------------------------------------------------------


def newest_good_backup(settings: Settings) -> backups.BackupEntry | None:
    """The newest verified backup, as ``runyard backup --list`` judges it (its record says
    verified and the file has the recorded size), reading records newest first and
    stopping at the first good one: one listing of the backups folder and, usually, one
    small JSON file. ``backups.last_good_backup`` reads every record."""
    folder = backups.backups_dir(settings)
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    found = []
    for name in names:
        match = backups._NAME_RE.match(name)
        if match is not None:
            found.append((match.group(1), int(match.group(2) or 1), name, match))
    for _, _, name, match in sorted(found, key=lambda f: (f[0], f[1]), reverse=True):
        path = folder / name
        if not path.is_file():
            continue
        entry = backups._entry(path, match)
        if entry.verified:
            return entry
    return None


def backup_age(settings: Settings, now: datetime) -> BackupAge:
    entry = newest_good_backup(settings)
    if entry is None:
        return BackupAge(last_good_at=None, age_seconds=None, stale=True, path=None)
    taken = entry.created_at.astimezone(UTC)
    age = max(0.0, (now - taken).total_seconds())
    return BackupAge(
        last_good_at=taken,
        age_seconds=age,
        stale=age > BACKUP_STALE_DAYS * 86400,
        path=entry.path,
    )
