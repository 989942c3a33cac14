"""The figures ``/metrics`` exports, read from the registry on every scrape, so that
every server process (and every restart) reports the same values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, case, func, select

from runyard.db.tables import executions, jobs, runs
from runyard.models import JobStatus
from runyard.registry.lifecycle import skipped_by_reason

DURATION_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
"""Upper bounds (seconds) of the job duration histogram; +Inf is added."""


@dataclass(frozen=True)
class DurationHistogram:
    buckets: list[tuple[float, int]]  # (upper bound, cumulative count), +Inf last
    count: int
    total: float


@dataclass(frozen=True)
class RegistryFigures:
    runs_by_status: dict[str, int]
    runs_by_location: dict[str, int]
    active_runs: int
    jobs_by_status: dict[str, int]
    job_durations: dict[str, DurationHistogram]  # by type, finished jobs only
    executions: dict[tuple[str, str], tuple[int, int, int]]  # (kind, status) → (n, moved, bytes)
    skipped_by_reason: dict[str, int]  # guard reason code → runs it kept, over executed passes


def read_figures(conn: Connection, bounds: Sequence[float] = DURATION_BUCKETS) -> RegistryFigures:
    """A handful of grouped queries; none reads rows one by one."""
    by_status = _counts(conn, runs.c.status)
    by_location = _counts(conn, runs.c.location)
    job_status = _counts(conn, jobs.c.status)
    finished = jobs.c.duration_seconds.is_not(None) & jobs.c.status.in_(
        [JobStatus.succeeded.value, JobStatus.failed.value, JobStatus.cancelled.value]
    )
    columns = [func.sum(case((jobs.c.duration_seconds <= bound, 1), else_=0)) for bound in bounds]
    query = (
        select(jobs.c.type, func.count(), func.sum(jobs.c.duration_seconds), *columns)
        .where(finished)
        .group_by(jobs.c.type)
    )
    durations: dict[str, DurationHistogram] = {}
    for row in conn.execute(query).all():
        job_type, count, total, *cumulative = row
        buckets = [(float(b), int(c or 0)) for b, c in zip(bounds, cumulative, strict=True)]
        buckets.append((float("inf"), int(count)))
        durations[str(job_type)] = DurationHistogram(buckets, int(count), float(total or 0.0))
    execution_rows = conn.execute(
        select(
            executions.c.kind,
            executions.c.status,
            func.count(),
            func.sum(executions.c.moved),
            func.sum(executions.c.bytes),
        ).group_by(executions.c.kind, executions.c.status)
    ).all()
    return RegistryFigures(
        runs_by_status=by_status,
        runs_by_location=by_location,
        active_runs=by_location.get("active", 0),
        jobs_by_status=job_status,
        job_durations=durations,
        executions={
            (str(kind), str(status)): (int(n), int(moved or 0), int(size or 0))
            for kind, status, n, moved, size in execution_rows
        },
        skipped_by_reason=skipped_by_reason(conn),
    )


def _counts(conn: Connection, column: Any) -> dict[str, int]:
    query = select(column, func.count()).group_by(column)
    return {str(value): int(count) for value, count in conn.execute(query).all()}
