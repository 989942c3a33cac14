"""Jobs and aggregates in the registry: enqueue, claim, heartbeat, finish, cancel, reap.

Claiming is one statement pair in one write transaction: on PostgreSQL the queued row
is selected ``FOR UPDATE SKIP LOCKED`` (workers on many hosts never wait on each
other, never take the same job); on SQLite the write transaction is ``BEGIN
IMMEDIATE`` (``db.engine``), which serialises claimers, so the row read is still
queued when it is updated. Every later change by a worker is conditional on the job
still being held by it (``worker_id`` and ``running``), so a job that was reaped as
lost or cancelled meanwhile is never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from runyard.db.tables import aggregates, jobs
from runyard.errors import Conflict, Invalid, NotFound
from runyard.ids import new_id
from runyard.models import Aggregate, Job, JobStatus, JobType, Page
from runyard.registry.common import (
    as_aware,
    dump_json_object,
    load_json_object,
    newest_first_page,
    utcnow,
)

JOB_ID_PREFIX = "job"
AGGREGATE_ID_PREFIX = "agg"


def _to_model(row: Any) -> Job:
    return Job(
        job_id=row.job_id,
        type=JobType(row.type),
        status=JobStatus(row.status),
        plan_version_id=row.plan_version_id,
        params=load_json_object(row.params),
        created_at=as_aware(row.created_at),
        started_at=as_aware(row.started_at),
        finished_at=as_aware(row.finished_at),
        duration_seconds=row.duration_seconds,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        error=row.error,
        run_id=row.run_id,
        worker_id=row.worker_id,
        heartbeat_at=as_aware(row.heartbeat_at),
        cancel_requested=row.cancel_requested,
        result=load_json_object(row.result) if row.result else None,
        created_by=row.created_by,
    )


def enqueue(
    conn: Connection,
    job_type: JobType,
    plan_version_id: str | None,
    params: dict[str, Any] | None = None,
    max_attempts: int = 1,
    created_by: str | None = None,
) -> Job:
    """Queue a job; ``created_by`` is the token name of a job queued through the API."""
    job_id = new_id(JOB_ID_PREFIX)
    conn.execute(
        jobs.insert().values(
            job_id=job_id,
            type=job_type.value,
            status=JobStatus.queued.value,
            plan_version_id=plan_version_id,
            params=dump_json_object(params or {}, "job parameters"),
            created_at=utcnow(),
            attempts=0,
            max_attempts=max_attempts,
            cancel_requested=False,
            created_by=created_by,
        )
    )
    return get_job(conn, job_id)


def find_job(conn: Connection, job_id: str) -> Job | None:
    row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()
    return None if row is None else _to_model(row)


def get_job(conn: Connection, job_id: str) -> Job:
    found = find_job(conn, job_id)
    if found is None:
        raise NotFound(f"no job {job_id!r}", hint="`runyard job list` shows them")
    return found


def list_jobs(
    conn: Connection,
    plan_version_id: str | None = None,
    job_type: str | None = None,
    status: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> Page[Job]:
    """Jobs newest first, filtered; each filter has its own index ending in the keyset."""
    query = select(jobs)
    if plan_version_id is not None:
        query = query.where(jobs.c.plan_version_id == plan_version_id)
    if job_type is not None:
        _check_choice(job_type, JobType, "--type")
        query = query.where(jobs.c.type == job_type)
    if status is not None:
        _check_choice(status, JobStatus, "--status")
        query = query.where(jobs.c.status == status)
    rows, cursor = newest_first_page(conn, query, jobs.c.created_at, jobs.c.job_id, limit, after)
    return Page[Job](items=[_to_model(r) for r in rows], next_cursor=cursor)


def _check_choice(value: str, choices: type[JobType] | type[JobStatus], flag: str) -> None:
    allowed = [c.value for c in choices]
    if value not in allowed:
        raise Invalid(f"{flag} must be one of {', '.join(allowed)} (got {value!r})")


def claim(
    conn: Connection, worker_id: str, postgres: bool, job_id: str | None = None
) -> Job | None:
    """Take the oldest queued job (or ``job_id`` if still queued) for ``worker_id``."""
    query = select(jobs.c.job_id).where(jobs.c.status == JobStatus.queued.value)
    if job_id is not None:
        query = query.where(jobs.c.job_id == job_id)
    query = query.order_by(jobs.c.created_at, jobs.c.job_id).limit(1)
    if postgres:
        query = query.with_for_update(skip_locked=True)
    found = conn.execute(query).scalar()
    if found is None:
        return None
    now = utcnow()
    taken = conn.execute(
        jobs.update()
        .where(jobs.c.job_id == found, jobs.c.status == JobStatus.queued.value)
        .values(
            status=JobStatus.running.value,
            worker_id=worker_id,
            started_at=now,
            heartbeat_at=now,
            attempts=jobs.c.attempts + 1,
            error=None,
        )
    ).rowcount
    return get_job(conn, found) if taken == 1 else None


def _held(job_id: str, worker_id: str) -> Any:
    return (
        (jobs.c.job_id == job_id)
        & (jobs.c.worker_id == worker_id)
        & (jobs.c.status == JobStatus.running.value)
    )


def heartbeat(conn: Connection, worker_id: str, job_ids: Sequence[str]) -> set[str]:
    """Mark ``job_ids`` alive; the ones whose cancellation was requested."""
    if not job_ids:
        return set()
    held = (
        jobs.c.job_id.in_(list(job_ids))
        & (jobs.c.worker_id == worker_id)
        & (jobs.c.status == JobStatus.running.value)
    )
    conn.execute(jobs.update().where(held).values(heartbeat_at=utcnow()))
    query = select(jobs.c.job_id).where(held, jobs.c.cancel_requested.is_(True))
    return set(conn.execute(query).scalars())


def set_run(conn: Connection, job_id: str, worker_id: str, run_id: str) -> None:
    conn.execute(jobs.update().where(_held(job_id, worker_id)).values(run_id=run_id))


def finish(
    conn: Connection,
    job_id: str,
    worker_id: str,
    status: JobStatus,
    error: str | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Record the end of a held job; False when it was no longer this worker's."""
    row = conn.execute(select(jobs.c.started_at).where(_held(job_id, worker_id))).first()
    if row is None:
        return False
    now = utcnow()
    conn.execute(
        jobs.update()
        .where(_held(job_id, worker_id))
        .values(
            status=status.value,
            finished_at=now,
            duration_seconds=(now - row.started_at).total_seconds(),
            error=error,
            result=dump_json_object(result, "job result") if result is not None else None,
        )
    )
    return True


def request_cancel(conn: Connection, job_id: str) -> Job:
    """Cancel a queued job at once; ask the worker of a running one to stop it.

    Each step is one conditional update, so a worker claiming the job meanwhile cannot
    make the request miss (on PostgreSQL the update waits for the claim's row lock,
    then sees ``running``): a job is either cancelled while queued or marked.
    """
    get_job(conn, job_id)  # NotFound first
    cancelled = conn.execute(
        jobs.update()
        .where(jobs.c.job_id == job_id, jobs.c.status == JobStatus.queued.value)
        .values(
            status=JobStatus.cancelled.value,
            finished_at=utcnow(),
            error="cancelled before it started",
            cancel_requested=True,
        )
    ).rowcount
    if cancelled != 1:
        marked = conn.execute(
            jobs.update()
            .where(jobs.c.job_id == job_id, jobs.c.status == JobStatus.running.value)
            .values(cancel_requested=True)
        ).rowcount
        if marked != 1:
            job = get_job(conn, job_id)
            raise Conflict(f"job {job_id} is {job.status.value}: there is nothing to cancel")
    return get_job(conn, job_id)


def lost_jobs(conn: Connection, lost_after_seconds: float) -> list[Job]:
    """Running jobs whose worker has not sent a heartbeat for ``lost_after_seconds``."""
    cutoff = utcnow() - timedelta(seconds=lost_after_seconds)
    query = select(jobs).where(
        jobs.c.status == JobStatus.running.value, jobs.c.heartbeat_at < cutoff
    )
    return [_to_model(r) for r in conn.execute(query)]


def settle_lost(conn: Connection, job: Job, stale_before: datetime) -> JobStatus | None:
    """Requeue a lost job that has attempts left, else fail it as ``worker lost``; None
    when its worker came back (a fresh heartbeat) since it was found."""
    still_lost = (
        (jobs.c.job_id == job.job_id)
        & (jobs.c.status == JobStatus.running.value)
        & (jobs.c.heartbeat_at < stale_before)
    )
    if job.cancel_requested:  # asked to stop, then lost: never run again
        now = utcnow()
        values: dict[str, Any] = {
            "status": JobStatus.cancelled.value,
            "finished_at": now,
            "error": f"cancelled; its worker ({job.worker_id}) was lost",
        }
        outcome = JobStatus.cancelled
    elif job.attempts < job.max_attempts:
        values = {
            "status": JobStatus.queued.value,
            "worker_id": None,
            "heartbeat_at": None,
            "run_id": None,
            "error": f"worker lost ({job.worker_id}); queued again",
        }
        outcome = JobStatus.queued
    else:
        now = utcnow()
        started = job.started_at or now
        values = {
            "status": JobStatus.failed.value,
            "finished_at": now,
            "duration_seconds": (now - started.replace(tzinfo=None)).total_seconds(),
            "error": f"worker lost ({job.worker_id} stopped sending heartbeats)",
        }
        outcome = JobStatus.failed
    changed = conn.execute(jobs.update().where(still_lost).values(**values)).rowcount
    return outcome if changed == 1 else None


def counts_by_status(conn: Connection) -> dict[str, int]:
    query = select(jobs.c.status, func.count()).group_by(jobs.c.status)
    return {status: count for status, count in conn.execute(query).all()}


def add_aggregate(
    conn: Connection, plan_version_id: str, job_id: str, path: str, run_count: int
) -> Aggregate:
    aggregate_id = new_id(AGGREGATE_ID_PREFIX)
    conn.execute(
        aggregates.insert().values(
            aggregate_id=aggregate_id,
            plan_version_id=plan_version_id,
            job_id=job_id,
            path=path,
            run_count=run_count,
            created_at=utcnow(),
        )
    )
    row = conn.execute(select(aggregates).where(aggregates.c.aggregate_id == aggregate_id)).one()
    return _to_aggregate(row)


def _to_aggregate(row: Any) -> Aggregate:
    return Aggregate(
        aggregate_id=row.aggregate_id,
        plan_version_id=row.plan_version_id,
        job_id=row.job_id,
        path=row.path,
        run_count=row.run_count,
        created_at=as_aware(row.created_at),
    )


def aggregates_of_plan(conn: Connection, plan_version_id: str, limit: int = 20) -> list[Aggregate]:
    query = (
        select(aggregates)
        .where(aggregates.c.plan_version_id == plan_version_id)
        .order_by(aggregates.c.created_at.desc(), aggregates.c.aggregate_id.desc())
        .limit(limit)
    )
    return [_to_aggregate(r) for r in conn.execute(query)]
